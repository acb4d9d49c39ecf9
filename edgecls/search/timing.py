"""The search's latencies: files timed on the target in one bench (edgecls.bench.measure), interleaved.

Latency only: each file is fed seeded random pictures at its own input size (the files of a search take
64, 96, 160 px ...), so the same bench runs here, under a profile, or on the device over SSH
(export --target's Target and Where). What a file scores was measured on the validation split
when it was made; here only its speed is.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from edgecls.bench.results import Latency
from edgecls.reporter import Reporter


@dataclass
class Timing:
    """The latencies of the files timed together, and where and how they were measured."""

    latency: dict[str, Latency] = field(default_factory=dict)  # by key
    placement: list[str] = field(default_factory=list)  # sentences: where the figures come from
    threads: int = 0
    load_average: Optional[tuple[float, float, float]] = None  # this host's, when the timing began

    def p50_ms(self, key: str) -> Optional[float]:
        found = self.latency.get(key)
        return found.invoke_ms.p50 if found else None

    def fastest_round_ms(self, key: str) -> Optional[float]:
        """The median of the file's fastest interleaved round: what it takes when nothing else runs (a
        multi-threaded invoke waits for its slowest thread, so one busy core slows a whole round)."""
        found = self.latency.get(key)
        if found is None:
            return None
        return min(found.invoke_round_medians_ms) if found.invoke_round_medians_ms else found.invoke_ms.p50


def time_files(files: dict[str, Path], target: Any, place: Any, runs: int, work: Path,
               reporter: Reporter) -> Timing:
    """Each of `files` (by key) timed on `target` (edgecls.export.target.Target) in one interleaved bench,
    measured at `place` (its edgecls.bench.Where: a device already probed, for a remote target); the figures
    kept are each file's at the largest thread count measured."""
    import os

    from edgecls.bench.measure import measure
    from edgecls.export.target import bench_options

    if not files:
        return Timing()
    staged = work / "timing"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    paths = {}
    for key, path in files.items():  # one folder, unique names: the bench names models by their file
        paths[key] = staged / f"{key}.tflite"
        shutil.copyfile(path, paths[key])
    options = replace(bench_options(target, list(paths.values()), runs), latency_only=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = measure(options, place, reporter.quiet())
    by_file = {Path(m.path).name: m for m in report.models}
    timing = Timing(placement=list(report.device.notes), load_average=load)
    for key, path in paths.items():
        model = by_file.get(path.name)
        if model is not None and model.latency:
            timing.latency[key] = max(model.latency, key=lambda t: t.threads)
            timing.threads = timing.latency[key].threads
    if target.kind == "remote":
        timing.placement.insert(0, f"Measured on {target.spec} over SSH ({report.machine.arch}, "
                                   f"{report.machine.cpu}), threads {timing.threads}.")
    shutil.rmtree(staged, ignore_errors=True)
    return timing
