"""`edgecls bench --diagnose --calib-sweep`: the quantisation analyses as sections of the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecls.bench.schema import check_report

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def run_dir(make_digits_run) -> Path:
    return make_digits_run(epochs=1, seed=2, export_modes=("float32", "int8"))


def test_diagnosis_and_sweep_are_report_sections(run_dir, tmp_path, cli):
    result = cli("bench", run_dir, "--diagnose", "--calib-sweep", "10,50,100000", "--runs", "5", "--warmup", "1",
                 "--threads", "1", "--no-memory", "--report", tmp_path / "r")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "r" / "bench.json").read_text())
    check_report(report, "bench.json")  # the sections fit the versioned schema
    sections = {s["key"]: s for s in report["sections"]}
    diagnosis, sweep = sections["diagnosis"], sections["calib-sweep"]
    scores = [float(row[diagnosis["columns"].index("rmse/scale")]) for row in diagnosis["rows"]]
    assert scores == sorted(scores, reverse=True) and len(scores) >= 5  # ranked, one row per int8 op
    # the next step follows the whole model's agreement: no fix for a model whose int8 top-1 never changes
    agreement = diagnosis["data"]["model"]["top1_agreement"]
    assert any(("No fix needed" if agreement == 1.0 else "--keep-float") in note for note in diagnosis["notes"])
    assert not any(("--keep-float" if agreement == 1.0 else "No fix needed") in note for note in diagnosis["notes"])
    assert [row[0] for row in sweep["rows"]] == ["10", "50", "100000"]
    assert "(all)" in sweep["rows"][2][1]  # capped at the train split, and said so
    for row in sweep["rows"]:
        assert 0.0 <= float(row[sweep["columns"].index("accuracy")].split()[0]) <= 1.0  # "0.9777 (175/179)"
    assert (tmp_path / "r" / "calib-sweep.png").is_file()
    markdown = (tmp_path / "r" / "bench.md").read_text()
    assert "Quantisation diagnosis" in markdown and "Calibration sweep" in markdown
    assert report["sections"][-1]["key"] == "advice"  # the advice stays last, after the analyses


@pytest.mark.parametrize("args, needle", [
    (["--diagnose"], "needs a run directory"),
    (["--calib-sweep", "10,x"], "comma list of whole numbers"),
    (["--calib-sweep", "0"], "at least 1"),
    (["--calib-sweep", "10", "--remote", "pi@nowhere.invalid"], "run them without --remote"),
])
def test_analyses_bad_input(run_dir, args, needle, cli):
    target = [run_dir / "export" / "model_int8.tflite"] if args == ["--diagnose"] else [run_dir]
    result = cli("bench", *target, *args, "--runs", "5", "--no-memory")
    assert result.code == 2 and needle in result.err and "Traceback" not in result.err
