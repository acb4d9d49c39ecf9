"""The generic flatbuffer reader (edgecls.runtime.flatbuffer) against the generated schema module.

`edgecls info` and the bench's model description read the graph without the schema module, which
tflite_runtime does not ship: these tests check that they read every real model exactly as the
schema module does, and that `info` runs in a process that cannot import one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from edgecls.runtime.inspect import _graph, _quant_mode, inspect_model
from edgecls.runtime.metadata import TFLITE_IDENTIFIER, read_metadata
from edgecls.runtime.tflite_names import BUILTIN_OPERATORS, TENSOR_TYPES

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_MODELS = ["rgb_float", "rgb_int8", "rgb_uint8_fixed", "rgb_float16", "rgb_dynamic", "quad_int8_meta",
                  "quad_logits", "not_image"]
PRETRAINED = sorted((SHARED_DATA / "pretrained").glob("*.tflite")) if SHARED_DATA.is_dir() else []


def _schema():
    return pytest.importorskip("ai_edge_litert.schema_py_generated")


def _enum_names(enum) -> list[str]:
    by_code = {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}
    return [by_code.get(i, f"<no code {i}>") for i in range(max(by_code) + 1)]


def test_name_tables_are_the_schema_enums():
    s = _schema()
    for table, enum, name in ((BUILTIN_OPERATORS, s.BuiltinOperator, "BUILTIN_OPERATORS"),
                              (TENSOR_TYPES, s.TensorType, "TENSOR_TYPES")):
        schema_names = _enum_names(enum)
        common = min(len(table), len(schema_names))
        assert list(table[:common]) == schema_names[:common], f"{name} disagrees with the schema module"
        # schema.fbs only appends: a newer LiteRT adds names at the end, to be appended here too.
        assert len(table) >= len(schema_names), (
            f"edgecls/runtime/tflite_names.py is behind the installed schema: append to {name} "
            f"{schema_names[len(table):]}")


def _graph_with_schema(content: bytes) -> dict:
    """The oracle: _graph as edgecls read it before, through the generated schema module's accessors."""
    s = _schema()
    model = s.Model.GetRootAs(content, 0)
    builtin = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k.lower() for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    op_names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        op_names.append(f"CUSTOM:{(code.CustomCode() or b'?').decode()}" if number == s.BuiltinOperator.CUSTOM
                        else builtin.get(number, f"BUILTIN_{number}"))
    ops, constants, activations, per_channel, tensors = Counter(), Counter(), Counter(), False, 0
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            ops[op_names[graph.Operators(i).OpcodeIndex()]] += 1
        for i in range(graph.TensorsLength()):
            tensor, tensors = graph.Tensors(i), tensors + 1
            buffer = model.Buffers(tensor.Buffer()) if 0 < tensor.Buffer() < model.BuffersLength() else None
            stored = buffer is not None and (buffer.DataLength() > 0 or buffer.Offset() > 1)
            (constants if stored else activations)[types.get(tensor.Type(), str(tensor.Type()))] += 1
            quant = tensor.Quantization()
            per_channel |= stored and quant is not None and quant.ScaleLength() > 1
    main = model.Subgraphs(0)
    inputs = {types.get(main.Tensors(main.Inputs(j)).Type()) for j in range(main.InputsLength())}
    return {"subgraphs": model.SubgraphsLength(), "tensors": tensors, "ops": dict(ops.most_common()),
            "quantization": {"detected": _quant_mode(constants, activations, inputs),
                             "weights_per_channel": per_channel}}


def _with_external_buffers(content: bytes) -> bytes:
    """The model with its constants stored after the flatbuffer (Buffer.offset/size from the file's
    start), as ai-edge-quantizer and >2 GB models store them: the reader's other branch."""
    import flatbuffers
    import numpy as np

    s = _schema()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(content, 0))
    blobs = {}
    for i, buffer in enumerate(model.buffers):
        if buffer.data is not None and len(buffer.data):
            blobs[i] = bytes(np.asarray(buffer.data, np.uint8))
            buffer.data, buffer.offset, buffer.size = None, 2, len(blobs[i])  # a uint64 of the final size

    def pack() -> bytes:
        builder = flatbuffers.Builder(len(content) * 2)
        builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
        return bytes(builder.Output())

    head = pack()
    tail, position = b"", (len(head) + 15) // 16 * 16
    for i, blob in blobs.items():
        model.buffers[i].offset = position + len(tail)
        tail += blob + b"\0" * (-len(blob) % 16)
    body = pack()
    assert len(body) == len(head)  # the offsets changed value, not size
    return body + b"\0" * (position - len(body)) + tail


