"""The device-side commands through the real entry point: `edgecls predict`, `info`, `doctor`.

Bad input must give a one-line reason and the documented exit code, never a traceback."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import QUAD_LABELS, RGB_LABELS, quad_image
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def big(which: str, scale: int = 10) -> np.ndarray:
    """An 80x80 version of quad_image(which)."""
    return np.kron(quad_image(which), np.ones((scale, scale), np.uint8))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels: enough for Pillow's bomb check."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


def assert_one_line_error(result, code: int, message: str) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgecls: error:"), result.err
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.out + result.err


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A folder of awkward but valid images, each with the half that `quad` should find."""
    folder = tmp_path_factory.mktemp("photos")
    sub = folder / "nested" / "deeper"
    sub.mkdir(parents=True)
    Image.fromarray(big("top")).save(folder / "top.png")
    Image.fromarray(big("left")).convert("RGB").save(sub / "left.jpg", quality=95)
    # 16-bit PNG (I;16): right half at 65535. Clipping instead of scaling would make it all bright.
    Image.fromarray(big("right").astype(np.uint16) * 257).save(folder / "sixteen.png")
    # CMYK JPEG, bottom half white. Misread channels would light the top instead.
    cmyk = Image.new("CMYK", (80, 80), (0, 0, 0, 255))
    cmyk.paste((0, 0, 0, 0), (0, 40, 80, 80))
    cmyk.save(folder / "cmyk.jpg", quality=95)
    # Palette PNG whose bottom half is a transparent (black) entry: composited onto white.
    palette = Image.fromarray((big("bottom") > 0).astype(np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 0, 0, 0])
    palette.save(folder / "palette.png", transparency=1)
    # Animated GIF: the first frame is "left", the second "right".
    frames = [Image.fromarray(big(name)).convert("P") for name in ("left", "right")]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    (folder / "notes.txt").write_text("not an image, and not picked up from a folder")
    (folder / ".hidden.png").write_bytes(b"")
    return folder


EXPECTED = {"top.png": "top", "left.jpg": "left", "sixteen.png": "right", "cmyk.jpg": "bottom",
            "palette.png": "bottom", "animated.gif": "left"}


@pytest.fixture(scope="module")
def bad_photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    Image.fromarray(big("top")).save(folder / "good.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("hello, I am a text file with a .jpg name\n")
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "bomb.png").write_bytes(png_header_only(20000, 20000))  # over twice Pillow's limit
    (folder / "large.png").write_bytes(png_header_only(10000, 10000))  # between 1x and 2x the limit
    os.symlink(folder / "deleted-long-ago.jpg", folder / "dangling.jpg")
    return folder


BAD_REASONS = {"empty.jpg": "empty file (0 bytes)", "text.jpg": "not an image Pillow can decode",
               "truncated.jpg": "truncated or corrupt image", "bomb.png": "decompression bomb refused",
               "large.png": "decompression bomb refused", "dangling.jpg": "no such file"}


def json_rows(text: str) -> dict[str, dict]:
    rows = [json.loads(line) for line in text.splitlines()]
    return {Path(row["file"]).name: row for row in rows}


# ----------------------------------------------------------------------------- predict
def test_predict_awkward_valid_images_in_a_folder_recursively(models, photos, cli):
    result = cli("predict", models.quad_int8_meta, photos, "--json")
    assert result.code == 0, result.err
    rows = json_rows(result.out)
    assert set(rows) == set(EXPECTED)  # recursive; .txt and hidden files skipped
    assert {name: row["classes"][0]["label"] for name, row in rows.items()} == EXPECTED


def test_predict_bad_files_become_error_rows_and_exit_1(models, bad_photos, cli):
    result = cli("predict", models.quad_int8_meta, bad_photos, "--json")
    assert result.code == 1
    rows = json_rows(result.out)
    assert rows.pop("good.png")["classes"][0]["label"] == "top"  # the run went on past bad files
    assert set(rows) == set(BAD_REASONS)
    for name, reason in BAD_REASONS.items():
        assert reason in rows[name]["error"], (name, rows[name])
        assert "\n" not in rows[name]["error"]
    assert "Traceback" not in result.out + result.err


