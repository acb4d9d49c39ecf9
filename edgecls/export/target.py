"""`edgecls export RUN --target DEVICE --max-drop P`: which file to ship, decided by measurement.

    source -> candidates (float32, float16, dynamic, int8 by each quantiser, int8 with percentile-
      clipped ranges, int8 with the k worst ops in float), each converted and scored through the
      device runtime on the VALIDATION split -> latency of every candidate on the target,
      interleaved -> the fastest candidate within the budget (top-1 drop vs the Keras float model
      <= P points, agreement >= --min-agreement) -> only then: the chosen file on the TEST split
      -> OUT/model.tflite (its metadata names the decision), labels.txt, export.json (every
      candidate's row), target.png (accuracy against p50 latency)

The test split is read once, after the choice, so the figures reported for the chosen file are
not the ones it was selected on. Latency comes from the target: `host` is this machine as it is;
a profile name (rpi4) is this machine under the profile's constraints (its cores and threads),
labelled as such; `user@host` is measured on that device over SSH (edgecls.transport). The timing is
a bench (edgecls.bench.measure) of the candidates on the validation images, in memory.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.artifacts import ExportEntry, ExportIndex, write_export
from edgecls.atomic import folder_lock
from edgecls.bench.latency import ms_decimals
from edgecls.bench.latency import tied as latency_tied
from edgecls.bench.profiles import DeviceProfile
from edgecls.bench.results import Latency
from edgecls.errors import EdgeclsError, require_tensorflow
from edgecls.export.convert import ConversionError, Converted, convert, quantize_litert, saved_model
from edgecls.export.modes import (
    DEFAULT_FALLBACK,
)
from edgecls.export.options import TargetOptions
from edgecls.files import read_capped
from edgecls.options import check
from edgecls.reporter import SILENT, Reporter
from edgecls.rundir import RunDir, keras_probabilities
from edgecls.runtime.metadata import ModelMetadata
from edgecls.runtime.metrics import points_text

TARGET_FORMAT = "edgecls.target/1"
CHOSEN_FILE = "model.tflite"
PLOT_FILE = "target.png"
PERCENTILES = (99.9, 99.99)


# ---------------------------------------------------------------------- the candidates
@dataclass
class Context:
    """What the candidates are built from; the expensive parts are made once, when first needed."""

    saved: Path
    model: Any
    source: RunDir
    calib_samples: Optional[int]
    _float: Optional[Converted] = None
    _calibration: Any = None
    _calibrated: Optional[bytes] = None
    _diagnosis: Any = None
    _float_size: Optional[int] = None  # the float32 file's size as written (metadata included)

    def float_model(self) -> Converted:
        if self._float is None:
            self._float = convert(self.saved, "float32")
        return self._float

    def calibration(self):
        if self._calibration is None:
            self._calibration = self.source.calibration(self.calib_samples)
        return self._calibration

    def calibrated(self) -> bytes:
        """The float model with the converter's min/max statistics (what percentile clipping narrows)."""
        from edgecls.export.convert import calibrate_tf

        if self._calibrated is None:
            self._calibrated = calibrate_tf(self.saved, "int8", self.calibration().images)
        return self._calibrated

    def diagnosis(self):
        """TensorFlow's QuantizationDebugger ranking, once, on validation images (never test)."""
        from edgecls.export.diagnose import DEFAULT_EVAL, diagnose_saved, eval_images

        if self._diagnosis is None:
            images = eval_images(self.source, DEFAULT_EVAL)
            self._diagnosis = diagnose_saved(self.saved, self.model, self.calibration(), images, self.source.name)
        return self._diagnosis


@dataclass(frozen=True)
class Candidate:
    name: str  # also its file's variant: model_<name>.tflite while the search runs
    what: str  # one line for the table and export.json
    build: Callable[[Context], Converted]
    calibrated: bool = True  # uses the calibration images (recorded in its metadata)


def _converter(mode: str) -> Callable[[Context], Converted]:
    def build(ctx: Context) -> Converted:
        if mode == "float32":
            return ctx.float_model()
        images = ctx.calibration().images if mode == "int8" else None
        return convert(ctx.saved, mode, "converter", images)
    return build


