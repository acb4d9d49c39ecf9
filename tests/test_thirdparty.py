"""Third-party models as first-class citizens (issue 13): preprocessing that matches the model, the
ImageNet label conventions, and the rough edges a new user hit (each test failed before its fix).

The pretrained models are Google's Coral MobileNets in ../shared/data/pretrained (uint8 I/O, 1001
classes, class 0 "background"); the edgecls model is the committed models/digits-seed export.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, in_a_terminal
from PIL import Image

from edgecls.errors import EdgeclsError
from edgecls.runtime import Classifier, ImageError, ModelFileError, load_image

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = SHARED_DATA / "pretrained"
MOBILENET_160 = PRETRAINED / "mobilenet_v1_0.5_160_quant.tflite"
MOBILENET_128 = PRETRAINED / "mobilenet_v1_0.25_128_quant.tflite"
IMAGENET_LABELS = PRETRAINED / "imagenet_labels.txt"
CAT = PRETRAINED / "cat.bmp"
DIGITS_INT8 = ROOT / "models" / "digits-seed" / "model_int8.tflite"
EGYPTIAN_CAT = 286


# ---------------------------------------------------------------------- preprocessing
@pytest.mark.shared_data
def test_pycoral_expectation_cat_is_an_egyptian_cat_under_the_resize_the_model_expects():
    """pycoral's own test: cat.bmp -> 286 "Egyptian cat" with score > 0.67 on mobilenet_v1_0.5_160_quant.
    The Coral models were evaluated with nearest-neighbour resizing; bilinear misses the score."""
    nearest = Classifier(MOBILENET_160, labels=IMAGENET_LABELS, num_threads=1, resize="nearest")
    top = nearest.classify(CAT, top_k=1)[0]
    assert (top.index, top.label) == (EGYPTIAN_CAT, "Egyptian cat") and top.score > 0.67
    bilinear = Classifier(MOBILENET_160, labels=IMAGENET_LABELS, num_threads=1).classify(CAT)[0]
    assert bilinear.index == EGYPTIAN_CAT and bilinear.score < top.score


def _three_bands(width: int = 40, height: int = 20) -> Image.Image:
    """Red | green | blue vertical bands: the centre square is all green."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 4, 0] = 255
    pixels[:, width // 4: 3 * width // 4, 1] = 255
    pixels[:, 3 * width // 4:, 2] = 255
    return Image.fromarray(pixels)


def test_crop_keeps_the_centre_at_the_models_aspect_ratio_and_stretch_keeps_everything():
    cropped = load_image(_three_bands(), (10, 10), "rgb", fit="crop").astype(int)
    assert cropped[..., 1].min() > 200 and cropped[..., 0].max() < 40 and cropped[..., 2].max() < 40
    stretched = load_image(_three_bands(), (10, 10), "rgb", fit="stretch")
    assert stretched[:, 0, 0].min() > 200 and stretched[:, -1, 2].min() > 200


def test_resize_methods_are_pillows_filters():
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8))
    filters = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
               "area": Image.Resampling.BOX, "lanczos": Image.Resampling.LANCZOS}
    results = {}
    for name, pillow in filters.items():
        results[name] = load_image(picture, (16, 16), "rgb", resize=name)
        assert np.array_equal(results[name], np.asarray(picture.resize((16, 16), pillow)))
    assert len({r.tobytes() for r in results.values()}) == 4
    with pytest.raises(ImageError, match="unknown resize method 'cubic'"):
        load_image(picture, (16, 16), "rgb", resize="cubic")


def _with_input_metadata(tmp_path: Path, **entries) -> Path:
    from edgecls.runtime.metadata import embed_metadata, read_metadata

    content = DIGITS_INT8.read_bytes()
    metadata = read_metadata(content)
    metadata["input"] = {**metadata["input"], **entries}
    path = tmp_path / "digits.tflite"
    path.write_bytes(embed_metadata(content, metadata))
    return path


