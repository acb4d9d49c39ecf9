"""edgecls explain: saliency maps (device-side occlusion/RISE, Grad-CAM), their sanity, the float/int8
per-layer divergence, and `bench --explain-flips`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, convert, quad_image
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = SHARED_DATA / "pretrained"
CORAL = PRETRAINED / "mobilenet_v1_0.25_128_quant.tflite"
SIZE, SQUARE = 16, 4  # synthetic object images: a bright square somewhere on dim noise


def square_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list]:
    """uint8 (n, 16, 16, 1), labels (1: a bright 4x4 square is there, 0: noise only), the squares' corners."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (n, SIZE, SIZE, 1)).astype(np.uint8)
    labels = np.arange(n) % 2
    corners = []
    for image, label in zip(images, labels):
        y, x = (int(v) for v in rng.integers(0, SIZE - SQUARE + 1, 2))
        corners.append((y, x))
        if label:
            image[y:y + SQUARE, x:x + SQUARE] = rng.integers(200, 256, (SQUARE, SQUARE, 1))
    return images, labels, corners


def object_mass(values: np.ndarray, corner: tuple[int, int], margin: int = 2) -> float:
    """Share of a map's positive mass within the square (grown by `margin` px, as a patch blurs)."""
    positive = np.clip(values, 0, None)
    y, x = corner
    inside = positive[max(0, y - margin):y + SQUARE + margin, max(0, x - margin):x + SQUARE + margin].sum()
    return float(inside / positive.sum()) if positive.sum() > 0 else 0.0


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = (np.argsort(np.argsort(v.ravel(), kind="stable"), kind="stable").astype(float) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.fixture(scope="module")
def square_models(tmp_path_factory):
    """A tiny CNN trained (seconds) on square-or-not, the same architecture with random weights, both as
    Keras models and float32 .tflite files, and held-out images with a square."""
    tf = pytest.importorskip("tensorflow")
    import keras

    keras.utils.set_random_seed(0)

    def build():
        inputs = keras.Input((SIZE, SIZE, 1))
        x = keras.layers.Rescaling(1 / 255)(inputs)
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
        x = keras.layers.MaxPooling2D(name="pool")(x)
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
        x = keras.layers.GlobalMaxPooling2D(name="gmp")(x)
        return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(x))

    trained, random = build(), build()
    images, labels, _ = square_images(600, seed=1)
    trained.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    trained.fit(images.astype(np.float32), labels, epochs=8, batch_size=32, verbose=0)
    test, test_labels, corners = square_images(40, seed=2)
    accuracy = float(np.mean(trained.predict(test.astype(np.float32), verbose=0).argmax(1) == test_labels))
    assert accuracy > 0.9, f"the square model did not learn ({accuracy:.2f}): the sanity checks would mean nothing"
    folder = tmp_path_factory.mktemp("square")
    paths = {}
    for name, model in (("trained", trained), ("random", random)):
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(convert(tf, model, (SIZE, SIZE, 1)))
    keep = test_labels == 1
    return {"trained": trained, "random": random, "paths": paths, "images": test[keep],
            "corners": [c for c, k in zip(corners, keep) if k]}


# ---------------------------------------------------------------------- sanity of the maps
@pytest.mark.slow
@pytest.mark.parametrize("method", ["occlusion", "rise", "gradcam"])
def test_map_mass_sits_on_the_object(square_models, method):
    from edgecls.explain.occlusion import device_map
    from edgecls.runtime import Classifier

    images, corners = square_models["images"][:8], square_models["corners"][:8]
    if method == "gradcam":
        from edgecls.explain.gradcam import gradcam_map

        maps = [gradcam_map(square_models["trained"], image, target=1) for image in images]
        assert maps[0].settings["layer"] == "conv2"  # found by itself: the last conv layer
    else:
        clf = Classifier(square_models["paths"]["trained"], num_threads=1)
        maps = [device_map(clf, image, method, target=1) for image in images]
    masses = [object_mass(m.values, corner) for m, corner in zip(maps, corners)]
    # the grown square covers at most 8x8 = 25 % of the image; a map blind to the object puts ~25 % there
    assert np.mean(masses) > 0.6, masses