def _litert(ctx: Context) -> Converted:
    from edgecls.export.convert import check_converted

    content = quantize_litert(ctx.float_model().content, "int8", ctx.calibration().images)
    return Converted("int8", content, "ai-edge-quantizer", check_converted(content, "int8", "ai-edge-quantizer"))


def _clipped(percentile: float) -> Callable[[Context], Converted]:
    def build(ctx: Context) -> Converted:
        from edgecls.export.clipping import quantize_clipped

        return quantize_clipped(ctx.calibrated(), ctx.calibration().images, percentile)
    return build


def _fallback(k: int) -> Callable[[Context], Converted]:
    def build(ctx: Context) -> Converted:
        from edgecls.export.diagnose import fallback_plan

        return fallback_plan(ctx.diagnosis(), k).quantize("int8")
    return build


def candidates(fallback: int = DEFAULT_FALLBACK) -> list[Candidate]:
    """Every candidate, cheapest and likeliest first (what --budget-s cuts off comes last)."""
    found = [
        Candidate("float32", "float32 (TFLite converter)", _converter("float32"), calibrated=False),
        Candidate("dynamic", "int8 weights, float activations (TFLite converter)", _converter("dynamic"),
                  calibrated=False),
        Candidate("int8", "full int8, min/max calibration (TFLite converter)", _converter("int8")),
        Candidate("float16", "float16 weights (TFLite converter)", _converter("float16"), calibrated=False),
        Candidate("int8-litert", "full int8, min/max calibration (ai-edge-quantizer)", _litert),
    ]
    found += [Candidate(f"int8-pct{p:g}", f"full int8, activations clipped to the {p:g}th percentile "
                        "(TFLite converter)", _clipped(p)) for p in PERCENTILES]
    found += [Candidate(f"int8-fallback{k}", f"int8 with the {k} worst op(s) in float (diagnosis ranking)",
                        _fallback(k)) for k in range(1, fallback + 1)]
    return found


# ---------------------------------------------------------------------- options and target
@dataclass(frozen=True)
class Target:
    spec: str
    kind: str  # host | profile | remote
    profile: Optional[DeviceProfile] = None

    @property
    def slug(self) -> str:
        name = self.profile.key if self.profile else self.spec
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def resolve_target(spec: str) -> Target:
    """host | user@host | a device profile name or path. One-line errors."""
    from edgecls.bench.profiles import load_profile

    spec = (spec or "").strip()
    if not spec:
        raise EdgeclsError("--target is empty: use host, a device profile (rpi5, rpi4, ...) or user@host")
    if spec == "host":
        return Target(spec, "host")
    if "@" in spec and not spec.endswith(".toml"):
        from edgecls.transport.targets import parse_targets

        user, _, host = spec.partition("@")
        if not user or not host or "," in spec:
            raise EdgeclsError(f"--target {spec!r}: a remote device is one user@host")
        parse_targets(spec, "--target")  # the checks --remote makes, now, before any conversion
        return Target(spec, "remote")
    return Target(spec, "profile", load_profile(spec))


def validate(options: TargetOptions) -> list[Candidate]:
    """The candidates to try, after the option checks (one-line errors)."""
    check(options)
    every = candidates(options.fallback)
    if options.only is None:
        return every
    names = {c.name: c for c in every}
    unknown = [n for n in options.only if n not in names]
    if unknown:
        raise EdgeclsError(f"unknown candidate {unknown[0]!r}: use a comma list of {', '.join(names)}")
    if not options.only:
        raise EdgeclsError("--candidates is empty")
    return [c for c in every if c.name in options.only]


