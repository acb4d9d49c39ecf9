"""edgecls.runtime: backend discovery, loading and checking models, quantisation, top-k, labels,
streaming, and the promise that the device side never loads TensorFlow."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import QUAD_LABELS, RGB_LABELS, quad_image
from PIL import Image, PngImagePlugin

from edgecls.errors import EdgeclsError
from edgecls.runtime import (
    Class,
    Classifier,
    ImageError,
    ModelFileError,
    Prediction,
    find_backend,
)
from edgecls.runtime import interpreter as backends
from edgecls.runtime.metadata import embed_metadata, read_metadata
from edgecls.runtime.model import InputSpec
from edgecls.runtime.preprocess import load_image
from edgecls.runtime.quant import input_converter, output_converter

ROOT = Path(__file__).resolve().parents[1]


def random_pixels(n: int, shape=(16, 16, 3), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


# ----------------------------------------------------------------------------- backends
def test_litert_is_preferred_and_env_var_forces_a_backend(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    assert find_backend().name == "ai_edge_litert"
    monkeypatch.setenv(backends.ENV_VAR, "tensorflow")
    assert find_backend().name == "tensorflow"
    assert find_backend("litert").name == "ai_edge_litert"  # the argument beats the variable


def test_backend_fallback_order_and_errors(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)

    def missing():
        raise ImportError("No module named 'x'")

    stub = (type("StubInterpreter", (), {}), "9.9")
    monkeypatch.setitem(backends.LOADERS, "ai_edge_litert", missing)
    monkeypatch.setitem(backends.LOADERS, "tflite_runtime", lambda: stub)
    assert (find_backend().name, find_backend().version) == ("tflite_runtime", "9.9")
    monkeypatch.setitem(backends.LOADERS, "tflite_runtime", missing)
    monkeypatch.setitem(backends.LOADERS, "tensorflow", lambda: stub)
    assert find_backend().name == "tensorflow"
    monkeypatch.setitem(backends.LOADERS, "tensorflow", missing)
    with pytest.raises(EdgeclsError, match="no TFLite interpreter found"):
        find_backend()
    with pytest.raises(EdgeclsError, match=r"tflite_runtime \(--backend\) cannot be loaded"):
        find_backend("tflite-runtime")
    with pytest.raises(EdgeclsError, match=r"unknown interpreter backend .onnx. \(--backend\)"):
        find_backend("onnx")


def test_num_threads_is_always_passed(models, monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    seen = []

    class Recording(Interpreter):
        def __init__(self, **kwargs):
            seen.append(kwargs.get("num_threads"))
            super().__init__(**kwargs)

    monkeypatch.setitem(backends.LOADERS, "ai_edge_litert", lambda: (Recording, "test"))
    Classifier(models.rgb_float, backend="litert")
    Classifier(models.rgb_float, num_threads=3, backend="litert")
    assert seen == [os.cpu_count(), 3]


def test_device_side_never_imports_tensorflow_or_keras(models, tmp_path):
    """In a fresh process: import the runtime and the CLI, classify, and run predict/info/doctor."""
    image = tmp_path / "a.png"
    Image.fromarray(random_pixels(1, (40, 30, 3))[0]).save(image)
    code = f"""
import sys
import numpy as np
from edgecls.runtime import Classifier
clf = Classifier({str(models.rgb_int8_meta)!r})
assert clf.backend.name == "ai_edge_litert", clf.backend
clf.classify(np.zeros((16, 16, 3), np.uint8))
list(clf.classify_many([{str(image)!r}] * 3))
from edgecls.cli import main
for argv in (["predict", {str(models.rgb_int8_meta)!r}, {str(tmp_path)!r}, "--json"],
             ["info", {str(models.rgb_int8_meta)!r}], ["doctor"]):
    sys.argv = ["edgecls", *argv]
    try:
        main()
    except SystemExit as stop:
        assert stop.code in (0, None), (argv, stop.code)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print("HEAVY", heavy)
"""
    env = {k: v for k, v in os.environ.items() if k != backends.ENV_VAR}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout


def test_runtime_works_without_any_flatbuffer_schema_module(models):
    """tflite_runtime ships no schema module: metadata and classification must not need one."""
    code = f"""
import sys
for name in ("ai_edge_litert.schema_py_generated", "tensorflow", "tensorflow.lite.python.schema_py_generated"):
    sys.modules[name] = None  # importing these now fails