@pytest.mark.slow
@pytest.mark.parametrize("method", ["occlusion", "gradcam"])
def test_maps_of_a_trained_model_differ_from_randomised_weights(square_models, method):
    """Adebayo et al.'s model-parameter randomisation test: the same architecture with random weights
    must give measurably different maps, and ones that no longer find the object."""
    from edgecls.explain.occlusion import device_map
    from edgecls.runtime import Classifier

    images, corners = square_models["images"][:8], square_models["corners"][:8]
    if method == "gradcam":
        from edgecls.explain.gradcam import gradcam_map

        trained = [gradcam_map(square_models["trained"], image, target=1).values for image in images]
        random = [gradcam_map(square_models["random"], image, target=1).values for image in images]
    else:
        maps = {}
        for name in ("trained", "random"):
            clf = Classifier(square_models["paths"][name], num_threads=1)
            maps[name] = [device_map(clf, image, method, target=1).values for image in images]
        trained, random = maps["trained"], maps["random"]
    assert all(m.std() > 0 for m in trained + random)  # no flat map: the correlation means something
    correlation = np.mean([rank_correlation(a, b) for a, b in zip(trained, random)])
    trained_mass = np.mean([object_mass(m, c) for m, c in zip(trained, corners)])
    random_mass = np.mean([object_mass(m, c) for m, c in zip(random, corners)])
    assert correlation < 0.5, correlation
    assert trained_mass > random_mass + 0.1, (trained_mass, random_mass)


def test_quad_map_lies_on_the_deciding_half(models):
    """`quad`: only the bright half decides the class; the map's mass must sit on it."""
    from edgecls.explain.occlusion import occlusion_map, rise_map
    from edgecls.runtime import Classifier

    clf = Classifier(models.quad_float_meta, num_threads=1)
    pixels = quad_image("top")[..., None]
    # black fill: quad reads brightness, so grey paint on the dark half would itself be evidence (for "bottom")
    # RISE's masks are smooth (bilinear over 2-pixel cells here): some mass leaks across the border
    for smap, share in ((occlusion_map(clf, pixels, patch=2, stride=1, fill="black"), 0.9),
                        (rise_map(clf, pixels, masks=300, cells=4, fill="black"), 0.7)):
        assert smap.label == "top"
        positive = np.clip(smap.values, 0, None)
        assert positive[:4].sum() / positive.sum() > share, smap.method


REFERENCE = REPO / "models" / "digits-seed"  # the committed reference digits run's exports


def test_int8_occlusion_map_looks_where_the_float_one_does(tmp_path):
    """The reference int8 model answers 0.996 (its softmax's top step) for a clear seven and keeps answering it
    under every 4 px patch: measured on that rounded output the map was flat (peak reported at 0, 0). Scored
    on the float softmax of its int8 logits, it finds the part of the seven the float model's map finds."""
    from edgecls.explain.occlusion import occlusion_map
    from edgecls.runtime import Classifier

    seven = sorted((REFERENCE / "test-images" / "7").iterdir())[0]
    q_clf = Classifier(REFERENCE / "model_int8.tflite", num_threads=1)
    f_clf = Classifier(REFERENCE / "model_float32.tflite", num_threads=1)
    pixels = q_clf.preprocess(seven)
    assert q_clf.output_step == 1 / 256 and q_clf.probabilities(pixels[None])[0].max() == 255 / 256
    q_map, f_map = occlusion_map(q_clf, pixels), occlusion_map(f_clf, pixels)
    q, f = q_map.summary(), f_map.summary()
    assert q["top10_area_mass"] > 0.5 and "warning" not in q
    assert np.abs(np.subtract(q["peak_yx"], f["peak_yx"])).max() <= 2, (q["peak_yx"], f["peak_yx"])
    assert np.abs(np.subtract(q["centre_of_mass_yx"], f["centre_of_mass_yx"])).max() < 2
    assert q_map.settings["scores"] == "from logits" and "scores" not in f_map.settings


def test_a_flat_map_says_so_and_reports_no_peak(models, tmp_path, cli):
    """Explaining `bottom` on a `top` picture: the class is already at its floor, no patch can lower it, so the
    map is flat. The table says flat (not a peak at 0, 0), a warning says why and what to try instead."""
    Image.fromarray(quad_image("top")).save(tmp_path / "top.png")
    result = cli("explain", models.quad_float_meta, tmp_path / "top.png", "--target", "1", "--out", tmp_path / "m")
    assert result.code == 0, result.err
    row = json.loads((tmp_path / "m" / "explain.json").read_text())["images"][0]
    assert row["peak_yx"] is None and row["centre_of_mass_yx"] is None and row["top10_area_mass"] is None
    assert row["warning"].startswith("flat map: no 2 px patch lowered the score of 'bottom'")
    assert "--method rise" in row["warning"]
    text = " ".join(result.out.split())
    assert "flat" in text and "0, 0" not in text
    assert f"! top.png: {row['warning']}" in text