# ---------------------------------------------------------------------- results
@dataclass
class Row:
    """One candidate: how it was made, how it scored on validation, how fast it ran on the target."""

    name: str
    what: str
    status: str = "skipped"  # chosen | passed | rejected | failed | skipped
    reasons: list[str] = field(default_factory=list)
    check: Any = None  # edgecls.export.job.ModelCheck (validation figures)
    drop_points: Optional[float] = None  # Keras float val accuracy - this one's, in points
    latency: Optional[Latency] = None  # edgecls.bench.latency's summary for the target's threads
    content: Optional[bytes] = field(default=None, repr=False)  # with metadata
    converted: Optional[Converted] = field(default=None, repr=False)
    metadata: Optional[ModelMetadata] = field(default=None, repr=False)  # what `content` carries

    @property
    def p50_ms(self) -> Optional[float]:
        return self.latency.invoke_ms.p50 if self.latency else None

    @property
    def built(self) -> bool:
        return self.check is not None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "what": self.what, "status": self.status, "reasons": self.reasons}
        if self.check is not None:
            m = self.check
            doc.update({"mode": m.mode, "backend": m.backend, "size_bytes": m.size_bytes,
                        "ratio_to_float32": round(m.ratio_to_float32, 4),
                        "val": {"accuracy": round(m.accuracy, 6), "agreement": round(m.agreement, 6),
                                "drop_points": round(self.drop_points, 4)},
                        "convert_seconds": m.seconds, "input": m.io["input"], "output": m.io["output"],
                        "sha256": m.sha256, **({"kept_float": m.kept_float} if m.kept_float else {})})
        if self.latency is not None:  # the summary without its raw samples
            doc["latency"] = self.latency.to_json()
            doc["latency"].pop("invoke_round_medians_ms", None)
            for key in ("invoke_ms", "file_ms"):
                doc["latency"][key].pop("samples")
        return doc


@dataclass
class TargetResult:
    out_dir: Path
    target: Target
    rows: list[Row]
    chosen: Optional[Row]
    keras_val_accuracy: float
    val_images: int
    placement: list[str]  # where the latency was measured, in sentences
    threads: int
    test: dict[str, Any] = field(default_factory=dict)  # the chosen file on the test split (after the choice)
    written: list[Path] = field(default_factory=list)
    report: Optional[ExportIndex] = None  # export.json
    seconds: float = 0.0


# ---------------------------------------------------------------------- the job
def export_for_target(source: RunDir, options: TargetOptions, reporter: Reporter = SILENT,
                      extra: Sequence[Candidate] = ()) -> TargetResult:
    """Build, score and time every candidate, choose, then score the chosen one on test and write.

    `extra` candidates (tests, experiments) are tried after the built-in ones."""
    from edgecls.export.job import check_output_dir, default_out, refuse_backbone_run

    started = time.perf_counter()
    chosen_candidates = validate(options) + list(extra)
    refuse_backbone_run(source)
    target = resolve_target(options.target)
    out = Path(options.out) if options.out else default_out(source).with_name(f"target-{target.slug}")
    check_output_dir(out)
    with folder_lock(out, "an export --target"):  # a second search into this folder at once is refused
        return _search(source, options, target, chosen_candidates, out, started, reporter)