from edgecls.runtime import Classifier
import numpy as np
clf = Classifier({str(models.quad_int8_meta)!r})
print(clf.labels, clf.classify(np.zeros((8, 8, 1), np.uint8))[0].label in clf.labels)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{QUAD_LABELS} True" in done.stdout


# ----------------------------------------------------------------------------- loading and checking
def test_input_spec_labels_and_metadata_of_our_model(models):
    clf = Classifier(models.rgb_int8_meta)
    spec = clf.input_spec
    assert (spec.height, spec.width, spec.channels, spec.color) == (16, 16, 3, "rgb")
    assert (spec.dtype, spec.scale, spec.zero_point) == (np.int8, 1.0, -128)
    assert clf.labels == RGB_LABELS and clf.labels_source == "metadata"
    assert clf.metadata["quantization"]["mode"] == "int8"
    assert clf.num_classes == 3 and clf.max_batch > 1  # exported with a dynamic batch dimension


def test_third_party_model_without_metadata_gets_index_labels(models):
    clf = Classifier(models.rgb_uint8_fixed)
    assert clf.metadata is None and clf.labels == ["0", "1", "2"] and clf.labels_source == "index"
    assert clf.input_spec.dtype == np.uint8 and clf.max_batch == 1  # fixed batch: no batching


