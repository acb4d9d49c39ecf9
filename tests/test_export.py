"""`edgecls export`: conversion in every mode, exact input quantisation, metadata, the device-side
check and its gate, both quantiser backends, and bad input through the real CLI entry point."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow  # every test here converts models with TensorFlow

from edgecls.errors import EdgeclsError  # noqa: E402
from edgecls.export.convert import (  # noqa: E402
    ConversionError,
    check_converted,
    convert,
    representative_images,
    saved_model,
)
from edgecls.export.job import ExportOptions, export  # noqa: E402
from edgecls.export.modes import parse_modes  # noqa: E402
from edgecls.rundir import open_run  # noqa: E402
from edgecls.runtime.classify import Classifier  # noqa: E402
from edgecls.runtime.metadata import METADATA_FORMAT, read_metadata  # noqa: E402


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def digits_run(make_digits_run) -> Path:
    """A seed-CNN run on digits, two epochs (a few seconds)."""
    return make_digits_run(epochs=2, seed=3)


@pytest.fixture(scope="session")
def exported(digits_run):
    """float32, int8 and uint8 by the TFLite converter, into RUN/export (the default)."""
    result = export(open_run(digits_run), ExportOptions(["float32", "int8", "uint8"], calib_samples=200))
    return result


@pytest.fixture(scope="session")
def litert_exported(digits_run, tmp_path_factory):
    pytest.importorskip("ai_edge_quantizer")
    out = tmp_path_factory.mktemp("litert")
    return export(open_run(digits_run), ExportOptions(["float32", "int8"], quantizer="litert", calib_samples=150,
                                                              out=out))


def tiny_model(extra=None, size: int = 12, classes: int = 3, seed: int = 0):
    """Raw pixels -> Rescaling -> Conv -> [extra layer] -> Dense softmax."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    if extra is not None:
        x = extra(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


def model_of(result, mode):
    return next(m for m in result.models if m.mode == mode)


def input_details(path: Path) -> dict:
    return Classifier(path).interpreter.get_input_details()[0]


# ---------------------------------------------------------------------- exact input quantisation
@pytest.mark.parametrize("mode, zero_point, dtype", [("int8", -128, np.int8), ("uint8", 0, np.uint8)])
def test_every_pixel_value_maps_to_its_own_integer(exported, mode, zero_point, dtype):
    details = input_details(exported.out_dir / f"model_{mode}.tflite")
    scale, zp = details["quantization"]
    assert details["dtype"] == dtype and scale == 1.0 and zp == zero_point
    info = np.iinfo(dtype)
    pixels = np.arange(256)
    quantised = np.clip(np.rint(pixels / scale) + zp, info.min, info.max)
    assert len(np.unique(quantised)) == 256
    assert np.array_equal(quantised, pixels + zero_point)


@pytest.mark.parametrize("quantizer", ["converter", "litert"])
def test_calibration_images_cannot_narrow_the_input_range(quantizer):
    """Calibration images that are all mid-grey would give a tiny input scale; the export still
    quantises 0..255 exactly, with either backend."""
    if quantizer == "litert":
        pytest.importorskip("ai_edge_quantizer")
    grey = np.full((8, 12, 12, 1), 100, np.uint8)
    with saved_model(tiny_model()) as saved:
        result = convert(saved, "int8", quantizer, grey)
    assert (result.io["input"]["scale"], result.io["input"]["zero_point"]) == (1.0, -128)
    assert result.io["input"]["shape_signature"][0] == -1  # dynamic batch: the runtime can batch
    images = representative_images(grey)
    assert images.min() == 0 and images.max() == 255 and grey.min() == 100  # the caller's array is untouched


def test_inexact_input_quantisation_is_refused():
    """A model whose input is not raw pixels (no [0, 255] range) cannot pass the exactness check."""
    import keras

    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    with saved_model(model) as saved:
        import tensorflow as tf

        from edgecls.export.convert import convert_tf

        # Calibrate on 0..1 inputs, as a model expecting pre-scaled input would be: scale 1/255.
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([np.random.rand(1, 12, 12, 1).astype(np.float32)] for _ in range(8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
        narrow = converter.convert()
        assert convert_tf(saved, "float32")  # the float model itself converts fine
    with pytest.raises(ConversionError, match="not exact"):
        check_converted(narrow, "int8")


# ---------------------------------------------------------------------- the files
def test_int8_is_small_and_agrees_with_the_float_model(exported):
    int8, float32 = model_of(exported, "int8"), model_of(exported, "float32")
    assert int8.size_bytes <= 0.30 * float32.size_bytes
    assert int8.size_bytes == (exported.out_dir / "model_int8.tflite").stat().st_size
    assert float32.agreement == pytest.approx(1.0, abs=0.01)
    assert int8.agreement >= 0.95
    assert abs(int8.accuracy - float32.accuracy) <= 0.03
    assert exported.passed and not exported.failing


def test_check_figures_are_the_device_runtimes(exported, digits_run):
    """Recompute the int8 accuracy independently with the runtime on the validation split."""
    source = open_run(digits_run)
    images, labels = source.images("val")
    probs = Classifier(exported.out_dir / "model_int8.tflite").probabilities(images)
    assert float(np.mean(probs.argmax(1) == labels)) == pytest.approx(model_of(exported, "int8").accuracy)
    report = json.loads((exported.out_dir / "export.json").read_text())
    assert report["format"] == "edgecls.export/1" and report["check"]["split"] == "val"
    assert report["check"]["images"] == len(labels)
    by_mode = {m["mode"]: m for m in report["models"]}
    assert set(by_mode) == {"float32", "int8", "uint8"}
    assert by_mode["int8"]["agreement"] == pytest.approx(model_of(exported, "int8").agreement, abs=1e-6)
    assert (
        by_mode["int8"]["sha256"] == hashlib.sha256((exported.out_dir / "model_int8.tflite").read_bytes()).hexdigest()
    )


def test_metadata_round_trip(exported, digits_run):
    source = open_run(digits_run)
    labels = (digits_run / "labels.txt").read_text().split()
    for mode in ("float32", "int8"):
        meta = read_metadata((exported.out_dir / f"model_{mode}.tflite").read_bytes())
        assert meta["format"] == METADATA_FORMAT
        assert meta["labels"] == labels
        assert meta["input"] == {"height": 28, "width": 28, "color": "grayscale", "pixel_range": [0, 255],
                                 "resize": "bilinear", "fit": "stretch"}
        assert meta["output"] == "probabilities"
        assert meta["quantization"]["mode"] == mode and meta["quantization"]["backend"] == "tflite-converter"
        assert meta["source"]["model_sha256"] == hashlib.sha256((digits_run / "model.keras").read_bytes()).hexdigest()
        assert meta["source"]["run"] == str(digits_run.resolve())
        assert set(meta["versions"]) >= {"edgecls", "tensorflow", "keras"}
        assert meta["created"].endswith("Z")
    calibration = read_metadata((exported.out_dir / "model_int8.tflite").read_bytes())["quantization"]["calibration"]
    assert calibration["samples"] == 200 and sum(calibration["per_class"].values()) == 200
    assert calibration["seed"] == source.seed and calibration["split"] == "train"
    assert min(calibration["per_class"].values()) >= 18  # stratified: 10 classes of ~20
    assert (exported.out_dir / "labels.txt").read_text().split() == labels
    assert (
        read_metadata((exported.out_dir / "model_float32.tflite").read_bytes())["quantization"]["calibration"] is None
    )


def test_calibration_comes_from_the_train_split_stratified_and_seeded(digits_run):
    source = open_run(digits_run)
    split = source.split()
    first, again = source.calibration(100), source.calibration(100)
    assert np.array_equal(first.indices, again.indices)
    assert set(first.indices) <= set(split.train) and len(set(first.indices)) == 100
    assert not set(first.indices) & (set(split.val) | set(split.test))
    counts = np.bincount(first.labels, minlength=10)
    share = np.bincount(source.dataset().labels[split.train], minlength=10) / len(split.train)
    assert np.all(np.abs(counts - 100 * share) <= 1)
    assert source.calibration(100, seed=1).indices.tolist() != first.indices.tolist()
    assert not first.warnings
    small = source.calibration(5)
    assert len(small.images) == 5 and any("fewer than 100" in w for w in small.warnings)
    assert any("missing" in w for w in small.warnings)  # 5 images cannot cover 10 classes
    everything = source.calibration(10**6)
    assert len(everything.images) == len(split.train)


def test_litert_quantizer_makes_a_working_int8_model(litert_exported, exported):
    int8 = model_of(litert_exported, "int8")
    assert int8.backend == "ai-edge-quantizer"
    assert int8.io["input"] == {"dtype": "int8", "shape_signature": [-1, 28, 28, 1], "scale": 1.0, "zero_point": -128}
    assert int8.io["output"]["dtype"] == "int8"
    assert int8.agreement >= 0.95
    assert int8.size_bytes <= 0.30 * model_of(litert_exported, "float32").size_bytes
    meta = read_metadata((litert_exported.out_dir / "model_int8.tflite").read_bytes())
    assert meta["quantization"]["backend"] == "ai-edge-quantizer"
    assert meta["quantization"]["io"] == {"input": "int8", "output": "int8"}
    assert "ai_edge_quantizer" in meta["versions"]
    # The float32 file of a litert export is still the converter's.
    assert model_of(litert_exported, "float32").backend == "tflite-converter"


def test_litert_quantizer_missing_says_how_to_install(monkeypatch, digits_run):
    from edgecls.export.convert import quantize_litert
    from edgecls.export.job import validate_options

    monkeypatch.setitem(sys.modules, "ai_edge_quantizer", None)  # import now fails
    with pytest.raises(EdgeclsError, match=r"pip install 'edgecls\[train\]'"):
        validate_options(ExportOptions(["int8"], quantizer="litert"))
    with pytest.raises(EdgeclsError, match=r"pip install 'edgecls\[train\]'"):
        quantize_litert(b"", "int8", np.zeros((1, 4, 4, 1), np.uint8))


def test_mobile_architecture_converts_in_every_mode():
    from edgecls.train.model import build_model

    model = build_model("mobile", (32, 32, 3), 4)
    calibration = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    sizes = {}
    with saved_model(model) as saved:
        for mode in ("float32", "float16", "dynamic", "int8", "uint8"):
            result = convert(saved, mode, "converter", calibration)
            sizes[mode] = len(result.content)
            assert result.io["input"]["shape_signature"] == [-1, 32, 32, 3]
    assert sizes["int8"] < 0.5 * sizes["float32"] and sizes["float16"] < 0.6 * sizes["float32"]


def test_an_op_left_in_float_is_named():
    """TensorFlow's converter silently keeps ops without an int8 kernel in float; we refuse."""
    import keras

    with saved_model(tiny_model(keras.layers.Activation("squareplus"))) as saved:
        assert convert(saved, "float32").content  # fine in float
        with pytest.raises(
            ConversionError, match=r"int8 export cannot be fully quantised: .* left SQUARE \("
        ) as caught:
            convert(saved, "int8", "converter", np.full((4, 12, 12, 1), 7, np.uint8))
    assert caught.value.exit_code == 1


def test_an_op_without_a_tflite_kernel_is_named():
    import keras

    with saved_model(tiny_model(keras.layers.Resizing(5, 5, interpolation="bicubic"))) as saved:
        with pytest.raises(ConversionError, match=r"ResizeBicubic have no TFLite builtin kernel"):
            convert(saved, "float32")


def test_parse_modes():
    assert parse_modes("int8,float32") == ["float32", "int8"]
    assert parse_modes(" INT8 , int8 ") == ["int8"]
    assert parse_modes("all") == ["float32", "float16", "dynamic", "int8", "uint8"]
    assert "uint8" not in parse_modes("all", "litert")
    for bad, message in (("int4", "unknown quantisation mode 'int4'"), ("", "empty"), (",", "empty")):
        with pytest.raises(EdgeclsError, match=message):
            parse_modes(bad)
    from edgecls.export.job import validate_options

    with pytest.raises(EdgeclsError, match="litert makes int8 input and output only"):
        validate_options(ExportOptions(parse_modes("uint8", "litert"), quantizer="litert"))
    for bad, message in (({"calib_samples": 0}, "--calib-samples must be between 1 and"),
                         ({"min_agreement": 1.5}, "--min-agreement must be between 0 and 1"),
                         ({"quantizer": "onnx"}, "unknown quantizer 'onnx'"), ({"modes": []}, "no quantisation mode")):
        with pytest.raises(EdgeclsError, match=message):
            validate_options(ExportOptions(**{"modes": ["int8"], **bad}))


# ---------------------------------------------------------------------- the gate
def test_agreement_gate_fails_with_advice_and_writes_nothing(digits_run, tmp_path, cli, monkeypatch):
    import edgecls.export.job as export_module

    real = export_module.device_probabilities

    def scrambled(path, images):  # an int8 model that disagrees with the float one on most images
        probs = real(path, images)
        return np.roll(probs, 1, axis=1) if "int8" in path.name else probs

    monkeypatch.setattr(export_module, "device_probabilities", scrambled)
    out = tmp_path / "gated"
    result = cli("export", digits_run, "--out", out, "--calib-samples", "50")
    assert result.code == 1
    assert "below --min-agreement 0.95: nothing written" in result.err and "--calib-samples" in result.err
    assert "--quantizer litert" in result.err and "float16" in result.err and "Traceback" not in result.err
    assert "model_int8.tflite" in result.out  # the table is shown before the verdict
    assert not out.exists()
    forced = cli("export", digits_run, "--out", out, "--calib-samples", "50", "--force")
    assert forced.code == 0 and "written anyway" in forced.err
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "labels.txt", "model_float32.tflite",
                                                     "model_int8.tflite"]
    assert json.loads((out / "export.json").read_text())["check"]["passed"] is False


# ---------------------------------------------------------------------- bad input through the CLI
def assert_one_line_error(result, code: int, *needles: str) -> None:
    assert result.code == code, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert lines and lines[-1].startswith("edgecls: error: "), result.err
    assert "Traceback" not in result.err + result.out
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])


