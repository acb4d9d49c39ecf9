"""Every script in scripts/ has a --smoke mode, and the test suite runs it, so that none of them rots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
# Importable modules that the scripts share (no command line of their own).
MODULES = {"benchkit.py", "perf_report.py", "arm64_check.py"}
# script -> (marks, extra arguments): `slow` when the smoke trains or converts (TensorFlow builds models).
SMOKES = {
    "bench_predict_memory.py": ((), ()),
    "bench_runtime.py": ((pytest.mark.slow,), ("--work", "{work}")),
    "bench_onnx.py": ((pytest.mark.slow,), ("--work", "{work}")),
    "bench_train.py": ((pytest.mark.slow,), ()),
    # Its own part: run the scripts, then render. bench_serve's and bench_onnx's smokes run above; the
    # page of every record, serve's and ONNX's included, is checked against docs/ below.
    "perf-report": ((pytest.mark.slow,), ("--no-serve", "--no-onnx")),
    "bench_transfer.py": ((pytest.mark.shared_data,), ()),  # the Coral backbone on 16 photos a class, no TensorFlow
    "bench_datacheck.py": ((pytest.mark.shared_data,), ()),  # 20 photos a class, the small Coral backbone
    "explain_report.py": ((pytest.mark.slow, pytest.mark.shared_data), ()),  # trains MNIST for one epoch
    "live_memory_check.py": ((pytest.mark.slow,), ()),  # 8 s of a synthetic camera, each part
    "resize_figures.py": ((pytest.mark.shared_data,), ()),
    "reliability_probe.py": ((), ()),  # three cases, this checkout against itself
    "export_target.py": ((pytest.mark.slow,), ()),  # a 1-epoch digits run, two candidates
    "bench_openset.py": ((pytest.mark.slow,), ()),  # digits 0-7 for 2 epochs against 8, 9 and generated scenes
    "refusal_times.py": ((), ()),  # three refusals; fails if one imports TensorFlow first (test_bad_inputs times them)
    "bench_serve.py": ((pytest.mark.slow,), ()),  # four `edgecls serve` processes and their load
    "bench_distill.py": ((pytest.mark.slow, pytest.mark.shared_data), ()),  # 20 photos a class, 1 epoch, 3 runs
    "printed_digits.py": ((), ()),  # the README field loop's pictures: 40 written and read back
    "bench_same.py": ((), ("--before", "HEAD")),  # two benches with HEAD's package and two with this tree's
}
# Scripts whose --smoke has a test file of its own (which checks more than the exit code).
SMOKED_ELSEWHERE = {"bench_backbones.py": "tests/test_bench_backbones.py",
                    "arm64-check": "tests/test_arm64.py",  # the whole check, emulated (its --smoke is a subset)
                    "make_reference_model.py": "tests/test_reference.py"}
RECORDS = {"bench_predict_memory.py", "bench_runtime.py", "bench_onnx.py", "bench_train.py",  # write --json
           "bench_datacheck.py", "bench_openset.py", "bench_serve.py", "bench_distill.py"}


def test_every_script_has_a_smoke_test():
    scripts = {p.name for p in SCRIPTS.iterdir() if p.is_file() and not p.name.startswith(".")} - MODULES
    assert scripts == set(SMOKES) | set(SMOKED_ELSEWHERE)
    assert all((ROOT / test).is_file() for test in SMOKED_ELSEWHERE.values())


@pytest.mark.parametrize("name", sorted(SMOKES))
def test_every_script_offers_smoke(name):
    done = subprocess.run([sys.executable, str(SCRIPTS / name), "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--smoke" in done.stdout


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-work")  # models built once for the runtime and ONNX smokes


@pytest.mark.parametrize("name", [pytest.param(n, marks=marks) for n, (marks, _) in sorted(SMOKES.items())])
def test_smoke_runs_and_writes_its_record(name, work, tmp_path):
    if name == "bench_onnx.py":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("tf2onnx")
    extra = [arg.format(work=work) for arg in SMOKES[name][1]]
    record = tmp_path / "record.json"
    command = [sys.executable, str(SCRIPTS / name), "--smoke", *extra]
    if name in RECORDS:
        command += ["--json", str(record)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    if name in RECORDS:
        data = json.loads(record.read_text())
        assert data["figures"] and data["machine"]["cpu_count"] >= 1
        assert len(data["load_average_start"]) == 3 and len(data["load_average_end"]) == 3
        assert data["versions"]["edgecls"] and data["commit"]
        for figure in data["figures"].values():  # every comparison is paired: per-round ratios, their median
            for v in figure.values():
                if isinstance(v, dict) and "per_round" in v:
                    assert v["rounds"] == len(v["per_round"]) >= 1
                    assert v["min"] <= v["median"] <= v["max"]


def test_an_in_process_edgecls_call_answers_as_the_command_and_gives_the_process_back(tmp_path, monkeypatch):
    """benchkit.edgecls(in_process=True): the command's output and exit code, its env for the call only, and the
    process's environment, folder, argv and signal handlers as they were, on success and on failure."""
    import signal

    sys.path.insert(0, str(SCRIPTS))
    from benchkit import edgecls

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench-script", "--its-own"])
    monkeypatch.delenv("EDGECLS_CACHE", raising=False)
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    environment = dict(os.environ)
    from edgecls import __version__

    assert edgecls("--version", in_process=True, env={"EDGECLS_CACHE": str(tmp_path)}) == f"edgecls {__version__}\n"
    with pytest.raises(SystemExit) as failed:
        edgecls("info", "no-such-model.tflite", in_process=True, env={"EDGECLS_CACHE": str(tmp_path)})
    assert "failed (2)" in str(failed.value) and "no-such-model.tflite" in str(failed.value)
    assert dict(os.environ) == environment and Path.cwd() == tmp_path and sys.argv == ["bench-script", "--its-own"]
    assert {number: signal.getsignal(number) for number in before} == before