def _search(source: RunDir, options: TargetOptions, target: Target, chosen_candidates: list[Candidate], out: Path,
            started: float, reporter: Reporter) -> TargetResult:
    from edgecls.export.job import validation_reference

    require_tensorflow("edgecls export --target")

    with tempfile.TemporaryDirectory(prefix="edgecls-target-") as tmp:
        # the device first (bench --remote's probe): a wrong name, a refused key or no Python on it is said
        # in seconds, before any candidate is converted
        place = target_place(target, options.remote, Path(tmp), reporter)
        model, val_images, val_labels, keras_predicted, keras_accuracy, output_kind = validation_reference(
            source, "choose on")
        reporter(f"Keras float model: {keras_accuracy:.4f} on {len(val_images)} validation images; budget: at "
                 f"most {options.max_drop:g} points below it, agreement at least {options.min_agreement:g}")
        rows = [Row(c.name, c.what) for c in chosen_candidates]
        sha = source.model_sha256()
        with saved_model(model) as saved:
            ctx = Context(saved, model, source, options.calib_samples)
            _build_all(ctx, chosen_candidates, rows, options, started, output_kind, sha,
                       (val_images, val_labels, keras_predicted, keras_accuracy), reporter)
            built = [r for r in rows if r.built]
            if not built:
                raise EdgeclsError("no candidate could be built: " + "; ".join(f"{r.name}: {r.reasons[0]}"
                                                                            for r in rows if r.reasons))
            paths = {}
            for row in built:
                paths[row.name] = Path(tmp) / f"model_{row.name}.tflite"
                paths[row.name].write_bytes(row.content)
            placement, threads = _time_on_target(target, place, built, paths, (val_images, val_labels),
                                                 list(source.labels), options, reporter)
            chosen = choose(rows, options.max_drop, options.min_agreement)
            if chosen is None:
                raise EdgeclsError(f"no candidate is within the budget (--max-drop {options.max_drop:g}, "
                                   f"--min-agreement {options.min_agreement:g}): "
                                   + "; ".join(f"{r.name}: {', '.join(r.reasons)}" for r in rows if r.reasons),
                                   exit_code=1)  # the job ran; the quality gate found nothing to ship
            reporter(f"Chose {chosen.name}: {chosen.p50_ms:.3f} ms p50, validation accuracy "
                     f"{chosen.check.accuracy:.4f}")
            # the first and only read of the test split
            test = score_test(source, model, paths[chosen.name], reporter)
    result = TargetResult(out, target, rows, chosen, keras_accuracy, len(val_images), placement, threads, test)
    result.seconds = time.perf_counter() - started
    _write(result, source, options, sha, reporter)
    return result


@dataclass
class Built:
    """A candidate made: its bytes with metadata, what the converter returned, and its validation check."""

    content: bytes
    converted: Converted
    metadata: ModelMetadata
    check: Any  # edgecls.export.job.ModelCheck


def build_checked(ctx: Context, candidate: Candidate, output_kind: str, sha: str, val: tuple) -> Built:
    """Convert one candidate, embed its metadata and score it on the validation images `val` (images,
    labels, the Keras model's predictions, ...) with the device runtime. Raises EdgeclsError
    (ConversionError when the converter fails) when it cannot be made or loaded."""
    from edgecls.export.job import check_files
    from edgecls.export.report import build_metadata
    from edgecls.runtime.metadata import embed_metadata

    images, labels, keras_predicted = val[:3]
    begun = time.perf_counter()
    converted = candidate.build(ctx)
    seconds = time.perf_counter() - begun
    calibration = ctx.calibration() if candidate.calibrated else None
    metadata = build_metadata(ctx.source, converted, calibration, output_kind, sha)
    content = embed_metadata(converted.content, metadata)
    if ctx._float_size is None:  # sizes against float32 as it is written, metadata included
        float_model = ctx.float_model()
        ctx._float_size = len(embed_metadata(float_model.content, build_metadata(ctx.source, float_model, None,
                                                                                 output_kind, sha)))
    check = check_files({candidate.name: content}, {candidate.name: (converted, seconds)}, ctx.source.labels, images,
                        labels, keras_predicted, ctx._float_size)[0]
    return Built(content, converted, metadata, check)


