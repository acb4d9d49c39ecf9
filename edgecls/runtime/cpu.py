"""What this CPU is, as far as the kernel says: the instruction-set features that decide which
TFLite (XNNPACK / ruy) kernels run, the board model, the frequency governor and the current clock.

Everything is read from /proc and /sys; where a file is absent (macOS, a VM without cpufreq)
the value is None — never guessed. The functions take their paths as arguments so that tests
can point them at recorded copies of a Pi's files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

CPUINFO = "/proc/cpuinfo"
DEVICE_TREE_MODEL = "/proc/device-tree/model"
CPUFREQ = "/sys/devices/system/cpu/cpu{n}/cpufreq"

# The features that matter to int8/fp16 inference, by the names /proc/cpuinfo uses
# ("Features" on arm64, "flags" on x86), and what each one buys.
FEATURES = {
    "aarch64": {
        "asimd": "Advanced SIMD (NEON)",
        "asimddp": "int8 dot product (SDOT/UDOT): the fast int8 kernels",
        "i8mm": "int8 matrix multiply (SMMLA)",
        "asimdhp": "half-precision SIMD arithmetic",
        "fphp": "half-precision scalar arithmetic",
        "bf16": "bfloat16 arithmetic",
        "sve": "Scalable Vector Extension",
    },
    "x86_64": {
        "sse4_1": "SSE4.1",
        "avx": "AVX",
        "avx2": "AVX2 (256-bit integer SIMD)",
        "fma": "fused multiply-add",
        "f16c": "half-precision conversion",
        "avx512f": "AVX-512",
        "avx512_vnni": "AVX-512 VNNI (int8 dot product)",
        "avx_vnni": "AVX-VNNI (int8 dot product, 256-bit)",
        "amx_int8": "AMX int8 tiles",
    },
}
# Which of them give int8 a dot-product instruction: without one, int8 matmuls widen to 16 bit
# and are often no faster than float32.
DOT_PRODUCT = {"aarch64": ("asimddp",), "x86_64": ("avx512_vnni", "avx_vnni", "amx_int8")}
HALF_PRECISION = {"aarch64": ("asimdhp", "fphp"), "x86_64": ()}  # fp16 arithmetic (x86 f16c only converts)
_ARCHES = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}


def _read(path: str | Path) -> Optional[str]:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def cpu_features(arch: str, cpuinfo: str | Path = CPUINFO) -> dict[str, Any]:
    """{"source", "present": [...], "absent": [...], "dot_product", "half_precision"} for the
    features edgecls knows of this arch; the booleans are None when the kernel lists no flags
    (or the arch is not one we know), so "not found" is never mistaken for "not there"."""
    arch = _ARCHES.get(arch.lower(), arch.lower())
    known = FEATURES.get(arch, {})
    text = _read(cpuinfo)
    flags: Optional[set[str]] = None
    if text is not None:
        found = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.MULTILINE)
        flags = set(found.group(1).split()) if found else None
    if flags is None or not known:
        return {"source": None if flags is None else CPUINFO, "present": [], "absent": [],
                "dot_product": None, "half_precision": None}
    return {
        "source": str(cpuinfo),
        "present": [name for name in known if name in flags],
        "absent": [name for name in known if name not in flags],
        "dot_product": any(f in flags for f in DOT_PRODUCT[arch]),
        "half_precision": any(f in flags for f in HALF_PRECISION[arch]) if HALF_PRECISION[arch] else False,
    }


def board_model(path: str | Path = DEVICE_TREE_MODEL) -> Optional[str]:
    """The board's name from the device tree ("Raspberry Pi 5 Model B Rev 1.0"), or None."""
    text = _read(path)
    if text is None:
        return None
    return text.strip("\x00 \n") or None


def cpufreq(cpu: int = 0, name: str = "scaling_governor", root: str = CPUFREQ) -> Optional[str]:
    """One cpufreq attribute of a CPU (scaling_governor, scaling_cur_freq in kHz, ...), or None."""
    text = _read(Path(root.format(n=cpu)) / name)
    return text.strip() if text is not None and text.strip() else None


def current_mhz(cpu: int = 0, root: str = CPUFREQ, cpuinfo: str | Path = CPUINFO) -> tuple[Optional[float], str]:
    """(the CPU's current clock in MHz, where it came from): cpufreq's scaling_cur_freq, else x86's
    "cpu MHz" in /proc/cpuinfo (what a VM usually has), else (None, "none")."""
    khz = cpufreq(cpu, "scaling_cur_freq", root)
    if khz is not None and khz.isdigit():
        return int(khz) / 1000, "cpufreq"
    text = _read(cpuinfo) or ""
    found = re.findall(r"^cpu MHz\s*:\s*([0-9.]+)", text, re.MULTILINE)
    if len(found) > cpu:
        return float(found[cpu]), "/proc/cpuinfo"
    return None, "none"


def machine_labels(arch: str) -> dict[str, Any]:
    """What labels a device in a report: board, governor, clock range and CPU features."""
    max_khz, min_khz = cpufreq(0, "cpuinfo_max_freq"), cpufreq(0, "cpuinfo_min_freq")
    return {
        "board": board_model(),
        "governor": cpufreq(0, "scaling_governor"),
        "max_mhz": int(max_khz) / 1000 if max_khz and max_khz.isdigit() else None,
        "min_mhz": int(min_khz) / 1000 if min_khz and min_khz.isdigit() else None,
        "cpu_features": cpu_features(arch),
    }


def features_text(features: dict[str, Any]) -> str:
    """One line for people: "asimd asimddp (int8 dot product: yes; fp16 arithmetic: no)"."""
    if features.get("dot_product") is None:
        return "unknown (the kernel lists no CPU flags here)"

    def yes(value: Optional[bool]) -> str:
        return "yes" if value else "no"

    present = " ".join(features["present"]) or "none of the known ones"
    return (f"{present} (int8 dot product: {yes(features['dot_product'])}; "
            f"fp16 arithmetic: {yes(features['half_precision'])})")
