"""Shared fixtures: tiny Keras models converted to .tflite once per session, and a CLI runner.

Models (all take raw 0..255 pixels: a Rescaling layer comes first, as in edgecls' own):
- `rgb`:  16x16x3 -> Conv2D -> pooling -> Dense(8) -> Dense(3, softmax), seeded random weights.
- `quad`: 8x8x1 grayscale, hand-set weights: class 0..3 = the top / bottom / left / right half
  is the bright one. It gives decisive, meaningful answers (orientation, first GIF frame...).
Each is converted with TFLiteConverter.from_concrete_functions (dynamic batch dimension) to
float32 and full int8 (int8 I/O, a representative dataset spanning 0..255), with and without
edgecls metadata, plus a few deliberately wrong models.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

RGB_LABELS = ["cat", "dog", "bird"]
# ../shared/data beside the checkout, or where EDGECLS_SHARED_DATA says (a clone elsewhere; as scripts/arm64-check)
SHARED_DATA = Path(os.environ.get("EDGECLS_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
# Fixtures that train or export a real run: a test using one (directly or through another fixture) is slow.
SLOW_FIXTURES = {"make_digits_run", "digits_run"}
# The files that take longest, handed to the two workers first (with --no-loadscope-reorder in pyproject's
# addopts): xdist otherwise queues files by their number of tests, and test_scripts.py (a dozen tests,
# ~2.5 minutes of smoke runs) started last and held one worker while the other had finished. The heavy and
# arm64 files (opt-in groups; .ci/run runs each in a session of its own) lead their groups likewise.
LONGEST_FIRST = ("tests/test_scripts.py", "tests/test_backbones.py", "tests/test_arm64.py",
                 "tests/test_bench_backbones.py", "tests/test_remote.py", "tests/faults/test_interruptions.py",
                 "tests/test_export.py", "tests/test_train.py", "tests/test_diagnose.py",
                 "tests/faults/test_options.py")


def pytest_collection_modifyitems(config, items):
    """The marker rules in one place: `slow` for tests that train or export (also set by hand on
    tests that run `edgecls train` in a subprocess), `shared_data` skipped without ../shared/data,
    `arm64` (the emulated aarch64 check, which downloads ~290 MB) opt-in with EDGECLS_ARM64=1, `heavy`
    (minutes each: full-size backbones, the all-routes benchmark) opt-in with EDGECLS_HEAVY=1."""
    no_data = pytest.mark.skip(reason=f"{SHARED_DATA} is not present")
    no_arm64 = pytest.mark.skip(reason="the emulated aarch64 check is opt-in: set EDGECLS_ARM64=1 "
                                "(.ci/run does; the first run downloads ~290 MB)")
    no_heavy = pytest.mark.skip(reason="a heavy test (minutes): opt-in with EDGECLS_HEAVY=1 (.ci/run does)")
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if "shared_data" in item.keywords and not SHARED_DATA.is_dir():
            item.add_marker(no_data)
        if "arm64" in item.keywords and os.environ.get("EDGECLS_ARM64") != "1":
            item.add_marker(no_arm64)
        if "heavy" in item.keywords and os.environ.get("EDGECLS_HEAVY") != "1":
            item.add_marker(no_heavy)
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: a file keeps its order
QUAD_LABELS = ["top", "bottom", "left", "right"]


def quad_image(which: str, size: int = 8, bright: int = 255, dark: int = 0) -> np.ndarray:
    """A uint8 (size, size) picture whose `which` half is bright: what `quad` recognises."""
    image = np.full((size, size), dark, np.uint8)
    half = size // 2
    region = {"top": (slice(0, half), slice(None)), "bottom": (slice(half, None), slice(None)),
              "left": (slice(None), slice(0, half)), "right": (slice(None), slice(half, None))}[which]
    image[region] = bright
    return image


def colour_folder(root: Path, per_class: int = 12, size: int = 16) -> Path:
    """Two classes of noisy PNGs, bluish and reddish, that even a random backbone's features tell apart."""
    from PIL import Image

    rng = np.random.default_rng(3)
    for name, channel in (("blue", 2), ("red", 0)):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
            pixels[..., channel] = rng.integers(150, 256, (size, size), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    return root


def _rgb_model(keras):
    keras.utils.set_random_seed(7)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, activation="relu")(x)  # 1,568 weights: enough for dynamic-range quantisation
    x = keras.layers.Dense(3)(x)
    return keras.Model(inputs, keras.layers.Softmax()(x))


