"""`edgecls search`: the most accurate model that fits a device's latency (and size) budget.

    the data -> ONE split for every candidate (SEARCH/split.json; the test part is never scored before
      the choice) -> backbone candidates (a head on each .tflite backbone; seconds each)
    -> every from-scratch shape timed on the target untrained (an untrained network is as fast as a
      trained one): the shapes over the budget are not trained
    -> the shapes that fit, trained from scratch, cheapest first, then distilled from the best backbone
      candidate (students), while --budget-s lasts (each Keras candidate exported as every --variants
      file; each file scored on validation)
    -> every file timed on the target, interleaved, in one bench -> the choice on validation within the
      budget -> only then the chosen file on the test split
    -> SEARCH/{search.json, search.md, pareto.png, chosen/ (a run directory whose export/ holds the
      chosen file: ready for predict, serve and bench), candidates/<name>/ (each candidate's run)}

Resumable: a candidate's folder holds its record (candidate.json, written last); a second search with
the same options reuses every finished candidate (latencies are measured again: they are figures of
the moment). Choice rule (choose): among the files within the latency and size budget, the most
validation pictures right; equal counts: the faster (within the measured spread counts as equal), then
the smaller, then the simpler (int8 first).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.atomic import check_folder_writable, staged_dir, write_text_atomic
from edgecls.errors import EdgeclsError
from edgecls.jsonio import dumps
from edgecls.reporter import SILENT, Reporter
from edgecls.search.build import CandidateRecord, VariantFile, build_candidate
from edgecls.search.options import SearchOptions, backbone_files, default_out, options_table, validate
from edgecls.search.space import Plan, Shape, backbone_plans, scratch_plan, shapes, student_plan
from edgecls.search.timing import Timing, time_files

SEARCH_FORMAT = "edgecls.search/1"
SEARCH_FILE = "search.json"
TABLE_FILE = "search.md"
PLOT_FILE = "pareto.png"
SPLIT_FILE = "split.json"
CANDIDATES_DIR = "candidates"
SHAPES_DIR = "shapes"
CHOSEN_DIR = "chosen"
FINAL_RESERVE_S = 60.0  # kept at the end of --budget-s for the last timing, the test score and writing
# A shape whose untrained int8 file is slower than this share of the budget, even in its fastest interleaved
# round, is not trained: latencies on a shared machine move by a few percent, a busy moment slows a whole
# round of a 2-thread invoke (4x, seen), and a shape just over may fit when timed again with the others.
SHAPE_TOLERANCE = 1.10
STUDENT_SHARE = 0.5  # at most this share of --budget-s is held back for the students while scratch trains
TEACHER_OVERHEAD = 1.3  # a student's step with its teacher in the pipeline, against a plain step (a guess
                        # until one is measured: metrics.json's teacher_share_of_training)
SIMPLER = ("int8", "uint8", "float32", "dynamic", "float16", "int8-litert", "int8-pct99.9", "int8-pct99.99")


# ---------------------------------------------------------------------- results
@dataclass
class Entry:
    """One file of a built candidate, with its validation count and its latency on the target."""

    candidate: CandidateRecord
    file: VariantFile
    p50_ms: Optional[float] = None
    latency: Any = None  # bench.results.Latency
    over: list[str] = field(default_factory=list)  # the budget it breaks, in words

    @property
    def key(self) -> str:
        return f"{self.candidate.name}--{self.file.variant}"

    @property
    def fits(self) -> bool:
        return self.p50_ms is not None and not self.over


@dataclass
class Row:
    """One candidate in the table: what became of it and why it lost."""

    plan: Plan
    status: str  # chosen | lost | failed | skipped
    reason: str = ""
    record: Optional[CandidateRecord] = None
    entries: list[Entry] = field(default_factory=list)
    best: Optional[Entry] = None  # the file that stands for it (its best within the budget, else its fastest)
    reused: bool = False
    shape_p50_ms: Optional[float] = None  # the untrained shape's int8 file, before training


@dataclass
class SearchResult:
    out_dir: Path
    options: SearchOptions
    target: Any  # export.target.Target
    rows: list[Row]
    chosen: Optional[Entry]
    timing: Timing
    val_images: int
    test: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    shape_timing: Timing = field(default_factory=Timing)  # the untrained shapes' int8 files, timed before training

    def advice(self) -> str:
        """Why nothing was chosen (chosen is None), and what to try; where the table is."""
        return (f"no candidate fits the budget: {_closest(self.rows, self.options, self.shape_timing)} "
                f"(the table: {self.out_dir / TABLE_FILE})")

    @property
    def latency_timing(self) -> Timing:
        """The timing the latency figures come from: the trained files', else (none trained) the shapes'."""
        return self.timing if self.timing.latency else self.shape_timing

    @property
    def chosen_dir(self) -> Path:
        return self.out_dir / CHOSEN_DIR

    @property
    def chosen_file(self) -> Optional[Path]:
        return self.chosen_dir / self.chosen.file.file if self.chosen else None


# ---------------------------------------------------------------------- the clock
@dataclass
class Clock:
    """--budget-s: what is left, and whether a candidate of an estimated cost still fits."""

    budget_s: Optional[float]
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self, reserve: float = 0.0) -> Optional[float]:
        if self.budget_s is None:
            return None
        return self.budget_s - self.elapsed() - FINAL_RESERVE_S - reserve

    def refuse(self, estimate: Optional[float], reserve: float = 0.0, why_reserve: str = "") -> Optional[str]:
        """Why a candidate is not started (None: start it)."""
        left = self.left(reserve)
        if left is None:
            return None
        if left <= 0 or (estimate is not None and estimate > left):
            need = f"about {estimate:.0f} s needed, " if estimate is not None else ""
            kept = f" ({reserve:.0f} s more kept for {why_reserve})" if reserve and why_reserve else ""
            return (f"skipped for time: {need}{max(left, 0):.0f} s of --budget-s {self.budget_s:g} left after "
                    f"{self.elapsed():.0f} s{kept}")
        return None


@dataclass
class Costs:
    """Seconds a candidate will take, estimated from the candidates made so far."""

    train_pictures: int
    keras_rate: list[float] = field(default_factory=list)  # seconds per picture-epoch of work
    export_seconds: list[float] = field(default_factory=list)
    backbone_seconds: list[float] = field(default_factory=list)

    def learn(self, plan: Plan, record: CandidateRecord) -> None:
        if record.status != "built":
            return
        if plan.kind == "backbone":
            self.backbone_seconds.append(record.seconds.get("train", 0.0))
            return
        epochs = record.epochs_run or plan.epochs
        work = epochs * self.train_pictures * plan.shape.work * (TEACHER_OVERHEAD if plan.kind == "student" else 1)
        if work and record.seconds.get("train"):
            self.keras_rate.append(record.seconds["train"] / work)
        if "export" in record.seconds:
            self.export_seconds.append(record.seconds["export"])

    def export_estimate(self, plan: Plan) -> float:
        """Seconds the export of a Keras candidate takes (the median so far; 0 before the first)."""
        return float(np.median(self.export_seconds)) if self.export_seconds and plan.kind != "backbone" else 0.0

    def estimate(self, plan: Plan) -> Optional[float]:
        if plan.kind == "backbone":
            return max(self.backbone_seconds) if self.backbone_seconds else None
        if not self.keras_rate:
            return None
        overhead = TEACHER_OVERHEAD if plan.kind == "student" else 1.0
        return (float(np.median(self.keras_rate)) * plan.epochs * self.train_pictures * plan.shape.work * overhead
                + self.export_estimate(plan))


# ---------------------------------------------------------------------- the job
def search(options: SearchOptions, reporter: Reporter = SILENT) -> SearchResult:
    """Run the search per `options` (see the module doc) and write its folder; returns its result."""
    from edgecls.data import check_source
    from edgecls.export.target import resolve_target, target_place

    clock = Clock(options.budget_s)
    validate(options)
    check_source(options.data)
    target = resolve_target(options.target)
    files = backbone_files(options)
    out = Path(options.out) if options.out else default_out(options)
    check_folder_writable("--out", out, out)
    grid = shapes(options)
    if grid:
        from edgecls.errors import require_tensorflow

        require_tensorflow("edgecls search (from-scratch candidates)")
    with tempfile.TemporaryDirectory(prefix="edgecls-search-") as scratch:
        # the device first (export --target's probe): a wrong name, a refused key or no usable Python there is
        # said in seconds, before the split is made or a candidate trained; its connection serves every timing
        place = target_place(target, options.remote, Path(scratch), reporter)
        return _search(options, target, place, files, grid, out, clock, reporter)


def _search(options: SearchOptions, target: Any, place: Any, files: list[Path], grid: list[Shape], out: Path,
            clock: Clock, reporter: Reporter) -> SearchResult:
    """The search once its target is reached (`place`, its edgecls.bench.Where): split, candidates, timing,
    the choice, the test split, the files."""
    (out / CANDIDATES_DIR).mkdir(parents=True, exist_ok=True)
    split = _split(out, options, reporter)
    costs = Costs(len(split["train"]))
    reporter(f"Search on {options.data}: {len(split['train'])} train / {len(split['val'])} val / "
             f"{len(split['test'])} test pictures (the test split is scored only after the choice); target "
             f"{options.target}, budget p50 <= {options.max_latency_ms:g} ms"
             + (f", size <= {options.max_size_kb:g} KB" if options.max_size_kb else "")
             + (f"; --budget-s {options.budget_s:g}" if options.budget_s else ""))

    rows: list[Row] = []
    for plan in backbone_plans(options, files):
        rows.append(_candidate(plan, out, options, split, clock, costs, reporter))

    shape_rows, fitting, shape_timing = _shapes(grid, out, options, target, place, reporter)
    teacher = _teacher(rows)
    students = min(options.students, len(fitting)) if teacher is not None else 0
    if options.students and teacher is None:
        reporter("No students: they are distilled from the best backbone candidate (give --backbones)")

    def student(shape: Shape) -> Plan:
        entry = teacher.best
        path = (out / CANDIDATES_DIR / entry.candidate.name / entry.file.file).resolve()
        return student_plan(options, shape, path, entry.candidate.name, entry.file.sha256 or "")

    for shape in grid:  # cheapest first; the shapes over the budget stay untrained (unless trained before)
        if shape not in fitting and not _finished(scratch_plan(options, shape), out):
            rows.append(shape_rows[shape.key])
            continue
        reserve = 0.0
        if students and options.budget_s:  # room for one student, at most STUDENT_SHARE of the budget
            estimate = costs.estimate(student(shape))
            reserve = min(STUDENT_SHARE * options.budget_s, estimate if estimate is not None else np.inf)
        row = _candidate(scratch_plan(options, shape), out, options, split, clock, costs, reporter, reserve,
                         "a student")
        row.shape_p50_ms = shape_rows[shape.key].shape_p50_ms
        rows.append(row)

    for shape in sorted(fitting, key=lambda s: _scratch_rank(s, rows), reverse=True)[:students]:
        row = _candidate(student(shape), out, options, split, clock, costs, reporter)
        row.shape_p50_ms = shape_rows[shape.key].shape_p50_ms
        rows.append(row)

    timing = _time_all(rows, out, options, target, place, reporter)
    chosen = choose(rows, options.max_latency_ms, options.max_size_kb)
    result = SearchResult(out, options, target, rows, chosen, timing, len(split["val"]), shape_timing=shape_timing)
    if chosen is None:  # the caller shows the table and result.advice() (the job ran; nothing fits)
        result.seconds = clock.elapsed()
        _write_records(result, split)
        return result
    reporter(f"Chose {chosen.candidate.name} ({chosen.file.variant}): {chosen.p50_ms:.3f} ms p50, validation "
             f"{chosen.file.val_correct}/{chosen.file.val_images}")
    result.test = score_test(out / CANDIDATES_DIR / chosen.candidate.name, chosen.file)  # the first test read
    _write_chosen(result, reporter)
    result.seconds = clock.elapsed()
    _write_records(result, split)
    return result


def _split(out: Path, options: SearchOptions, reporter: Reporter) -> dict:
    """SEARCH/split.json: made once (as train makes it), then every candidate and every resumed search uses it."""
    from edgecls.artifacts import read_json
    from edgecls.data import load_dataset, load_split
    from edgecls.duplicates import grouped_split

    path = out / SPLIT_FILE
    size = min(options.size_list) if options.size_list else None
    dataset = load_dataset(options.data, size, reporter=reporter.quiet())
    if path.is_file():
        doc = read_json(path)
        settings = (doc.get("seed"), doc.get("val_fraction"), doc.get("test_fraction"))
        if settings != (options.seed, options.val_fraction, options.test_fraction):
            raise EdgeclsError(f"{out} holds a search with another split (seed, --val-fraction, --test-fraction "
                               f"{settings}): use another --out, or the same options")
        try:
            load_split(doc, dataset)
        except EdgeclsError as exc:
            raise EdgeclsError(f"{out} holds a search of other data ({exc}): use another --out") from None
        return doc
    split = grouped_split(dataset, options.dedupe, options.val_fraction, options.test_fraction, options.seed,
                          reporter)
    doc = {**split.to_json(dataset, options.seed, (options.val_fraction, options.test_fraction)),
           "test_source": split.test_source}
    write_text_atomic(path, dumps(doc))
    return doc


def _candidate(plan: Plan, out: Path, options: SearchOptions, split: dict, clock: Clock, costs: Costs,
               reporter: Reporter, reserve: float = 0.0, why_reserve: str = "") -> Row:
    """A candidate's row: its finished record reused, or made now if the budget allows."""
    folder = out / CANDIDATES_DIR / plan.name
    record = _finished(plan, out)
    if record is not None:
        reporter(f"{plan.name}: reused ({record.status})")
        costs.learn(plan, record)
        return _row(plan, record, reused=True)
    refusal = clock.refuse(costs.estimate(plan), reserve, why_reserve)
    if refusal:
        reporter(f"{plan.name}: {refusal}")
        return Row(plan, "skipped", refusal)
    reporter(f"{plan.name}: {plan.what} ...")
    limit = clock.left(reserve)
    if limit is not None:  # training stops in time for its export
        limit = max(limit - costs.export_estimate(plan), 1.0)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Keras' epoch lines are the log, not the result
            record = build_candidate(plan, folder, options.data, split, options.variant_list, limit, reporter)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - one candidate's surprise must not end an hour's search
        record = CandidateRecord(name=plan.name, kind=plan.kind, what=plan.what, settings=plan.settings,
                                 status="failed", reason=f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        folder.mkdir(parents=True, exist_ok=True)
        record.write(folder)
    costs.learn(plan, record)
    if record.status == "built":
        best = max(record.built_files, key=lambda f: f.val_correct or 0)
        reporter(f"{plan.name}: validation {best.val_correct}/{best.val_images} ({best.variant}), "
                 f"{record.seconds.get('train', 0):.0f} s training"
                 + (f", {record.seconds['export']:.0f} s export" if "export" in record.seconds else "")
                 + (" (stopped for time)" if record.stopped_for_time else ""))
    else:
        reporter(f"{plan.name}: failed: {record.reason}")
    return _row(plan, record)


def _finished(plan: Plan, out: Path) -> Optional[CandidateRecord]:
    """The record of `plan` made before with the same settings, if any."""
    record = CandidateRecord.read(out / CANDIDATES_DIR / plan.name)
    return record if record is not None and record.settings == json.loads(dumps(plan.settings)) else None


def _row(plan: Plan, record: CandidateRecord, reused: bool = False) -> Row:
    if record.status != "built":
        return Row(plan, "failed", record.reason or "failed", record, reused=reused)
    row = Row(plan, "lost", "", record, [Entry(record, f) for f in record.built_files], reused=reused)
    row.best = max(row.entries, key=lambda e: e.file.val_correct or 0)  # until timed
    return row


def _teacher(rows: list[Row]) -> Optional[Row]:
    """The backbone candidate with the most validation pictures right (the first of equals)."""
    built = [r for r in rows if r.plan.kind == "backbone" and r.best is not None]
    return max(built, key=lambda r: r.best.file.val_correct or 0) if built else None


def _scratch_rank(shape: Shape, rows: list[Row]) -> tuple:
    """Which fitting shapes get a student: the best from scratch on validation, else the largest."""
    scratch = next((r for r in rows if r.plan.kind == "scratch" and r.plan.shape == shape and r.best), None)
    return (scratch.best.file.val_correct if scratch else -1, shape.work)


# ---------------------------------------------------------------------- shapes, timed untrained
def _shapes(grid: list[Shape], out: Path, options: SearchOptions, target: Any, place: Any,
            reporter: Reporter) -> tuple[dict[str, Row], list[Shape], Timing]:
    """Each shape's untrained int8 file timed on the target: (a row per shape, the shapes that fit, the timing)."""
    if not grid:
        return {}, [], Timing()
    files, broken = {}, {}
    for shape in grid:
        try:
            files[shape.key] = shape_file(shape, out / SHAPES_DIR, options, reporter)
        except EdgeclsError as exc:  # e.g. an input too small for the architecture
            broken[shape.key] = " ".join(str(exc).split())
    reporter(f"Timing {len(files)} untrained from-scratch shapes on {options.target} (int8)")
    timing = time_files(files, target, place, options.timing_runs, out / SHAPES_DIR, reporter)
    rows, fitting = {}, []
    budget = options.max_latency_ms * SHAPE_TOLERANCE
    for shape in grid:
        plan = scratch_plan(options, shape)
        p50, fastest = timing.p50_ms(shape.key), timing.fastest_round_ms(shape.key)
        row = Row(plan, "lost", shape_p50_ms=p50)
        size_kb = files[shape.key].stat().st_size / 1000 if shape.key in files else 0
        if shape.key in broken:
            row.status, row.reason = "failed", f"cannot be built: {broken[shape.key]}"
        elif p50 is None:
            row.status, row.reason = "skipped", "its untrained int8 file could not be timed on the target"
        elif fastest > budget:  # even its fastest round: a shape is not dropped for a moment of load
            row.status, row.reason = "skipped", (f"not trained: its untrained int8 file takes {p50:.3f} ms (p50; "
                                                 f"{fastest:.3f} in its fastest round) on the target, over the "
                                                 f"budget of {options.max_latency_ms:g} ms")
        elif options.max_size_kb and size_kb > options.max_size_kb:
            row.status, row.reason = "skipped", (f"not trained: its int8 file is {size_kb:.0f} KB, over "
                                                 f"--max-size-kb {options.max_size_kb:g}")
        else:
            fitting.append(shape)
        rows[shape.key] = row
    reporter(f"Shapes that fit: {', '.join(s.key for s in fitting) or 'none'}")
    return rows, fitting, timing


def shape_file(shape: Shape, folder: Path, options: SearchOptions, reporter: Reporter) -> Path:
    """An untrained network of `shape` as an int8 .tflite (made once; kept in SEARCH/shapes/)."""
    path = folder / f"{shape.key}.tflite"
    if path.is_file():
        return path
    import keras

    from edgecls.atomic import write_bytes_atomic
    from edgecls.data import load_dataset
    from edgecls.export.convert import convert, saved_model
    from edgecls.train.model import build_model

    dataset = load_dataset(options.data, shape.size, reporter=reporter.quiet())
    keras.utils.set_random_seed(options.seed)
    model = build_model(shape.arch, dataset.images.shape[1:], len(dataset.class_names), alpha=shape.width)
    calibration = np.asarray(dataset.images[:32])  # the converter needs ranges; any pictures time the same
    with saved_model(model) as saved:
        converted = convert(saved, "int8", "converter", calibration)
    return write_bytes_atomic(path, converted.content)


# ---------------------------------------------------------------------- timing, choice, test
def _time_all(rows: list[Row], out: Path, options: SearchOptions, target: Any, place: Any,
              reporter: Reporter) -> Timing:
    """Every built file timed on the target in one interleaved bench; each entry gets its p50 and what it breaks."""
    entries = [e for r in rows for e in r.entries]
    files = {e.key: out / CANDIDATES_DIR / e.candidate.name / e.file.file for e in entries}
    if files:
        reporter(f"Timing {len(files)} files of {sum(1 for r in rows if r.entries)} candidates on {options.target}")
    timing = time_files(files, target, place, options.timing_runs, out, reporter)
    for entry in entries:
        entry.latency = timing.latency.get(entry.key)
        entry.p50_ms = entry.latency.invoke_ms.p50 if entry.latency else None
    apply_budget(rows, options.max_latency_ms, options.max_size_kb)
    return timing


def apply_budget(rows: list[Row], max_latency_ms: float, max_size_kb: Optional[float]) -> None:
    """Each timed entry's `over`: the budgets it breaks, in words (none: it may be chosen)."""
    for entry in (e for r in rows for e in r.entries):
        entry.over = []
        if entry.p50_ms is None:
            entry.over.append("not timed on the target")
        elif entry.p50_ms > max_latency_ms:
            entry.over.append(f"p50 {entry.p50_ms:.3f} ms over the budget of {max_latency_ms:g} ms")
        if max_size_kb and entry.file.size_bytes / 1000 > max_size_kb:
            entry.over.append(f"{entry.file.size_bytes / 1000:.0f} KB over --max-size-kb {max_size_kb:g}")


def choose(rows: list[Row], max_latency_ms: float, max_size_kb: Optional[float]) -> Optional[Entry]:
    """The file to ship (see the module doc), and each row's status, best file and why it lost."""
    from edgecls.bench.latency import tied

    def order(e: Entry) -> tuple:  # the best first: most right, then fastest, smallest, simplest
        return (-(e.file.val_correct or 0), e.p50_ms, e.file.size_bytes, _simplicity(e.file.variant))

    fitting = sorted((e for r in rows for e in r.entries if e.fits), key=order)
    chosen = None
    if fitting:
        best = fitting[0]
        equal = [e for e in fitting if e.file.val_correct == best.file.val_correct]
        fastest = min(equal, key=lambda e: e.p50_ms)
        level = [e for e in equal if e is fastest or tied(fastest.latency, e.latency)]
        smallest = min(e.file.size_bytes for e in level)
        chosen = min((e for e in level if e.file.size_bytes * 0.95 <= smallest), key=lambda e: _simplicity(
            e.file.variant))
    for row in rows:
        if not row.entries:
            continue
        inside = sorted((e for e in row.entries if e.fits), key=order)
        timed = [e for e in row.entries if e.p50_ms is not None]
        row.best = inside[0] if inside else (min(timed, key=lambda e: e.p50_ms) if timed else row.entries[0])
        if chosen is not None and chosen in row.entries:
            row.status, row.best, row.reason = "chosen", chosen, ""
            continue
        row.status = "lost"
        if not inside:
            row.reason = "every file over the budget: its fastest, " + f"{row.best.file.variant}, " + "; ".join(
                row.best.over)
        else:
            row.reason = _lost_to(row.best, chosen)
    return chosen


def _lost_to(entry: Entry, chosen: Entry) -> str:
    from edgecls.runtime.metrics import accuracies_tied

    mine, theirs = entry.file, chosen.file
    if mine.val_correct < theirs.val_correct:
        a, b = mine.right(), theirs.right()
        discordant = (int(np.sum(a & ~b)), int(np.sum(b & ~a))) if a is not None and b is not None else None
        chance = " (within chance, McNemar 5 %)" if accuracies_tied(mine.val_correct, theirs.val_correct,
                                                                     discordant) else ""
        return (f"less accurate: {mine.val_correct}/{mine.val_images} validation pictures right ({mine.variant}) "
                f"against {theirs.val_correct}{chance}")
    return (f"as accurate ({mine.val_correct}/{mine.val_images}) but slower or larger: {mine.variant} p50 "
            f"{entry.p50_ms:.3f} ms, {mine.size_bytes / 1000:.0f} KB")


def _simplicity(variant: str) -> int:
    return SIMPLER.index(variant) if variant in SIMPLER else len(SIMPLER)


def _closest(rows: list[Row], options: SearchOptions, shape_timing: Optional[Timing] = None) -> str:
    """The candidate nearest the budget and what to try: the fastest trained file, else (nothing trained) the
    fastest untrained shape."""
    timed = [e for r in rows for e in r.entries if e.p50_ms is not None]
    budget = (f"against --max-latency-ms {options.max_latency_ms:g}; try a larger budget, smaller --sizes or "
              "--widths, or a smaller backbone")
    if timed:
        fastest = min(timed, key=lambda e: e.p50_ms)
        return (f"the fastest file, {fastest.candidate.name} ({fastest.file.variant}), takes {fastest.p50_ms:.3f} "
                f"ms p50 {budget}")
    shapes = [r for r in rows if r.shape_p50_ms is not None]
    if shapes:
        fastest_shape = min(shapes, key=lambda r: r.shape_p50_ms)
        threads = f", {shape_timing.threads} thread(s)" if shape_timing and shape_timing.threads else ""
        return (f"no candidate was trained: the fastest shape, {fastest_shape.plan.name}, takes "
                f"{fastest_shape.shape_p50_ms:.3f} ms p50 untrained (int8{threads}) {budget}")
    return "no file could be built and timed (the table says why for each candidate)"


def score_test(run_dir: Path, file: VariantFile) -> dict[str, Any]:
    """The chosen file on the held-out test split: the first and only time the search reads it."""
    from edgecls.rundir import open_run
    from edgecls.runtime.classify import Classifier

    images, labels = open_run(run_dir).images("test")
    if len(images) == 0:
        return {"split": "test", "images": 0}
    right = Classifier(run_dir / file.file).probabilities(images).argmax(1) == labels
    return {"split": "test", "images": int(len(images)), "correct": int(right.sum()),
            "accuracy": round(float(right.mean()), 6)}


# ---------------------------------------------------------------------- writing
def decision(result: SearchResult) -> dict[str, Any]:
    """Why the chosen file is the one: what its metadata and search.json say."""
    chosen, o = result.chosen, result.options
    return {"format": SEARCH_FORMAT, "target": o.target, "target_kind": result.target.kind,
            "measured": " ".join(result.latency_timing.placement), "threads": result.latency_timing.threads,
            "budget": {"max_latency_ms": o.max_latency_ms, "max_size_kb": o.max_size_kb, "split": "val"},
            "chosen": {"candidate": chosen.candidate.name, "variant": chosen.file.variant,
                       "p50_ms": round(chosen.p50_ms, 5), "val_correct": chosen.file.val_correct,
                       "val_images": chosen.file.val_images, "size_bytes": chosen.file.size_bytes},
            "candidates": len(result.rows), "test": result.test}


def _write_chosen(result: SearchResult, reporter: Reporter) -> None:
    """SEARCH/chosen/: the chosen candidate's run directory with only the chosen file in export/ (its metadata
    names the decision), so predict, serve and bench take it as it is. A Keras candidate's file is calibrated
    here, after the choice, as `export --target` calibrates its chosen file (a backbone candidate's was
    calibrated on validation when it was made)."""
    from dataclasses import replace

    from edgecls.artifacts import EXPORT_DIR, EXPORT_REPORT, ExportEntry, ExportIndex, write_export
    from edgecls.provenance import created_timestamp, sha256_bytes
    from edgecls.runtime.labels import read_labels
    from edgecls.runtime.metadata import ModelMetadata, embed_metadata, read_metadata
    from edgecls.runtime.model import read_model_bytes

    chosen = result.chosen
    source = result.out_dir / CANDIDATES_DIR / chosen.candidate.name
    content = read_model_bytes(source / chosen.file.file)
    metadata = read_metadata(content)
    doc = decision(result)
    if metadata is not None:
        content = embed_metadata(content, replace(ModelMetadata.from_json(metadata), decision=doc))
    name = Path(chosen.file.file).name
    open_set = None
    if metadata is not None and metadata.get("openset") is None:
        from edgecls.calibrate.job import OpenSetOptions, calibrate_split
        from edgecls.rundir import open_run

        run = open_run(source)
        dataset = run.dataset()
        content, open_set = calibrate_split(content, dataset.images, dataset.labels, run.split(),
                                            OpenSetOptions(seed=result.options.seed), None, name, reporter)
    with staged_dir(result.chosen_dir, force=True) as tmp:
        for item in source.iterdir():
            if item.name in (EXPORT_DIR, "candidate.json") or item.name.startswith("."):
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        old = ExportIndex.read(source / EXPORT_DIR / EXPORT_REPORT, "search again")
        entry = next((m for m in old.models if m.file == name), None)
        entry = replace(entry, size_bytes=len(content), sha256=sha256_bytes(content)) if entry else ExportEntry(
            file=name, mode=chosen.file.mode, variant=chosen.file.variant, size_bytes=len(content),
            sha256=sha256_bytes(content))
        if open_set is not None:
            entry = replace(entry, openset=open_set)
        index = replace(old, created=created_timestamp(), decision=doc, models=[entry])
        write_export(tmp / EXPORT_DIR, {name: content}, read_labels(source / "labels.txt"), index)


def _write_records(result: SearchResult, split: dict) -> None:
    from edgecls.search.report import markdown_table, plot_pareto

    out = result.out_dir
    doc = {"format": SEARCH_FORMAT, "options": options_table(result.options),
           "seconds": round(result.seconds, 1), "load_average": result.timing.load_average,
           "measured": " ".join(result.latency_timing.placement), "threads": result.latency_timing.threads,
           "split": {"train": len(split["train"]), "val": len(split["val"]), "test": len(split["test"]),
                     "test_source": split.get("test_source")},
           "chosen": decision(result) if result.chosen else None,
           "candidates": [_row_json(r) for r in result.rows]}
    result.written.append(write_text_atomic(out / SEARCH_FILE, dumps(doc, indent=1) + "\n"))
    result.written.append(write_text_atomic(out / TABLE_FILE, markdown_table(result)))
    plotted = plot_pareto(result, out / PLOT_FILE)
    if plotted is not None:
        result.written.append(plotted)


def _row_json(row: Row) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": row.plan.name, "kind": row.plan.kind, "what": row.plan.what,
                           "status": row.status, "why": row.reason, "settings": row.plan.settings,
                           "reused": row.reused, "untrained_int8_p50_ms": row.shape_p50_ms}
    if row.record is not None:
        r = row.record
        doc.update(seconds=r.seconds, epochs_run=r.epochs_run, best_epoch=r.best_epoch,
                   stopped_for_time=r.stopped_for_time, reference_val_accuracy=r.reference_val_accuracy,
                   distillation=r.distillation)
    doc["files"] = [{"variant": e.file.variant, "file": e.file.file, "size_bytes": e.file.size_bytes,
                     "val_correct": e.file.val_correct, "val_images": e.file.val_images,
                     "p50_ms": round(e.p50_ms, 5) if e.p50_ms is not None else None, "over": e.over,
                     "best": e is row.best} for e in row.entries]
    if row.record is not None:
        doc["files"] += [{"variant": f.variant, "status": "failed", "why": f.reason}
                         for f in row.record.files if f.status != "built"]
    return doc
