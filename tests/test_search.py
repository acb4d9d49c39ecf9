"""`edgecls search` on tiny data (digits, 1 epoch): the choice within the budget, the test split read only
after it, a candidate whose export fails as a failed row, resume, the time budget, what it writes.

One search is made per module (backbone: the reference digits model, cut at its embedding; from scratch:
the seed CNN at 28 px, two widths; one student of one epoch). While it runs, the digits labels are a
guarded array: reading a test picture's label between the split and the choice is recorded and raises.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecls.errors import EdgeclsError

pytestmark = pytest.mark.slow  # trains (1 epoch each) and converts

ROOT = Path(__file__).resolve().parents[1]
BACKBONE = ROOT / "models" / "digits-seed" / "model_int8.tflite"
FAILING = "seed-28-a0.5"  # the candidate whose conversions fail (an injected converter fault)


class GuardedLabels(np.ndarray):
    """Labels that record (and refuse) any read of a test picture's label while `armed` holds the test indices."""

    armed: set = set()
    violations: list = []

    def _check(self, touched: set, how: str) -> None:
        if GuardedLabels.armed and touched & GuardedLabels.armed:
            GuardedLabels.violations.append(how)
            raise AssertionError(f"a test label was read before the choice ({how})")

    def __getitem__(self, index):
        plain = np.asarray(self)
        positions = np.arange(len(plain))[index]
        self._check(set(np.atleast_1d(positions).tolist()), f"labels[{type(index).__name__}]")
        return plain[index]

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):  # a whole-array operation reads every label
        self._check(set(range(len(self))), f"np.{ufunc.__name__}")
        plain = [np.asarray(x) if isinstance(x, GuardedLabels) else x for x in inputs]
        return getattr(ufunc, method)(*plain, **kwargs)


def _options(out: Path, **changes):
    from edgecls.search.options import SearchOptions

    values = dict(data="digits", target="host", max_latency_ms=1000.0, backbones=str(BACKBONE), heads="linear",
                  views="1", archs="seed", sizes="28", widths="0.5,1", epochs=1, students=1, student_epochs=1,
                  student_patience=1, variants="int8,float32", timing_runs=10, out=str(out))
    return SearchOptions(**{**values, **changes})


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """(the result, its log, the guard's violations) of the module's search; the converter fails for FAILING."""
    pytest.importorskip("tensorflow")
    import edgecls.data as data
    import edgecls.export.target as target
    import edgecls.search.job as job
    from edgecls.export.convert import ConversionError
    from edgecls.reporter import Reporter

    load_digits, make_split, score_test, build_checked = data._load_digits, job._split, job.score_test, \
        target.build_checked

    def guarded_digits():
        dataset = load_digits()
        dataset.labels = dataset.labels.view(GuardedLabels)
        return dataset

    def armed_split(*args, **kwargs):
        doc = make_split(*args, **kwargs)
        GuardedLabels.armed = set(doc["test"])
        return doc

    def disarmed_score(*args, **kwargs):  # the choice is made: the test split may be read now
        GuardedLabels.armed = set()
        return score_test(*args, **kwargs)

    def faulty(ctx, *args, **kwargs):
        if ctx.source.run_dir.name == FAILING:
            raise ConversionError("the converter crashed (fault injected by the test)")
        return build_checked(ctx, *args, **kwargs)

    out = tmp_path_factory.mktemp("search") / "digits-search"
    log: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "_load_digits", guarded_digits)
        patch.setattr(job, "_split", armed_split)
        patch.setattr(job, "score_test", disarmed_score)
        patch.setattr(target, "build_checked", faulty)
        GuardedLabels.violations = []
        result = job.search(_options(out), Reporter(log.append, bars=False))
        GuardedLabels.armed = set()
    return result, log, list(GuardedLabels.violations)


def _row(result, name):
    return next(r for r in result.rows if r.plan.name == name)


def test_the_choice_is_the_most_accurate_file_within_the_budget(searched):
    result, _, _ = searched
    chosen = result.chosen
    fitting = [e for r in result.rows for e in r.entries if e.fits]
    assert chosen in fitting and chosen.p50_ms <= 1000.0
    assert chosen.file.val_correct == max(e.file.val_correct for e in fitting)
    kinds = {r.plan.kind for r in result.rows}
    assert kinds == {"backbone", "scratch", "student"}, [(r.plan.name, r.status, r.reason) for r in result.rows]
    assert [r.status for r in result.rows].count("chosen") == 1
    for row in result.rows:
        assert row.status in ("chosen", "lost", "failed", "skipped") and (row.reason or row.status == "chosen")


