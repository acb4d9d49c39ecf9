"""Latency through the device runtime, measured the only way a shared, noisy machine allows:
every contender (model x thread count) in turn, round after round, in one process.

Per contender: load-and-allocate and first inference (median of a few fresh loads), warm-up,
then steady state at batch 1 for invoke alone and for file -> label (decode + preprocess +
invoke), and throughput at a batch size. Each round gives every contender the same number of
images, starting with a different contender each round, so drift and bursts of load from other
users fall on all of them alike. Per-image percentiles pool the samples of all rounds; the
ratio to the float32 model is the median over rounds of the per-round median ratio.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from edgecls.bench.results import BenchModel, Latency, LatencyRatio, Throughput, Timing
from edgecls.reporter import SILENT, Reporter
from edgecls.runtime.classify import Classifier
from edgecls.runtime.settings import ModelSettings

LOAD_REPEATS = 3  # fresh loads per contender; the medians are reported
MAX_ROUNDS = 10
SAMPLE_FILES = 32  # PNG files written for file -> label when the data has no files of its own
SAMPLE_DECIMALS = 5  # ms: 10 ns resolution is plenty for the JSON


@dataclass
class Contender:
    model: BenchModel
    threads: int
    classifier: Optional[Classifier] = None
    init_ms: list[float] = field(default_factory=list)  # the whole Classifier(): read, verify, allocate
    load_ms: list[float] = field(default_factory=list)  # interpreter creation + allocate_tensors
    first_ms: list[float] = field(default_factory=list)
    invoke_rounds: list[list[float]] = field(default_factory=list)
    file_rounds: list[list[float]] = field(default_factory=list)
    batch_ms: list[float] = field(default_factory=list)
    batch: int = 1
    images: np.ndarray = field(default=None, repr=False)  # uint8 (N, H, W, C) as this model takes them


@dataclass(frozen=True)
class Schedule:
    """How much each contender is timed."""

    warmup: int
    runs: int  # timed images per contender, for invoke and again for file -> label
    batch_size: int

    @property
    def rounds(self) -> int:
        return min(self.runs, MAX_ROUNDS)

    @property
    def per_round(self) -> int:
        return math.ceil(self.runs / self.rounds)


def stats(samples_ms: Sequence[float], source: Optional[str] = None) -> Timing:
    """p50/p90/p99/mean/std/min/max of per-image times in ms (and the samples, rounded)."""
    values = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return Timing(p50=float(p50), p90=float(p90), p99=float(p99), mean=float(values.mean()), std=float(values.std()),
                  min=float(values.min()), max=float(values.max()), n=int(values.size),
                  samples=[round(float(v), SAMPLE_DECIMALS) for v in values], source=source)


def measure(models: list[BenchModel], threads: list[int], images: np.ndarray | Mapping[str, np.ndarray],
            files: list[Path], file_source: str, schedule: Schedule, settings: ModelSettings,
            reference: Optional[str] = None, reporter: Reporter = SILENT) -> dict[tuple[str, int], Latency]:
    """Latency figures per (model name, threads) for the .tflite models, interleaved.

    `images`: decoded pixels, one array for all models or one per model name (models of different
    input sizes); `files` are image files for file -> label (see sample_files); `settings`: how each
    model is opened (the bench's, as bench.inputs opened it: backend, labels, input range, resize, fit);
    `reference` names the model (a float32 .tflite) that ratios are taken against."""
    contenders = [Contender(m, t) for m in models for t in threads]
    if not contenders:
        return {}
    per_model = images if isinstance(images, Mapping) else {m.name: images for m in models}
    for c in contenders:
        c.images = per_model[c.model.name]
    settings.open(models[0].path, threads=1)  # import the interpreter before timing
    reporter(f"Timing {len(models)} model(s) x threads {', '.join(map(str, threads))}: {schedule.warmup} warm-up, "
        f"{schedule.rounds} interleaved rounds of {schedule.per_round} images")
    _load(contenders, settings)
    _warm_up(contenders, files, schedule.warmup)
    _rounds(contenders, schedule, lambda c, j: _time_invoke(c.classifier, c.images[j % len(c.images)][None]),
            lambda c: c.invoke_rounds)
    _rounds(contenders, schedule, lambda c, j: _time_file(c.classifier, files[j % len(files)]),
            lambda c: c.file_rounds)
    _throughput(contenders, schedule)
    results = {}
    by_key = {(c.model.name, c.threads): c for c in contenders}
    for c in contenders:
        ref = by_key.get((reference, c.threads)) if reference else None
        results[(c.model.name, c.threads)] = _summary(c, ref, file_source)
        c.classifier = None
    return results


# ---------------------------------------------------------------------- the phases
def _rotated(contenders: list[Contender], r: int) -> list[Contender]:
    """Round r starts with contender r mod n: each one goes first equally often."""
    k = r % len(contenders)
    return contenders[k:] + contenders[:k]


def _load(contenders: list[Contender], settings: ModelSettings) -> None:
    for r in range(LOAD_REPEATS):
        for c in _rotated(contenders, r):
            c.classifier = None  # the previous instance goes first: one interpreter per contender alive
            started = time.perf_counter()
            clf = settings.open(c.model.path, threads=c.threads)
            c.init_ms.append((time.perf_counter() - started) * 1e3)
            c.load_ms.append(clf.load_seconds * 1e3)
            c.first_ms.append(_time_invoke(clf, c.images[:1]))
            c.classifier = clf


def _warm_up(contenders: list[Contender], files: list[Path], warmup: int) -> None:
    for i in range(warmup):
        for c in contenders:
            _time_invoke(c.classifier, c.images[i % len(c.images)][None])
    for i in range(min(warmup, 3)):  # decoders and file caches
        for c in contenders:
            c.classifier.classify(files[i % len(files)])


def _rounds(contenders: list[Contender], schedule: Schedule, timed: Callable[[Contender, int], float],
            rounds_of: Callable[[Contender], list[list[float]]]) -> None:
    for r in range(schedule.rounds):
        for c in _rotated(contenders, r):
            start = r * schedule.per_round  # every contender sees the same images in the same order
            rounds_of(c).append([timed(c, start + i) for i in range(schedule.per_round)])


def _throughput(contenders: list[Contender], schedule: Schedule) -> None:
    for c in contenders:
        c.batch = max(1, min(schedule.batch_size, c.classifier.max_batch, len(c.images)))
        for _ in range(2):  # resize the input tensor, then one warm batch
            c.classifier.probabilities(c.images[:c.batch])
    for r in range(schedule.rounds):
        for c in _rotated(contenders, r):
            batch = c.images[:c.batch]
            started = time.perf_counter()
            c.classifier.probabilities(batch)
            c.batch_ms.append((time.perf_counter() - started) * 1e3)


def _time_invoke(clf: Classifier, batch: np.ndarray) -> float:
    clf.set_input(batch)
    started = time.perf_counter()
    clf.invoke()
    return (time.perf_counter() - started) * 1e3


def _time_file(clf: Classifier, path: Path) -> float:
    started = time.perf_counter()
    clf.classify(path)
    return (time.perf_counter() - started) * 1e3


def sample_files(files: Optional[list[Path]], images: np.ndarray, folder: Path) -> tuple[list[Path], str]:
    """Files for file -> label: the test files themselves, or else the first test images written
    as PNG into `folder` (the decode cost of a small PNG). Returns (files, how they were found)."""
    if files:
        return list(files), f"{len(files)} test image files"
    from PIL import Image

    written = []
    for i, pixels in enumerate(images[:SAMPLE_FILES]):
        path = folder / f"test{i:03d}.png"
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)
        written.append(path)
    return written, f"{len(written)} test images written as PNG"


def _summary(c: Contender, reference: Optional[Contender], file_source: str) -> Latency:
    invoke = [v for block in c.invoke_rounds for v in block]
    files = [v for block in c.file_rounds for v in block]
    batch_ms = float(np.median(c.batch_ms))
    ratio = None
    if reference is not None and reference is not c:
        ratio = LatencyRatio(
            reference=reference.model.name,
            invoke_p50_ratio=_paired_ratio(c.invoke_rounds, reference.invoke_rounds),
            file_p50_ratio=_paired_ratio(c.file_rounds, reference.file_rounds),
            throughput_ratio=float(np.median(np.asarray(reference.batch_ms) / np.asarray(c.batch_ms))),
        )
    return Latency(
        threads=c.threads,
        init_ms=float(np.median(c.init_ms)),
        load_ms=float(np.median(c.load_ms)),
        first_inference_ms=float(np.median(c.first_ms)),
        invoke_ms=stats(invoke),
        invoke_round_medians_ms=[float(np.median(block)) for block in c.invoke_rounds],
        file_ms=stats(files, source=file_source),
        throughput=Throughput(batch=c.batch, batch_ms=batch_ms, images_per_s=c.batch / batch_ms * 1e3),
        vs_reference=ratio,
    )


def _paired_ratio(rounds: list[list[float]], reference: list[list[float]]) -> float:
    """Median over rounds of (this round's median / the reference's median in the same round)."""
    return float(np.median([np.median(a) / np.median(b) for a, b in zip(rounds, reference)]))


# ---------------------------------------------------------------------- ties: differences within the measured spread
LATENCY_TIE = 0.05  # p50s this close count as tied, however steady the rounds
TIE_QUANTILE = 25  # ... and so do two whose per-round ratio falls at or below 1 in this share of the rounds
SPREAD_RULE = ("p50s count as tied when within 5 % of each other, or when the slower one was not slower in at "
               "least 3 of 4 interleaved rounds (the lower quartile of the per-round ratios of the two rounds' "
               "medians is at or below 1): the spread of the rounds is the noise of this machine")


def round_ratios(fast: Latency, other: Latency) -> Optional[list[float]]:
    """Per interleaved round, `other`'s median over `fast`'s (both measured in the same rounds), or None
    where the rounds are not known (a report from before they were recorded)."""
    a, b = fast.invoke_round_medians_ms, other.invoke_round_medians_ms
    if not a or not b or len(a) != len(b):
        return None
    return [y / x for x, y in zip(a, b) if x > 0]


def tied(fast: Latency, other: Latency) -> bool:
    """Whether `other` is as fast as `fast` within the measured spread (SPREAD_RULE)."""
    if other.invoke_ms.p50 <= fast.invoke_ms.p50 * (1 + LATENCY_TIE):
        return True
    ratios = round_ratios(fast, other)
    return bool(ratios) and float(np.percentile(ratios, TIE_QUANTILE)) <= 1.0


def ms_decimals(*values: Optional[float]) -> int:
    """Decimals that show the smallest of `values` (ms) to 3 significant digits, at least 3: two sub-0.1 ms
    latencies printed alike (0.014 and 0.014) would hide the difference a decision was made on."""
    smallest = min((v for v in values if v is not None and v > 0), default=1.0)
    return max(3, 2 - int(np.floor(np.log10(smallest))))
