"""What train, export and bench read back from a run: config files, run directories (a tampered split,
deeply nested JSON), .keras files, export sets (files of two exports mixed, names that point outside)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from faultkit import MODEL

from edgecls.errors import EdgeclsError

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


@pytest.mark.slow  # trains
def test_config_out_key_is_honoured(tmp_path, cli, monkeypatch):
    pytest.importorskip("tensorflow")
    (tmp_path / "c.toml").write_text(f"[train]\nepochs = 1\nout = '{tmp_path / 'from-config'}'\n")
    result = cli("train", "--config", tmp_path / "c.toml", "--quiet")
    assert result.code == 0, result.err
    assert (tmp_path / "from-config" / "model.keras").is_file()


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


def test_bench_refuses_an_export_folder_that_mixes_sets_or_points_outside(tmp_path):
    from edgecls.bench.inputs import open_model
    from edgecls.provenance import sha256_file
    from edgecls.rundir import exported_files
    from edgecls.runtime.settings import ModelSettings

    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    shutil.copy(MODEL, run / "export" / "model_int8.tflite")
    good = {"models": [{"file": "model_int8.tflite", "sha256": sha256_file(MODEL)}]}
    (run / "export" / "export.json").write_text(json.dumps(good))
    assert exported_files(run) == [run / "export" / "model_int8.tflite"]
    cases = [
        ({"models": [{"file": "model_int8.tflite", "sha256": "0" * 64}]}, "does not match"),
        ({"models": [{"file": str(MODEL), "sha256": sha256_file(MODEL)}]}, "not a file name in its folder"),
        ({"models": [{"file": "../../x.tflite", "sha256": "0" * 64}]}, "not a file name in its folder"),
        ({"models": [{"file": ["x"], "sha256": "0" * 64}]}, "not a file name"),
        ({"models": [{"file": "model_int8.tflite"}]}, "malformed"),
    ]
    for doc, fragment in cases:
        (run / "export" / "export.json").write_text(json.dumps(doc))
        with pytest.raises(EdgeclsError, match=fragment):
            exported_files(run)
    with pytest.raises(EdgeclsError, match="does not match"):  # bench checks the digest on the bytes it opens
        open_model(run / "export" / "model_int8.tflite", ModelSettings(), "0" * 64)


SPLIT_CASES = [  # what replaces a valid split.json's fields, the error fragment
    ({"test": [0, 1, 2]}, "overlap"),  # test images that are training images
    ({"train": [3, 4, 5], "test": [3, 4, 5]}, "overlap"),  # the train set is the test set
    ({"val": [0, 0]}, "overlap"),
    ({"test": [True, False]}, "integer indices"),
    ({"test": [1.0, 2.0]}, "integer indices"),
    ({"test": ["1"]}, "integer indices"),
    ({"test": [10**30]}, "does not have"),
    ({"test": [-1]}, "does not have"),
    ({"test": [[1, [2]]]}, "integer indices"),
    ({"test": "0-9"}, "integer indices"),
    ({"fingerprint": None}, "no fingerprint"),
    ({"fingerprint": ""}, "no fingerprint"),
    ({"fingerprint": "elsewhere"}, "changed since"),
    ({"train": []}, "train part is empty"),
]


@pytest.mark.parametrize("change, fragment", SPLIT_CASES, ids=[str(c[0])[:40] for c in SPLIT_CASES])
def test_a_tampered_split_is_refused_with_one_line(change, fragment):
    from edgecls.data import Dataset, load_split

    dataset = Dataset(np.zeros((12, 4, 4, 1), np.uint8), np.arange(12) % 2, ["a", "b"], "x", "grayscale",
                      fingerprint="fp")
    doc = {"fingerprint": "fp", "train": list(range(3, 12)), "val": [1], "test": [0, 2]}
    load_split(doc, dataset)  # the valid one loads
    with pytest.raises(EdgeclsError, match=fragment) as caught:
        load_split({**doc, **change}, dataset)
    assert "\n" not in str(caught.value)


def test_deeply_nested_run_files_are_one_line_errors(tmp_path):
    from edgecls.artifacts import read_json
    from edgecls.tomlio import read_toml

    (tmp_path / "split.json").write_text("[" * 100000 + "]" * 100000)
    (tmp_path / "deep.toml").write_text("a = " + "[" * 100000 + "]" * 100000)
    with pytest.raises(EdgeclsError, match="not valid JSON"):
        read_json(tmp_path / "split.json")
    with pytest.raises(EdgeclsError, match="not valid TOML"):
        read_toml(tmp_path / "deep.toml", "config file")