def test_the_runtime_uses_the_resize_recorded_in_the_metadata_and_an_argument_overrides_it(tmp_path):
    model = _with_input_metadata(tmp_path, resize="nearest", fit="crop")
    picture = _three_bands(61, 43).convert("L")
    clf = Classifier(model, num_threads=1)
    assert (clf.input_spec.resize, clf.input_spec.fit) == ("nearest", "crop")
    assert np.array_equal(clf.preprocess(picture), load_image(picture, (28, 28), "grayscale", "nearest", "crop"))
    other = Classifier(model, num_threads=1, resize="lanczos", fit="stretch")
    assert np.array_equal(other.preprocess(picture), load_image(picture, (28, 28), "grayscale", "lanczos"))
    bad = _with_input_metadata(tmp_path, resize="bicubic-ish")
    with pytest.raises(ModelFileError, match="input resize 'bicubic-ish'"):
        Classifier(bad, num_threads=1)


def test_a_nan_pixel_is_a_one_line_image_error_not_a_runtime_warning():
    """The cast of NaN to uint8 ("invalid value encountered in cast") came from float arrays and
    mode "F" images holding NaN; infinities are clipped like any out-of-range value."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match="NaN"):
            load_image(np.array([[np.nan, 1.0], [2.0, 3.0]]), (4, 4), "grayscale")
        with pytest.raises(ImageError, match="NaN"):
            load_image(Image.fromarray(np.array([[np.nan, 1.0]], np.float32), "F"), (4, 4), "grayscale")
        pixels = load_image(np.array([[np.inf, -np.inf]]), (1, 2), "grayscale")
    assert pixels[0, :, 0].tolist() == [255, 0]


# ---------------------------------------------------------------------- labels
@pytest.mark.shared_data
def test_a_1000_line_imagenet_labels_file_is_refused_with_both_counts_and_the_fix(tmp_path):
    labels = IMAGENET_LABELS.read_text(encoding="utf-8").splitlines()
    assert labels[0] == "background" and labels[EGYPTIAN_CAT] == "Egyptian cat"
    short = tmp_path / "labels1000.txt"
    short.write_text("\n".join(labels[1:]) + "\n", encoding="utf-8")
    with pytest.raises(ModelFileError) as refused:
        Classifier(MOBILENET_128, labels=short, num_threads=1)
    message = str(refused.value)
    assert "1000 labels but the model has 1001 classes" in message and "first line 'background'" in message


# ---------------------------------------------------------------------- defects
def test_an_int8_model_with_one_int16_state_tensor_is_int8_not_int16x8():
    from edgecls.runtime.inspect import _quant_mode

    lstm = Counter({"int8": 40, "int16": 1})  # an int8 LSTM keeps its cell state in int16
    assert _quant_mode(Counter({"int8": 30, "int32": 5}), lstm, {"int8"}) == "int8"
    assert _quant_mode(Counter({"int8": 30}), Counter({"int16": 40, "int8": 2}), {"int16"}) == "int16x8"


def _shipped_report():
    """The digits model's bench report that ships in models/ (a real one, made by an earlier edgecls)."""
    from edgecls.bench.results import BenchReport

    shipped = Path(__file__).resolve().parents[1] / "models" / "digits-seed" / "report" / "bench.json"
    return BenchReport.from_json(json.loads(shipped.read_text(encoding="utf-8")))


def test_bench_caption_names_the_units_its_size_cells_use():
    from edgecls.reports.report import size_text

    cells = {size_text(500 * 1024)[-1], size_text(8 * 2**20)[-1]}
    assert cells == {"K", "M"}
    from edgecls.reports.report import headline

    caption = " ".join(headline(_shipped_report()))
    assert "size: K KiB, M MiB" in caption and "size in KiB" not in caption


