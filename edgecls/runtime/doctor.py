"""`edgecls doctor`: what this machine is and whether the device side can run here."""

from __future__ import annotations

import importlib.util
import os
import platform
import struct
from typing import Any

from edgecls.errors import EdgeclsError
from edgecls.provenance import device_versions
from edgecls.runtime.capture import capture_backends, picamera2_problem
from edgecls.runtime.interpreter import ENV_VAR, find_backend, installed_backends

_ARM32 = ("armv6l", "armv7l", "armv8l", "arm")


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
    if report["arch"].lower() in _ARM32 or (
        report["arch"].lower() in ("aarch64", "arm64") and report["python_bits"] == 32
    ):
        warnings.append(
            "32-bit ARM: neither LiteRT (ai-edge-litert) nor tflite-runtime publishes a wheel for armv7l "
            "on Python 3.10+; install the 64-bit Raspberry Pi OS to run edgecls on this board"
        )
    camera_problem = picamera2_problem() if report["capture_backends"]["picamera2"] else None
    if camera_problem:  # installed from apt, yet it will not import (numpy 1 builds beside numpy 2)
        warnings.append(camera_problem)
    if report["backend"]["name"] == "tensorflow":
        warnings.append("running on tensorflow.lite (deprecated and heavy): pip install ai-edge-litert")
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
