"""`edgecls doctor`: what this machine is and whether the device side can run here."""

from __future__ import annotations

import importlib.util
import os
import platform
import struct
import sys
from typing import Any

from edgecls.errors import EdgeclsError
from edgecls.provenance import device_versions
from edgecls.runtime.capture import capture_backends, picamera2_problem
from edgecls.runtime.cpu import cpu_count, emulation, host_core, machine_labels, normalize_arch
from edgecls.runtime.interpreter import ENV_VAR, find_backend, installed_backends

_ARM32 = ("armv6l", "armv7l", "armv8l", "arm")
ARM32_ADVICE = ("32-bit ARM: neither LiteRT (ai-edge-litert) nor tflite-runtime publishes a wheel for armv7l "
                "on Python 3.10+; install the 64-bit Raspberry Pi OS to run edgecls on this board")


def is_arm32(arch: str, python_bits: int) -> bool:
    """A 32-bit ARM Python (a 32-bit OS, also on a 64-bit kernel): no TFLite interpreter wheel exists."""
    return arch.lower() in _ARM32 or (arch.lower() in ("aarch64", "arm64") and python_bits == 32)


def machine_info() -> dict[str, Any]:
    """The machine a figure was measured on (shared with bench reports)."""
    return {
        "platform": platform.platform(),
        "system": platform.system(),
        "arch": platform.machine(),
        "python_bits": struct.calcsize("P") * 8,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_mb": _memory_mb(),
        "python": platform.python_version(),
    }


def doctor_report() -> dict[str, Any]:
    """Machine, library versions, the interpreter backend found, and warnings about known traps."""
    versions = device_versions()
    report: dict[str, Any] = {"edgecls": versions.pop("edgecls"), **machine_info(), **versions}
    installed = installed_backends()
    report["backends_installed"] = installed
    report["tensorflow_installed"] = importlib.util.find_spec("tensorflow") is not None
    report["backend_forced"] = os.environ.get(ENV_VAR) or None
    report["capture_backends"] = capture_backends()  # live input (predict --source): picamera2, OpenCV
    warnings: list[str] = []
    try:
        backend = find_backend()
        report["backend"] = {"name": backend.name, "version": backend.version}
    except EdgeclsError as exc:
        report["backend"] = {"name": None, "error": str(exc)}
    numpy_major = int(report["numpy"].split(".")[0])
    if installed["tflite_runtime"] and numpy_major >= 2:
        warnings.append(
            f"tflite_runtime {installed['tflite_runtime']} is built for numpy 1 and cannot run with numpy "
            f"{report['numpy']}: pip install ai-edge-litert, or pip install 'numpy<2'"
        )
    if is_arm32(report["arch"], report["python_bits"]):
        warnings.append(ARM32_ADVICE)
    camera_problem = picamera2_problem() if report["capture_backends"]["picamera2"] else None
    if camera_problem:  # installed from apt, yet it will not import (numpy 1 builds beside numpy 2)
        warnings.append(camera_problem)
    if report["backend"]["name"] == "tensorflow":
        warnings.append("running on tensorflow.lite (deprecated and heavy): pip install ai-edge-litert")
    report.update(machine_labels(report["arch"]))  # board, governor, clock range, CPU features
    report["warnings"] = warnings
    report["ok"] = report["backend"]["name"] is not None
    return report


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
    except OSError:
        return platform.processor() or "unknown"
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    # x86 says "model name"; a Raspberry Pi says "Model" (the board) and no "model name".
    return (
        fields.get("model name") or fields.get("Model") or fields.get("Hardware") or platform.processor() or "unknown"
    )


def _memory_mb() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def describe_machine(backend: Any) -> dict[str, Any]:
    """The machine section of a report: doctor's machine_info plus what the bench ran with."""
    versions = {**device_versions(), backend.name: backend.version}
    for heavy in ("tensorflow", "keras"):  # recorded only if already loaded: never imported for this
        module = sys.modules.get(heavy)
        if module is not None and heavy not in versions:
            versions[heavy] = str(getattr(module, "__version__", "unknown"))
    arch = normalize_arch(platform.machine())
    return {**machine_info(), "arch": arch, "usable_cpus": cpu_count(),
            "backend": {"name": backend.name, "version": backend.version}, "versions": versions,
            "emulated": emulation(), "cpu_core": host_core(), **machine_labels(arch)}