def _perf_report():
    sys.path.insert(0, str(SCRIPTS))
    import perf_report

    return perf_report


def _runtime_record(valid: bool) -> dict:
    ratio = {"median": 1.05, "min": 1.0, "max": 1.1, "rounds": 3, "per_round": [1.0, 1.05, 1.1]}
    return {"commit": "abc", "started": "t", "load_average_start": [0.1, 0.1, 0.1],
            "load_average_end": [0.2, 0.1, 0.1], "machine": {"cpu": "x", "cpu_count": 2, "arch": "x86_64",
                                                             "platform": "p"}, "versions": {"edgecls": "0"},
            "figures": {"P4 seed-int8": {"classify_us": 29.0, "bare_us": 27.0, "ratio": ratio,
                                         "load_start": [0.3 if valid else 3.7, 0, 0], "load_end": [0.4, 0, 0],
                                         "load_limit": 1.5, "valid": valid}}}


@pytest.mark.parametrize("valid", [True, False])
def test_perf_report_publishes_only_figures_taken_on_a_quiet_machine(tmp_path, valid):
    perf_report = _perf_report()
    (tmp_path / "runtime-this.json").write_text(json.dumps(_runtime_record(valid)))
    page = perf_report.render(tmp_path, tmp_path / "performance.md", None).read_text()
    row = next(line for line in page.splitlines() if line.startswith("| P4 classify()"))
    assert ("**1.050**" in row) is valid
    assert ("not valid: load 3.7 at start (limit 1.5)" in row) is not valid
    assert ("classify 29.0 µs" in page) is valid  # the absolute figures too