def test_predict_table_shows_error_rows_on_one_line(models, bad_photos, cli):
    result = cli("predict", models.quad_int8_meta, bad_photos)
    assert result.code == 1 and "Traceback" not in result.out + result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["score", "label", "file"]
    errors = [line for line in lines if line.startswith("error")]
    assert len(errors) == len(BAD_REASONS)
    assert any("empty.jpg: empty file (0 bytes)" in line for line in errors)
    assert "6 failed" in result.err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_predict_unreadable_file(models, tmp_path, cli):
    path = tmp_path / "locked.png"
    Image.fromarray(big("top")).save(path)
    path.chmod(0)
    result = cli("predict", models.quad_int8_meta, path, "--json")
    assert result.code == 1 and "permission denied" in json.loads(result.out)["error"]


def test_predict_csv_and_top_k(models, photos, cli):
    result = cli("predict", models.quad_int8_meta, photos / "top.png", photos / "cmyk.jpg", "--csv", "-k", "2")
    assert result.code == 0, result.err
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert [(Path(r["file"]).name, r["rank"]) for r in rows] == [
        ("top.png", "1"), ("top.png", "2"), ("cmyk.jpg", "1"), ("cmyk.jpg", "2")]
    assert rows[0]["label"] == "top" and rows[2]["label"] == "bottom"
    assert float(rows[0]["score"]) >= float(rows[1]["score"]) and rows[0]["error"] == ""


def test_predict_globs_files_and_missing_arguments(models, photos, cli):
    result = cli("predict", models.quad_int8_meta, f"{photos}/**/*.jpg", photos / "top.png",
                 photos / "nope.png", f"{photos}/*.webp", "--json")
    assert result.code == 1
    rows = [json.loads(line) for line in result.out.splitlines()]
    names = [Path(r["file"]).name for r in rows]
    assert names == ["cmyk.jpg", "left.jpg", "top.png", "nope.png", "*.webp"]  # '**' gives no duplicates
    assert "no such file or folder" in rows[3]["error"] and "no image matches" in rows[4]["error"]


def test_predict_names_a_missing_file_once_and_does_not_count_it_as_an_image(models, photos, tmp_path, cli):
    """'nosuch.png: no such file or folder: nosuch.png' and '2 images, 1 failed' for one image and one typo."""
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    result = cli("predict", models.quad_int8_meta, photos / "top.png", tmp_path / "nosuch.png",
                 tmp_path / "dangling.png")
    assert result.code == 1
    errors = [line.split(None, 1)[1] for line in result.out.splitlines() if line.startswith("error")]
    assert errors == [f"{tmp_path / 'nosuch.png'}: no such file or folder",
                      f"{tmp_path / 'dangling.png'}: no such file"]
    summary = result.err.strip().splitlines()[-1]
    assert summary.startswith("edgecls: 2 images, 1 failed, 1 not found (see the error rows), "), summary


def test_predict_labels_file_for_a_third_party_model(models, photos, tmp_path, cli):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{i}: {name.upper()}\n" for i, name in enumerate(QUAD_LABELS)))
    result = cli("predict", models.quad_float, photos / "top.png", "--json", "--labels", labels, "--threads", 1)
    assert result.code == 0, result.err
    assert json.loads(result.out)["classes"][0] == {"index": 0, "label": "TOP", "score": pytest.approx(1, abs=0.01)}


@pytest.mark.parametrize("model, extra, code, message", [
    ("not_tflite", [], 2, "not a .tflite model (no TFL3 flatbuffer identifier)"),
    ("truncated", [], 2, "cannot load it"),
    ("not_image", [], 2, "not an NHWC image tensor [1, H, W, 1|3]"),
    ("bad_output", [], 2, "not class scores [1, N]"),
    ("missing", [], 2, "no such model file"),
    ("rgb_float", ["--labels", "TWO_LABELS"], 2, "2 labels but the model has 3 classes"),
    ("rgb_float", ["--backend", "onnx"], 2, "unknown interpreter backend 'onnx'"),
    ("rgb_float", ["--json", "--csv"], 2, "choose one of --json and --csv"),
])
def test_predict_bad_model_or_usage_is_one_line_exit_2(models, photos, tmp_path, cli, model, extra, code, message):
    two = tmp_path / "two.txt"
    two.write_text("cat\ndog\n")
    path = getattr(models, model, tmp_path / "missing.tflite")
    result = cli("predict", path, photos / "top.png", *[str(two) if e == "TWO_LABELS" else e for e in extra])
    assert_one_line_error(result, code, message)


def test_predict_folder_with_no_images_is_exit_2(models, tmp_path, cli):
    (tmp_path / "readme.txt").write_text("no pictures here")
    result = cli("predict", models.rgb_float, tmp_path)
    assert_one_line_error(result, 2, "folder contains no images")


