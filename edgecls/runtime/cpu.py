"""What this CPU is, as far as the kernel says: the instruction-set features that decide which
TFLite (XNNPACK / ruy) kernels run, the board model and its core type, the CPUs this process may
use, emulation, the frequency governor and the current clock, the temperature and (on a Raspberry
Pi) the firmware's throttling.

Everything is read from /proc and /sys; where a file is absent (macOS, a VM without cpufreq)
the value is None — never guessed. The functions take their paths as arguments so that tests
can point them at recorded copies of a Pi's files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
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


# ---------------------------------------------------------------------- the host, its cores, emulation
EMULATED_ENV = "EDGECLS_EMULATED"  # e.g. qemu-cortex-a76, set by whoever runs us under emulation
_ARCH_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}
# Arm's "CPU part" numbers (/proc/cpuinfo, implementer 0x41) of the cores in Pi-class boards.
CPU_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0b": "Cortex-A76"}
# /proc/device-tree/model prefixes -> the board's core, where the kernel names no CPU part.
BOARD_CORES = (("Raspberry Pi 5", "Cortex-A76"), ("Raspberry Pi Compute Module 5", "Cortex-A76"),
               ("Raspberry Pi 500", "Cortex-A76"), ("Raspberry Pi 4", "Cortex-A72"),
               ("Raspberry Pi Compute Module 4", "Cortex-A72"), ("Raspberry Pi 400", "Cortex-A72"),
               ("Raspberry Pi 3", "Cortex-A53"), ("Raspberry Pi Zero 2", "Cortex-A53"))


# ---------------------------------------------------------------------- the host
def normalize_arch(arch: str) -> str:
    arch = arch.strip().lower()
    return _ARCH_ALIASES.get(arch, arch)


def usable_cpus() -> Optional[list[int]]:
    """The CPUs this process may run on, or None where affinity is not supported (macOS)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return sorted(os.sched_getaffinity(0))


def cpu_count() -> int:
    cpus = usable_cpus()
    return len(cpus) if cpus is not None else (os.cpu_count() or 1)


def emulation() -> Optional[str]:
    """How this process is emulated ("qemu-cortex-a76"), or None on real hardware.

    $EDGECLS_EMULATED says it; otherwise qemu user mode is recognised by the process name it
    cannot hide (/proc/self/comm is qemu-aarch64 while platform.machine() says aarch64)."""
    declared = os.environ.get(EMULATED_ENV, "").strip()
    if declared:
        return declared
    try:
        comm = Path("/proc/self/comm").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    if comm.startswith("qemu-"):
        cpu = os.environ.get("QEMU_CPU")
        return f"{comm}" + (f" -cpu {cpu}" if cpu else "") + " (detected)"
    return None


def host_core(cpuinfo: str = "/proc/cpuinfo", model: str = "/proc/device-tree/model") -> Optional[str]:
    """The core type of this machine's CPU ("Cortex-A76"), from /proc/cpuinfo's "CPU part", else
    from the device-tree board model; None where neither says (x86, macOS, an unknown board)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    parts = {m.group(1).lower() for m in re.finditer(r"^CPU part\s*:\s*(0x[0-9a-fA-F]+)", text, re.MULTILINE)}
    if parts:  # big.LITTLE boards list two kinds: name them all
        return "+".join(sorted(CPU_PARTS.get(p, f"CPU part {p}") for p in parts))
    try:
        board = Path(model).read_text(encoding="utf-8", errors="replace").strip("\x00 \n")
    except OSError:
        return None
    return next((core for prefix, core in BOARD_CORES if board.startswith(prefix)), None)


# ---------------------------------------------------------------------- temperature and throttling
THERMAL = "/sys/class/thermal"
# get_throttled bits (Raspberry Pi firmware): now (0-3) and since boot (16-19).
THROTTLE_BITS = {0: "under-voltage", 1: "ARM clock capped", 2: "throttled", 3: "soft temperature limit"}
SINCE_BOOT_SHIFT = 16
CPU_ZONE_TYPES = ("cpu", "soc", "x86_pkg_temp", "k10temp", "coretemp", "package")


# ---------------------------------------------------------------------- sensors
def thermal_zone(root: str | Path = THERMAL) -> Optional[tuple[Path, str]]:
    """(the temp file of the CPU's thermal zone, its type), or None when the kernel has none."""
    zones = []
    for zone in sorted(Path(root).glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text(encoding="utf-8").strip()
            int((zone / "temp").read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            continue
        zones.append((zone / "temp", kind))
    preferred = [z for z in zones if any(word in z[1].lower() for word in CPU_ZONE_TYPES)]
    return (preferred or zones or [None])[0]


def read_celsius(path: Optional[Path]) -> Optional[float]:
    if path is None:
        return None
    try:
        return int(path.read_text(encoding="utf-8").strip()) / 1000
    except (OSError, ValueError):
        return None


def throttled() -> Optional[int]:
    """`vcgencmd get_throttled` as a number, or None where there is no vcgencmd (not a Pi)."""
    command = shutil.which("vcgencmd")
    if command is None:
        return None
    try:
        done = subprocess.run([command, "get_throttled"], capture_output=True, text=True, timeout=5,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"throttled=(0x[0-9a-fA-F]+)", done.stdout)
    return int(found.group(1), 16) if found else None


def throttle_words(value: int) -> list[str]:
    return [name for bit, name in THROTTLE_BITS.items() if value & (1 << bit)]