def test_the_latency_budget_decides_which_files_may_be_chosen(searched):
    from edgecls.search.job import apply_budget, choose

    result, _, _ = searched
    timed = sorted({e.p50_ms for r in result.rows for e in r.entries})
    assert len(timed) >= 3
    budget = timed[len(timed) // 2]  # about half the files are over it
    rows = result.rows
    try:
        apply_budget(rows, budget, None)
        chosen = choose(rows, budget, None)
        assert chosen.p50_ms <= budget
        over = [e for r in rows for e in r.entries if e.p50_ms > budget]
        assert over and all(not e.fits and "over the budget" in e.over[0] for e in over)
        assert chosen.file.val_correct == max(e.file.val_correct for r in rows for e in r.entries if e.fits)
        for row in rows:  # a candidate all of whose files are over says so
            if row.entries and all(e.p50_ms > budget for e in row.entries):
                assert row.status == "lost" and row.reason.startswith("every file over the budget")
        size = min(e.file.size_bytes for r in rows for e in r.entries) / 1000 + 0.001  # only the smallest fits
        apply_budget(rows, 1e9, size)
        assert choose(rows, 1e9, size).file.size_bytes / 1000 <= size
    finally:
        apply_budget(rows, result.options.max_latency_ms, None)
        choose(rows, result.options.max_latency_ms, None)


def test_the_test_split_is_read_only_after_the_choice(searched, tmp_path):
    result, _, violations = searched
    assert violations == []
    assert result.test["images"] == 179 and 0 < result.test["correct"] <= 179
    for row in result.rows:  # no candidate scored the test split itself
        if row.record is not None and row.record.status == "built":
            metrics = json.loads((result.out_dir / "candidates" / row.plan.name / "metrics.json").read_text())
            assert metrics["test_accuracy"] is None, row.plan.name
    # the guard works: a test label read while armed is caught
    from edgecls.data import load_dataset

    split = json.loads((result.out_dir / "split.json").read_text())
    import edgecls.data as data

    labels = data._load_digits().labels.view(GuardedLabels)
    GuardedLabels.armed = set(split["test"])
    try:
        with pytest.raises(AssertionError, match="before the choice"):
            labels[np.asarray(split["test"][:3])]
        labels[np.asarray(split["val"])]  # validation labels are free to read
    finally:
        GuardedLabels.armed, GuardedLabels.violations = set(), []
    assert load_dataset("digits").labels.dtype == np.int64


def test_a_candidate_whose_export_fails_is_a_failed_row_and_the_search_goes_on(searched):
    result, log, _ = searched
    row = _row(result, FAILING)
    assert row.status == "failed" and "no file could be exported" in row.reason and "converter crashed" in row.reason
    assert not row.entries and result.chosen.candidate.name != FAILING
    assert any(line.startswith(f"{FAILING}: failed") for line in log)
    doc = json.loads((result.out_dir / "search.json").read_text())
    failed = next(c for c in doc["candidates"] if c["name"] == FAILING)
    assert failed["status"] == "failed" and "converter crashed" in failed["why"]


def test_the_chosen_run_directory_is_ready_for_predict_and_bench(searched):
    from edgecls.artifacts import ExportIndex
    from edgecls.runtime.classify import Classifier
    from edgecls.runtime.metadata import read_metadata

    result, _, _ = searched
    chosen = result.chosen_dir
    files = sorted(p.name for p in (chosen / "export").glob("*.tflite"))
    assert files == [Path(result.chosen.file.file).name]
    index = ExportIndex.read(chosen / "export" / "export.json", "again")
    assert [m.file for m in index.models] == files
    assert index.decision["chosen"]["candidate"] == result.chosen.candidate.name
    classifier = Classifier(result.chosen_file)
    assert classifier.labels == [str(i) for i in range(10)]
    decision = read_metadata(result.chosen_file.read_bytes())["decision"]
    assert decision["budget"]["max_latency_ms"] == 1000.0 and decision["test"]["images"] == 179
    from edgecls.rundir import exported_files

    assert [p.name for p in exported_files(chosen)] == files  # what `edgecls bench chosen/` reads


def test_a_keras_candidate_chosen_is_calibrated_after_the_choice(searched, tmp_path):
    """Keras candidates are exported and timed plain; the chosen one ships with its calibration and unknown
    rule (as `export --target`'s chosen file), fitted on the candidate's train and validation splits."""
    from dataclasses import replace

    from edgecls.artifacts import ExportIndex
    from edgecls.reporter import Reporter
    from edgecls.runtime.classify import Classifier
    from edgecls.runtime.metadata import read_metadata
    from edgecls.search.job import CANDIDATES_DIR, _write_chosen

    result, _, _ = searched
    copy = tmp_path / "search"
    shutil.copytree(result.out_dir, copy)
    row = next(r for r in result.rows if r.plan.kind == "scratch" and r.best is not None)
    plain = copy / CANDIDATES_DIR / row.plan.name / row.best.file.file
    assert read_metadata(plain.read_bytes()).get("openset") is None  # made plain
    moved = replace(result, out_dir=copy, chosen=row.best)
    log: list[str] = []
    _write_chosen(moved, Reporter(log.append, bars=False))
    shipped = moved.chosen_file
    assert read_metadata(shipped.read_bytes())["openset"]["rule"]
    assert Classifier(shipped).open_set_rule is not None
    entry = ExportIndex.read(moved.chosen_dir / "export" / "export.json", "again").models[0]
    assert entry.openset["test"]["accuracy"] is not None  # the test figures, read after the choice
    assert any("unknown rule" in line for line in log)
    # the calibrated file answers as the plain one did
    images = np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), dtype=np.uint8)
    answers = [Classifier(path).probabilities(images).argmax(1) for path in (shipped, plain)]
    assert np.array_equal(*answers)