def _fixture_cases(models) -> list[tuple[str, bytes]]:
    cases = [(name, getattr(models, name).read_bytes()) for name in FIXTURE_MODELS]
    cases += [("rgb_int8 (external buffers)", _with_external_buffers(models.rgb_int8.read_bytes())),
              ("rgb_dynamic (external buffers)", _with_external_buffers(models.rgb_dynamic.read_bytes()))]
    return cases


def test_graph_reads_the_fixture_models_as_the_schema_module_does(models):
    seen = set()
    for name, content in _fixture_cases(models):
        graph = _graph(content)
        assert graph == _graph_with_schema(content), name
        seen.add(graph["quantization"]["detected"])
    # the cases cover every mode a tiny export gives, and per-channel weights
    assert seen == {"float32", "int8", "uint8", "float16", "dynamic"}
    assert _graph(models.rgb_int8.read_bytes())["quantization"]["weights_per_channel"] is True


def test_old_style_custom_and_unknown_operator_codes(models):
    """Codes only in the deprecated int8 field (files before TF 2.4), custom ops with and without a
    name, a code newer than the name table: named as the schema module's reading names them."""
    import flatbuffers

    s = _schema()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(models.quad_float.read_bytes(), 0))
    for code in model.operatorCodes:  # as an old converter wrote them: the new int32 field absent
        code.deprecatedBuiltinCode, code.builtinCode = code.builtinCode, 0
    graph = model.subgraphs[0]
    for custom, number in ((b"edgecls_test", s.BuiltinOperator.CUSTOM), (None, s.BuiltinOperator.CUSTOM),
                           (None, 999)):
        code = s.OperatorCodeT()
        code.builtinCode, code.customCode = number, custom
        model.operatorCodes.append(code)
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = len(model.operatorCodes) - 1, [0], [1]
        graph.operators.append(op)
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    content = bytes(builder.Output())
    graph = _graph(content)
    assert graph == _graph_with_schema(content)
    assert {"FULLY_CONNECTED", "SOFTMAX", "CUSTOM:edgecls_test", "CUSTOM:?", "BUILTIN_999"} <= set(graph["ops"])


def test_external_buffers_are_constants_that_load_and_keep_their_metadata(models, tmp_path):
    path = tmp_path / "external.tflite"
    path.write_bytes(_with_external_buffers(models.quad_int8_meta.read_bytes()))
    report = inspect_model(path)  # the real interpreter loads it: the test file is a valid model
    assert report["quantization"]["detected"] == "int8" and report["classifier"]["image_classifier"]
    assert read_metadata(path.read_bytes()) == read_metadata(models.quad_int8_meta.read_bytes())
    assert report["metadata"]["labels"] == ["top", "bottom", "left", "right"]


@pytest.mark.shared_data
@pytest.mark.parametrize("path", PRETRAINED, ids=lambda p: p.name)
def test_graph_reads_the_pretrained_models_as_the_schema_module_does(path):
    content = path.read_bytes()
    graph = _graph(content)
    assert graph == _graph_with_schema(content)
    assert graph["quantization"]["detected"] == "uint8" and graph["ops"]["DEPTHWISE_CONV_2D"] == 13


_BLOCKER = '''\
"""Put on PYTHONPATH by tests/test_flatbuffer.py: no schema module, no TensorFlow (as with tflite_runtime)."""
import sys

class _NoSchema:
    def find_spec(self, name, path=None, target=None):
        if name == "ai_edge_litert.schema_py_generated" or name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"blocked by the test: {name}")
        return None

sys.meta_path.insert(0, _NoSchema())
'''


def test_info_and_the_bench_description_run_without_a_schema_module(models, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(_BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)])}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)

    probe = run("-c", "import ai_edge_litert.schema_py_generated")
    assert probe.returncode == 1 and "blocked by the test" in probe.stderr  # the blocker is in force
    model = models.rgb_int8_meta
    as_json = run("-m", "edgecls", "info", "--json", str(model))
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report == json.loads(json.dumps(inspect_model(model)))  # what a process with the schema module says
    assert {k: report[k] for k in ("subgraphs", "tensors", "ops")} == {
        k: v for k, v in _graph_with_schema(model.read_bytes()).items() if k != "quantization"}
    assert report["quantization"] == {"detected": "int8", "weights_per_channel": True, "declared": "int8"}
    table = run("-m", "edgecls", "info", str(model))
    assert table.returncode == 0 and "FULLY_CONNECTED" in table.stdout, table.stderr
    bench = run("-c", "from pathlib import Path; from edgecls.bench.inputs import open_model; "
                "from edgecls.runtime.settings import ModelSettings; "
                f"print(open_model(Path({str(models.rgb_dynamic)!r}), ModelSettings())[0].mode)")
    assert bench.returncode == 0 and bench.stdout.split() == ["dynamic"], bench.stderr
