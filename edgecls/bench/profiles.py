"""Where a figure is measured: the device profile asked for, applied to this host, and the sentences
that say whether the figures are the device's (the host itself, its cores and emulation are
edgecls.runtime.cpu's and runtime.doctor's).

A profile (devices/NAME.toml) names a device's arch, cores and threads. On another machine the
bench applies what it can (the thread count, CPU affinity to the first `cores` CPUs) and the
report says plainly that the figures are this host's under the profile's constraints.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from edgecls.errors import EdgeclsError
from edgecls.runtime.cpu import normalize_arch, usable_cpus
from edgecls.tomlio import read_toml

DEVICES_ENV = "EDGECLS_DEVICES"  # an extra folder of profiles
_REQUIRED = {"name": str, "arch": str, "cores": int, "threads": int}
_OPTIONAL = {"cpu": str, "qemu_cpu": str, "memory_mb": int, "notes": str}


@dataclass(frozen=True)
class DeviceProfile:
    key: str  # the file's stem: rpi5
    path: str
    name: str
    arch: str
    cores: int  # 0: every core of the machine
    threads: int  # 0: as many as the CPUs used
    cpu: str = ""
    qemu_cpu: str = ""
    memory_mb: int = 0
    notes: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------- finding and reading
def profile_dirs() -> list[Path]:
    """Where profile names are looked up: $EDGECLS_DEVICES, ./devices, then the profiles that ship
    with the package (edgecls/devices in a wheel; the source tree's devices/ in a checkout)."""
    found = []
    if os.environ.get(DEVICES_ENV):
        found.append(Path(os.environ[DEVICES_ENV]))
    package = Path(__file__).resolve().parents[1]
    found += [Path.cwd() / "devices", package / "devices", package.parent / "devices"]
    unique: list[Path] = []
    for folder in found:
        if folder.is_dir() and all(folder.resolve() != u.resolve() for u in unique):
            unique.append(folder)
    return unique


def available_profiles() -> list[str]:
    return sorted({p.stem for folder in profile_dirs() for p in folder.glob("*.toml")})


def load_profile(spec: str) -> DeviceProfile:
    """A profile by name (rpi5) or path (devices/rpi5.toml). One-line errors."""
    looks_like_path = spec.endswith(".toml") or os.sep in spec or "/" in spec
    if looks_like_path:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise EdgeclsError(f"device profile {spec} does not exist")
    else:
        path = next((folder / f"{spec}.toml" for folder in profile_dirs() if (folder / f"{spec}.toml").is_file()), None)
        if path is None:
            names = ", ".join(available_profiles()) or f"none found (set ${DEVICES_ENV} to a folder of profiles)"
            raise EdgeclsError(f"unknown device profile {spec!r}: use one of {names}, or a path to a .toml file")
    doc = read_toml(path, "device profile")
    values: dict[str, Any] = {}
    for key, kind in {**_REQUIRED, **_OPTIONAL}.items():
        if key not in doc:
            if key in _REQUIRED:
                raise EdgeclsError(f"device profile {path} is malformed: {key!r} is missing")
            continue
        value = doc[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            want = "a whole number, 0 or more" if kind is int else "a string"
            raise EdgeclsError(f"device profile {path} is malformed: {key!r} must be {want}, not {value!r}")
        values[key] = value
    return DeviceProfile(key=path.stem, path=str(path), **values)


@contextlib.contextmanager
def constrained(profile: Optional[DeviceProfile]) -> Iterator[Optional[list[int]]]:
    """Run the block on the first `profile.cores` usable CPUs (all of them without a profile,
    or where affinity is unsupported); yields the CPUs used and restores the affinity after.

    Threads and processes started inside inherit it: the interpreters' thread pools and the
    peak-memory subprocess."""
    cpus = usable_cpus()
    if cpus is None or profile is None or profile.cores == 0 or profile.cores >= len(cpus):
        yield cpus
        return
    chosen = cpus[:profile.cores]
    os.sched_setaffinity(0, chosen)
    try:
        yield chosen
    finally:
        os.sched_setaffinity(0, cpus)


def thread_sweep(profile: Optional[DeviceProfile], cpus_used: int) -> list[int]:
    """Thread counts when --threads is not given: the profile's, else 1 and every CPU used."""
    if profile is not None:
        # More interpreter threads than CPUs only measures the scheduler: cap at the CPUs used.
        return [min(profile.threads or cpus_used, cpus_used)]
    return sorted({1, cpus_used})


def profile_core(profile: DeviceProfile) -> Optional[str]:
    """The core type a profile names in its cpu ("4x Cortex-A76 @ 2.4 GHz" -> "Cortex-A76"), or None."""
    found = re.search(r"Cortex-?([AX]\d+)", profile.cpu, re.IGNORECASE)
    return f"Cortex-{found.group(1).upper()}" if found else None


def placement_notes(profile: Optional[DeviceProfile], machine: dict[str, Any], cpus_used: Optional[list[int]],
                    threads: list[int]) -> tuple[bool, list[str]]:
    """(are these the device's own figures?, sentences for the report)."""
    notes: list[str] = []
    kind = "emulated machine" if machine.get("emulated") else "host"
    host = f"this {machine['arch']} {kind} ({machine['cpu']}, {machine['usable_cpus']} usable CPUs)"
    used = len(cpus_used) if cpus_used is not None else machine["usable_cpus"]
    if machine.get("emulated"):
        notes.append(f"Emulated ({machine['emulated']}): latency under emulation is not a device figure; "
                     "accuracy, agreement and sizes are.")
    if profile is None:
        notes.append(f"Measured on {host}, {used} CPUs used, threads {', '.join(map(str, threads))}.")
        return not machine.get("emulated"), notes
    same_arch = normalize_arch(profile.arch) == machine["arch"]
    same_cores = profile.cores in (0, used) and (profile.cores == 0 or machine["usable_cpus"] >= profile.cores)
    # Arch and core count fit every 4-core arm64 board: the core type tells a Pi 5 from a Pi 4.
    want, have = profile_core(profile), machine.get("cpu_core")
    same_core = want is None or have == want
    fits = same_arch and same_cores and not machine.get("emulated")
    if fits and same_core:
        notes.append(f"Measured on {host} as {profile.name} ({used} CPUs, threads {', '.join(map(str, threads))}"
                     + (f"; {have} confirmed)." if want else ")."))
        return True, notes
    if fits and have is None:
        notes.append(f"Measured on {host} under the {profile.name} profile ({used} CPUs, threads "
                     f"{', '.join(map(str, threads))}); that this host is a {profile.name} is unconfirmed: its "
                     f"CPU core type could not be read to check it against the profile's {want}. Treat these as "
                     f"unconfirmed {profile.name} figures.")
        return False, notes
    cores = "all cores" if profile.cores == 0 else f"{profile.cores} cores"
    over = [t for t in threads if t > used]
    short = (f"; this host has only {machine['usable_cpus']} CPUs, so {used} were used"
             + (f": the rows at {', '.join(map(str, over))} threads share them (oversubscribed)" if over else "")
             if profile.cores > machine["usable_cpus"] else "")
    other = f"; its CPU is a {have}, not the profile's {want}" if fits else ""
    notes.append(f"Measured on {host} under the {profile.name} profile's constraints ({cores}, threads "
                 f"{', '.join(map(str, threads))}{short}{other}), not on a {profile.name}: these are not "
                 f"{profile.name} figures.")
    return False, notes