def test_the_table_and_the_pareto_plot_are_written(searched):
    from edgecls.search.report import render_search_table

    result, _, _ = searched
    table = (result.out_dir / "search.md").read_text()
    for row in result.rows:
        assert f"| {row.plan.name}" in table
    assert "read after the choice" in table and "**chosen**" in table
    png = (result.out_dir / "pareto.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    from rich.console import Console

    console = Console(width=80, record=True)
    console.print(render_search_table(result))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80 and FAILING in text


def test_a_second_search_reuses_finished_candidates_and_respects_the_time_budget(searched, tmp_path):
    from edgecls.reporter import Reporter
    from edgecls.search.job import search

    result, _, _ = searched
    out = tmp_path / "again"
    shutil.copytree(result.out_dir, out)
    log: list[str] = []
    # one new shape (width 0.75) and a budget already spent: only the finished candidates can be chosen
    again = search(_options(out, widths="0.5,0.75,1", budget_s=1.0), Reporter(log.append, bars=False))
    assert again.chosen is not None, "\n".join(log)
    new = _row(again, "seed-28-a0.75")
    assert new.status == "skipped" and new.reason.startswith("skipped for time")
    assert not (out / "candidates" / "seed-28-a0.75").exists()
    reused = [r for r in again.rows if r.reused]
    assert {r.plan.name for r in reused} == {r.plan.name for r in result.rows if r.record is not None}
    assert _row(again, FAILING).status == "failed"  # a failure is recorded, not retried
    assert again.chosen.candidate.name == result.chosen.candidate.name
    assert again.chosen.file.val_correct == result.chosen.file.val_correct


def test_a_search_folder_of_another_split_is_refused(searched, tmp_path):
    from edgecls.search.job import search

    result, _, _ = searched
    out = tmp_path / "other"
    shutil.copytree(result.out_dir, out)
    with pytest.raises(EdgeclsError, match="another split"):
        search(_options(out, seed=1))


def test_a_shape_is_screened_by_its_fastest_round_not_a_busy_one():
    """A 2-thread invoke waits for its slowest thread: a moment of load on one core made an untrained
    shape time 4x its quiet p50 in the catsdogs acceptance run and kept it from being trained."""
    from types import SimpleNamespace

    from edgecls.search.timing import Timing

    def latency(p50, rounds):
        return SimpleNamespace(invoke_ms=SimpleNamespace(p50=p50), invoke_round_medians_ms=rounds)

    timing = Timing(latency={"busy": latency(0.171, [0.171, 0.031, 0.20]), "old": latency(0.05, None)})
    assert timing.fastest_round_ms("busy") == 0.031 and timing.p50_ms("busy") == 0.171
    assert timing.fastest_round_ms("old") == 0.05 and timing.fastest_round_ms("none") is None


def test_a_search_where_nothing_fits_shows_its_table_and_says_how_it_was_timed(tmp_path, cli):
    """A budget no shape can meet: nothing is trained. The table is on the terminal (not only in search.md), the
    error names the nearest shape and the table's file, and the note gives the threads the shapes were timed at."""
    out = tmp_path / "s"
    result = cli("search", "--data", "digits", "--target", "host", "--max-latency-ms", "0.0001", "--archs", "seed",
                 "--sizes", "28", "--widths", "0.5", "--variants", "int8", "--timing-runs", "5", "--out", out)
    assert result.code == 1, result.err
    assert "seed-28-a0.5" in result.out and "skipped" in result.out  # the table, on the terminal
    error = result.err.strip().splitlines()[-1]
    assert error.startswith("edgecls: error: no candidate fits the budget: no candidate was trained: the fastest "
                            "shape, seed-28-a0.5, takes ") and error.endswith(f"(the table: {out / 'search.md'})")
    note = next(line for line in (out / "search.md").read_text().splitlines() if line.startswith("Budget:"))
    threads = json.loads((out / "search.json").read_text())["threads"]
    assert threads >= 1 and f"{threads} thread(s)" in note and "0 thread(s)" not in note
    assert note.endswith(".") and not note.rstrip().endswith(";"), note
