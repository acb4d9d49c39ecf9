"""Quantisation diagnosis, mixed int8 exports (--keep-float, --auto-fallback) and the calibration sweep,
on a tiny digits run trained for one epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecls.errors import EdgeclsError
from edgecls.export.diagnose import GraphOp, keras_layers, resolve_keep_float

SEED_LAYERS = ["pixels", "scale_0_1", "conv1", "pool1", "conv2", "pool2", "flatten", "dense", "probabilities"]


# ---------------------------------------------------------------------- naming (no TensorFlow)
def test_keras_layers_are_recovered_from_converted_tensor_names():
    assert keras_layers("seed_cnn_1/conv1_1/Relu;seed_cnn_1/conv1_1/BiasAdd;seed_cnn_1/conv1_1/convolution",
                        SEED_LAYERS) == ("conv1",)
    # a fused op names several layers: reported in model order
    fused = "mobile_cnn_1/dw1_relu_1/Relu6;mobile_cnn_1/dw1_bn_1/batchnorm/mul_1;mobile_cnn_1/dw1_1/depthwise;1"
    assert keras_layers(fused, ["pixels", "dw1", "dw1_bn", "dw1_relu", "pw1"]) == ("dw1", "dw1_bn", "dw1_relu")
    assert keras_layers("StatefulPartitionedCall_1:0", SEED_LAYERS) == ()
    # a layer literally named dense_1 exports as dense_1_1
    assert keras_layers("m_1/dense_1_1/MatMul", ["dense", "dense_1"]) == ("dense_1",)


def test_keep_float_names_resolve_to_nodes_and_op_types():
    graph = [GraphOp("n/conv1", "CONV_2D", ("conv1",)), GraphOp("n/dense", "FULLY_CONNECTED", ("dense",)),
             GraphOp("n/probs", "FULLY_CONNECTED", ("probabilities",)), GraphOp("out:0", "SOFTMAX", ("probabilities",))]
    assert resolve_keep_float(["probabilities"], graph) == (["n/probs", "out:0"], [])
    assert resolve_keep_float(["conv_2d", "dense", "n/conv1", "dense"], graph) == (["n/dense", "n/conv1"], ["CONV_2D"])
    with pytest.raises(EdgeclsError) as caught:
        resolve_keep_float(["conv9"], graph)
    message = str(caught.value)
    assert "'conv9'" in message and "conv1, dense, probabilities" in message and "FULLY_CONNECTED" in message
    assert "\n" not in message


# ---------------------------------------------------------------------- with a trained model
pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def run(make_digits_run) -> Path:
    return make_digits_run(epochs=1, seed=5)


@pytest.fixture(scope="module")
def diagnosis(run):
    from edgecls.export.diagnose import diagnose
    from edgecls.rundir import open_run

    return diagnose(open_run(run), calib_samples=100, eval_samples=100)


@pytest.fixture(scope="module")
def mixed(run, tmp_path_factory):
    """float32, int8 and int8 with the `dense` layer kept in float."""
    from edgecls.export.job import ExportOptions, export
    from edgecls.rundir import open_run

    out = tmp_path_factory.mktemp("mixed")
    return export(open_run(run), ExportOptions(["float32", "int8"], calib_samples=100, out=out, keep_float=["dense"]))


def plain_ops(path: Path) -> list[dict]:
    """(op name, weight dtype, output name) of each computing op, read from the flatbuffer of every
    subgraph: a calibrated model's subgraph 0 is one IF around the classifier (runtime/openset.py),
    and the interpreter lists subgraph 0's ops only."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    dtype_names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    rows = []
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = op_names[max(code.builtinCode, code.deprecatedBuiltinCode)]
            if name == "IF":
                continue
            inputs = [graph.tensors[i] for i in op.inputs if i >= 0]
            rows.append({"op": name, "weights": dtype_names[inputs[1].type] if len(inputs) > 1 else None,
                         "out": graph.tensors[op.outputs[0]].name.decode()})
    return rows


