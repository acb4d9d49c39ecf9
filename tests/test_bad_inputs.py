"""The bad-input catalogue: every hostile or odd input, generated here, and what each command
that can meet it must do. One row a case; add a row to extend it.

Documented behaviour: a bad image in a batch is an error row with its reason while the batch
goes on (exit 1 at the end); a bad model, labels file, dataset, option or config is one line on
stderr and exit 2; never a traceback; nothing half-written. Odd but valid images are classified.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecls.runtime.metadata import embed_metadata_bytes

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "digits-seed" / "model_int8.tflite"


# ----------------------------------------------------------------------------- image makers
def _photo(size=(48, 32), mode="RGB", seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)


def _encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def _corrupt_huffman() -> bytes:
    data = bytearray(_encoded(_photo(), "JPEG"))
    dht = data.index(b"\xff\xc4")
    data[dht + 5:dht + 40] = b"\xff" * 35  # code counts that no table can satisfy
    return bytes(data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _bomb() -> bytes:
    """A 30 kB-ish PNG whose header claims 20000 x 20000 pixels: Pillow's limit must refuse it."""
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 20001 * 4)  # a few rows; decoding never gets that far
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return _encoded(_photo((60, 20)), "JPEG", exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [Image.new("L", (20, 20), v) for v in (0, 128, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def _palette_transparent() -> bytes:
    image = _photo().convert("P")
    return _encoded(image, "PNG", transparency=0)


# name, file name, content maker, expected: "ok" or the error-row reason fragment
IMAGE_CASES = [
    ("zero-byte file", "empty.jpg", lambda: b"", "empty file"),
    ("text named .jpg", "text.jpg", lambda: b"hello, I am not a picture\n", "not an image"),
    ("text named .png", "text.png", lambda: b"\x00\x01 not a png", "not an image"),
    ("truncated JPEG", "cut.jpg", lambda: _encoded(_photo(), "JPEG")[:300], "truncated"),
    ("truncated PNG", "cut.png", lambda: _encoded(_photo(), "PNG")[:200], "truncated"),
    ("JPEG with a corrupt Huffman table", "huff.jpg", _corrupt_huffman, "corrupt"),
    ("decompression bomb", "bomb.png", _bomb, "decompression bomb"),
    ("CMYK JPEG", "cmyk.jpg", lambda: _encoded(_photo(mode="CMYK"), "JPEG"), "ok"),
    ("16-bit grayscale PNG", "deep.png", lambda: _encoded(Image.fromarray(
        np.arange(600, dtype=np.uint16).reshape(20, 30) * 100), "PNG"), "ok"),
    ("palette PNG with transparency", "pal.png", _palette_transparent, "ok"),
    ("LA image", "la.png", lambda: _encoded(_photo(mode="LA"), "PNG"), "ok"),
    ("RGBA image", "rgba.png", lambda: _encoded(_photo(mode="RGBA"), "PNG"), "ok"),
    ("animated GIF", "anim.gif", _animated_gif, "ok"),
    ("1x1 image", "dot.png", lambda: _encoded(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), "ok"),
    ("20000x1 image", "wide.png", lambda: _encoded(Image.new("L", (20000, 1), 200), "PNG"), "ok"),
    ("EXIF-rotated photo", "rotated.jpg", _exif_rotated, "ok"),
    ("space in the file name", "my photo.png", lambda: _encoded(_photo(), "PNG"), "ok"),
]


@pytest.mark.parametrize("name, filename, make, expected", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_predict_meets_each_bad_or_odd_image(name, filename, make, expected, tmp_path, cli):
    (tmp_path / filename).write_bytes(make())
    good = tmp_path / "good.png"
    good.write_bytes(_encoded(_photo(), "PNG"))
    result = cli("predict", "--json", MODEL, tmp_path)
    rows = {Path(r["file"]).name: r for r in map(json.loads, result.out.splitlines())}
    assert "Traceback" not in result.err and set(rows) == {filename, "good.png"}
    assert rows["good.png"].get("error") is None  # the batch went on
    if expected == "ok":
        assert result.code == 0 and rows[filename]["classes"], rows[filename]
    else:
        assert result.code == 1 and expected in rows[filename]["error"], rows[filename]
        assert "\n" not in rows[filename]["error"]


def test_non_utf8_file_name_is_an_ordinary_row(tmp_path, cli):
    name = os.fsdecode(b"caf\xe9-\x1b[31mred.png")  # not UTF-8, and a terminal escape
    (tmp_path / name).write_bytes(_encoded(_photo(), "PNG"))
    table = cli("predict", MODEL, tmp_path)
    assert table.code == 0 and "\x1b[31m" not in table.out and "caf" in table.out
    as_json = cli("predict", "--json", MODEL, tmp_path)
    assert as_json.code == 0 and json.loads(as_json.out)["classes"]


def test_non_utf8_names_in_error_rows_on_a_strict_utf8_stdout(tmp_path):
    """--json and --csv rows whose error reason quotes an undecodable name: written as \\xNN, no
    UnicodeEncodeError (PYTHONIOENCODING=utf-8 is strict, as a UTF-8 pipe in some setups is)."""
    import subprocess
    import sys

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "good.png").write_bytes(_encoded(_photo(), "PNG"))
    os.symlink(tmp_path / "gone.png", folder / os.fsdecode(b"dangling-\xe9.png"))  # "no such file: NAME"
    missing = os.fsdecode(b"missing-\xff.png")  # "no such file or folder: NAME"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    for fmt in ("--json", "--csv"):
        done = subprocess.run([sys.executable, "-m", "edgecls", "predict", fmt, str(MODEL), "photos", missing],
                              capture_output=True, cwd=tmp_path, env=env, timeout=120)
        out, err = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
        assert done.returncode == 1 and "Traceback" not in err and "internal error" not in err, err
        if fmt == "--json":
            errors = {row["file"]: row.get("error") for row in map(json.loads, out.splitlines())}
        else:
            import csv

            errors = {row["file"]: row["error"] for row in csv.DictReader(io.StringIO(out))}
        assert errors["missing-\\xff.png"] == "no such file or folder: missing-\\xff.png"
        assert "dangling-\\xe9.png" in errors["photos/dangling-\\xe9.png"]


def test_control_characters_in_names_never_reach_the_terminal(tmp_path, cli):
    (tmp_path / "x\x07y\x1bcz.png").write_bytes(b"not a picture")  # an error row that quotes nothing
    os.symlink(tmp_path / "gone.png", tmp_path / "d\x07e\x1b[31m.png")  # an error row that quotes the name
    (tmp_path / "good.png").write_bytes(_encoded(_photo(), "PNG"))
    result = cli("predict", MODEL, tmp_path, str(tmp_path / "no\x07such\x1b.png"))
    assert result.code == 1 and "xycz.png" in result.out and "de[31m.png" in result.out
    assert not {"\x07", "\x1b"} & set(result.out + result.err)


def test_symlink_loop_file_is_an_error_row(tmp_path, cli):
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    result = cli("predict", "--json", MODEL, tmp_path / "loop.png")
    assert result.code == 1 and "Traceback" not in result.err
    assert json.loads(result.out)["error"]


# ----------------------------------------------------------------------------- model and labels files
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
        "NaN is not a JSON number",
    ),
]


@pytest.mark.parametrize("name, make, needle", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
@pytest.mark.parametrize("command", ["predict", "info", "bench"])
def test_bad_model_files_get_one_line_and_exit_2(name, make, needle, command, tmp_path, cli):
    model = tmp_path / "bad.tflite"
    model.write_bytes(make())
    image = tmp_path / "x.png"
    image.write_bytes(_encoded(_photo(), "PNG"))
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


# ----------------------------------------------------------------------------- datasets, configs, .keras files
def _photos(root: Path, classes=("a", "b"), n=6) -> Path:
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / c / f"{i}.png").write_bytes(_encoded(_photo(seed=ord(c[0]) * 100 + i), "PNG"))
    return root


DATASET_CASES = [
    ("folder with an empty class", lambda r: (_photos(r), (r / "c").mkdir()), "has no images"),
    ("folder with one class", lambda r: _photos(r, classes=("only",)), "only one class"),
    ("empty folder", lambda r: r.mkdir(), "no class sub-folders"),
    ("class with too few images", lambda r: _photos(r, n=2), "usable images"),
    ("only undecodable files", lambda r: [((r / c).mkdir(parents=True), (r / c / "x.jpg").write_bytes(b"no"))
                                          for c in "ab"], "none of the 2 image files"),
]


@pytest.mark.parametrize("name, make, needle", DATASET_CASES, ids=[c[0] for c in DATASET_CASES])
def test_bad_datasets_for_train(name, make, needle, tmp_path, cli, monkeypatch):
    pytest.importorskip("tensorflow")
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    make(tmp_path / "data")
    result = cli("train", "--data", tmp_path / "data", "--out", tmp_path / "run", "--quiet", "--img-size", "16")
    assert result.code == 2 and needle in result.err and "Traceback" not in result.err, result.err
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run.partial*"))


def test_symlink_loop_in_a_dataset_folder_is_not_followed(tmp_path, monkeypatch):
    from edgecls.data import load_dataset

    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    root = _photos(tmp_path / "data")
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)
    (root / "b" / "self.png").symlink_to(root / "b" / "self.png")
    dataset = load_dataset(str(root), img_size=16, progress=False)
    assert len(dataset.labels) == 12  # the twelve images; the loops add nothing
    assert any(path.endswith("self.png") for path, _ in dataset.skipped)