@pytest.fixture(scope="session")
def bad_models(tmp_path_factory, digits_run):
    import keras

    folder = tmp_path_factory.mktemp("bad-models")
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.Flatten()(x)
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x)).save(folder / "lambda.keras")
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Resizing(14, 14, interpolation="bicubic")(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.Flatten()(x)
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x)).save(folder / "bicubic.keras")
    (folder / "junk.keras").write_bytes(b"not a zip file at all\n")
    no_model = folder / "run-without-model"
    shutil.copytree(digits_run, no_model, ignore=shutil.ignore_patterns("model.keras", "export"))
    corrupt = folder / "run-corrupt-model"
    shutil.copytree(digits_run, corrupt, ignore=shutil.ignore_patterns("export"))
    data = (corrupt / "model.keras").read_bytes()
    (corrupt / "model.keras").write_bytes(data[: len(data) // 3])
    (folder / "empty-dir").mkdir()
    return folder


@pytest.mark.parametrize("case, code, needles", [
    ("missing", 2, ["does not exist"]),
    ("empty-dir", 2, ["is not a run directory"]),
    ("run-without-model", 2, ["incomplete", "model.keras missing"]),
    ("run-corrupt-model", 2, ["model.keras is corrupt"]),
    ("junk.keras --data digits", 2, ["junk.keras is corrupt"]),
    ("lambda.keras --data digits", 2, ["unsafe deserialisation", "Lambda"]),
    # --force: the untrained model is also a useless one, which export refuses before converting
    ("bicubic.keras --data digits --force", 1, ["TFLite converter failed", "ResizeBicubic"]),
    ("RUN --quant int4", 2, ["unknown quantisation mode 'int4'"]),
    ("RUN --calib-samples 0", 2, ["--calib-samples must be between 1 and"]),
    ("RUN --quantizer onnx", 2, ["unknown quantizer 'onnx'"]),
    ("RUN --out FILE/sub", 2, ["cannot write to", "is a file"]),
    ("RUN --out /proc/edgecls-export", 2, ["cannot write to --out /proc/edgecls-export"]),
])
def test_bad_input_gives_one_line_and_writes_nothing(case, code, needles, bad_models, digits_run, tmp_path, cli):
    first, *rest = case.split()
    target = digits_run if first == "RUN" else bad_models / first
    out = tmp_path / "out"
    args = [a.replace("FILE", str(digits_run / "labels.txt")) for a in rest]
    if "--out" not in args:
        args += ["--out", str(out)]
    before = sorted(p.name for p in digits_run.iterdir())
    result = cli("export", target, *args)
    assert_one_line_error(result, code, *needles)
    assert not out.exists()
    assert sorted(p.name for p in digits_run.iterdir()) == before
    assert not list(tmp_path.rglob("*.partial*"))


def test_failed_export_leaves_an_earlier_export_untouched(bad_models, tmp_path, cli, exported):
    out = tmp_path / "earlier"
    shutil.copytree(exported.out_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = cli("export", bad_models / "bicubic.keras", "--data", "digits", "--out", out, "--force")
    assert result.code == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