def _quad_model(keras, softmax: bool = True):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Flatten()(x)
    dense = keras.layers.Dense(4)
    x = dense(x)
    if softmax:
        x = keras.layers.Softmax()(x)
    model = keras.Model(inputs, x)
    weights = np.stack([quad_image(name, bright=1).reshape(-1) for name in QUAD_LABELS], axis=1) * 0.5
    dense.set_weights([weights.astype(np.float32), np.zeros(4, np.float32)])
    return model


def _representative(shape, seed: int = 0):
    def gen():
        rng = np.random.default_rng(seed)
        # The full pixel range first, so that the int8 input is exactly scale 1, zero point -128.
        yield [np.zeros((1, *shape), np.float32)]
        yield [np.full((1, *shape), 255, np.float32)]
        for _ in range(30):
            yield [rng.integers(0, 256, (1, *shape)).astype(np.float32)]
        if shape == (8, 8, 1):
            for name in QUAD_LABELS:
                yield [quad_image(name).reshape(1, *shape).astype(np.float32)]
    return gen


def convert(tf, model, shape, mode: str = "float32", batch: int | None = None) -> bytes:
    """Convert a Keras model through a frozen concrete function (robust with Keras 3)."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec([batch, *shape], tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([convert_variables_to_constants_v2(concrete)])
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode in ("int8", "uint8"):  # (TF warns that input statistics were not given: not needed here)
        io_type = tf.int8 if mode == "int8" else tf.uint8
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(tuple(shape))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return converter.convert()


def edgecls_metadata(labels, height, width, color, mode, **extra) -> dict:
    from edgecls.runtime.metadata import METADATA_FORMAT

    return {
        "format": METADATA_FORMAT,
        "labels": list(labels),
        "input": {"height": height, "width": width, "color": color, "pixel_range": [0, 255]},
        "quantization": {"mode": mode, "backend": "converter", "calibration": {"samples": 32, "seed": 0}},
        "versions": {"edgecls": "test"},
        "source": {"run": None, "model": "tests/conftest.py"},  # an object, as export writes it
        **extra,
    }


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Paths of the test models (and the Keras `rgb` model for float agreement checks)."""
    tf = pytest.importorskip("tensorflow")
    import keras

    from edgecls.runtime.metadata import embed_metadata

    folder = tmp_path_factory.mktemp("models")
    # One folder per model: a labels.txt beside one model must not leak into another's tests.
    def write(name: str, data: bytes) -> Path:
        path = folder / name.split(".")[0] / name
        path.parent.mkdir()
        path.write_bytes(data)
        return path

    rgb, quad, quad_logits = _rgb_model(keras), _quad_model(keras), _quad_model(keras, softmax=False)
    rgb_float = convert(tf, rgb, (16, 16, 3))
    rgb_int8 = convert(tf, rgb, (16, 16, 3), "int8")
    quad_float = convert(tf, quad, (8, 8, 1))
    quad_int8 = convert(tf, quad, (8, 8, 1), "int8")

    not_image = keras.Sequential([keras.Input((10,)), keras.layers.Dense(3, activation="softmax")])
    bad_output = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3)])

    rgb_meta = edgecls_metadata(RGB_LABELS, 16, 16, "rgb", "float32")
    quad_meta = edgecls_metadata(QUAD_LABELS, 8, 8, "grayscale", "int8")
    paths = SimpleNamespace(
        folder=folder,
        rgb_keras=rgb,
        # third-party style: no metadata
        rgb_float=write("rgb_float.tflite", rgb_float),
        rgb_int8=write("rgb_int8.tflite", rgb_int8),
        rgb_uint8_fixed=write("rgb_uint8_fixed.tflite", convert(tf, rgb, (16, 16, 3), "uint8", batch=1)),
        rgb_float16=write("rgb_float16.tflite", convert(tf, rgb, (16, 16, 3), "float16")),
        rgb_dynamic=write("rgb_dynamic.tflite", convert(tf, rgb, (16, 16, 3), "dynamic")),
        quad_float=write("quad_float.tflite", quad_float),
        quad_logits=write("quad_logits.tflite", convert(tf, quad_logits, (8, 8, 1))),
        # edgecls' own: with metadata
        rgb_float_meta=write("rgb_float_meta.tflite", embed_metadata(rgb_float, rgb_meta)),
        rgb_int8_meta=write("rgb_int8_meta.tflite", embed_metadata(rgb_int8, {**rgb_meta, "quantization": {
            **rgb_meta["quantization"], "mode": "int8"}})),
        quad_int8_meta=write("quad_int8_meta.tflite", embed_metadata(quad_int8, quad_meta)),
        quad_float_meta=write("quad_float_meta.tflite", embed_metadata(quad_float, {**quad_meta, "quantization": {
            "mode": "float32"}})),
        # wrong on purpose
        not_image=write("not_image.tflite", convert(tf, not_image, (10,))),
        bad_output=write("bad_output.tflite", convert(tf, bad_output, (8, 8, 1))),
        truncated=write("truncated.tflite", rgb_int8[: len(rgb_int8) // 2]),
        not_tflite=write("not_tflite.tflite", b"this is a text file, not a model\n" * 4),
    )
    return paths


def _unit_range_model(keras):
    """8x8x1 grayscale like `quad`, but it takes inputs in [0, 1] (no Rescaling inside, as many
    third-party models): tanh saturates on raw 0..255 pixels, and then "left" and "right" come out
    as "top" (a tie, the lower index wins)."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    halves = keras.layers.Dense(4, activation="tanh")
    x = halves(x)
    scale = keras.layers.Dense(4)
    x = scale(x)
    model = keras.Model(inputs, keras.layers.Softmax()(x))
    masks = np.stack([quad_image(name, bright=1).reshape(-1) for name in QUAD_LABELS], axis=1) * 0.1
    halves.set_weights([masks.astype(np.float32), np.zeros(4, np.float32)])
    scale.set_weights([np.eye(4, dtype=np.float32) * 5, np.zeros(4, np.float32)])
    return model


@pytest.fixture(scope="session")
def unit_range(tmp_path_factory):
    """A float32 .tflite (no metadata, labels.txt beside it) that expects [0, 1] input, and its Keras model."""
    tf = pytest.importorskip("tensorflow")
    import keras

    model = _unit_range_model(keras)
    folder = tmp_path_factory.mktemp("unit-range")
    path = folder / "unit_float.tflite"
    path.write_bytes(convert(tf, model, (8, 8, 1)))
    (folder / "labels.txt").write_text("".join(f"{name}\n" for name in QUAD_LABELS))
    return SimpleNamespace(path=path, keras=model)


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `edgecls ARGS...` in-process through the real entry point (the console script's: the lean
    predict path, else the Typer app; main's error handling included); returns code, out, err."""
    from edgecls.entry import main

    def run(*args) -> SimpleNamespace:
        monkeypatch.setattr(sys, "argv", ["edgecls", *map(str, args)])
        with pytest.raises(SystemExit) as stopped:
            main()
        out, err = capsys.readouterr()
        code = stopped.value.code
        return SimpleNamespace(code=0 if code is None else code, out=out, err=err)

    return run


@pytest.fixture(autouse=True)
def _no_inherited_terminal_size(monkeypatch):
    """pytest-xdist's workers run with COLUMNS=80 and LINES=24 in their environment: output would be
    wrapped for a terminal there and not in a plain run. A test that wants a width sets COLUMNS itself."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)


@pytest.fixture(scope="session")
def make_digits_run(tmp_path_factory):
    """make_digits_run(epochs, seed, export_modes=()) -> a seed-CNN digits run directory (exported to
    RUN/export with 100 calibration images when `export_modes` names modes), trained once per session
    for each combination: the test files that need a real run share this one implementation."""
    made: dict = {}

    def make(epochs: int, seed: int, export_modes: tuple = ()) -> Path:
        key = (epochs, seed, tuple(export_modes))
        if key not in made:
            pytest.importorskip("tensorflow")
            from edgecls.export.job import ExportOptions, export
            from edgecls.rundir import open_run
            from edgecls.train.job import train
            from edgecls.train.options import resolve_options

            out = tmp_path_factory.mktemp(f"digits-e{epochs}-s{seed}") / "digits"
            train(resolve_options({"out": str(out), "epochs": epochs, "seed": seed}))
            if export_modes:
                export(open_run(out), ExportOptions(list(export_modes), calib_samples=100, force=True))
            made[key] = out
        return made[key]

    return make


def in_a_terminal(args: list[str], columns: int = 80, cwd: Path | None = None, stderr: bool = False,
                  raw: bool = False) -> str:
    """What `edgecls ARGS` shows in a real terminal (a pseudo-terminal) of `columns` columns, $COLUMNS unset:
    its stdout (and its stderr too with `stderr`), colours taken out; with `raw`, every byte as written
    (carriage returns, backspaces and cursor moves of progress bars kept)."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run([sys.executable, "-m", "edgecls", *args], stdout=follower,
                          stderr=follower if stderr else subprocess.DEVNULL, cwd=cwd, env=env, timeout=300)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal is closed and read to its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    import re

    text = b"".join(chunks).decode()
    if not raw:
        text = re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\r\n", "\n")
    assert done.returncode == 0, text
    return text