@pytest.mark.parametrize("name, message", [
    ("not_tflite", "not a .tflite model"),
    ("truncated", "cannot load it"),
    ("not_image", "not an NHWC image tensor"),
    ("bad_output", "not class scores [1, N]"),
])
def test_bad_models_give_one_line_reasons(models, name, message):
    with pytest.raises(ModelFileError) as raised:
        Classifier(getattr(models, name))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_missing_and_folder_model_paths(models, tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        Classifier(tmp_path / "nope.tflite")
    with pytest.raises(ModelFileError, match="is a folder"):
        Classifier(tmp_path)


def test_metadata_that_contradicts_the_tensor_is_refused(models, tmp_path):
    data = models.quad_int8_meta.read_bytes()
    meta = read_metadata(data)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(embed_metadata(data, {**meta, "input": {**meta["input"], "color": "rgb"}}))
    with pytest.raises(ModelFileError, match="metadata says input color 'rgb'"):
        Classifier(bad)


_GOOD = b'{"labels": ["a"], "input": {"height": 8, "width": 8, "color": "grayscale", "pixel_range": [0, 255]}, '


@pytest.mark.parametrize("raw, needle", [
    (b'{"quantization": "int8"}', "'quantization' must be an object"),
    (b'{"source": "x"}', "'source' must be an object"),
    (b'{"versions": [1]}', "'versions' must be an object"),
    (b'{"input": 3}', "'input' must be an object"),
    (b'{"output": 5}', "'output' must be a string"),
    (b'{"quantization": {"mode": 8}}', "quantization.mode must be a string"),
    (b'{"source": {"run": ["x"]}}', "source.run must be a string"),
    (b'{"source": {"model_sha256": 1}}', "source.model_sha256 must be a string"),
    (b'{"input": {"pixel_range": [NaN, 255]}}', "not JSON: input.pixel_range[0] is NaN, not a finite number"),
    (b'{"input": {"pixel_range": [0, Infinity]}}', "input.pixel_range[1] is Infinity, not a finite number"),
    (b'{"input": {"pixel_range": [0, 1e999]}}', "must be two finite numbers"),
    (b'{"input": {"pixel_range": [0, 1' + b'0' * 400 + b']}}', "must be two finite numbers"),
    (b'{"input": {"pixel_range": [1, 1]}}', "must be two finite numbers"),
    (b'{"input": {"pixel_range": ["0", 255]}}', "is not two numbers"),
    (b'{"input": {"pixel_range": [true, 255]}}', "is not two numbers"),
    (b'{"input": {"pixel_range": [0, 128, 255]}}', "is not two numbers"),
    (b'{"input": {"height": true}}', "input height"),
    (b'{"labels": [' + b'9' * 5000 + b']}', "labels[0] is an integer of 5000 digits"),
    (b'{"labels": "\xff"}', "not JSON"),
    (b'[' * 100000, "not JSON"),
])
def test_metadata_of_the_wrong_type_is_a_one_line_model_file_error(raw, needle):
    """Untrusted: every field the toolkit reads is checked, never an AttributeError further on."""
    from edgecls.runtime.metadata import parse_metadata_json

    with pytest.raises(ModelFileError, match="malformed edgecls metadata") as raised:
        parse_metadata_json(raw)
    assert needle in str(raised.value) and "\n" not in str(raised.value)
    assert parse_metadata_json(_GOOD + b'"output": "probabilities", "source": {"run": null}}')["labels"] == ["a"]


def test_a_nan_pixel_range_is_refused_even_past_the_parser(models):
    """The input spec checks the range itself (metadata may come from elsewhere than the parser)."""
    from edgecls.runtime.model import input_spec as _input_spec

    details = Classifier(models.quad_float).interpreter.get_input_details()[0]
    for bad in ([float("nan"), 255], [0, float("inf")], [0, 0]):
        with pytest.raises(ModelFileError, match="pixel_range"):
            _input_spec(details, {"input": {"pixel_range": bad}}, "m.tflite")
    assert _input_spec(details, {"input": {"pixel_range": [-1, 1]}}, "m").pixel_range == (-1.0, 1.0)


def test_info_and_bench_of_a_model_with_wrong_typed_metadata_are_one_line(models, tmp_path):
    from edgecls.bench.inputs import open_model
    from edgecls.runtime.inspect import inspect_model
    from edgecls.runtime.metadata import embed_metadata_bytes
    from edgecls.runtime.settings import ModelSettings

    for raw in (b'{"quantization": "int8"}', b'{"source": "x"}'):
        bad = tmp_path / "bad.tflite"
        bad.write_bytes(embed_metadata_bytes(models.quad_int8_meta.read_bytes(), raw))
        for read in (inspect_model, lambda path: open_model(path, ModelSettings()), Classifier):
            with pytest.raises(ModelFileError, match="malformed edgecls metadata"):
                read(bad)


# ----------------------------------------------------------------------------- labels
@pytest.mark.parametrize("text", [
    "0 top\n1 bottom\n2 left\n3 right\n",
    "0: top\n1: bottom\n2: left\n3: right\n",
    "top\nbottom\nleft\nright\n",
    "\ufeff3 right\n\n1 bottom\n0 top\n2 left\n",  # BOM, blank line, any order
])
def test_label_file_formats(models, tmp_path, text):
    labels = tmp_path / "names.txt"
    labels.write_text(text, encoding="utf-8")
    clf = Classifier(models.quad_float, labels=labels)
    assert clf.labels == QUAD_LABELS
    assert clf.classify(quad_image("left"))[0].label == "left"


def test_label_sources_in_order_of_precedence(models, tmp_path):
    beside = models.quad_float.with_name("labels.txt")
    beside.write_text("a\nb\nc\nd\n")
    try:
        assert Classifier(models.quad_float).labels == ["a", "b", "c", "d"]  # labels.txt beside
        explicit = tmp_path / "l.txt"
        explicit.write_text("w\nx\ny\nz\n")
        assert Classifier(models.quad_float, labels=explicit).labels == ["w", "x", "y", "z"]
    finally:
        beside.unlink()
    assert Classifier(models.quad_int8_meta).labels == QUAD_LABELS  # metadata


def test_labels_count_must_match_the_model(models, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    with pytest.raises(ModelFileError, match="2 labels but the model has 3 classes"):
        Classifier(models.rgb_float, labels=labels)


def test_control_characters_are_stripped_from_labels(models):
    clf = Classifier(models.rgb_float, labels=["c\x1b[31mat", "dog", "bird"])
    assert clf.labels[0] == "c[31mat"


# ----------------------------------------------------------------------------- quantisation
def test_int8_input_is_pixel_minus_128_exactly():
    spec = InputSpec(4, 4, 1, np.int8, 1.0, -128, (0.0, 255.0))
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    quantised = input_converter(spec)(pixels)
    assert quantised.dtype == np.int8
    assert np.array_equal(quantised.astype(np.int16), pixels.astype(np.int16) - 128)


def test_general_input_quantisation_uses_the_model_scale_and_zero_point():
    spec = InputSpec(4, 4, 1, np.uint8, 2.0, 10, (0.0, 255.0))  # q = round(v / 2) + 10
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    expected = np.clip(np.rint(np.arange(256) / 2.0) + 10, 0, 255)
    assert np.array_equal(input_converter(spec)(pixels).reshape(-1), expected)
    float_spec = InputSpec(4, 4, 1, np.float32, 0.0, 0, (-1.0, 1.0))
    converted = input_converter(float_spec)(pixels).reshape(-1)
    assert converted[0] == -1.0 and converted[-1] == pytest.approx(1.0) and converted.dtype == np.float32


def test_int8_output_is_dequantised_without_overflow():
    dequantise = output_converter(np.int8, 1 / 256, -128)
    raw = np.array([[-128, 0, 127]], np.int8)
    assert np.allclose(dequantise(raw), [[0.0, 128 / 256, 255 / 256]])  # 127 - (-128) would wrap in int8
    assert np.allclose(output_converter(np.uint8, 0.5, 200)(np.array([[0, 255]], np.uint8)), [[-100.0, 27.5]])


def test_int8_and_uint8_models_agree_with_the_float_model(models):
    pixels = random_pixels(24, seed=3)
    reference = Classifier(models.rgb_float).probabilities(pixels)
    for name in ("rgb_int8", "rgb_uint8_fixed"):
        quantised = Classifier(getattr(models, name)).probabilities(pixels)
        assert np.abs(quantised - reference).max() < 0.05, name
    quad = np.stack([quad_image(n)[:, :, None] for n in QUAD_LABELS])
    assert [c[0].label for c in map(Classifier(models.quad_int8_meta).classify, quad)] == QUAD_LABELS


def test_keras_model_and_its_float32_tflite_agree_on_top1(models):
    pixels = random_pixels(32, seed=5)
    keras_probs = models.rgb_keras.predict(pixels.astype(np.float32), verbose=0)
    tflite_probs = Classifier(models.rgb_float).probabilities(pixels)
    assert np.array_equal(keras_probs.argmax(1), tflite_probs.argmax(1))
    assert np.abs(keras_probs - tflite_probs).max() < 1e-4


# ----------------------------------------------------------------------------- scores and top-k
def test_top_k_is_sorted_and_probabilities_sum_to_one(models):
    for name in ("rgb_float", "rgb_int8"):
        clf = Classifier(getattr(models, name))
        classes = clf.classify(random_pixels(1)[0], top_k=3)
        assert [type(c) for c in classes] == [Class] * 3
        assert sorted(c.index for c in classes) == [0, 1, 2]
        scores = [c.score for c in classes]
        assert scores == sorted(scores, reverse=True)
        assert sum(scores) == pytest.approx(1.0, abs=0.01)
        rows = clf.probabilities(random_pixels(50, seed=1))  # more than one batch
        assert rows.shape == (50, 3) and np.allclose(rows.sum(axis=1), 1.0, atol=0.01)
    assert len(clf.classify(random_pixels(1)[0], top_k=10)) == 3  # never more than N


def test_softmax_applied_only_to_logits(models, tmp_path):
    images = np.stack([quad_image(n)[:, :, None] for n in QUAD_LABELS] + [np.full((8, 8, 1), 90, np.uint8)])
    probabilities = Classifier(models.quad_float).probabilities(images)
    logits_model = Classifier(models.quad_logits)
    assert logits_model.output_kind == "unknown"  # no SOFTMAX in the graph: decided from the scores
    assert np.allclose(logits_model.probabilities(images), probabilities, atol=1e-5)
    declared = tmp_path / "declared.tflite"
    declared.write_bytes(embed_metadata(models.quad_logits.read_bytes(), {"output": "logits"}))
    assert Classifier(declared).output_kind == "logits"
    assert Classifier(models.quad_float).output_kind == "probabilities"  # found the SOFTMAX op


def test_classify_accepts_path_pil_image_and_array(models, tmp_path):
    clf = Classifier(models.quad_int8_meta)
    picture = np.kron(quad_image("right"), np.ones((10, 10), np.uint8))  # 80x80, resized to 8x8
    path = tmp_path / "right.png"
    Image.fromarray(picture).save(path)
    for source in (path, str(path), Image.fromarray(picture), picture, picture[:, :, None]):
        assert clf.classify(source)[0].label == "right"
    with pytest.raises(ImageError, match="no such file"):
        clf.classify(tmp_path / "missing.png")


def test_exif_rotated_photo_is_classified_upright(models, tmp_path):
    clf = Classifier(models.quad_int8_meta)
    upright = Image.fromarray(np.kron(quad_image("top"), np.ones((12, 8), np.uint8))).convert("RGB")  # 96x64
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways writes
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    tagged, untagged = tmp_path / "tagged.jpg", tmp_path / "untagged.jpg"
    stored.save(tagged, exif=exif, quality=95)
    stored.save(untagged, quality=95)
    assert clf.classify(untagged)[0].label == "left"  # the stored pixels really are sideways
    assert clf.classify(tagged)[0].label == "top"


XMP_ORIENTATION_6 = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
                     b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/>'
                     b"</rdf:RDF></x:xmpmeta>")


def _png_text(key: str, value: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(key, value)
    return info


@pytest.mark.parametrize("name, save", [
    ("exif.jpg", lambda image, path, exif: image.save(path, exif=exif, quality=95)),
    ("xmp.jpg", lambda image, path, exif: image.save(path, xmp=XMP_ORIENTATION_6, quality=95)),
    ("exif.png", lambda image, path, exif: image.save(path, exif=exif)),
    ("exif.webp", lambda image, path, exif: image.save(path, exif=exif, lossless=True)),
    ("xmp.png", lambda image, path, exif: image.save(path, pnginfo=_png_text("XML:com.adobe.xmp",
                                                                             XMP_ORIENTATION_6.decode()))),
    ("raw-profile.png", lambda image, path, exif: image.save(path, pnginfo=_png_text(  # ImageMagick's EXIF in text
        "Raw profile type exif", f"\nexif\n{len(exif.tobytes())}\n{exif.tobytes().hex()}"))),
    ("tag.tif", lambda image, path, exif: image.save(path, tiffinfo={0x0112: 6})),
])
def test_orientation_is_read_wherever_pillow_keeps_it(tmp_path, name, save):
    # Upright: a bright top half over a dark bottom half. Stored sideways, with the orientation that
    # turns it back in each place a format keeps it (load_image skips the EXIF parse when none is there).
    upright = np.zeros((64, 96, 3), np.uint8)
    upright[:32] = 230
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / name
    save(Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90), path, exif)
    pixels = load_image(path, (64, 96), "rgb").astype(int)
    assert pixels[:32].mean() > 200 and pixels[32:].mean() < 30, name


def test_a_pil_image_whose_orientation_a_caller_set_is_turned_upright():
    upright = np.zeros((64, 96, 3), np.uint8)
    upright[:32] = 230
    image = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    image.getexif()[0x0112] = 6  # no EXIF bytes in info: only the Exif object says so
    pixels = load_image(image, (64, 96), "rgb").astype(int)
    assert pixels[:32].mean() > 200 and pixels[32:].mean() < 30


# ----------------------------------------------------------------------------- many images
def test_classify_many_keeps_order_and_turns_bad_images_into_error_rows(models, tmp_path):
    clf = Classifier(models.quad_int8_meta)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a jpeg")
    names = ["top", "left", "bottom", "right"] * 5
    sources = [quad_image(n) for n in names]
    sources.insert(7, bad)
    sources.insert(13, Prediction("missing-argument", error="no such file or folder"))
    results = list(clf.classify_many(sources, batch_size=4, workers=3))
    assert len(results) == len(sources)
    assert results[7].source == bad and "not an image" in results[7].error and not results[7].ok
    assert results[13].source == "missing-argument" and results[13].error == "no such file or folder"
    good = [r for r in results if r.ok]
    assert [r.classes[0].label for r in good] == names


def test_batched_and_single_scores_are_the_same(models):
    clf = Classifier(models.rgb_int8)
    pixels = random_pixels(37, seed=9)
    batched = [p.classes[0] for p in clf.classify_many(list(pixels), batch_size=16, workers=1)]
    single = [clf.classify(p)[0] for p in pixels]
    assert [c.index for c in batched] == [c.index for c in single]
    assert np.allclose([c.score for c in batched], [c.score for c in single], atol=1e-6)


def test_classify_many_streams_an_endless_source(models):
    clf = Classifier(models.quad_float)
    endless = (quad_image("bottom") for _ in itertools.count())  # would never end if accumulated
    first = list(itertools.islice(clf.classify_many(endless, batch_size=8, workers=2), 20))
    assert len(first) == 20 and {p.classes[0].index for p in first} == {QUAD_LABELS.index("bottom")}
    missing = (Path("/nonexistent/edgecls.png") for _ in itertools.count())  # no batch ever fills
    errors = list(itertools.islice(clf.classify_many(missing, batch_size=8, workers=2), 5))
    assert [p.ok for p in errors] == [False] * 5


def test_probabilities_rejects_a_batch_of_the_wrong_shape(models):
    clf = Classifier(models.rgb_float)
    with pytest.raises(EdgeclsError, match=r"expected a uint8 batch of shape \(B, 16, 16, 3\)"):
        clf.probabilities(np.zeros((2, 8, 8, 3), np.uint8))
    assert clf.probabilities(np.zeros((0, 16, 16, 3), np.uint8)).shape == (0, 3)