def test_rise_is_seeded_and_cost_bounded(models):
    from edgecls.explain.occlusion import occlusion_map, rise_map
    from edgecls.runtime import Classifier

    clf = Classifier(models.rgb_int8_meta, num_threads=1)
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    a = rise_map(clf, pixels, masks=64, seed=3)
    b = rise_map(clf, pixels, masks=64, seed=3)
    c = rise_map(clf, pixels, masks=64, seed=4)
    assert np.array_equal(a.values, b.values) and not np.array_equal(a.values, c.values)
    assert a.evaluations == 64
    occluded = occlusion_map(clf, pixels, patch=4, stride=4)
    assert occluded.evaluations == 16 and occluded.values.shape == (16, 16)


# ---------------------------------------------------------------------- divergence
@pytest.fixture(scope="module")
def badly_quantised(tmp_path_factory):
    """A float32/int8 pair whose `bad_dense` layer is quantised absurdly: one conv channel is always 0
    after its ReLU, and the Dense weights reading it are 1000 (harmless in float, where they meet
    zeros), so the int8 weight scale of `bad_dense` is ~8 and every real weight rounds to 0."""
    tf = pytest.importorskip("tensorflow")
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    conv = keras.layers.Conv2D(4, 3, activation="relu", name="conv")
    x = keras.layers.Flatten(name="flatten")(keras.layers.MaxPooling2D(name="pool")(conv(x)))
    bad = keras.layers.Dense(16, activation="relu", name="bad_dense")
    x = keras.layers.Dense(3, name="head")(bad(x))
    model = keras.Model(inputs, keras.layers.Softmax(name="softmax")(x))
    weights, bias = conv.get_weights()
    bias[3] = -100.0
    conv.set_weights([weights, bias])
    weights, bias = bad.get_weights()
    weights[3::4, :] = 1000.0  # Flatten is channel-last: every 4th feature is channel 3
    bad.set_weights([weights, bias])
    folder = tmp_path_factory.mktemp("bad")
    (folder / "float.tflite").write_bytes(convert(tf, model, (12, 12, 1)))
    (folder / "int8.tflite").write_bytes(convert(tf, model, (12, 12, 1), "int8"))
    return folder / "float.tflite", folder / "int8.tflite"


@pytest.mark.slow
def test_the_badly_quantised_layer_is_named_as_the_divergence_point(badly_quantised):
    from edgecls.explain.divergence import DivergenceProbe

    probe = DivergenceProbe(*badly_quantised)
    images = np.random.default_rng(0).integers(0, 256, (5, 12, 12, 1)).astype(np.uint8)
    for image in images:
        divergence = probe.compare(image)
        layers = [row.layer for row in divergence.layers]
        assert layers[:4] == ["conv", "pool", "flatten", "bad_dense"]  # matched by name, in op order
        assert all(row.matched_by == "name" for row in divergence.layers)
        assert divergence.first_over.layer == "bad_dense"
        assert all(row.snr_db > 30 for row in divergence.layers[:3])  # healthy before it
        assert divergence.to_json()["first_over"] == "bad_dense"


def test_a_healthy_int8_model_stays_under_the_threshold(models):
    from edgecls.explain.divergence import DivergenceProbe

    probe = DivergenceProbe(models.rgb_float, models.rgb_int8)
    image = np.random.default_rng(1).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    divergence = probe.compare(image)
    assert [row.op for row in divergence.layers] == ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED",
                                                    "FULLY_CONNECTED", "SOFTMAX"]
    assert divergence.first_over is None, divergence.to_json()
    same = probe.compare(image)
    assert [r.snr_db for r in same.layers] == [r.snr_db for r in divergence.layers]  # no state leaks between runs