def test_diagnosis_has_a_ranked_row_per_quantised_op(diagnosis):
    rows = diagnosis.layers
    # the seed CNN: conv1, pool1, conv2, pool2, flatten, dense, probabilities (FC + softmax)
    assert [r.op for r in sorted(rows, key=lambda r: r.node)].count("CONV_2D") == 2
    assert {r.node for r in rows} == {op.node for op in diagnosis.graph} and len(rows) == 8
    assert [r.rank for r in rows] == list(range(1, len(rows) + 1))
    assert all(a.rmse_scale >= b.rmse_scale for a, b in zip(rows, rows[1:]))
    assert all(r.layers and set(r.layers) <= set(SEED_LAYERS) for r in rows)
    by_layer = {r.label: r for r in rows if r.op != "SOFTMAX"}
    assert set(by_layer) == {"conv1", "pool1", "conv2", "pool2", "flatten", "dense", "probabilities"}
    # max pooling and reshape only move int8 values: no rounding; convolutions round every output
    assert by_layer["pool1"].rmse_scale < 0.01 and by_layer["flatten"].rmse_scale < 0.01
    assert by_layer["conv1"].rmse_scale > 0.05 and by_layer["dense"].rmse > 0
    assert all(r.range == pytest.approx(255 * r.scale) for r in rows)
    assert diagnosis.worst(3) == rows[:3] and diagnosis.worst(0) == []
    assert 0.0 <= diagnosis.model["top1_agreement"] <= 1.0 and diagnosis.eval_images == 100
    assert diagnosis.calibration["samples"] == 100 and diagnosis.calibration["split"] == "train"


def test_the_advice_suggests_keeping_layers_in_float_only_when_int8_changes_an_answer(diagnosis, run):
    """bench --diagnose said 'To keep the worst in float: --keep-float ...' right after 'Whole model: top-1
    agreement 1.0000': a fix for a model that needs none."""
    from dataclasses import replace

    from edgecls.export.diagnose import fix_advice

    agreeing = replace(diagnosis, model={**diagnosis.model, "top1_agreement": 1.0})
    advice = fix_advice(agreeing, run)
    assert advice.startswith("No fix needed: int8 gives the float model's top-1 on all 100 ") and "--keep-float" \
        not in advice
    flipping = replace(diagnosis, model={**diagnosis.model, "top1_agreement": 0.97})
    worst = diagnosis.layers[0].layers[0]
    suggested = fix_advice(flipping, run)
    assert suggested.startswith(f"To keep the worst in float: edgecls export {run} --keep-float {worst}"), suggested


def test_diagnosis_json_and_table(diagnosis):
    from rich.console import Console

    from edgecls.export.diagnose import (
        COLUMNS,
        diagnosis_notes,
        diagnosis_rows,
        render_diagnosis,
    )

    doc = json.loads(json.dumps(diagnosis.to_json()))
    assert doc["format"] == "edgecls.diagnosis/1" and len(doc["layers"]) == len(diagnosis.layers)
    assert doc["layers"][0]["rmse_scale"] == diagnosis.layers[0].rmse_scale and doc["layers"][0]["label"]
    rows = diagnosis_rows(diagnosis, top=2)  # what bench's add_section takes
    assert len(rows) == 2 and all(len(r) == len(COLUMNS) for r in rows) and rows[0][1] == diagnosis.layers[0].label
    assert any("QuantizationDebugger" in note for note in diagnosis_notes(diagnosis))
    console = Console(record=True, width=160)
    console.print(render_diagnosis(diagnosis, top=3))
    text = console.export_text()
    ranks = [line.split()[0] for line in text.splitlines() if line.split() and line.split()[0].isdigit()]
    assert ranks == ["1", "2", "3"] and diagnosis.layers[0].label in text and "QuantizationDebugger" in text


def test_keep_float_layer_stays_float_and_still_classifies(mixed, run):
    from edgecls.rundir import open_run
    from edgecls.runtime.classify import Classifier
    from edgecls.runtime.inspect import inspect_model

    out = mixed.out_dir
    path = out / "model_int8_mixed.tflite"
    fcs = [op for op in plain_ops(path) if op["op"] == "FULLY_CONNECTED"]
    assert {("dense" in op["out"], op["weights"]) for op in fcs} == {(True, "float32"), (False, "int8")}
    assert all(op["weights"] == "int8" for op in plain_ops(path) if op["op"] == "CONV_2D")
    assert all(op["weights"] in (None, "int8", "int32") for op in plain_ops(out / "model_int8.tflite"))

    report = inspect_model(path)
    inp = report["inputs"][0]
    assert (inp["dtype"], inp["scale"], inp["zero_point"]) == ("int8", 1.0, -128)  # still exact
    assert report["outputs"][0]["dtype"] == "int8"
    kept = report["metadata"]["quantization"]["kept_float"]
    assert kept["requested"] == ["dense"] and kept["layers"] == ["dense"]
    assert [f.split(" ")[0] for f in kept["float_ops"]] == ["FULLY_CONNECTED"]

    source = open_run(run)
    images, labels = source.images("test")
    mixed_predicted = Classifier(path).probabilities(images).argmax(1)
    float_predicted = Classifier(out / "model_float32.tflite").probabilities(images).argmax(1)
    assert np.mean(mixed_predicted == float_predicted) >= 0.95
    assert np.mean(mixed_predicted == labels) > 0.5  # ten classes: far above chance

    doc = json.loads((out / "export.json").read_text())
    by_variant = {m["variant"]: m for m in doc["models"]}
    assert set(by_variant) == {"float32", "int8", "int8_mixed"}
    assert by_variant["int8_mixed"]["mode"] == "int8" and by_variant["int8_mixed"]["file"] == path.name
    assert by_variant["int8_mixed"]["kept_float"]["float_ops"] == kept["float_ops"]
    assert "kept_float" not in by_variant["int8"] and doc["options"]["keep_float"] == ["dense"]
    check = next(m for m in mixed.models if m.variant == "int8_mixed")
    assert check.size_bytes > next(m for m in mixed.models if m.variant == "int8").size_bytes  # float weights