@pytest.mark.shared_data
def test_predict_uses_a_wide_terminal_for_long_labels(tmp_path, cli, monkeypatch):
    labels = IMAGENET_LABELS.read_text(encoding="utf-8").splitlines()
    long_name = "Egyptian cat, a long-limbed short-haired cat of the Nile"
    labels[EGYPTIAN_CAT] = long_name
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    monkeypatch.setenv("COLUMNS", "200")
    result = cli("predict", MOBILENET_160, CAT, "--labels", tmp_path / "labels.txt", "--resize", "nearest")
    assert result.code == 0, result.err
    assert long_name in result.out
    monkeypatch.setenv("COLUMNS", "80")  # a pipe, even with $COLUMNS set: a line per image, whole
    piped = cli("predict", MOBILENET_160, CAT, "--labels", tmp_path / "labels.txt", "--top-k", "3")
    assert len(piped.out.splitlines()) == 2 and long_name in piped.out
    for columns in (80, 60, 40):  # a narrow terminal: the label wraps inside its column, never cut, no line too long
        shown = in_a_terminal(["predict", str(MOBILENET_160), str(CAT), "--labels", str(tmp_path / "labels.txt"),
                               "--resize", "nearest", "--top-k", "3"], columns, cwd=CAT.parent)
        lines = shown.splitlines()
        assert "…" not in shown and all(len(line) <= columns for line in lines), shown
        assert lines[1].startswith("0.680  Egyptian")
        start, end = lines[0].index("label"), lines[0].index("file")  # the label column, one class a line here
        assert long_name in " ".join(line[start:end].strip() for line in lines[1:]), shown
        assert "tiger cat" in shown and "tabby" in shown  # the other two classes, one a line here


@pytest.mark.shared_data
def test_info_shows_one_label_a_line_so_commas_in_names_are_not_ambiguous(tmp_path, cli):
    model = tmp_path / MOBILENET_128.name
    model.write_bytes(MOBILENET_128.read_bytes())
    (tmp_path / "labels.txt").write_bytes(IMAGENET_LABELS.read_bytes())
    result = cli("info", model)
    assert result.code == 0, result.err
    lines = [line.strip() for line in result.out.splitlines()]
    assert any(line.endswith("1  tench, Tinca tinca") for line in lines)
    assert not any("Tinca tinca, goldfish" in line for line in lines)
    assert any("resize bilinear, stretch (from the defaults)" in line for line in lines)


def test_choices_are_case_insensitive(tmp_path, cli):
    """--color RGB (and --resize NEAREST) are taken; train still refuses the existing --out first."""
    result = cli("train", "--color", "RGB", "--arch", "Seed", "--out", tmp_path)
    assert result.code == 2 and "unknown colour" not in result.err and "exists" in result.err
    wrong = cli("predict", DIGITS_INT8, DIGITS_INT8.parent / "test-images", "--resize", "cubic")
    assert wrong.code == 2 and "unknown resize method 'cubic'" in wrong.err


def test_predict_on_a_run_directory_or_model_keras_names_the_file_to_use(tmp_path, cli):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"PK\x03\x04 not really")
    image = ROOT / "models" / "digits-seed" / "test-images" / "0" / "00012-000079.png"
    for target in (run, run / "model.keras"):
        result = cli("predict", target, image)
        assert result.code == 2 and f"run edgecls export {run} first" in result.err, result.err
    (run / "export").mkdir()
    (run / "export" / "model_int8.tflite").write_bytes(DIGITS_INT8.read_bytes())
    for target in (run, run / "model.keras"):
        result = cli("predict", target, image)
        assert result.code == 2 and f"use {run / 'export' / 'model_int8.tflite'}" in result.err, result.err