def test_a_layer_far_above_any_threshold_is_never_called_diverged():
    """Issue 22: a softmax at 57.7 dB was called 'over threshold' because its typical SNR was higher; at
    that SNR its error is a millionth of its signal: the flip was a near tie, not a diverging layer."""
    from edgecls.explain.divergence import HEALTHY_DB, Divergence, LayerDivergence

    def layer(name: str, snr: float) -> LayerDivergence:
        return LayerDivergence(0, name.upper(), name, name, [1], snr, 1.0, "name")

    near_tie = Divergence([layer("conv", 38.0), layer("softmax", 57.7)], threshold_db=20.0, typical_db=[39.0, 70.0])
    assert near_tie.over(1) is None and near_tie.first_over is None and 57.7 > HEALTHY_DB
    grown = Divergence([layer("conv", 31.0), layer("softmax", 57.7)], threshold_db=20.0, typical_db=[39.0, 70.0])
    assert grown.first_over.layer == "conv" and "under its typical 39.0 dB" in grown.over(0)
    assert Divergence([layer("dense", 12.0)], 20.0).over(0) == "12.0 dB, below 20 dB"


def test_the_flip_matrix_names_the_quantised_models_kind_and_zero_flips_draw_none(models, tmp_path, cli):
    from edgecls.explain.job import flip_matrix

    columns, rows, pairs = flip_matrix(np.array([0, 0]), np.array([1, 1]), ["cat", "dog"], "dynamic")
    assert columns == ["float ↓ / dynamic →", "dog", "total"] and rows == [["cat", "2", "2"]]
    for name in ("top", "bottom", "left", "right"):  # the quad models agree on every clean picture
        (tmp_path / "data" / name).mkdir(parents=True)
        for i, bright in enumerate((255, 200)):
            Image.fromarray(quad_image(name, bright=bright)).save(tmp_path / "data" / name / f"{i}.png")
    report_dir = tmp_path / "report"
    result = cli("bench", models.quad_float_meta, models.quad_int8_meta, "--data", tmp_path / "data",
                 "--explain-flips", "0", "--threads", "1", "--runs", "2", "--warmup", "0", "--no-memory",
                 "--report", report_dir)
    assert result.code == 0, result.err
    report = json.loads((report_dir / "bench.json").read_text())
    keys = [s["key"] for s in report["sections"]]
    assert any(k.startswith("explain-flips") for k in keys) and not any(k.endswith("-matrix") for k in keys)
    section = next(s for s in report["sections"] if s["key"].startswith("explain-flips"))
    assert section["rows"] == [] and section["notes"][0].startswith("0 of 8 test images flip")
    assert "Flip matrix" not in (report_dir / "bench.md").read_text()


def test_dequantize_per_channel():
    from edgecls.explain.divergence import dequantize, snr_db

    raw = np.array([[[10, -10], [20, -20]]], np.int8)
    quant = {"scales": [0.5, 2.0], "zero_points": [0, 0], "quantized_dimension": 2}
    assert np.allclose(dequantize(raw, quant), [[[5, -20], [10, -40]]])
    assert snr_db(np.ones(4), np.ones(4)) == float("inf")
    assert abs(snr_db(np.ones(4), np.ones(4) * 1.1) - 20.0) < 1e-9


# ---------------------------------------------------------------------- device side, third-party model
DEVICE_ONLY = textwrap.dedent("""
    import sys
    from edgecls.explain.job import ExplainOptions, explain_images
    summary = explain_images({model!r}, [{image!r}], ExplainOptions(out={out!r}, labels={labels!r}, threads=1,
                             method={method!r}, masks=100))
    assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'
    print(summary['images'][0]['label'])
""")


@pytest.mark.shared_data
@pytest.mark.parametrize("method", ["occlusion", "rise"])
def test_device_map_of_the_coral_uint8_model_imports_no_tensorflow(tmp_path, method):
    if not CORAL.is_file():
        pytest.skip("../shared/data/pretrained is absent")
    code = DEVICE_ONLY.format(model=str(CORAL), image=str(PRETRAINED / "cat.bmp"), out=str(tmp_path),
                              labels=str(PRETRAINED / "imagenet_labels.txt"), method=method)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "cat" in done.stdout
    summary = json.loads((tmp_path / "explain.json").read_text())
    row = summary["images"][0]
    assert row["evaluations"] == (225 if method == "occlusion" else 100)
    # the map looks at the cat (the lower middle of cat.bmp), not the red curtain at the top left
    y, x = row["centre_of_mass_yx"]
    assert 50 < y < 115 and 35 < x < 95, row["centre_of_mass_yx"]
    with Image.open(row["png"]) as png:
        assert png.size[0] > 800