def _build_all(ctx: Context, todo: Sequence[Candidate], rows: list[Row], options: TargetOptions, started: float,
               output_kind: str, sha: str, val: tuple, reporter: Reporter) -> None:
    """Convert and score each candidate on validation, within the time budget, with a progress bar."""
    keras_accuracy = val[3]
    with reporter.task("candidates", len(todo)) as advance:
        for candidate, row in zip(todo, rows):
            elapsed = time.perf_counter() - started
            if options.budget_s is not None and elapsed > options.budget_s and row is not rows[0]:
                # (the first candidate is always tried: there is always a file to ship)
                row.status, row.reasons = "skipped", [f"skipped for time (--budget-s {options.budget_s:g} "
                                                      f"spent after {elapsed:.0f} s)"]
                advance(1, f"{candidate.name}: skipped for time")
                continue
            advance(0, f"{candidate.name} ...")
            reporter(f"Candidate {candidate.name}: {candidate.what}")
            try:
                built = build_checked(ctx, candidate, output_kind, sha, val)
            except EdgeclsError as exc:  # this candidate cannot be made or loaded: the others go on
                what = "conversion failed" if isinstance(exc, ConversionError) else "unusable"
                row.status, row.reasons = "failed", [f"{what}: {exc}"]
                reporter(f"  {row.reasons[0]}")
                advance(1, f"{candidate.name}: failed")
                continue
            row.content, row.converted, row.metadata = built.content, built.converted, built.metadata
            row.check = built.check
            row.drop_points = 100 * (keras_accuracy - row.check.accuracy)
            reporter(f"  validation accuracy {row.check.accuracy:.4f} ({points_text(-row.drop_points / 100)}), "
                     f"agreement "
                f"{row.check.agreement:.4f}, {row.check.size_bytes / 1024:.1f}K, {row.check.seconds:.1f} s")
            advance(1, f"{candidate.name} done")


def _time_on_target(target: Target, place: Any, rows: list[Row], paths: dict[str, Path], val: tuple,
                    class_names: list[str], options: TargetOptions, reporter: Reporter) -> tuple[list[str], int]:
    """Each row's latency on the target, every candidate interleaved (a bench: edgecls.bench.measure, in
    memory), and the sentences saying where it was measured. A device scores the validation images it
    is sent, never the test split; the figures kept are its invoke times at its largest thread count."""
    from edgecls.bench.inputs import open_inputs
    from edgecls.bench.measure import measure_inputs
    from edgecls.bench.plan import resolve_plan
    from edgecls.bench.testset import TestSet

    images, labels = val
    plan = resolve_plan(bench_options(target, list(paths.values()), options.runs), place)
    inputs = open_inputs(plan.sources, plan.settings, TestSet(images, labels, class_names, list(range(len(images))),
                                                              None, "the validation split", "val"))
    report = measure_inputs(inputs, plan, reporter)
    by_file = {Path(m.path).name: m for m in report.models}
    threads = 0
    for row in rows:
        entries = by_file[paths[row.name].name].latency if paths[row.name].name in by_file else []
        if entries:
            row.latency = max(entries, key=lambda t: t.threads)
            threads = row.latency.threads
    placement = list(report.device.notes)
    if target.kind == "remote":
        placement.insert(0, f"Measured on {target.spec} over SSH ({report.machine.arch}, {report.machine.cpu}), "
                            f"threads {threads}.")
    return placement, threads


def bench_options(target: Target, paths: list[Path], runs: int) -> Any:
    """The bench of the candidates (edgecls.bench.BenchOptions): latency and accuracy, no memory, no
    Keras; threads: every CPU of the host; a profile's own (the bench's default there); on a device,
    1 and all of its CPUs (its largest count is kept)."""
    from edgecls.bench import BenchOptions
    from edgecls.runtime.cpu import cpu_count

    return BenchOptions(paths=paths, warmup=5, runs=runs, batch_size=16, keras=False, memory=False,
                        threads=[cpu_count()] if target.kind == "host" else None)


def target_place(target: Target, remote: Any, work: Path, reporter: Reporter = SILENT) -> Any:
    """Where the target's bench measures (edgecls.bench.Where): this host, under a profile, or the
    device user@host reached over SSH and probed (edgecls.transport; `remote` its ssh config, python, ...)."""
    from edgecls.bench import Where

    if target.kind != "remote":
        return Where(profile=target.profile)
    from edgecls.transport import connect

    reporter(f"Checking the device over SSH: {target.spec}")
    device = connect(target.spec, remote, work / "device")
    reporter(f"[{target.spec}] {device.describe()}")
    return Where(device=device)


