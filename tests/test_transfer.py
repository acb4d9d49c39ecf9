"""`edgecls train --backbone FILE.tflite` (edgecls.transfer): the embedding is found, the model is cut
and a head grafted on that LiteRT runs and that agrees with the numpy head, for uint8, int8 and
float backbones; the run directory works with info, predict and bench; bad input is one line, exit 2.

Tiny backbones come from the conftest `models` fixture (TensorFlow-converted once per session);
the real Coral MobileNet runs on a handful of ../shared/data images when it is present.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, colour_folder

from edgecls.reporter import Reporter

SHARED = SHARED_DATA
CORAL = SHARED / "pretrained" / "mobilenet_v1_0.5_160_quant.tflite"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))


def small_catsdogs(root: Path, per_class: int = 8) -> Path:
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for path in sorted((SHARED / "catsdogs" / name).iterdir())[:per_class]:
            shutil.copy(path, root / name / path.name)
    return root


# ---------------------------------------------------------------------- the embedding
@pytest.mark.shared_data
@pytest.mark.skipif(not CORAL.exists(), reason="../shared/data is not present")
def test_coral_embedding_is_the_average_pool_before_the_1x1_logits_conv():
    from edgecls.tflite.backbone import open_backbone

    backbone = open_backbone(CORAL)
    e = backbone.embedding
    assert (e.name, e.shape, e.dtype, e.zero_point) == ("MobilenetV1/Logits/AvgPool_1a/AvgPool", (1, 1, 1, 512),
                                                        "uint8", 0)
    assert e.scale > 0 and "CONV_2D" in e.chosen_by
    assert backbone.input_shape == (160, 160, 3) and backbone.output_dtype == "uint8"


def test_embedding_of_a_keras_classifier_is_the_input_of_its_last_dense(models):
    from edgecls.tflite.backbone import open_backbone

    backbone = open_backbone(models.rgb_int8)
    assert backbone.embedding.shape == (1, 8) and backbone.embedding.dtype == "int8"
    assert "FULLY_CONNECTED" in backbone.embedding.chosen_by


def test_embedding_tensor_option_picks_the_named_tensor(models):
    from edgecls.tflite.backbone import open_backbone

    found = open_backbone(models.rgb_float).embedding
    again = open_backbone(models.rgb_float, embedding_tensor=found.name).embedding
    assert again.index == found.index and again.chosen_by == "--embedding-tensor"


# ---------------------------------------------------------------------- cut and graft
@pytest.mark.parametrize("which, mode, dtype", [("rgb_int8", "int8", np.int8), ("rgb_uint8_fixed", "uint8", np.uint8),
                                                ("rgb_float", "float32", np.float32)])
def test_cut_and_graft_gives_a_model_litert_runs_that_agrees_with_the_numpy_head(models, tmp_path, which, mode, dtype):
    from edgecls.runtime import Classifier, read_metadata
    from edgecls.transfer.job import TransferOptions, train_with_backbone

    data = colour_folder(tmp_path / "data")
    result = train_with_backbone(TransferOptions(data=str(data), backbone=str(getattr(models, which)),
                                                 out=str(tmp_path / "run"), threads=1, epochs=60))
    assert result.model_file.name == f"model_{mode}.tflite"
    check = result.metrics["tflite"]
    assert check["agreement"] >= 0.99  # the TFLite head is the numpy head, quantised
    clf = Classifier(result.model_file, num_threads=1)
    assert clf.input_spec.dtype == dtype and clf.labels == ["blue", "red"]
    assert clf.interpreter.get_output_details()[0]["dtype"] == dtype  # the backbone's own I/O type
    meta = read_metadata(result.model_file.read_bytes())
    assert meta["quantization"]["mode"] == mode
    assert meta["source"]["backbone"]["sha256"] == hashlib.sha256(getattr(models, which).read_bytes()).hexdigest()
    assert meta["source"]["backbone"]["embedding"]["shape"] == [1, 8]
    # red against blue is easy even for random features: the written model must have learnt it
    assert (check["test_accuracy"] + check["val_accuracy"]) / 2 >= 0.75


def test_an_mlp_head_is_grafted_as_two_quantised_fully_connected_layers(models, tmp_path):
    from edgecls.tflite import graph
    from edgecls.transfer.job import TransferOptions, train_with_backbone

    result = train_with_backbone(TransferOptions(data=str(colour_folder(tmp_path / "data")), head="mlp", hidden=16,
                                                 backbone=str(models.rgb_int8), out=str(tmp_path / "run"),
                                                 threads=1, epochs=40))
    assert result.metrics["tflite"]["agreement"] >= 0.99
    model = graph.load_model(result.model_file.read_bytes())
    g = model.subgraphs[0]
    head_ops = [graph.op_name(model, op) for op in g.operators
                if graph.tensor_name(g.tensors[int(op.outputs[0])]).startswith("edgecls_head/")]
    assert head_ops == ["FULLY_CONNECTED", "FULLY_CONNECTED", "SOFTMAX"]
    hidden = next(t for t in model.subgraphs[0].tensors if graph.tensor_name(t) == "edgecls_head/dense_0/relu")
    assert graph.dtype_name(hidden) == "int8" and list(hidden.shape) == [1, 16]


def test_a_float_backbone_gets_a_float_head(models, tmp_path):
    from edgecls.tflite import graph
    from edgecls.transfer.job import TransferOptions, train_with_backbone

    result = train_with_backbone(TransferOptions(data=str(colour_folder(tmp_path / "data")),
                                                 backbone=str(models.rgb_float), out=str(tmp_path / "run"),
                                                 threads=1, epochs=30))
    model = graph.load_model(result.model_file.read_bytes())
    head = [t for t in model.subgraphs[0].tensors if graph.tensor_name(t).startswith("edgecls_head/")]
    assert head and all(graph.dtype_name(t) == "float32" for t in head)


def test_run_directory_keeps_the_contract_and_the_embedding_cache_is_reused(models, tmp_path):
    from edgecls.transfer.job import TransferOptions, train_with_backbone

    data = colour_folder(tmp_path / "data")
    logs: list[str] = []
    options = TransferOptions(data=str(data), backbone=str(models.rgb_int8), out=str(tmp_path / "run"), threads=1,
                              epochs=20, views=3)
    train_with_backbone(options, reporter=Reporter(logs.append, bars=False))
    run = tmp_path / "run"
    for name in ("labels.txt", "split.json", "metrics.json", "history.csv", "config.toml", "transfer.json",
                 "export/export.json", "export/labels.txt", "export/model_int8.tflite"):
        assert (run / name).is_file(), name
    header = (run / "history.csv").read_text().splitlines()[0]
    assert header == "epoch,phase,accuracy,loss,val_accuracy,val_loss"  # as the Keras route writes it
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"test_accuracy", "val_accuracy", "tflite"} <= set(metrics)
    assert metrics["train_embeddings"] == 3 * metrics["counts"]["train"]
    # where the test images came from, as the from-scratch route says it (issue 22), and how little they show
    assert metrics["test_source"].startswith(f"{metrics['counts']['test']} images drawn from all 24")
    assert any(line.startswith("Split: ") and metrics["test_source"] in line for line in logs)
    assert not any("from the cache" in line for line in logs)
    logs.clear()
    train_with_backbone(options, force=True, reporter=Reporter(logs.append, bars=False))
    assert any("from the cache" in line for line in logs)


def test_bench_of_the_bare_tflite_finds_its_run_and_uses_its_test_split(cli, models, tmp_path):
    from edgecls.transfer.job import TransferOptions, train_with_backbone

    result = train_with_backbone(TransferOptions(data=str(colour_folder(tmp_path / "data", per_class=16)),
                                                 backbone=str(models.rgb_int8), out=str(tmp_path / "run"),
                                                 threads=1, epochs=5))
    bench = cli("bench", result.model_file, "--runs", "2", "--warmup", "1", "--no-memory", "--threads", "1",
                "--json", tmp_path / "bench.json")
    assert bench.code == 0, bench.err
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["data"]["part"] == "test" and report["data"]["images"] == result.metrics["counts"]["test"]
    # another file that names the same run is not taken for its model
    impostor = tmp_path / "other" / "model_int8.tflite"
    impostor.parent.mkdir()
    impostor.write_bytes(result.model_file.read_bytes() + b"\0")
    refused = cli("bench", impostor, "--runs", "2", "--warmup", "1", "--no-memory", "--threads", "1")
    assert refused.code == 2 and "does not list this file" in refused.err


def test_embedding_cache_recomputes_a_file_of_the_wrong_shape(tmp_path):
    from edgecls.transfer.embed import cache_key, cached

    parts = {"x": 1}
    np.save(tmp_path / f"{cache_key(parts)}.npy", np.zeros((3, 2), np.float32))
    result, hit = cached(tmp_path, parts, (4, 2), lambda: np.ones((4, 2), np.float32))
    assert not hit and result.shape == (4, 2)
    again, hit = cached(tmp_path, parts, (4, 2), lambda: pytest.fail("should come from the cache"))
    assert hit and np.array_equal(again, result)


def test_head_is_seeded_and_learns_a_separable_problem():
    from edgecls.transfer.head import HeadOptions, fit_head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    for kind in ("linear", "mlp"):
        options = HeadOptions(kind, hidden=8, seed=4)
        first, second = fit_head(x[:150], y[:150], x[150:], y[150:], 2, options), \
            fit_head(x[:150], y[:150], x[150:], y[150:], 2, options)
        assert np.array_equal(first.logits(x), second.logits(x))
        assert np.mean(first.logits(x[150:]).argmax(1) == y[150:]) >= 0.9
        assert set(first.history[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}


# ---------------------------------------------------------------------- the CLI and the real backbone
@pytest.mark.shared_data
@pytest.mark.skipif(not CORAL.exists(), reason="../shared/data is not present")
def test_coral_backbone_through_the_cli_then_info_predict_and_bench(cli, tmp_path):
    data = small_catsdogs(tmp_path / "photos")
    run = tmp_path / "run"
    result = cli("train", "--data", data, "--backbone", CORAL, "--out", run, "--threads", "1", "--quiet")
    assert result.code == 0, result.err
    assert "MobilenetV1/Logits/AvgPool_1a/AvgPool [1, 1, 1, 512] uint8" in result.err
    model = run / "export" / "model_uint8.tflite"
    assert "model_uint8.tflite: test accuracy" in result.out
    assert "WARNING: only" in result.err and "test images (" in result.err  # a small folder's test split
    assert "the model is already in export/" in result.out and "Next: edgecls bench" in result.out
    refused = cli("export", run)  # nothing to export: the model was written by train
    assert refused.code == 2 and "already in export/" in refused.err
    info = cli("info", "--json", model)
    assert info.code == 0, info.err
    doc = json.loads(info.out)
    assert doc["metadata"]["labels"] == ["cats", "dogs"]
    assert doc["metadata"]["source"]["backbone"]["embedding"]["name"] == "MobilenetV1/Logits/AvgPool_1a/AvgPool"
    predicted = cli("predict", "--json", model, data / "cats")
    assert predicted.code == 0, predicted.err
    assert len(predicted.out.strip().splitlines()) == 8
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tflite"]["agreement"] >= 0.99
    bench = cli("bench", run, "--runs", "2", "--warmup", "1", "--no-memory", "--threads", "1")
    assert bench.code == 0, bench.err
    assert "no Keras model" in bench.out + bench.err


def _one_line_error(result, *words):
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()  # progress lines (the chosen embedding) may come first
    assert lines[-1].startswith("edgecls: error:") and "Traceback" not in result.err, result.err
    assert sum(line.startswith("edgecls: error:") for line in lines) == 1
    for word in words:
        assert word in lines[-1], lines[-1]


def test_a_backbone_that_is_not_a_tflite_is_a_one_line_error(cli, tmp_path):
    fake = tmp_path / "notes.tflite"
    fake.write_text("not a model\n" * 10)
    _one_line_error(cli("train", "--data", colour_folder(tmp_path / "d"), "--backbone", fake, "--out", tmp_path / "r"),
                    "not a .tflite")


def test_a_backbone_without_an_image_input_is_a_one_line_error(cli, models, tmp_path):
    _one_line_error(cli("train", "--data", colour_folder(tmp_path / "d"), "--backbone", models.not_image,
                        "--out", tmp_path / "r"), "NHWC image")


def test_an_embedding_tensor_that_does_not_exist_is_a_one_line_error(cli, models, tmp_path):
    _one_line_error(cli("train", "--data", colour_folder(tmp_path / "d"), "--backbone", models.rgb_int8,
                        "--embedding-tensor", "no/such/tensor", "--out", tmp_path / "r"),
                    "--embedding-tensor no/such/tensor")


def test_a_folder_with_one_class_is_a_one_line_error(cli, models, tmp_path):
    data = colour_folder(tmp_path / "d")
    shutil.rmtree(data / "red")
    _one_line_error(cli("train", "--data", data, "--backbone", models.rgb_int8, "--out", tmp_path / "r"), "one class")


def test_cnn_options_with_a_backbone_and_backbone_options_without_one_are_refused(cli, models, tmp_path):
    data = colour_folder(tmp_path / "d")
    _one_line_error(cli("train", "--data", data, "--backbone", models.rgb_int8, "--arch", "mobile"),
                    "--arch does not apply with --backbone")
    _one_line_error(cli("train", "--data", data, "--backbone", models.rgb_int8, "--fine-tune-epochs", "3"),
                    "--fine-tune-epochs does not apply with --backbone")
    _one_line_error(cli("train", "--data", data, "--head", "mlp"), "--head needs --backbone")


def test_train_options_keep_the_heads_defaults_unless_given_and_the_cnn_route_refuses_a_backbone():
    from edgecls.errors import EdgeclsError
    from edgecls.train.job import train
    from edgecls.train.options import TrainOptions, validate
    from edgecls.transfer.job import TransferOptions, options_from_train

    given = TrainOptions(data="photos", backbone="b.tflite", lr=0.01, input_range="-1,1", head="mlp")
    o = options_from_train(given, {"data", "backbone", "lr", "input_range", "head"})
    assert (o.epochs, o.patience) == (TransferOptions.epochs, TransferOptions.patience)  # not the CNN's 30 and 6
    assert (o.lr, o.input_range, o.head, o.backbone) == (0.01, (-1.0, 1.0), "mlp", "b.tflite")
    with pytest.raises(EdgeclsError, match="--views needs --backbone"):
        validate(TrainOptions(views=3))
    with pytest.raises(EdgeclsError, match="edgecls.transfer"):
        train(given)


def test_the_backbone_route_never_imports_tensorflow(models, tmp_path):
    code = ("import sys; from edgecls.cli import main; sys.argv = ['edgecls', 'train', '--data', sys.argv[1], "
            "'--backbone', sys.argv[2], '--out', sys.argv[3], '--quiet', '--epochs', '5']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'")
    result = subprocess.run([sys.executable, "-c", code, str(colour_folder(tmp_path / "d")), str(models.rgb_int8),
                             str(tmp_path / "r")], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "EDGECLS_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_head_that_learns_nothing_is_refused_unless_forced_and_then_flagged(models, tmp_path):
    """Two folders of the same noise: no head can tell them apart, so nothing is written without --force."""
    from PIL import Image

    from edgecls.errors import EdgeclsError
    from edgecls.transfer.job import TransferOptions, train_with_backbone

    rng = np.random.default_rng(5)
    for name in ("left", "right"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(20):
            noise = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(noise).save(tmp_path / "data" / name / f"{i}.png")
    options = TransferOptions(data=str(tmp_path / "data"), backbone=str(models.rgb_int8), out=str(tmp_path / "run"),
                              threads=1, epochs=10, val_fraction=0.3, test_fraction=0.2)
    with pytest.raises(EdgeclsError) as refused:
        train_with_backbone(options)
    message = str(refused.value)
    assert refused.value.exit_code == 1 and "Not writing a useless model" in message and "--force" in message
    assert not (tmp_path / "run").exists()
    result = train_with_backbone(options, force=True)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["collapsed"] and metrics["warnings"] and result.model_file.is_file()
    assert any(w.startswith("do not ship this model") for w in result.warnings())


def test_a_calibrated_edgecls_model_is_a_backbone(tmp_path):
    """Every edgecls export is calibrated (subgraph 0 one IF around the classifier): its classifier is cut
    and grafted. Cutting the wrapper itself made LiteRT crash (SIGSEGV), so this runs in a subprocess."""
    calibrated = Path(__file__).resolve().parents[1] / "models" / "digits-seed" / "model_int8.tflite"
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "edgecls", "train", "--data", "digits", "--backbone", str(calibrated),
                           "--epochs", "20", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "EDGECLS_DEBUG": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.9  # the digits model's own features separate digits
    transfer = json.loads((out / "transfer.json").read_text())
    assert transfer["backbone"]["sha256"] == hashlib.sha256(calibrated.read_bytes()).hexdigest()  # the file's
