"""What a bench will do, resolved once from its options (bench.options.BenchOptions): the one place
where options become the plain values each step of bench.measure takes.

    BenchOptions -> checked (each option's bounds, then what involves several) -> the paths sorted
      into a run directory and .tflite files, the device profile read -> Plan: what to open (Sources,
      for bench.inputs), how every model is opened (ModelSettings: alike for accuracy, latency, peak
      memory and the steady load), how to time (latency.Schedule), what else to measure, and where
      (Where: this host, this host under the profile, or a device over SSH)

No step after this one reads an option: each gets the part of the Plan it uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from edgecls.bench.latency import Schedule
from edgecls.bench.options import BenchOptions, validate
from edgecls.bench.profiles import DeviceProfile, load_profile
from edgecls.errors import EdgeclsError
from edgecls.runtime.settings import ModelSettings

if TYPE_CHECKING:
    from edgecls import transport

# Where the test images come from (bench.inputs): a run's held-out split (or --data), class folders
# named by --labels, or no labels at all (--latency-only).
SPLIT, LABELLED, UNLABELLED = "split", "labelled", "unlabelled"


@dataclass(frozen=True)
class Where:
    """Where a bench measures: this host as it is (neither), this host under a device profile's cores
    and threads (`profile`), or a device reached over SSH (`device`; a profile in the options is
    applied there)."""

    profile: Optional[DeviceProfile] = None
    device: Optional[transport.Device] = None


@dataclass(frozen=True)
class Sources:
    """What bench.inputs opens: the run directory (if one is given), the .tflite files, and where the
    test images come from (`route`: SPLIT, LABELLED or UNLABELLED; `data`: --data)."""

    run_dir: Optional[Path]
    files: list[Path]
    data: Optional[str]
    route: str = SPLIT


@dataclass(frozen=True)
class Plan:
    """A bench, resolved: every step's values (bench.measure hands each step its own)."""

    options: BenchOptions  # as given: a device's own bench is generated from it (bench.remote)
    sources: Sources
    settings: ModelSettings  # how every model is opened, for every figure
    where: Where
    threads: Optional[list[int]]  # None: the profile's, else 1 and every CPU used (profiles.thread_sweep)
    schedule: Schedule  # warm-up, timed images, batch size
    memory: bool
    sustain: Optional[float]  # seconds of steady load after the bench
    keras: bool  # the run's Keras model as the float reference
    unknown_data: Optional[str]  # images of none of the classes (a folder)
    notes: list[str] = field(default_factory=list)  # what the report says about the options themselves


def resolve_plan(options: BenchOptions, where: Optional[Where] = None) -> Plan:
    """`options`, checked (one-line errors, before any image is read), as a Plan measured `where`
    (default: this host, under the profile `options.device` names, if any)."""
    validate(options)
    run_dir, files = split_paths(options.paths)
    route = UNLABELLED if options.latency_only else LABELLED if options.labels is not None else SPLIT
    notes = []
    if options.input_range is not None:
        low, high = options.input_range
        notes.append(f"--input-range {low:g},{high:g}: every .tflite model was fed pixels 0..255 as {low:g}..{high:g}, "
                     "whatever its metadata says.")
    return Plan(
        options=options,
        sources=Sources(run_dir, files, options.data, route),
        settings=ModelSettings(labels=options.labels, resize=options.resize, fit=options.fit,
                               input_range=options.input_range, backend=options.backend),
        where=where if where is not None else Where(profile=load_profile(options.device) if options.device else None),
        threads=options.threads,
        schedule=Schedule(options.warmup, options.runs, options.batch_size),
        memory=options.memory,
        sustain=options.sustain,
        keras=options.keras,
        unknown_data=options.unknown_data,
        notes=notes,
    )


def split_paths(paths: Sequence[Path]) -> tuple[Optional[Path], list[Path]]:
    """(the run directory, if one is given; the .tflite files). One-line errors."""
    if not paths:
        raise EdgeclsError("give a run directory (made by edgecls train and edgecls export) or .tflite files")
    runs, files = [], []
    for path in map(Path, paths):
        if path.is_dir():
            runs.append(path)
        elif not path.exists():
            raise EdgeclsError(f"{path} does not exist: give a run directory or .tflite files")
        elif path.suffix.lower() == ".tflite":
            files.append(path)
        elif path.suffix.lower() == ".json":
            raise EdgeclsError(f"{path} is a JSON file: to merge bench reports use edgecls bench compare A.json B.json")
        else:
            raise EdgeclsError(f"{path} is not a run directory or a .tflite file")
    if len(runs) > 1:
        raise EdgeclsError(f"give one run directory at a time (got {', '.join(map(str, runs))})")
    return (runs[0] if runs else None), files