CONFIG_CASES = [
    ("unknown key", "[train]\nepochs = 1\nwarp_speed = 9\n", "unknown key 'warp_speed'"),
    ("wrong type", "[train]\nepochs = 'ten'\n", "epochs must be int"),
    ("wrong type (bool for float)", "lr = true\n", "lr must be float"),
    ("not TOML", "epochs = = 3\n", "not valid TOML"),
]


@pytest.mark.parametrize("name, text, needle", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_files(name, text, needle, tmp_path, cli):
    (tmp_path / "c.toml").write_text(text)
    result = cli("train", "--config", tmp_path / "c.toml", "--out", tmp_path / "run")
    assert result.code == 2 and needle in result.err and "Traceback" not in result.err


def _keras_file(kind: str, path: Path) -> None:
    pytest.importorskip("tensorflow")
    import keras

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    if kind == "unsafe":
        x = keras.layers.Lambda(lambda t: t * 2.0)(x)
    x = keras.layers.Flatten()(x)
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x)).save(path)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:3000])


@pytest.mark.parametrize("kind, needle", [("truncated", "model.keras"), ("unsafe", "unsafe deserialisation")])
def test_bad_keras_files_for_export(kind, needle, tmp_path, cli):
    _keras_file(kind, tmp_path / "model.keras")
    result = cli("export", tmp_path / "model.keras", "--data", "digits", "--out", tmp_path / "out")
    assert result.code == 2 and needle in result.err and "Traceback" not in result.err, result.err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("argv, needle", [
    (["predict"], "Missing argument 'MODEL'"),
    (["predict", "--top-k", "x", "m.tflite", "a.png"], "'--top-k'"),
    (["train", "--epochs"], "requires an argument"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["bench", "compare"], "Missing argument 'REPORTS'"),
])
def test_usage_errors_are_one_line_too(argv, needle, cli):
    result = cli(*argv)
    assert result.code == 2 and needle in result.err and "--help" in result.err
    assert result.err.startswith("edgecls: error: ") and len(result.err.strip().splitlines()) == 1