def test_auto_fallback_keeps_the_worst_op_in_float(run, diagnosis, cli, tmp_path):
    out = tmp_path / "auto"
    result = cli("export", run, "--out", out, "--quant", "int8", "--calib-samples", "100", "--auto-fallback", "1")
    assert result.code == 0, result.err
    doc = json.loads((out / "export.json").read_text())
    kept = next(m for m in doc["models"] if m["variant"] == "int8_mixed")["kept_float"]
    assert kept["auto_fallback"] == 1 and len(kept["worst"]) == 1
    # the export calibrated on the same 100 images and evaluated on the validation split, as did the fixture's
    # diagnosis with 100 evaluation images: the same op comes out worst
    worst = diagnosis.layers[0]
    assert (kept["worst"][0]["label"], kept["worst"][0]["op"]) == (worst.label, worst.op)
    assert [op.split(" ")[0] for op in kept["float_ops"]] == [worst.op]
    assert kept["layers"] and set(kept["layers"]) <= set(SEED_LAYERS)
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "labels.txt", "model_int8.tflite",
                                                     "model_int8_mixed.tflite"]
    assert "Keeping in float" in result.err


@pytest.mark.parametrize("args, needles", [
    (["--keep-float", "conv9"], ["'conv9' is not a layer or op", "conv1, pool1, conv2", "FULLY_CONNECTED"]),
    (["--keep-float", "dense", "--quant", "float32"], ["add int8 (or uint8) to --quant"]),
    (["--auto-fallback", "40"], ["--auto-fallback 40: the model has only 8 quantised ops"]),
    (["--keep-float", "dense", "--quantizer", "litert"], ["need --quantizer converter"]),
    (["--keep-float", "pool1"], ["nothing could be kept in float", "pool1 (MAX_POOL_2D)"]),
])
def test_bad_keep_float_is_a_one_line_error(run, cli, tmp_path, args, needles):
    out = tmp_path / "bad"
    result = cli("export", run, "--out", out, "--calib-samples", "50", *args)
    assert result.code in (1, 2) and result.err.count("edgecls: error:") == 1
    assert "Traceback" not in result.err
    error = [line for line in result.err.splitlines() if line.startswith("edgecls: error:")][0]
    for needle in needles:
        assert needle in error
    assert not out.exists()


def test_calib_sweep_caps_sizes_beyond_the_train_split(run, tmp_path):
    from edgecls.export.sweep import calib_sweep, plot_sweep, sweep_json, sweep_rows
    from edgecls.rundir import open_run

    source = open_run(run)
    train_images = len(source.split().train)
    points = calib_sweep(source, [30, 100_000, 30])
    assert [p.requested for p in points] == [30, 100_000, 30]
    assert [(p.samples, p.capped) for p in points] == [(30, False), (train_images, True), (30, False)]
    assert all(0.0 <= p.accuracy <= 1.0 and 0.0 <= p.agreement <= 1.0 for p in points)
    assert points[0].accuracy == points[2].accuracy  # the same calibration set: the same model
    assert len({p.float_accuracy for p in points}) == 1 and all(p.size_bytes > 0 for p in points)
    assert points[0].test_images == len(source.images("test")[1])
    assert json.loads(json.dumps(sweep_json(points)))["points"][1]["capped"] is True
    assert [row[1] for row in sweep_rows(points)] == ["30", f"{train_images} (all)", "30"]
    png = plot_sweep(points, tmp_path / "sweep.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for bad in ([], [0, 10]):
        with pytest.raises(EdgeclsError, match="at least"):
            calib_sweep(source, bad)
