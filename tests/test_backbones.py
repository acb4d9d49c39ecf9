"""Keras backbones (--arch mobilenet_v2 | mobilenet_v3_small | efficientnet_b0): options, the offline
ImageNet error, two training phases from a weights FILE, and a full int8 export of each.

Tests never download: --weights none, or a weights FILE the test writes; the ImageNet test points
the download at a closed local port.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_data import make_folder

from edgecls.errors import EdgeclsError
from edgecls.train.options import resolve_options

TINY = ["--img-size", "32", "--epochs", "1", "--batch-size", "16", "--quiet", "--augment", "none"]


def _edgecls(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgecls", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)


@pytest.fixture
def photos(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    return make_folder(tmp_path / "photos", per_class=8, size=(40, 40), formats=("png",))


@pytest.mark.parametrize("given, message", [
    ({"arch": "efficientnet_b0", "alpha": 0.5}, "--alpha is the width of seed, mobile, mobilenet_v2"),
    ({"arch": "mobilenet_v2", "alpha": 3.0}, "--alpha must be more than 0 and at most 2"),
    ({"arch": "mobilenet_v2", "weights": "no/such.h5"}, "use imagenet, none, or an existing weights file"),
    ({"arch": "seed", "weights": "no/such.h5"}, "--weights applies to the Keras backbones"),
    ({"arch": "mobilenet_v2", "fine_tune_epochs": -1}, "--fine-tune-epochs must be between 0 and"),
])
def test_backbone_options_are_checked(given, message):
    with pytest.raises(EdgeclsError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        resolve_options(given)


@pytest.mark.slow
def test_offline_imagenet_weights_give_one_line_naming_the_file_and_the_cache(photos, tmp_path):
    # A dead proxy makes the download fail at once, as it does offline (and never downloads online).
    dead = "http://127.0.0.1:9"
    done = _edgecls("train", "--data", photos, "--arch", "mobilenet_v2", "--alpha", "0.35", *TINY,
                    "--out", tmp_path / "run", env={"KERAS_HOME": str(tmp_path / "kh"), "HTTPS_PROXY": dead,
                                                    "https_proxy": dead, "HTTP_PROXY": dead, "http_proxy": dead})
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("edgecls: error:")]
    assert len(errors) == 1, done.stderr[-2000:]
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5" in errors[0]
    assert f"{tmp_path / 'kh' / 'models'}/" in errors[0] and "--weights none" in errors[0]
    assert "Traceback" not in done.stderr and "Downloading" not in done.stdout + done.stderr
    assert not (tmp_path / "run").exists()


def _export_int8(run, cli):
    exported = cli("export", run, "--quant", "int8", "--calib-samples", "16", "--force")
    assert exported.code == 0, exported.err[-2000:]
    report = json.loads((run / "export" / "export.json").read_text())
    (model,) = [m for m in report["models"] if m["mode"] == "int8"]
    return {"input": model["input"], "output": model["output"]}


@pytest.mark.slow
@pytest.mark.heavy  # a minute on 2 cores: with the other backbone exports, in .ci/run's heavy group
def test_a_weights_file_trains_frozen_then_fine_tunes_the_top_blocks_and_exports_int8(photos, tmp_path, cli):
    import keras

    from edgecls.train.backbones import backbone_of

    keras.utils.set_random_seed(3)
    backbone = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None, alpha=0.35)
    weights = tmp_path / "backbone.weights.h5"
    backbone.save_weights(weights)
    run = tmp_path / "run"
    trained = cli("train", "--data", photos, "--arch", "mobilenet_v2", "--alpha", "0.35", "--weights", weights,
                  *TINY, "--fine-tune-epochs", "1", "--patience", "0", "--out", run)
    assert trained.code == 0, trained.err[-2000:]
    assert "Phase frozen" in trained.err and "Phase fine-tune" in trained.err and "batch norm frozen" in trained.err
    with open(run / "history.csv") as handle:
        assert [row["phase"] for row in csv.DictReader(handle)] == ["frozen", "fine-tune"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert [p["name"] for p in metrics["phases"]] == ["frozen", "fine-tune"]
    assert metrics["phases"][1]["lr"] == pytest.approx(1e-4)  # --lr / 10

    trained_backbone = backbone_of(keras.saving.load_model(run / "model.keras"))
    # The bottom stays as loaded from the file (frozen in both phases), batch-norm statistics included
    # (inference mode); the top blocks moved in the fine-tuning phase.
    for name in ("Conv1", "bn_Conv1"):
        for got, want in zip(trained_backbone.get_layer(name).get_weights(), backbone.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    assert not np.array_equal(trained_backbone.get_layer("Conv_1").get_weights()[0],
                              backbone.get_layer("Conv_1").get_weights()[0])
    io = _export_int8(run, cli)
    assert (io["input"]["dtype"], io["input"]["scale"], io["input"]["zero_point"]) == ("int8", 1.0, -128)


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.parametrize("arch, extra", [("mobilenet_v3_small", ["--alpha", "0.75"]), ("efficientnet_b0", [])])
def test_a_backbone_from_scratch_exports_full_int8_with_exact_input(photos, tmp_path, cli, arch, extra):
    run = tmp_path / "run"
    trained = cli("train", "--data", photos, "--arch", arch, *extra, "--weights", "none", *TINY, "--out", run)
    assert trained.code == 0, trained.err[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert [p["name"] for p in metrics["phases"]] == ["train"]  # nothing pretrained to freeze
    io = _export_int8(run, cli)  # export itself checks that no op stayed float
    assert (io["input"]["dtype"], io["input"]["scale"], io["input"]["zero_point"]) == ("int8", 1.0, -128)
    assert io["output"]["dtype"] == "int8"
