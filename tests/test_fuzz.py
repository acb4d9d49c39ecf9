"""Property-based tests: preprocessing and the parsers of untrusted text never do anything but
return a well-formed result or raise a one-line EdgeclsError."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from edgecls.errors import EdgeclsError
from edgecls.runtime.labels import parse_labels
from edgecls.runtime.metadata import embed_metadata, parse_metadata_json, read_metadata
from edgecls.runtime.preprocess import load_image
from edgecls.text import clean_text

REFERENCE_INT8 = Path(__file__).resolve().parents[1] / "models" / "digits-seed" / "model_int8.tflite"


@pytest.fixture(scope="module")
def tiny_float_model_bytes() -> bytes:
    return REFERENCE_INT8.read_bytes()


MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "I", "I;16", "F", "HSV", "LAB"]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def pil_images(draw):
    mode = draw(st.sampled_from(MODES))
    width = draw(st.integers(1, 64))
    height = draw(st.integers(1, 64))
    seed = draw(st.integers(0, 2**32 - 1))
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    image = Image.fromarray(noise, "RGBA")
    if mode in ("I", "I;16", "F"):
        image = image.convert("L").convert(mode)
    elif mode == "P":
        image = image.convert("RGB").convert("P")
        if draw(st.booleans()):
            image.info["transparency"] = 0
    else:
        image = image.convert(mode)
    return image


@SETTINGS
@given(pil_images(), st.integers(1, 48), st.integers(1, 48), st.sampled_from(["grayscale", "rgb"]))
def test_any_pil_image_becomes_a_tensor_of_the_model_shape(image, height, width, color):
    pixels = load_image(image, (height, width), color)
    assert pixels.shape == (height, width, 1 if color == "grayscale" else 3) and pixels.dtype == np.uint8


@SETTINGS
@given(pil_images(), st.sampled_from(["PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"]), st.integers(1, 40))
def test_saved_files_of_any_mode_decode_or_fail_cleanly(tmp_path_factory, image, fmt, size):
    path = tmp_path_factory.mktemp("f") / f"x.{fmt.lower()}"
    try:
        image.save(path, fmt)
    except (OSError, ValueError, KeyError):
        return  # Pillow cannot write that mode in that format: nothing to decode
    pixels = load_image(path, (size, size), "rgb")
    assert pixels.shape == (size, size, 3)


@SETTINGS
@given(st.binary(max_size=2048), st.sampled_from([".jpg", ".png", ".gif", ".webp", ".bmp"]))
def test_random_bytes_give_an_image_error_not_a_crash(tmp_path_factory, content, suffix):
    path = tmp_path_factory.mktemp("b") / f"junk{suffix}"
    path.write_bytes(content)
    try:
        load_image(path, (8, 8), "grayscale")
    except EdgeclsError as exc:
        assert "\n" not in str(exc)


@SETTINGS
@given(st.integers(0, 2000))
def test_truncated_jpeg_gives_a_clean_error_or_pixels(tmp_path_factory, cut):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path = tmp_path_factory.mktemp("t") / "cut.jpg"
    path.write_bytes(buffer.getvalue()[:cut])
    try:
        assert load_image(path, (16, 16), "rgb").shape == (16, 16, 3)
    except EdgeclsError as exc:
        assert "\n" not in str(exc)


@SETTINGS
@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.integers(1, 20)),
                 elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_arrays_with_any_float_values_are_clipped_not_crashing(array):
    try:
        pixels = load_image(array, (5, 5), "grayscale")
    except EdgeclsError:
        return
    assert pixels.dtype == np.uint8


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
def test_any_json_object_survives_embedding_or_is_rejected(tiny_float_model_bytes, document):
    """Whatever JSON object is embedded reads back equal, or the validator rejects it cleanly."""
    try:
        expected = parse_metadata_json(json.dumps(document).encode())
    except EdgeclsError:
        return
    assert read_metadata(embed_metadata(tiny_float_model_bytes, document)) == expected