def test_bench_ends_with_the_next_command(tmp_path, cli):
    result = cli("bench", DIGITS_INT8, "--data", DIGITS_INT8.parent / "test-images", "--threads", "1", "--runs", "2",
                 "--warmup", "0", "--no-memory", "--json", tmp_path / "r.json")
    assert result.code == 0, result.err
    predict, compare = result.out.strip().splitlines()[-2:]
    assert predict.startswith(f"Next: edgecls predict {DIGITS_INT8} IMAGES...") and "advice takes" in predict
    assert compare.startswith(f"Next: edgecls bench compare {tmp_path / 'r.json'} OTHER/bench.json")


def test_the_venv_the_readme_creates_is_ignored_by_git():
    done = subprocess.run(["git", "check-ignore", "-q", ".venv/bin/python"], cwd=ROOT)
    assert done.returncode == 0
    assert "-m venv .venv" in (ROOT / "README.md").read_text(encoding="utf-8")


# ---------------------------------------------------------------------- plots
def _scored(name: str, confusion: list[list[int]], top1: float = 0.5):
    """A benched model whose accuracy is this confusion matrix (what the confusion plot reads)."""
    from edgecls.bench.results import Accuracy, ModelResult

    return ModelResult(name=name, kind="tflite", mode="int8", path=name, size_bytes=1,
                       accuracy=Accuracy(top1=top1, topk=1.0, k=2, macro_f1=top1, images=sum(map(sum, confusion)),
                                         per_class={}, confusion=confusion))


def test_confusion_counts_are_dark_on_light_cells_and_light_on_dark_ones():
    from edgecls.plotting import pyplot
    from edgecls.reports.plots import confusions

    plt = pyplot()
    reference = _scored("ref", [[90, 1], [2, 80]])
    model = _scored("m", [[88, 3], [2, 80]])
    figure = confusions(plt, reference, model, ["a", "b"])
    colours = {text.get_text(): text.get_color() for text in figure.axes[0].texts}
    assert colours["90"] == "white" and colours["1"] == "black"
    plt.close(figure)


def test_an_all_zero_difference_panel_says_identical():
    from edgecls.plotting import pyplot
    from edgecls.reports.plots import confusions

    plt = pyplot()
    same = _scored("ref", [[5, 1], [0, 4]])
    figure = confusions(plt, same, _scored("m", [[5, 1], [0, 4]]), ["a", "b"])
    diff_axis = figure.axes[2]
    assert "identical" in diff_axis.get_title() and any("identical" in t.get_text() for t in diff_axis.texts)
    other = confusions(plt, same, _scored("m", [[4, 2], [0, 4]]), ["a", "b"])
    assert "identical" not in other.axes[2].get_title()
    plt.close(figure)
    plt.close(other)


def test_accuracy_axes_stop_at_one_and_the_kept_epoch_is_marked():
    from edgecls.plotting import history_figure, pyplot
    from edgecls.reports.plots import accuracy_latency

    plt = pyplot()
    model = _shipped_report().models[-1]
    model.accuracy.top1 = 1.0  # a perfect model: its point sits on the axis' top
    figure = accuracy_latency(plt, [model])
    assert figure.axes[0].get_ylim()[1] <= 1.0
    history = {"accuracy": [0.8, 0.99, 1.0], "val_accuracy": [0.85, 1.0, 1.0], "loss": [0.5, 0.1, 0.05],
               "val_loss": [0.4, 0.05, 0.06]}
    curves = history_figure(plt, history, best_epoch=2)
    accuracy_axis, loss_axis = curves.axes
    assert accuracy_axis.get_ylim()[1] <= 1.0
    for ax in (accuracy_axis, loss_axis):
        assert "kept: epoch 2" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(figure)
    plt.close(curves)


# ---------------------------------------------------------------------- bench any classifier
def _imagenet_folder(root: Path) -> Path:
    """Class folders named as a user would: a label exactly, its first comma part, another case."""
    cat = Image.open(CAT).convert("RGB")
    layout = {"Egyptian cat": [(0, 0, 512, 341), (40, 0, 470, 341)], "tabby": [(100, 20, 450, 330)],
              "TIGER CAT": [(0, 0, 341, 341)]}
    for folder, boxes in layout.items():
        (root / folder).mkdir(parents=True)
        for i, box in enumerate(boxes):
            cat.crop(box).save(root / folder / f"{i}.png")
    cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "Egyptian cat" / "flipped.jpg")
    return root