@pytest.mark.slow  # trains
def test_config_out_key_is_honoured(tmp_path, cli, monkeypatch):
    pytest.importorskip("tensorflow")
    (tmp_path / "c.toml").write_text(f"[train]\nepochs = 1\nout = '{tmp_path / 'from-config'}'\n")
    result = cli("train", "--config", tmp_path / "c.toml", "--quiet")
    assert result.code == 0, result.err
    assert (tmp_path / "from-config" / "model.keras").is_file()


def test_truncated_idx_header_is_an_input_error(tmp_path, cli):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    result = cli("train", "--data", tmp_path, "--out", tmp_path / "run")
    assert result.code == 2 and "truncated" in result.err and "Traceback" not in result.err


def test_a_copied_dataset_folder_is_the_same_data(tmp_path, monkeypatch):
    import shutil

    from edgecls.data import load_dataset, load_split, make_split

    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    original = _photos(tmp_path / "a")
    dataset = load_dataset(str(original), img_size=16, progress=False)
    doc = make_split(dataset, 0.2, 0.2, seed=0).to_json(dataset, 0, (0.2, 0.2))
    copy = tmp_path / "b"
    shutil.copytree(original, copy)  # new modification times: a new cache, the same content
    load_split(doc, load_dataset(str(copy), img_size=16, progress=False))  # must not say "changed"
    (copy / "a" / "0.png").write_bytes(_encoded(_photo(seed=999), "PNG"))
    with pytest.raises(Exception, match="changed since the run was trained"):
        load_split(doc, load_dataset(str(copy), img_size=16, progress=False))


def test_a_concurrent_run_keeps_its_staging_folder(tmp_path):
    import subprocess
    import sys

    from edgecls.atomic import staged_dir

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        busy = tmp_path / f".run.partial-{sleeper.pid}-abc"
        busy.mkdir()
        dead = tmp_path / ".run.partial-999999999-abc"
        dead.mkdir()
        with staged_dir(tmp_path / "run") as staging:
            (staging / "x").write_text("1")
        assert busy.exists() and not dead.exists() and (tmp_path / "run" / "x").is_file()
    finally:
        sleeper.kill()


def test_refusals_that_need_no_model_or_data_come_before_any_heavy_import(tmp_path):
    """Issue 22: a missing --data folder took 5.8 s and export of a backbone run 5.5 s (TensorFlow loaded
    first). scripts/refusal_times.py runs each refusal in a fresh process: exit 2, one line, and neither
    TensorFlow, Keras nor matplotlib imported. The time bound is loose (idle: under 1 s; TensorFlow
    alone takes about 5), so a loaded machine does not fail it."""
    import subprocess
    import sys

    record = tmp_path / "refusals.json"
    script = Path(__file__).resolve().parents[1] / "scripts" / "refusal_times.py"
    done = subprocess.run([sys.executable, str(script), "--repeats", "1", "--json", str(record)],
                          capture_output=True, text=True, timeout=600)
    rows = json.loads(record.read_text())["cases"]
    assert len(rows) >= 12, done.stdout
    for row in rows:
        assert row["code"] == 2 and row["error_lines"] == 1, row
        assert row["error"].startswith("edgecls: error: ") and "Traceback" not in row["error"], row
        assert row["heavy"] == [], row
        assert row["median_s"] < 4.0, row
    backbone = next(row for row in rows if row["case"] == "export: a backbone run")
    assert "already in export/" in backbone["error"]
    assert done.returncode == 0, done.stdout
