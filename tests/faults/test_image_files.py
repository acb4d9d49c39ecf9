"""Bytes that are no image, or an odd one: every decoder meets them and either classifies the picture
or gives an error row with the reason (never a traceback, never a hang). Generated cases (a row each)
and property-based ones (hypothesis: any image mode and size, random bytes, truncated files)."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from faultkit import MODEL, POSTSCRIPT, chunk, encoded, photo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from edgecls.errors import EdgeclsError
from edgecls.runtime.preprocess import load_image


def _corrupt_huffman() -> bytes:
    data = bytearray(encoded(photo(), "JPEG"))
    dht = data.index(b"\xff\xc4")
    data[dht + 5:dht + 40] = b"\xff" * 35  # code counts that no table can satisfy
    return bytes(data)


def _bomb() -> bytes:
    """A 30 kB-ish PNG whose header claims 20000 x 20000 pixels: Pillow's limit must refuse it."""
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 20001 * 4)  # a few rows; decoding never gets that far
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return encoded(photo((60, 20)), "JPEG", exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [Image.new("L", (20, 20), v) for v in (0, 128, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def _palette_transparent() -> bytes:
    image = photo().convert("P")
    return encoded(image, "PNG", transparency=0)


IMAGE_CASES = [
    ("zero-byte file", "empty.jpg", lambda: b"", "empty file"),
    ("text named .jpg", "text.jpg", lambda: b"hello, I am not a picture\n", "not an image"),
    ("text named .png", "text.png", lambda: b"\x00\x01 not a png", "not an image"),
    ("truncated JPEG", "cut.jpg", lambda: encoded(photo(), "JPEG")[:300], "truncated"),
    ("truncated PNG", "cut.png", lambda: encoded(photo(), "PNG")[:200], "truncated"),
    ("JPEG with a corrupt Huffman table", "huff.jpg", _corrupt_huffman, "corrupt"),
    ("decompression bomb", "bomb.png", _bomb, "decompression bomb"),
    ("CMYK JPEG", "cmyk.jpg", lambda: encoded(photo(mode="CMYK"), "JPEG"), "ok"),
    ("16-bit grayscale PNG", "deep.png", lambda: encoded(Image.fromarray(
        np.arange(600, dtype=np.uint16).reshape(20, 30) * 100), "PNG"), "ok"),
    ("palette PNG with transparency", "pal.png", _palette_transparent, "ok"),
    ("LA image", "la.png", lambda: encoded(photo(mode="LA"), "PNG"), "ok"),
    ("RGBA image", "rgba.png", lambda: encoded(photo(mode="RGBA"), "PNG"), "ok"),
    ("animated GIF", "anim.gif", _animated_gif, "ok"),
    ("1x1 image", "dot.png", lambda: encoded(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), "ok"),
    ("20000x1 image", "wide.png", lambda: encoded(Image.new("L", (20000, 1), 200), "PNG"), "ok"),
    ("EXIF-rotated photo", "rotated.jpg", _exif_rotated, "ok"),
    ("space in the file name", "my photo.png", lambda: encoded(photo(), "PNG"), "ok"),
]


@pytest.mark.parametrize("name, filename, make, expected", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_predict_meets_each_bad_or_odd_image(name, filename, make, expected, tmp_path, cli):
    (tmp_path / filename).write_bytes(make())
    good = tmp_path / "good.png"
    good.write_bytes(encoded(photo(), "PNG"))
    result = cli("predict", "--json", MODEL, tmp_path)
    rows = {Path(r["file"]).name: r for r in map(json.loads, result.out.splitlines())}
    assert "Traceback" not in result.err and set(rows) == {filename, "good.png"}
    assert rows["good.png"].get("error") is None  # the batch went on
    if expected == "ok":
        assert result.code == 0 and rows[filename]["classes"], rows[filename]
    else:
        assert result.code == 1 and expected in rows[filename]["error"], rows[filename]
        assert "\n" not in rows[filename]["error"]


FORMAT_CASES = [  # file name, content, reason fragment
    ("eps.jpg", POSTSCRIPT, "not a supported image format (PostScript"),
    ("eps.png", b"\xc5\xd0\xd3\xc6" + b"\0" * 40, "not a supported image format (PostScript"),
    ("pdf.gif", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "not a supported image format (PDF"),
    ("psd.bmp", b"8BPS\x00\x01" + b"\0" * 40, "not a supported image format (PSD"),
    ("jp2.webp", b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\0" * 40, "not a supported image format (JPEG 2000"),
]


@pytest.mark.parametrize("name, content, reason", FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_unsupported_formats_never_reach_their_decoders(name, content, reason, tmp_path):
    from edgecls.runtime import ImageError, load_image

    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageError) as caught:
        load_image(tmp_path / name, (8, 8), "rgb")
    assert reason in str(caught.value) and "Ghostscript" not in str(caught.value)


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


@pytest.mark.parametrize("width", [120, 300])  # over the limit, and over twice it (where Pillow refuses as it opens)
def test_a_picture_over_the_pixel_limit_is_refused_in_one_wording(tmp_path, monkeypatch, width):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    path = tmp_path / "big.png"
    Image.new("L", (width, 100), 9).save(path)
    with pytest.raises(EdgeclsError) as refused:
        load_image(path, (28, 28), "grayscale")
    size = "120x100 = 12,000" if width == 120 else "30,000"
    assert str(refused.value) == (f"decompression bomb refused: {size} pixels is over the limit of 10,000 "
                                  "(PIL.Image.MAX_IMAGE_PIXELS)")
