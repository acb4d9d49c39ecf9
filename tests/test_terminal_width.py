"""What a user reads fits an 80-column terminal (issue 22): bench, compare, target and predict output
at COLUMNS=80 has no line over 80 columns and no cell cut with "…" (text wraps inside its cell), and
a wide terminal still gets every column in one table."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import QUAD_LABELS, in_a_terminal, quad_image
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "digits-seed" / "report" / "bench.json"
LONG = "mobilenet_v1_0.5_160_quant_with_a_long_name.tflite"


def fits(text: str, width: int = 80) -> None:
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, "\n".join(too_long)
    assert "…" not in text, text


def rendered(*renderables, width: int = 80) -> str:
    from rich.console import Console

    console = Console(width=width, record=True, file=open("/dev/null", "w"), color_system=None)  # noqa: SIM115
    for renderable in renderables:
        console.print(renderable)
    return console.export_text()


def shipped_report(long_names: bool = False):
    from edgecls.bench.results import BenchReport

    report = BenchReport.from_json(json.loads(SHIPPED.read_text(encoding="utf-8")))
    if long_names:  # a third-party file name: the model column has to wrap
        extra = copy.deepcopy(report.models[-1])
        extra.name = LONG
        report.models.append(extra)
    return report


@pytest.mark.parametrize("long_names", [False, True])
def test_the_bench_tables_fit_80_columns_and_keep_every_column_when_wide(long_names):
    from edgecls.bench.advice import add_advice
    from edgecls.reports.report import COLUMNS, render_bench_table, render_sections

    report = shipped_report(long_names)
    add_advice(report)
    narrow = rendered(render_bench_table(report), *render_sections(report))
    fits(narrow)
    for column in ("top-1", "correct", "95% CI", "agree", "p50", "p99", "peak MB", "thr"):
        assert column in narrow  # the narrow layout keeps them (top-k and the size ratio go to bench.md)
    from edgecls.reports.report import correct_text, interval_cell

    for model in report.models:  # each accuracy's count and 95% interval (from the shipped report, as it is)
        assert correct_text(model) in narrow and interval_cell(model) in narrow
    if long_names:
        assert "mobilenet_v1_0.5_160" in narrow and "with_a_long_name" in narrow.replace("\n", "")
    wide = rendered(render_bench_table(report), width=200)
    header = next(line for line in wide.splitlines() if "format/quant" in line)
    assert all(column in header for column in COLUMNS)  # one table with every column


def compared(folder: Path, pi5: dict, host: dict) -> dict:
    """`bench compare` of two reports, saved as pi5/bench.json and host/bench.json in `folder`."""
    from edgecls.reports.compare import compare

    for name, doc in (("pi5", pi5), ("host", host)):
        (folder / name).mkdir()
        (folder / name / "bench.json").write_text(json.dumps(doc))
    return compare([folder / "pi5" / "bench.json", folder / "host" / "bench.json"])


def test_bench_compare_fits_80_columns(tmp_path):
    from edgecls.reports.compare import COLUMNS, render_compare_table

    first = json.loads(SHIPPED.read_text(encoding="utf-8"))
    second = copy.deepcopy(first)
    second["device"]["profile"] = {"key": "rpi5", "name": "Raspberry Pi 5", "arch": "aarch64", "cores": 4,
                                   "threads": 4}
    second["device"]["is_device"] = False
    merged = compared(tmp_path, second, first)
    narrow = rendered(render_compare_table(merged))
    fits(narrow)
    assert "pi5/bench: rpi5 profile on x86_64" in narrow and "host/bench" in narrow
    assert merged["rows"][0][COLUMNS.index("correct")] in narrow  # e.g. 178/179
    wide = rendered(render_compare_table(merged), width=200)
    assert "measured on" in wide and "img/s" in wide


def test_bench_compare_keeps_long_model_names_whole_at_80_columns(tmp_path):
    """A report of third-party files with long names: each name whole on one line at 80 columns (the
    per-report tables stack their figures beside the name, as bench's own tables do), never folded."""
    from edgecls.reports.compare import render_compare_table

    first = json.loads(SHIPPED.read_text(encoding="utf-8"))
    second = copy.deepcopy(first)
    for model, name in zip(second["models"][1:], (LONG, CORAL[1])):
        model["name"] = name
    merged = compared(tmp_path, second, first)
    narrow = rendered(render_compare_table(merged))
    fits(narrow)
    whole_on_a_line(narrow, LONG, CORAL[1], "model_float32.tflite", "pi5/bench: x86_64 host")
    for column in ("top-1", "correct", "agree", "p50", "p99", "thr"):
        assert column in narrow
    assert "img/s and peak MB: compare.md (--report)." in " ".join(narrow.split())
    wide = rendered(render_compare_table(merged), width=250)
    header = next(line for line in wide.splitlines() if "measured on" in line)
    assert all(column in header for column in ("report", "model", "img/s", "peak MB"))  # one table when it fits
    whole_on_a_line(wide, LONG)

def test_the_target_table_fits_80_columns_and_explains_its_columns():
    from edgecls.bench.latency import stats
    from edgecls.bench.results import Latency, LatencyRatio, Throughput
    from edgecls.export.target_report import render_target_table

    def row(name: str, status: str, p50: float, accuracy: float, reasons: list[str]):
        import numpy as np

        check = SimpleNamespace(accuracy=accuracy, agreement=1.0, size_bytes=130_000, correct=int(accuracy * 179),
                                right=np.zeros(179, bool))
        latency = Latency(threads=2, init_ms=1, load_ms=1, first_inference_ms=1, invoke_ms=stats([p50]),
                          file_ms=stats([p50]), throughput=Throughput(batch=1, batch_ms=p50, images_per_s=1 / p50),
                          vs_reference=LatencyRatio(reference="float32", invoke_p50_ratio=0.5, file_p50_ratio=0.5,
                                                    throughput_ratio=2.0))
        return SimpleNamespace(name=name, status=status, check=check, latency=latency, p50_ms=p50,
                               drop_points=0.0, reasons=reasons)

    rows = [row("float32", "passed", 0.031, 0.9274, ["slower: 2.2x the chosen one's p50"]),
            row("int8", "chosen", 0.014, 0.9274, []),
            row("int8-fallback2", "passed", 0.013, 0.9274, ["as fast, as accurate and as small (within the spread "
                                                            "and chance): the chosen one is simpler"])]
    result = SimpleNamespace(rows=rows, val_images=179, keras_val_accuracy=0.9274, threads=2,
                             placement=["Measured on this x86_64 host under the Raspberry Pi 5 profile's constraints."],
                             target=SimpleNamespace(spec="rpi5"),
                             test={"images": 24, "accuracy": 23 / 24, "keras_accuracy": 0.9583, "drop_points": 0.0,
                                   "agreement": 1.0})
    text = rendered(render_target_table(result))
    fits(text)
    assert "0.00" in text and "-0.00" not in text and "166/179" in text
    assert "×f32: p50 over float32's, the median of the interleaved rounds' ratios" in " ".join(text.split())
    assert "95% CI 0.80–0.99" in text and "only 24 test images" in " ".join(text.split())


def test_predict_and_bench_output_fit_an_80_column_terminal(models, tmp_path, cli, monkeypatch):
    for name in QUAD_LABELS:
        (tmp_path / "data" / name).mkdir(parents=True)
        for i, bright in enumerate((255, 220, 190)):
            Image.fromarray(quad_image(name, bright=bright)).save(tmp_path / "data" / name / f"{i}-{'x' * 40}.png")
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.chdir(tmp_path)  # paths as a user types them: a temporary folder's own name cannot wrap
    predicted = cli("predict", models.quad_int8_meta, "data", "missing.png", "--top-k", "4")
    assert predicted.code == 1  # the missing file is an error row; the rest are classified
    # a pipe, even with $COLUMNS set: a line per image, its file name whole (grep reads it)
    rows = predicted.out.splitlines()[1:]
    assert len(rows) == 13 and sum("error" in row for row in rows) == 1
    assert all(row.count("0.") >= 4 and row.endswith(".png") for row in rows if "error" not in row)
    benched = cli("bench", models.quad_float_meta, models.quad_int8_meta, "--data", "data",
                  "--threads", "1", "--runs", "3", "--warmup", "0", "--no-memory", "--report", "report")
    assert benched.code == 0, benched.err
    fits(benched.out)
    assert "edgecls bench: accuracy" in benched.out and "edgecls bench: latency" in benched.out
    assert "12/12" in benched.out and "Next: edgecls predict" in benched.out


# ----------------------------------------------------------------- names, paths and numbers whole (80 columns)
CORAL = ("mobilenet_v1_0.25_128_quant.tflite", "mobilenet_v1_0.5_160_quant.tflite")


def whole_on_a_line(text: str, *words: str) -> None:
    """Each of `words` appears whole on one line of `text` (not folded or cut across two)."""
    lines = text.splitlines()
    missing = [word for word in words if not any(word in line for line in lines)]
    assert not missing, f"not whole on a line: {missing}\n{text}"


def test_the_bench_sections_keep_names_whole_and_a_column_s_decimals_alike_at_80_columns():
    from edgecls.reports.report import markdown, render_sections

    report = shipped_report()
    calibration = next(s for s in report.sections if s.key == "calibration")
    calibration.rows[0][5] = 0.933  # a figure rounded to 4 digits that ends in 0 ("0.933" beside "0.9441")
    text = rendered(*render_sections(report))
    fits(text)
    whole_on_a_line(text, "model_float32.tflite", "model_int8.tflite")
    assert "0.9330" in text and "0.933 " not in text
    assert "| 0.9330 |" in markdown(report)  # bench.md: the same figures


def test_the_diagnosis_section_keeps_layer_and_op_names_and_headers_whole_at_80_columns():
    from edgecls.bench.results import add_section
    from edgecls.export.diagnose import COLUMNS
    from edgecls.reports.report import render_sections

    report = shipped_report()
    report.sections = []
    rows = [["1", "probabilities", "FULLY_CONNECTED", "0.353", "0.031", "-0.004", "0.056", "22.6"],
            ["2", "pool2", "MAX_POOL_2D", "0.000", "1.8e-08", "+5e-10", "1.2e-07", "1.77"],
            ["3", "conv2", "DEPTHWISE_CONV_2D", "0.259", "0.0018", "+8e-05", "0.0078", "1.77"]]
    add_section(report, "diagnosis", "Quantisation diagnosis: int8 ops ranked by RMSE/scale", COLUMNS, rows)
    text = rendered(*render_sections(report))
    fits(text)
    whole_on_a_line(text, "probabilities", "FULLY_CONNECTED", "MAX_POOL_2D", "DEPTHWISE_CONV_2D", "1.2e-07")
    assert "rmse/scal\n" not in text and "scale" in text  # the header breaks after its "/", not mid-word


def test_a_latency_only_bench_of_long_file_names_keeps_them_whole_at_80_columns():
    from edgecls.reports.report import render_bench_table

    report = shipped_report()
    report.data.part = "unlabelled"
    report.reference = None
    for model, name in zip(report.models[1:], CORAL):
        model.name = name
    report.models = report.models[1:]
    narrow = rendered(render_bench_table(report))
    fits(narrow)
    whole_on_a_line(narrow, *CORAL)
    for column in ("p50", "p99", "img/s", "init", "thr"):
        assert column in narrow  # stacked, not dropped
    wide = rendered(render_bench_table(report), width=200)
    assert max(len(line) for line in wide.splitlines()) > 80 and "peak MB" in wide  # one table when it fits


def test_the_search_table_keeps_candidate_names_whole_at_80_columns():
    from edgecls.search.report import render_search_table

    def row(name: str, kind: str, status: str, variant: str, p50: float):
        file = SimpleNamespace(variant=variant, val_accuracy=0.9441, val_correct=169, val_images=179,
                               size_bytes=150_000)
        return SimpleNamespace(plan=SimpleNamespace(name=name, kind=kind), reused=False, status=status,
                               record=SimpleNamespace(seconds={"train": 12.0}), best=SimpleNamespace(file=file,
                                                                                                    p50_ms=p50),
                               shape_p50_ms=None, reason="" if status == "chosen" else "slower")

    names = ("seed-28-a0.5", "mobile-28-a0.75", "mobilenet_v1_0.25_128_quant-mlp-v4")
    timing = SimpleNamespace(threads=1, placement=["Measured on this host."], load_average=None, latency={"x": 1})
    result = SimpleNamespace(options=SimpleNamespace(target="rpi4", max_latency_ms=0.3, max_size_kb=None),
                             timing=timing, latency_timing=timing, val_images=179, test={},
                             rows=[row(names[0], "scratch", "chosen", "int8", 0.012),
                                   row(names[1], "scratch", "lost", "int8-pct99.99", 0.02),
                                   row(names[2], "backbone", "lost", "int8-litert", 0.2)])
    text = rendered(render_search_table(result))
    fits(text)
    whole_on_a_line(text, *names, "int8-pct99.99", "int8-litert")


def test_info_keeps_tensor_names_whole_at_80_columns(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    shown = cli("info", str(ROOT / "models" / "digits-seed" / "model_int8.tflite"))
    assert shown.code == 0, shown.err
    table = shown.out.split("\nmetadata")[0]
    fits(table)
    whole_on_a_line(table, "serving_default_pixels:0", "StatefulPartitionedCall_1:0", "[?, 28, 28, 1]")
    for column in ("dtype", "scale", "per-channel"):
        assert column in table.replace("-\n", "-")


def test_explain_s_table_keeps_image_and_png_names_whole_at_80_columns(capsys, monkeypatch):
    from edgecls.explain.job import _print_summary

    out = Path("runs/digits/explain-out")  # as a user types it (a temporary folder's name can be wider)
    images = [{"image": f"photos/cat/{i:05d}-000079.png", "top": [{"label": "tabby, tabby cat", "score": 0.996}],
               "peak_yx": [8, 16], "top10_area_mass": 0.92, "evaluations": 169,
               "png": str(out / f"{i:05d}-000079-occlusion.png")} for i in (12, 8)]
    monkeypatch.setenv("COLUMNS", "80")
    _print_summary({"method": "occlusion", "model": "models/digits-seed/model_int8.tflite", "images": images,
                    "summary_file": str(out / "explain.json")})
    text = capsys.readouterr().out
    fits(text)
    whole_on_a_line(text, "00012-000079.png", "00012-000079-occlusion.png", "evaluations", "tabby, tabby cat",
                    str(out))


def test_predict_in_an_80_column_terminal_puts_a_long_file_name_whole_on_its_own_line(models, tmp_path):
    folder = tmp_path / "some_folder_name" / "another_folder"
    folder.mkdir(parents=True)
    Image.fromarray(quad_image(QUAD_LABELS[0])).save(folder / "digit_zero_sample_abc.png")
    name = "some_folder_name/another_folder/digit_zero_sample_abc.png"  # longer than the file column
    text = in_a_terminal(["predict", str(models.quad_int8_meta), name, "--top-k", "2"], cwd=tmp_path)
    fits(text)
    whole_on_a_line(text, name)


def test_bench_compare_of_runs_says_where_the_columns_it_leaves_out_at_80_columns_are():
    from edgecls.reports.runs import COLUMNS, NARROW, render

    def model(name: str, run: str, **more):
        return {"model": name, "run": run, "top1": 0.9441, "interval": "0.90–0.97", "correct": 169, "images": 179,
                "ece": 0.0471, "rule": "both", "accepted": 0.939, "selective_accuracy": 0.9702,
                "rejected_unknown": 0.5, **more}

    doc = {"test": {"run": "runs/digits", "images": 179}, "runs": [{"name": "digits"}, {"name": "digits-2"}],
           "pairs": [], "unknown_data": None,
           "models": [model(CORAL[0], "digits", reference=True), model(CORAL[0], "digits-2", delta=0.0, p=1.0)]}
    narrow = rendered(render(doc))
    fits(narrow)
    whole_on_a_line(narrow, CORAL[0])
    left_out = [c for c in COLUMNS if c not in NARROW and c != "model"]
    assert " ".join(narrow.split()).endswith(f"{', '.join(left_out[:-1])} and {left_out[-1]}: compare.md "
                                             "(--report FOLDER) and --json.")
    wide = rendered(render(doc), width=200)
    assert "compare.md" not in wide and all(column in wide for column in COLUMNS)
    asked = rendered(render({**doc, "unknown_data": "others/"}))  # --unknown-data: its column stays at 80
    fits(asked)
    assert "rejected" in asked.split("compare.md")[0] and "0.500" in asked


def test_log_lines_wrap_to_a_terminal_and_stay_whole_in_a_pipe(capsys, monkeypatch):
    import fcntl
    import os
    import pty
    import struct
    import termios

    from edgecls.reporter import Reporter

    line = ("Training seed on digits: 1439 train / 179 val / 179 test images, 28x28 grayscale, 10 classes, "
            "augment: rotate,zoom,translate")
    Reporter(bars=False)(line)  # a pipe (pytest's capture): one line, a record
    assert capsys.readouterr().err == line + "\n"
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    with os.fdopen(follower, "w") as terminal:
        monkeypatch.setattr("sys.stderr", terminal)
        Reporter(bars=False)(line)
    shown = os.read(leader, 65536).decode().replace("\r\n", "\n")
    os.close(leader)
    fits(shown)
    assert " ".join(shown.split()) == line and len(shown.splitlines()) == 2
    whole_on_a_line(shown, "rotate,zoom,translate")


@pytest.mark.slow  # trains (2 epochs of the digits)
def test_train_s_epoch_lines_and_bar_fit_an_80_column_terminal(tmp_path):
    """Each frame a terminal draws while `edgecls train` runs (a progress bar redraws itself after a carriage
    return) is at most 80 columns wide, and each epoch ends with one line of its figures. Keras's own bar was
    ~130 columns, redrawn with backspaces: an 80-column terminal folded it into fragments."""
    import re

    raw = in_a_terminal(["train", "--out", str(tmp_path / "run"), "--epochs", "2"], stderr=True, raw=True)
    frames = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", frame).replace("\b", "")
              for line in raw.split("\n") for frame in line.split("\r")]
    assert "/step" not in raw  # Keras's own bar is off
    fits("\n".join(frames))
    epochs = [frame for frame in frames if re.match(r"Epoch [12]/2  loss \d\.\d{4}  acc", frame)]
    assert len(epochs) == 2 and all(" val loss " in line and " val acc " in line for line in epochs), frames


@pytest.mark.slow  # trains (2 epochs of the digits)
def test_train_in_a_pipe_writes_one_line_per_epoch_to_stderr_and_none_to_stdout(tmp_path):
    """A log gets the epoch lines whole (stderr, the reporter's), and stdout stays the result."""
    import re
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "edgecls", "train", "--out", str(tmp_path / "run"), "--epochs", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Epoch" not in done.stdout and "/step" not in done.stdout
    epochs = [line for line in done.stderr.splitlines() if line.startswith("Epoch ")]
    assert len(epochs) == 2, done.stderr
    for n, line in enumerate(epochs, start=1):
        assert re.fullmatch(rf"Epoch {n}/2  loss \d\.\d{{4}}  acc \d\.\d{{4}}  val loss \d\.\d{{4}}  "
                            r"val acc \d\.\d{4}  [\d.]+ s", line), line