def _device_side_bench(args: list[str]) -> dict:
    """`edgecls bench ARGS` in a fresh Python; the report, and which heavy modules got imported."""
    code = (
        "import json, sys\n"
        "from edgecls.cli import main\n"
        f"sys.argv = ['edgecls', 'bench', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print(json.dumps({'code': code, 'heavy': sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf_keras'))}))\n"
    )
    # A wide terminal, said explicitly: under pytest a child can inherit COLUMNS=80 from the C environment.
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["code"] in (0, None), done.stderr
    return {**found, "out": done.stdout, "err": done.stderr}


@pytest.mark.shared_data
def test_bench_a_third_party_model_on_folders_named_by_its_labels_without_tensorflow(tmp_path):
    data = _imagenet_folder(tmp_path / "photos")
    found = _device_side_bench([str(MOBILENET_160), "--labels", str(IMAGENET_LABELS), "--data", str(data),
                                "--resize", "nearest", "--threads", "1", "--runs", "3", "--warmup", "0",
                                "--no-memory", "--json", str(tmp_path / "r.json")])
    assert found["heavy"] == []
    report = json.loads((tmp_path / "r.json").read_text())
    assert check_report_ok(report)
    matches = {m["folder"]: (m["index"], m["match"], m["images"]) for m in report["data"]["label_map"]}
    assert matches == {"Egyptian cat": (286, "exact", 3), "tabby": (282, "first comma part", 1),
                       "TIGER CAT": (283, "case-insensitive", 1)}
    model = report["models"][0]
    assert model["accuracy"]["k"] == 5 and model["accuracy"]["images"] == 5
    assert 0.4 <= model["accuracy"]["top1"] <= model["accuracy"]["topk"] == 1.0  # cats all, among the top 5
    assert report["data"]["classes"][-1] == "(other classes)" and len(model["accuracy"]["confusion"]) == 4
    assert model["latency"][0]["invoke_ms"]["p50"] > 0 and model["size_bytes"] == MOBILENET_160.stat().st_size
    assert report["settings"]["preprocessing"][MOBILENET_160.name] == {"resize": "nearest", "fit": "stretch"}
    assert "3 class folder(s) matched labels of the model (1001 classes): 1 exact, 1 case-insensitive, 1 " \
           "first comma part" in " ".join(report["notes"])
    assert "top-k" in found["out"] and "1.0000" in found["out"], found["out"]
    # the hint carries what decides the answers: without --labels predict gives class indices (issue 22)
    hint = next(line for line in found["out"].splitlines() if line.startswith("Next: edgecls predict"))
    assert f"{MOBILENET_160} IMAGES... --labels {IMAGENET_LABELS} --resize nearest" in hint, hint


def check_report_ok(report: dict) -> bool:
    from edgecls.bench.schema import errors

    problems = errors(report)
    assert not problems, problems
    return True