def test_device_side_modules_import_no_tensorflow():
    """Nor the workstation jobs (the re-cut's layering: the device side never imports train/ or export/ jobs)."""
    code = ("import sys, edgecls.explain, edgecls.explain.occlusion, edgecls.explain.divergence, "
            "edgecls.explain.render, edgecls.explain.job, edgecls.cli; "
            "heavy = {'tensorflow', 'keras', 'edgecls.train.job', 'edgecls.train.model', 'edgecls.export.job', "
            "'edgecls.export.convert', 'edgecls.export.analyses', 'edgecls.explain.gradcam'}; "
            "assert not heavy & set(sys.modules), sorted(heavy & set(sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------- the command
def test_explain_command_maps_images_and_reports_bad_ones(models, tmp_path, cli):
    for name in ("top", "left"):
        Image.fromarray(quad_image(name)).save(tmp_path / f"{name}.png")
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    out = tmp_path / "maps"
    result = cli("explain", models.quad_float_meta, tmp_path / "top.png", tmp_path / "left.png",
                 tmp_path / "broken.png", "--out", out, "--json")
    assert result.code == 1, result.err  # one image failed: an error row, the rest done
    summary = json.loads(result.out)
    rows = {Path(row["image"]).name: row for row in summary["images"]}
    assert rows["top.png"]["label"] == "top" and rows["left.png"]["label"] == "left"
    assert "error" in rows["broken.png"]
    assert (out / "top-occlusion.png").is_file() and (out / "explain.json").is_file()
    assert json.loads((out / "explain.json").read_text())["failed"] == 1


@pytest.mark.parametrize("args, needle", [
    (["--method", "gradcam"], "needs the Keras model"),
    (["--method", "sideways"], "unknown method 'sideways'"),
])
def test_explain_command_bad_input(models, tmp_path, cli, args, needle):
    Image.fromarray(quad_image("top")).save(tmp_path / "top.png")
    result = cli("explain", models.quad_float_meta, tmp_path / "top.png", "--out", tmp_path / "o", *args)
    assert result.code == 2 and needle in result.err and "Traceback" not in result.err


def test_explain_writes_beside_the_model_and_never_replaces_an_earlier_result(models, tmp_path, cli, monkeypatch):
    import shutil

    model = tmp_path / "m" / "quad.tflite"
    model.parent.mkdir()
    shutil.copy(models.quad_float_meta, model)
    for name in ("top", "left"):
        Image.fromarray(quad_image(name)).save(tmp_path / f"{name}.png")
    monkeypatch.chdir(tmp_path)  # nothing may land in the current folder
    first = cli("explain", model, tmp_path / "top.png", "--json")
    second = cli("explain", model, tmp_path / "left.png", "--json")
    assert first.code == second.code == 0, (first.err, second.err)
    assert json.loads(first.out)["summary_file"] == str(model.parent / "quad-explain" / "explain.json")
    assert json.loads(second.out)["summary_file"] == str(model.parent / "quad-explain-2" / "explain.json")
    kept = json.loads((model.parent / "quad-explain" / "explain.json").read_text())
    assert [Path(row["image"]).name for row in kept["images"]] == ["top.png"]  # the first result is intact
    assert not (tmp_path / "explain").exists()
    # an explicit --out that holds a result is refused, unless --force
    again = cli("explain", model, tmp_path / "left.png", "--out", model.parent / "quad-explain")
    assert again.code == 2 and "--force" in again.err
    forced = cli("explain", model, tmp_path / "left.png", "--out", model.parent / "quad-explain", "--force")
    assert forced.code == 0, forced.err
    replaced = json.loads((model.parent / "quad-explain" / "explain.json").read_text())
    assert [Path(row["image"]).name for row in replaced["images"]] == ["left.png"]


def test_explain_with_no_image_is_refused_before_anything_is_loaded_or_written(models, tmp_path, cli):
    result = cli("explain", models.quad_float_meta, tmp_path / "missing.png")
    assert result.code == 2 and "no images to explain" in result.err and "missing.png" in result.err
    assert not any(p.name.endswith("-explain") for p in Path(models.quad_float_meta).parent.iterdir())


def test_explain_command_needs_model_or_dataset(cli):
    result = cli("explain")
    assert result.code == 2 and "--dataset RUN" in result.err


# ---------------------------------------------------------------------- bench --explain-flips, --dataset
@pytest.fixture(scope="module")
def digits_run(make_digits_run) -> Path:
    return make_digits_run(epochs=1, seed=2, export_modes=("float32", "int8"))


@pytest.mark.slow
def test_bench_explain_flips_lists_every_flip_with_maps_and_divergence(digits_run, tmp_path, cli):
    from edgecls.bench.schema import check_report

    report_dir = tmp_path / "r"
    result = cli("bench", digits_run, "--explain-flips", "2", "--no-keras", "--runs", "5", "--warmup", "1",
                 "--threads", "1", "--no-memory", "--report", report_dir)
    assert result.code == 0, result.err
    report = json.loads((report_dir / "bench.json").read_text())
    check_report(report, "bench.json")
    int8 = next(m for m in report["models"] if m["mode"] == "int8")
    flipped_ids = sorted(str(f["id"]) for f in int8["vs_reference"]["flipped"])
    section = next(s for s in report["sections"] if s["key"].startswith("explain-flips") and "matrix" not in s["key"])
    kinds = [row[1] for row in section["rows"]]
    assert sorted(row[0] for row in section["rows"] if row[1] == "flip") == flipped_ids  # every flip, no other
    assert kinds.count("agree") == 2
    for record in section["data"]["images"]:
        assert record["divergence"]["layers"][0]["layer"] == "conv1"
        assert record["float"]["top"] and record["quantised"]["top"]
    for plot in section["plots"]:
        assert (report_dir / plot).is_file()
    matrix = next(s for s in report["sections"] if s["key"].endswith("-matrix"))
    assert sum(p["count"] for p in matrix["data"]["pairs"]) == len(flipped_ids)
    assert "Explained flips" in (report_dir / "bench.md").read_text()


def test_bench_explain_flips_bad_value(models, cli):
    result = cli("bench", models.rgb_int8_meta, "--explain-flips", "-1", "--data", "digits")
    assert result.code == 2 and "--explain-flips" in result.err


@pytest.mark.slow
def test_explain_dataset_maps_the_worst_test_images(digits_run, tmp_path, cli):
    result = cli("explain", "--dataset", digits_run, "--worst", "4", "--out", tmp_path, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    losses = [row["loss"] for row in summary["worst"]]
    assert len(losses) == 4 and losses == sorted(losses, reverse=True)
    assert summary["worst"][0]["map_predicted"]["settings"]["layer"] == "conv2"
    assert Path(summary["sheet"]).is_file()


def test_unmatched_tensors_are_paired_in_op_order_by_type_and_shape():
    """A third-party pair whose tensor names differ: ops pair up in order, by (op type, shape)."""
    from edgecls.explain.divergence import _match

    def op(index, name, kind, shape):
        return {"index": index, "name": name, "op_name": kind, "shape": shape}

    floats = [op(0, "a", "CONV_2D", (1, 8, 8, 4)), op(1, "b", "MAX_POOL_2D", (1, 4, 4, 4)),
              op(2, "logits", "FULLY_CONNECTED", (1, 3)), op(3, "out", "SOFTMAX", (1, 3))]
    quants = [op(0, "a", "CONV_2D", (1, 8, 8, 4)), op(1, "b_int8", "MAX_POOL_2D", (1, 4, 4, 4)),
              op(2, "x", "FULLY_CONNECTED", (1, 3)), op(3, "y", "SOFTMAX", (1, 3))]  # (QUANTIZE/DEQUANTIZE: skipped)
    pairs = _match(floats, quants)
    assert [(f["index"], q["index"], how) for f, q, how in pairs] == [(0, 0, "name"), (1, 1, "order"),
                                                                        (2, 2, "order"), (3, 3, "order")]


@pytest.mark.slow
def test_explain_a_run_directory_uses_gradcam(digits_run, tmp_path, cli):
    from edgecls.rundir import open_run

    images, labels = open_run(digits_run).images("test")
    Image.fromarray(images[0][..., 0]).save(tmp_path / "digit.png")
    result = cli("explain", digits_run, tmp_path / "digit.png", "--out", tmp_path / "maps", "--json")
    assert result.code == 0, result.err
    row = json.loads(result.out)["images"][0]
    assert row["method"] == "gradcam" and row["settings"]["layer"] == "conv2"
    assert (tmp_path / "maps" / "digit-gradcam.png").is_file()
    wrong = cli("explain", digits_run, tmp_path / "digit.png", "--layer", "nope", "--out", tmp_path / "maps2")
    assert wrong.code == 2 and "no layer 'nope'" in wrong.err