def test_predict_as_a_real_process(models, bad_photos):
    """The installed entry point: one-line error and exit 2 for a bad model, 1 for bad files."""
    run = [sys.executable, "-m", "edgecls", "predict"]
    done = subprocess.run(run + [str(models.truncated), str(bad_photos)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    done = subprocess.run(run + [str(models.quad_int8_meta), str(bad_photos)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert "XNNPACK" not in done.stderr  # the native runtime's INFO line is kept off the terminal


def test_help_documents_exit_codes(cli):
    result = cli("predict", "--help")
    assert result.code == 0 and "Exit codes: 0" in result.out and "2 bad model" in result.out


# ----------------------------------------------------------------------------- info
def test_info_json_on_our_int8_model(models, cli):
    result = cli("info", models.rgb_int8_meta, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    tensor = report["inputs"][0]
    assert (tensor["dtype"], tensor["scale"], tensor["zero_point"], tensor["per_channel"]) == ("int8", 1.0, -128, False)
    assert tensor["shape"] == [1, 16, 16, 3] and tensor["shape_signature"] == [-1, 16, 16, 3]
    assert report["outputs"][0]["dtype"] == "int8" and report["outputs"][0]["scale"] == pytest.approx(1 / 256)
    assert report["quantization"] == {"detected": "int8", "weights_per_channel": True, "declared": "int8"}
    assert report["ops"]["CONV_2D"] == 1 and report["ops"]["FULLY_CONNECTED"] == 2
    assert report["classifier"]["labels"] == RGB_LABELS and report["classifier"]["labels_source"] == "metadata"
    assert report["metadata"]["input"]["color"] == "rgb" and report["backend"]["name"] == "ai_edge_litert"
    assert report["size_bytes"] == models.rgb_int8_meta.stat().st_size


@pytest.mark.parametrize("name, mode", [("rgb_float", "float32"), ("rgb_float16", "float16"),
                                        ("rgb_dynamic", "dynamic"), ("rgb_uint8_fixed", "uint8")])
def test_info_detects_the_quantisation_of_third_party_models(models, cli, name, mode):
    result = cli("info", getattr(models, name), "--json")
    report = json.loads(result.out)
    assert result.code == 0 and report["metadata"] is None and report["quantization"]["detected"] == mode
    assert report["classifier"]["labels_source"] == "index"


def test_info_table_and_a_model_that_is_no_classifier(models, cli):
    result = cli("info", models.rgb_int8_meta)
    assert result.code == 0
    assert "-128" in result.out and "1.0" in result.out
    assert all(f"{i}  {label}" in result.out for i, label in enumerate(("cat", "dog", "bird")))  # one a line
    other = cli("info", models.not_image)
    assert other.code == 0 and "not an image classifier" in other.out
    assert_one_line_error(cli("info", models.not_tflite), 2, "not a .tflite model")


def test_info_labels_option_and_a_model_with_no_labels(models, tmp_path, cli):
    bare = cli("info", models.rgb_float)  # a third-party model: no metadata, no labels.txt beside it
    assert bare.code == 0, bare.err
    assert "none: predictions are class indices 0..2" in bare.out and "0  0" not in bare.out
    (tmp_path / "names.txt").write_text("apple\nbanana\ncherry\n")
    named = cli("info", models.rgb_float, "--labels", tmp_path / "names.txt", "--json")
    classifier = json.loads(named.out)["classifier"]
    assert classifier["labels"] == ["apple", "banana", "cherry"]
    assert classifier["labels_source"] == str(tmp_path / "names.txt")
    (tmp_path / "two.txt").write_text("apple\nbanana\n")
    assert_one_line_error(cli("info", models.rgb_float, "--labels", tmp_path / "two.txt"), 2,
                          "2 labels but the model has 3 classes")


# ----------------------------------------------------------------------------- doctor
def test_doctor_reports_backend_and_tensorflow(cli):
    result = cli("doctor", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["backend"]["name"] == "ai_edge_litert" and report["tensorflow_installed"] is True
    assert report["cpu_count"] == os.cpu_count() and report["numpy"] == np.__version__
    text = cli("doctor")
    assert text.code == 0 and "ai_edge_litert" in text.out


def test_doctor_warns_about_known_traps(monkeypatch, cli):
    from edgecls.runtime import doctor

    monkeypatch.setattr(doctor.platform, "machine", lambda: "armv7l")
    monkeypatch.setattr(doctor, "installed_backends",
                        lambda: {"ai_edge_litert": None, "tflite_runtime": "2.14.0", "tensorflow": None})
    monkeypatch.setattr(np, "__version__", "2.1.0")
    warnings = doctor.doctor_report()["warnings"]
    assert any("32-bit ARM" in w for w in warnings)
    assert any("tflite_runtime 2.14.0 is built for numpy 1" in w for w in warnings)
    monkeypatch.setenv("EDGECLS_BACKEND", "tflite_runtime")
    result = cli("doctor")
    assert result.code == 1 and "warning: 32-bit ARM" in result.out


# ----------------------------------------------------------------------------- review fixes
def test_predict_input_range_feeds_a_third_party_float_model_what_it_expects(unit_range, tmp_path, cli):
    """A float model without a Rescaling layer wants [0, 1]: --input-range 0,1 gives the Keras
    model's own answers; without it the raw 0..255 pixels saturate it."""
    for name in QUAD_LABELS:
        Image.fromarray(quad_image(name, bright=200, dark=30)).save(tmp_path / f"{name}.png")
    pixels = np.stack([quad_image(name, bright=200, dark=30) for name in QUAD_LABELS])[..., None]
    expected = unit_range.keras.predict(pixels.astype(np.float32) / 255, verbose=0)
    scaled = cli("predict", unit_range.path, tmp_path, "--json", "--input-range", "0,1")
    assert scaled.code == 0, scaled.err
    rows = json_rows(scaled.out)
    for i, name in enumerate(QUAD_LABELS):
        top = rows[f"{name}.png"]["classes"][0]
        assert top["label"] == name == QUAD_LABELS[int(expected[i].argmax())]
        assert top["score"] == pytest.approx(float(expected[i].max()), abs=1e-4)
    raw = json_rows(cli("predict", unit_range.path, tmp_path, "--json").out)
    assert raw["right.png"]["classes"][0]["label"] == "top"  # what the option is for
    assert "--input-range" in cli("predict", "--help").out


@pytest.mark.parametrize("value, message", [("1", "takes LO,HI"), ("a,b", "takes LO,HI"), ("nan,1", "finite"),
                                            ("1,1", "apart"), ("0,inf", "finite")])
def test_predict_bad_input_range_is_one_line(models, photos, cli, value, message):
    assert_one_line_error(cli("predict", models.quad_float, photos, f"--input-range={value}"), 2, message)


def test_classifier_input_range_overrides_the_metadata(models):
    from edgecls.errors import EdgeclsError
    from edgecls.runtime import Classifier

    assert Classifier(models.quad_float_meta).input_spec.pixel_range == (0.0, 255.0)
    assert Classifier(models.quad_float_meta, input_range=(-1, 1)).input_spec.pixel_range == (-1.0, 1.0)
    for bad in [(0, float("nan")), (1, 1), (0,), "0,1", (True, 2)]:
        with pytest.raises(EdgeclsError, match="input_range"):
            Classifier(models.quad_float, input_range=bad)


def test_doctor_shows_a_backend_name_from_the_environment_as_text(monkeypatch, cli):
    monkeypatch.setenv("EDGECLS_BACKEND", "[/]\x1b[31m")
    result = cli("doctor")
    assert result.code == 1 and "Traceback" not in result.out + result.err and "internal error" not in result.err
    assert "$EDGECLS_BACKEND=[/][31m" in result.out.replace("\n", "") and "\x1b" not in result.out


def test_info_of_a_model_with_a_non_utf8_name_on_a_strict_utf8_stdout(models, tmp_path):
    model = tmp_path / os.fsdecode(b"m\xff\x07.tflite")
    model.write_bytes(models.quad_int8_meta.read_bytes())
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # strict: a surrogate cannot be written
    as_json = subprocess.run([sys.executable, "-m", "edgecls", "info", "--json", model.name], capture_output=True,
                             env=env, cwd=tmp_path, timeout=120)
    assert as_json.returncode == 0, as_json.stderr.decode(errors="replace")
    assert json.loads(as_json.stdout.decode("utf-8"))["file"] == "m\\xff\x07.tflite"
    table = subprocess.run([sys.executable, "-m", "edgecls", "info", model.name], capture_output=True, env=env,
                           cwd=tmp_path, timeout=120)
    assert table.returncode == 0, table.stderr.decode(errors="replace")
    assert "m\\xff.tflite" in table.stdout.decode("utf-8") and b"\x07" not in table.stdout
