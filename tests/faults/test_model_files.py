"""Bad model, labels and metadata files: one line naming the cause and exit 2 from every command that
reads them; the parsers of untrusted text (labels, metadata) return a well-formed result or a one-line
error, whatever they are given."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from faultkit import MODEL, class_folder, encoded, photo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgecls.errors import EdgeclsError
from edgecls.runtime.labels import parse_labels
from edgecls.runtime.metadata import embed_metadata, embed_metadata_bytes, parse_metadata_json, read_metadata
from edgecls.text import clean_text


def _three_outputs() -> bytes:
    tf = pytest.importorskip("tensorflow")
    import keras
    from conftest import convert

    inputs = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(2)(flat), keras.layers.Dense(3)(flat), keras.layers.Dense(4)(flat)])
    return convert(tf, model, (8, 8, 1))


def _non_image() -> bytes:
    tf = pytest.importorskip("tensorflow")
    import keras
    from conftest import convert

    return convert(tf, keras.Sequential([keras.Input((10,)), keras.layers.Dense(3, activation="softmax")]), (10,))


MODEL_CASES = [
    ("empty .tflite", lambda: b"", "empty file"),
    ("truncated .tflite", lambda: MODEL.read_bytes()[:5000], ""),
    (
        "random bytes",
        lambda: np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "not a .tflite",
    ),
    ("valid model with non-image input", _non_image, "not an NHWC image tensor"),
    ("valid model with 3 outputs", _three_outputs, "has 3 outputs"),
    (
        "malformed metadata entry",
        lambda: embed_metadata_bytes(MODEL.read_bytes(), b"{'labels': oops"),
        "malformed edgecls metadata",
    ),
    (
        "metadata that is not an object",
        lambda: embed_metadata_bytes(MODEL.read_bytes(), b"[1, 2, 3]"),
        "not a JSON object",
    ),
    (
        "metadata quantization a string",
        lambda: embed_metadata_bytes(MODEL.read_bytes(), b'{"quantization": "int8"}'),
        "malformed edgecls metadata: 'quantization' must be an object",
    ),
    (
        "metadata source a string",
        lambda: embed_metadata_bytes(MODEL.read_bytes(), b'{"source": "x"}'),
        "malformed edgecls metadata: 'source' must be an object",
    ),
    (
        "metadata with a 5000-digit integer",
        lambda: embed_metadata_bytes(MODEL.read_bytes(), b'{"n": ' + b"7" * 5000 + b"}"),
        "malformed edgecls metadata (not JSON",
    ),
    (
        "metadata pixel_range NaN",
        lambda: embed_metadata_bytes(MODEL.read_bytes(), b'{"input": {"pixel_range": [NaN, 255]}}'),
        "input.pixel_range[0] is NaN, not a finite number",
    ),
]


@pytest.mark.parametrize("name, make, needle", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
@pytest.mark.parametrize("command", ["predict", "info", "bench"])
def test_bad_model_files_get_one_line_and_exit_2(name, make, needle, command, tmp_path, cli):
    model = tmp_path / "bad.tflite"
    model.write_bytes(make())
    image = tmp_path / "x.png"
    image.write_bytes(encoded(photo(), "PNG"))
    result = {"predict": lambda: cli(command, model, image), "info": lambda: cli("info", model),
              "bench": lambda: cli("bench", model, "--data", tmp_path, "--no-memory")}[command]()
    if command == "info" and name in ("valid model with non-image input", "valid model with 3 outputs"):
        # info describes any model; it says it is not a classifier edgecls can run
        assert result.code == 0 and "not an image classifier" in result.out
        return
    assert result.code == 2, (result.out, result.err)
    assert needle in result.err and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1


@pytest.mark.parametrize("content, outcome", [
    ("a\nb\n", "wrong count"),
    ("\n".join(str(i) for i in range(10)) + "\n\n\n", "ok"),          # trailing empty lines
    ("\ufeffzero\n" + "\n".join(f"d{i}" for i in range(1, 10)), "bom"),   # a byte-order mark
    ("0: zero\n\n" + "\n".join(f"{i} d{i}" for i in range(1, 10)), "ok"),  # indexed, blank line inside
], ids=["wrong count", "empty lines", "BOM", "indexed with blank line"])
def test_labels_files(content, outcome, tmp_path, cli):
    labels = tmp_path / "labels.txt"
    labels.write_text(content, encoding="utf-8")
    image = tmp_path / "x.png"
    Image.new("L", (28, 28), 0).save(image)
    result = cli("predict", "--json", "--labels", labels, MODEL, image)
    if outcome == "wrong count":
        assert result.code == 2 and "labels" in result.err and "10" in result.err and "Traceback" not in result.err
    else:
        assert result.code == 0
        label = json.loads(result.out)["classes"][0]["label"]
        assert not label.startswith("\ufeff")
        if outcome == "bom":
            assert label in ["zero"] + [f"d{i}" for i in range(1, 10)]


def test_class_names_survive_labels_txt_or_are_refused(tmp_path):
    from edgecls.data import load_dataset
    from edgecls.errors import EdgeclsError
    from edgecls.runtime.labels import labels_text, parse_labels

    for labels in (["0 cat", "1 dog"], ["3 apples", "pears"], ["1", "0"], ["7: x", "8: y"], ["cat", "dog"],
                   ["1", "2 b"]):
        assert parse_labels(labels_text(labels)) == labels, labels
    for bad in (["a\nb", "c"], ["a\x1b[31m", "b"], [" a", "b"], ["a", ""]):
        with pytest.raises(EdgeclsError, match="rename"):
            labels_text(bad)
    data = class_folder(tmp_path / "data", classes=("new\nline", "ok"))
    with pytest.raises(EdgeclsError, match="rename the folder") as caught:
        load_dataset(str(data), 16, "rgb", cache_dir=tmp_path / "cache")
    assert "\n" not in str(caught.value).replace("\\n", "")


def test_model_inputs_that_are_dynamic_or_huge_are_refused():
    from edgecls.runtime.metadata import ModelFileError
    from edgecls.runtime.model import check_classifier

    out = {"shape": np.array([1, 10]), "dtype": np.float32}

    def inp(shape, signature=None):
        return {"shape": np.array(shape), "shape_signature": np.array(signature or shape), "dtype": np.float32}

    check_classifier([inp([1, 28, 28, 1], [-1, 28, 28, 1])], [out])  # a dynamic batch is fine
    for details, fragment in ((inp([1, 1, 1, 3], [-1, -1, -1, 3]), "dynamic"),
                              (inp([1, 1, 28, 3], [1, -1, 28, 3]), "dynamic"),
                              (inp([1, 30000, 30000, 3]), "over 8192"),
                              (inp([1, 10, 9000, 1]), "over 8192")):
        with pytest.raises(ModelFileError, match=fragment):
            check_classifier([details], [out])


def test_nan_scores_are_valid_json():
    from edgecls.console import _json_writer
    from edgecls.runtime import Class, Prediction

    buffer = io.StringIO()
    write = _json_writer(buffer, None, 2)
    for score in (float("nan"), float("inf"), -float("inf"), 0.5):
        write(Prediction("x.png", (Class(0, "a", score),)))
    scores = [json.loads(line)["classes"][0]["score"] for line in buffer.getvalue().splitlines()]
    assert scores == [None, None, None, 0.5]


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.text(max_size=400))
def test_labels_parser_returns_clean_names_or_one_line_error(text):
    labels = parsed_or_none(parse_labels, text)
    if labels is None:
        return
    assert labels and all(label == clean_text(label) for label in labels)
    assert all("\n" not in label and "\x1b" not in label for label in labels)


@SETTINGS
@given(st.binary(max_size=600))
def test_metadata_parser_accepts_only_json_objects(raw):
    meta = parsed_or_none(parse_metadata_json, raw)
    assert meta is None or isinstance(meta, dict)


def parsed_or_none(parse, text):
    """parse(text), or None when it refused the input with a one-line EdgeclsError."""
    try:
        return parse(text)
    except EdgeclsError as exc:
        assert "\n" not in str(exc)
        return None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@SETTINGS
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_any_json_object_survives_embedding_or_is_rejected(document):
    """Whatever JSON object is embedded reads back equal, or the validator rejects it cleanly."""
    try:
        expected = parse_metadata_json(json.dumps(document).encode())
    except EdgeclsError:
        return
    assert read_metadata(embed_metadata(MODEL.read_bytes(), document)) == expected