def choose(rows: list[Row], max_drop: float, min_agreement: float) -> Optional[Row]:
    """Mark each built row passed or rejected (with why) and return the one to ship: the fastest passing
    one, where latencies within the measured spread count as tied (bench.latency.tied), and among the tied
    the most accurate (accuracies within chance, McNemar on the validation images, count as equal), then
    the clearly smaller, then the simpler (the SIMPLER order). Only validation figures and target latency
    are read here."""
    for row in rows:
        if not row.built:
            continue
        row.reasons = []
        if row.drop_points > max_drop + 1e-9:
            row.reasons.append(f"accuracy {row.drop_points:.2f} pt below Keras float on validation "
                               f"(budget {max_drop:g})")
        if row.check.agreement < min_agreement:
            row.reasons.append(f"agreement {row.check.agreement:.4f} below --min-agreement {min_agreement:g}")
        if row.latency is None:
            row.reasons.append("not timed on the target")
        row.status = "rejected" if row.reasons else "passed"
    passing = [r for r in rows if r.status == "passed"]
    if not passing:
        return None
    fastest = min(passing, key=lambda r: r.p50_ms)
    tied = [r for r in passing if r is fastest or latency_tied(fastest.latency, r.latency)]
    best = max(tied, key=lambda r: r.check.correct)
    level = [r for r in tied if r is best or _accuracy_tied(r, best)]
    smallest = min(r.check.size_bytes for r in level)
    small = [r for r in level if r.check.size_bytes * SMALLER <= smallest]
    chosen = min(small, key=_simplicity)
    chosen.status = "chosen"
    for row in passing:
        if row is chosen:
            continue
        if row not in tied:
            row.reasons = [_slower(row, chosen, fastest)]
        elif row not in level:
            row.reasons = [f"as fast (within the measured spread) but less accurate: {row.check.correct} against "
                           f"{best.check.correct} of {len(best.check.right)} right, beyond chance"]
        elif row not in small:
            row.reasons = [f"as fast and as accurate (within the spread and chance) but larger: "
                           f"{row.check.size_bytes / chosen.check.size_bytes:.2f}x the chosen one's size"]
        else:
            row.reasons = ["as fast, as accurate and as small (within the spread and chance): the chosen one is "
                           "simpler"]
    return chosen


def _slower(row: Row, chosen: Row, fastest: Row) -> str:
    """Why a passing row outside the fastest one's tie lost. Ties are not transitive: a row can be as fast as
    the chosen one within the spread and still outside the fastest's tie; it is not called slower then."""
    places = ms_decimals(row.p50_ms, chosen.p50_ms, fastest.p50_ms)
    versus = f"{row.p50_ms:.{places}f} against {chosen.p50_ms:.{places}f} ms"
    if row.p50_ms <= chosen.p50_ms or latency_tied(chosen.latency, row.latency):
        return (f"as fast as the chosen one within the measured spread (p50 {versus}), but not as fast as the "
                f"fastest, {fastest.name} ({fastest.p50_ms:.{places}f} ms), whose ties the choice is made among")
    return f"slower: {row.p50_ms / chosen.p50_ms:.2f}x the chosen one's p50 ({versus})"


# On a tie, the simpler candidate ships: the plain modes first, then another quantiser, clipped ranges,
# and ops kept in float last (each a step away from what export writes by default).
SIMPLER = ("float32", "int8", "dynamic", "float16", "int8-litert", "int8-pct99.9", "int8-pct99.99")
SMALLER = 0.95  # a file counts as smaller than another below this share of its size


def _simplicity(row: Row) -> tuple[int, str]:
    return (SIMPLER.index(row.name) if row.name in SIMPLER else len(SIMPLER), row.name)


def _accuracy_tied(row: Row, other: Row) -> bool:
    """Whether two candidates' validation accuracies are within chance of each other, pair by pair."""
    from edgecls.runtime.metrics import accuracies_tied

    a, b = row.check.right, other.check.right
    discordant = (int(np.sum(a & ~b)), int(np.sum(b & ~a))) if a is not None and b is not None else None
    return accuracies_tied(row.check.correct, other.check.correct, discordant)