@pytest.mark.shared_data
def test_latency_only_needs_no_data_and_reports_latency_memory_and_size(tmp_path):
    found = _device_side_bench([str(MOBILENET_128), "--latency-only", "--threads", "1", "--runs", "3", "--warmup",
                                "0", "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "rep")])
    assert found["heavy"] == []
    report = json.loads((tmp_path / "r.json").read_text())
    assert check_report_ok(report)
    model = report["models"][0]
    assert model["accuracy"] is None and report["data"]["part"] == "unlabelled" and report["reference"] is None
    assert model["latency"][0]["invoke_ms"]["n"] == 3 and model["size_bytes"] == MOBILENET_128.stat().st_size
    assert model["memory"]["peak_rss_mb"] > 0 and model["memory"]["heavy_modules"] == []
    markdown = (tmp_path / "rep" / "bench.md").read_text()
    assert "Latency only: 32 unlabelled images" in markdown and "Per-class accuracy" not in markdown
    assert markdown.count("32 unlabelled") + markdown.count("32 seeded random images per model") == 1  # said once
    assert found["out"].count("random images") == 1, found["out"]
    assert (tmp_path / "rep" / "latency.png").is_file()


@pytest.mark.shared_data
def test_two_models_of_different_input_sizes_are_benched_together_each_with_its_preprocessing(tmp_path):
    from edgecls.bench import BenchOptions, measure

    data = _imagenet_folder(tmp_path / "photos")
    report = measure(BenchOptions([MOBILENET_160, MOBILENET_128], data=str(data), labels=str(IMAGENET_LABELS),
                                    threads=[1], warmup=0, runs=2, memory=False, fit="crop"))
    assert report.data.shapes == {MOBILENET_160.name: [160, 160, 3], MOBILENET_128.name: [128, 128, 3]}
    assert {m.name: m.accuracy.images for m in report.models} == {MOBILENET_160.name: 5, MOBILENET_128.name: 5}
    assert all(p == {"resize": "bilinear", "fit": "crop"} for p in report.settings.preprocessing.values())
    assert check_report_ok(report.to_json())
    # --latency-only on given images (a flat folder: no labels needed)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.open(CAT).save(flat / "cat.png")
    timed = measure(BenchOptions([MOBILENET_160, MOBILENET_128], data=str(flat), latency_only=True, threads=[1],
                                   warmup=0, runs=2, memory=False))
    assert timed.data.images == 1 and timed.data.files is True
    assert all(m.latency and m.accuracy is None for m in timed.models)


@pytest.mark.shared_data
def test_bench_opens_the_model_with_its_labels_in_every_phase_not_a_labels_txt_beside_it(tmp_path):
    """--labels is how every phase opens the model (scoring, latency, the sustained run), as predict
    does: another model's labels.txt beside the file is never read (the latency phase failed on it)."""
    from edgecls.bench import BenchOptions, measure

    data = _imagenet_folder(tmp_path / "photos")
    (tmp_path / "model").mkdir()
    model = tmp_path / "model" / MOBILENET_128.name
    model.write_bytes(MOBILENET_128.read_bytes())
    (tmp_path / "model" / "labels.txt").write_text("cat\ndog\n")
    with pytest.raises(ModelFileError, match="2 labels but the model has 1001 classes"):
        Classifier(model)  # what a phase that forgot the labels would meet
    report = measure(BenchOptions([model], data=str(data), labels=str(IMAGENET_LABELS), threads=[1], warmup=0,
                                  runs=2, memory=False, sustain=1.0))
    assert report.models[0].accuracy.images == 5 and report.models[0].latency[0].invoke_ms.n == 2
    assert report.section("sustained") is not None


@pytest.mark.shared_data
def test_the_memory_probe_opens_the_model_with_its_labels_not_a_labels_txt_beside_it(tmp_path):
    """Peak memory is measured on the model opened as the bench opens it: with --labels (the probe
    process opened it bare, met the wrong labels.txt beside it and measured nothing)."""
    from edgecls.bench import BenchOptions, measure

    (tmp_path / "model").mkdir()
    model = tmp_path / "model" / MOBILENET_128.name
    model.write_bytes(MOBILENET_128.read_bytes())
    (tmp_path / "model" / "labels.txt").write_text("cat\ndog\n")
    report = measure(BenchOptions([model], labels=str(IMAGENET_LABELS), latency_only=True, threads=[1], warmup=0,
                                  runs=2))
    memory = report.models[0].memory
    assert memory.error is None and memory.peak_rss_mb > 0, memory
    assert not any("Peak memory not measured" in note for note in report.notes), report.notes


@pytest.mark.shared_data
def test_the_sustained_run_feeds_each_model_its_own_decoding_of_the_images():
    """Two models of different input sizes under --sustain: each is invoked on the images at its own size
    (both were fed the first model's)."""
    from edgecls.bench import BenchOptions, measure

    report = measure(BenchOptions([MOBILENET_160, MOBILENET_128], latency_only=True, threads=[1], warmup=0, runs=2,
                                  memory=False, sustain=1.0))
    data = report.section("sustained").data
    assert data["models"] == [MOBILENET_160.name, MOBILENET_128.name]
    assert all(data["summary"][name]["invokes"] > 0 for name in data["models"]), data["summary"]


def test_folder_names_match_labels_exactly_case_insensitively_by_comma_part_or_index():
    from edgecls.runtime.labels import match_label

    labels = ["background", "tabby, tabby cat", "Egyptian cat", "crane", "crane", "tiger cat"]
    assert match_label("Egyptian cat", labels) == (2, "exact")
    assert match_label("egyptian CAT", labels) == (2, "case-insensitive")
    assert match_label("tabby", labels) == (1, "first comma part")
    assert match_label("Tabby Cat", labels) == (1, "comma part")
    assert match_label("4", labels) == (4, "index")
    with pytest.raises(EdgeclsError, match="matches 2 labels .*rename it to one label, or to its index"):
        match_label("crane", labels)
    with pytest.raises(EdgeclsError, match="'kitten' matches no label"):
        match_label("kitten", labels)


def test_a_folder_that_matches_no_label_gets_the_closest_ones_suggested():
    """Issue 22: a folder `ants` was refused without a word about label 311, 'ant, emmet, pismire'."""
    from edgecls.runtime.labels import closest_labels, match_label

    labels = ["background", "ant, emmet, pismire", "tabby, tabby cat", "Egyptian cat", "tiger cat", "puppy", "box"]
    with pytest.raises(EdgeclsError, match="did you mean 1 'ant, emmet, pismire'\\? Rename the folder to that label"):
        match_label("ants", labels)
    assert closest_labels("puppies", labels) == ([5], 0) and closest_labels("boxes", labels) == ([6], 0)  # plurals
    assert closest_labels("Egyptain cat", labels) == ([3], 0)  # spelled alike
    assert closest_labels("cats", labels) == ([2, 3, 4], 0)  # the word inside longer labels
    assert closest_labels("zebra", labels) == ([], 0)
    with pytest.raises(EdgeclsError, match="'zebra' matches no label .*: rename it to a label or its index"):
        match_label("zebra", labels)


@pytest.mark.shared_data
def test_third_party_bench_refusals_say_what_to_do(tmp_path, cli):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.open(CAT).save(flat / "cat.png")
    common = ["--threads", "1", "--runs", "1", "--warmup", "0", "--no-memory"]
    loose = cli("bench", MOBILENET_160, "--labels", IMAGENET_LABELS, "--data", flat, *common)
    assert loose.code == 2 and "no class sub-folders" in loose.err and "--latency-only" in loose.err
    sizes = cli("bench", MOBILENET_160, MOBILENET_128, "--data", flat, *common)
    assert sizes.code == 2 and "give --labels FILE" in sizes.err
    nodata = cli("bench", MOBILENET_160, "--labels", IMAGENET_LABELS, *common)
    assert nodata.code == 2 and "--labels needs --data FOLDER" in nodata.err
    fewer = cli("bench", MOBILENET_160, "--data", _imagenet_folder(tmp_path / "photos"), *common)
    assert fewer.code == 2 and "has 1001 classes but the test data" in fewer.err and "give --labels FILE" in fewer.err
    run = cli("bench", ROOT / "models" / "digits-seed", "--latency-only", *common)
    assert run.code == 2 and "not a run directory" in run.err


def test_the_schema_takes_a_latency_only_model_and_checks_the_label_map():
    from edgecls.bench.schema import errors, schema

    defs = {"$defs": schema()["$defs"]}
    model_rule = schema()["$defs"]["model"]["properties"]["accuracy"]
    assert not errors(None, {**defs, **model_rule})
    assert errors({"top1": 2}, {**defs, **model_rule})
    bad = {"folder": "x", "index": 1, "label": "x", "match": "fuzzy", "images": 1}
    data_rule = schema()["properties"]["data"]["properties"]["label_map"]
    assert any("'fuzzy' is not one of" in e for e in errors([bad], {**defs, **data_rule}))
    assert not errors([{**bad, "match": "comma part"}], {**defs, **data_rule})


@pytest.mark.slow
def test_export_of_a_bare_keras_file_ends_with_a_bench_command_that_runs(make_digits_run, tmp_path, cli):
    """A bare .keras file's exports name no run: the bench it suggests must carry the --data it was exported with."""
    import shlex
    import shutil

    bare = tmp_path / "x" / "bare.keras"
    bare.parent.mkdir()
    shutil.copy(make_digits_run(1, 0) / "model.keras", bare)
    result = cli("export", bare, "--data", "digits", "--calib-samples", "50", "--quant", "int8")
    assert result.code == 0, result.err
    next_line = result.out.strip().splitlines()[-1]
    assert next_line == f"Next: edgecls bench {tmp_path / 'x' / 'bare-export' / 'model_int8.tflite'} --data digits"
    bench = cli(*shlex.split(next_line.removeprefix("Next: edgecls ")), "--runs", "5", "--warmup", "1", "--no-memory",
                "--report", tmp_path / "report")
    assert bench.code == 0, bench.err


@pytest.mark.slow
def test_export_ends_with_the_next_command_and_records_the_training_resize(make_digits_run, tmp_path, cli):
    import shutil

    from edgecls.runtime.metadata import read_metadata

    run = tmp_path / "run"
    shutil.copytree(make_digits_run(1, 0), run)
    result = cli("export", run, "--calib-samples", "50")
    assert result.code == 0, result.err
    assert result.out.strip().splitlines()[-1] == f"Next: edgecls bench {run}"
    spec = read_metadata((run / "export" / "model_int8.tflite").read_bytes())["input"]
    assert (spec["resize"], spec["fit"]) == ("bilinear", "stretch")
    elsewhere = cli("export", run, "--calib-samples", "50", "--quant", "int8", "--out", tmp_path / "other")
    assert elsewhere.out.strip().splitlines()[-1] == f"Next: edgecls bench {tmp_path / 'other' / 'model_int8.tflite'}"


def test_the_bench_an_export_suggests_never_scores_a_bare_models_training_folder(tmp_path):
    """A bare .keras exported with --data FOLDER: that folder is what it was calibrated on, likely trained on
    too, and bench scores all of a folder: the hint asks for a test folder. A named dataset goes along (bench
    scores its test split)."""
    from edgecls.export.job import ExportResult

    photos = tmp_path / "photos"
    photos.mkdir()
    out = tmp_path / "bare-export"
    result = ExportResult(out, [], 0.9, 10, 0.98, [], written=[out / "model_int8.tflite", out / "labels.txt"])
    bare = tmp_path / "bare.keras"
    assert result.next_command(bare, str(photos)) == (
        f"edgecls bench {out / 'model_int8.tflite'} --data TEST-FOLDER  # images the model did not train on")
    assert result.next_command(bare, "digits") == f"edgecls bench {out / 'model_int8.tflite'} --data digits"
    for part in ("train", "test"):  # a folder with its own test part: bench scores that part
        (photos / part / "cat").mkdir(parents=True)
    assert result.next_command(bare, str(photos)) == f"edgecls bench {out / 'model_int8.tflite'} --data {photos}"