@pytest.mark.parametrize("median, valid, noted", [(1.22, True, True), (0.93, True, False), (1.22, False, False)])
def test_perf_report_explains_int8_slower_than_float32_only_where_a_valid_figure_says_so(tmp_path, median, valid,
                                                                                       noted):
    perf_report = _perf_report()
    record = _runtime_record(True)
    ratio = {"median": median, "min": median - 0.1, "max": median + 0.1, "rounds": 3,
             "per_round": [median - 0.1, median, median + 0.1]}
    record["figures"]["P3 mobile"] = {"int8_us": 429.0, "float32_us": 352.0, "ratio": ratio,
                                      "load_start": [0.3 if valid else 3.7, 0, 0], "load_end": [0.4, 0, 0],
                                      "load_limit": 1.5, "valid": valid}
    (tmp_path / "runtime-this.json").write_text(json.dumps(record))
    page = perf_report.render(tmp_path, tmp_path / "performance.md", None).read_text()
    note = [line for line in page.splitlines() if line.startswith("P3 at or above 1")]
    assert bool(note) is noted
    if noted:
        assert "mobile CNN: int8 429 µs against float32 352 µs" in note[0] and "`edgecls bench`" in note[0]


def test_perf_report_gives_a_paired_difference_its_sign_spread_and_rounds_and_keeps_it_off_the_ratio_plot(
        tmp_path, monkeypatch):
    perf_report = _perf_report()
    sys.path.insert(0, str(SCRIPTS))
    from benchkit import difference, ratio

    record = _runtime_record(True)
    record["figures"]["P5 seed-int8"] = {
        "wall_vs_bare": ratio([1.2, 1.3, 1.1], [1.0, 1.0, 1.0]),
        "peak_mib_over_bare": difference([46.2, 46.4, 46.1], [43.8, 43.8, 43.9], 1),
        "load_start": [0.3, 0, 0], "load_end": [0.4, 0, 0], "load_limit": 1.5, "valid": True}
    (tmp_path / "runtime-this.json").write_text(json.dumps(record))
    page = perf_report.render(tmp_path, tmp_path / "performance.md", None).read_text()
    row = next(line for line in page.splitlines() if line.startswith("| P5 cold predict peak RSS"))
    assert "**+2.4** (+2.2 to +2.6, 3 rounds)" in row
    assert "**1.200** (1.10–1.30, 3 rounds)" in page
    plotted = []
    monkeypatch.setattr(perf_report, "_plot", lambda rows, path, label: plotted.extend(rows))
    perf_report.render(tmp_path, tmp_path / "again.md", None)
    assert {row[0] for row in plotted} == {"P4 classify() / bare set-invoke-get, seed int8",
                                           "P5 cold edgecls predict / bare LiteRT script, wall"}


def test_perf_report_renders_real_device_rows_beside_the_references(tmp_path):
    perf_report = _perf_report()
    assert any("No real-device rows yet" in line for line in perf_report.devices_section(tmp_path))
    report = json.loads((ROOT / "models" / "digits-seed" / "report" / "bench.json").read_text())
    report["machine"]["board"] = "Raspberry Pi 4 Model B Rev 1.5"
    (tmp_path / "rpi4.bench.json").write_text(json.dumps(report))
    lines = perf_report.devices_section(tmp_path)
    rows = [line for line in lines if line.startswith("| rpi4: Raspberry Pi 4 Model B")]
    assert rows and not any("No real-device rows yet" in line for line in lines)
    assert any("model_int8.tflite (int8)" in row for row in rows)
    assert any("XNNPACK" in line and "17 ms" in line for line in lines)  # the cited references stay


def test_perf_report_renders_the_records_on_record_into_the_page_on_record(tmp_path):
    """docs/performance.md is what its records render to, every section (serve, ONNX, train) included."""
    perf_report = _perf_report()
    out = perf_report.render(ROOT / "docs" / "performance", tmp_path / "performance.md", None)
    assert out.read_text() == (ROOT / "docs" / "performance.md").read_text()
    assert (tmp_path / "performance.png").stat().st_size > 0


def test_printed_digits_refuses_a_folder_that_is_not_empty(tmp_path):
    """Old and new pictures mixed would make the walkthrough's counts wrong: a folder with files is refused."""
    (tmp_path / "field").mkdir()
    (tmp_path / "field" / "old.png").write_bytes(b"")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "printed_digits.py"), str(tmp_path / "field")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip().endswith("field is not empty: give a new folder")
    assert [p.name for p in (tmp_path / "field").iterdir()] == ["old.png"]