def score_test(source: RunDir, model, path: Path, reporter: Reporter) -> dict[str, Any]:
    """The chosen file and the Keras float model on the held-out test split."""
    from edgecls.export.job import device_probabilities

    images, labels = source.images("test")
    if len(images) == 0:
        reporter("warning: the run has no test images: no test figures for the chosen file")
        return {"split": "test", "images": 0}
    keras_predicted = keras_probabilities(model, images).argmax(1)
    predicted = device_probabilities(path, images).argmax(1)
    keras_accuracy = float(np.mean(keras_predicted == labels))
    accuracy = float(np.mean(predicted == labels))
    return {"split": "test", "images": int(len(images)), "accuracy": round(accuracy, 6),
            "keras_accuracy": round(keras_accuracy, 6), "drop_points": round(100 * (keras_accuracy - accuracy), 4),
            "agreement": round(float(np.mean(predicted == keras_predicted)), 6)}


# ---------------------------------------------------------------------- writing
def decision(result: TargetResult, options: TargetOptions) -> dict[str, Any]:
    """What the chosen file's metadata says about why it is the one."""
    chosen = result.chosen
    return {
        "format": TARGET_FORMAT, "target": result.target.spec, "target_kind": result.target.kind,
        "measured": " ".join(result.placement), "threads": result.threads,
        "budget": {"max_drop_points": options.max_drop, "min_agreement": options.min_agreement,
                   "split": "val", "reference": "keras float"},
        "chosen": {"name": chosen.name, "what": chosen.what, "p50_ms": round(chosen.p50_ms, 5),
                   "val_accuracy": round(chosen.check.accuracy, 6), "val_agreement": round(chosen.check.agreement, 6)},
        "beat": [{"name": r.name, "status": r.status, "why": "; ".join(r.reasons),
                  **({"p50_ms": round(r.p50_ms, 5)} if r.p50_ms is not None else {})}
                 for r in result.rows if r is not chosen],
        "test": result.test,
    }


def _write(result: TargetResult, source: RunDir, options: TargetOptions, sha: str,
           reporter: Reporter) -> None:
    from edgecls.calibrate.job import OpenSetOptions, calibrate_split
    from edgecls.export.report import source_info
    from edgecls.provenance import created_timestamp, sha256_bytes
    from edgecls.runtime.metadata import embed_metadata

    chosen = result.chosen
    doc = decision(result, options)
    content = embed_metadata(chosen.converted.content, replace(chosen.metadata, decision=doc))
    dataset, split = source.dataset(), source.split()
    content, open_set = calibrate_split(content, dataset.images, dataset.labels, split,
                                        options.open_set or OpenSetOptions(), options.unknown_data, CHOSEN_FILE,
                                        reporter)
    m = chosen.check
    result.report = ExportIndex(
        created=created_timestamp(), source=source_info(source, sha),
        options={"target": options.target, "max_drop": options.max_drop, "min_agreement": options.min_agreement,
                 "budget_s": options.budget_s, "calib_samples": options.calib_samples,
                 "fallback": options.fallback, "candidates": options.only, "timing_runs": options.runs},
        check={"split": "val", "images": result.val_images, "keras_accuracy": round(result.keras_val_accuracy, 6)},
        decision=doc,
        # `models` as every export.json has it (what bench reads): the one file written
        models=[ExportEntry(file=CHOSEN_FILE, mode=m.mode, variant=chosen.name, backend=m.backend,
                            size_bytes=len(content), accuracy=round(m.accuracy, 6), agreement=round(m.agreement, 6),
                            input=m.io["input"], output=m.io["output"], sha256=sha256_bytes(content),
                            openset=open_set)],
        candidates=[r.to_json() for r in result.rows],
        seconds=round(result.seconds, 1),
    )
    from edgecls.export.target_report import plot_pareto

    files = {CHOSEN_FILE: content}
    with tempfile.TemporaryDirectory(prefix="edgecls-target-plot-") as scratch:  # drawn before a file is written
        plotted = plot_pareto(result, options.max_drop, Path(scratch) / PLOT_FILE)
        if plotted is not None:
            files[PLOT_FILE] = read_capped(plotted, 1 << 30)
        else:
            reporter("plot skipped: matplotlib is not installed")
    result.written += write_export(result.out_dir, files, source.labels, result.report)
