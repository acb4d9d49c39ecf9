"""Flatbuffer surgery on a .tflite with the schema's object API (ModelT): cut a model at a tensor,
graft a classifier head on as TFLite ops (FULLY_CONNECTED [+ FULLY_CONNECTED] + SOFTMAX, with the
QUANTIZE / DEQUANTIZE the backbone's I/O type needs), and serialise it again.

The schema module comes from `edgecls.runtime.metadata.schema()`: the one place edgecls imports it
(op names from `edgecls.runtime.tflite_names`, the table the schema-free reader uses too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from edgecls.runtime import tflite_names
from edgecls.runtime.metadata import TFLITE_IDENTIFIER, ModelFileError, check_tflite_bytes, schema
from edgecls.runtime.model import REQUIRED_INPUTS

# Metadata entries that describe the original outputs (the TFLite Support library's, with the old
# labels) or are ours (rewritten by embed_metadata): dropped when the model is cut.
_STALE_METADATA = {"TFLITE_METADATA", "edgecls"}

# TensorType values of the schema, by numpy dtype name.
_TYPES = {"float32": 0, "int32": 2, "uint8": 3, "bool": 6, "int8": 9}
_DTYPES = {v: k for k, v in _TYPES.items()}


def load_model(content: bytes, name: str = "model"):
    """The ModelT of a .tflite's bytes, every index in it checked (check_indices); one-line
    ModelFileError naming `name` for anything unreadable. The one reader of the backbone route:
    what it returns can be walked by hand without an IndexError or a wrong tensor."""
    check_tflite_bytes(content, name)
    s = schema()
    try:
        model = s.ModelT.InitFromObj(s.Model.GetRootAs(content, 0))
    except Exception as exc:  # a corrupt flatbuffer raises anything from struct.error to IndexError
        raise ModelFileError(f"{name}: corrupt .tflite flatbuffer ({type(exc).__name__})") from None
    if not model.subgraphs:
        raise ModelFileError(f"{name}: the model has no subgraph")
    check_indices(model, name)
    return model


def check_indices(model, name: str) -> None:
    """Refuse a model with an index that points nowhere: a tensor, buffer or opcode index out of
    range, or -1 where the schema has no optional tensor (Python would read -1 as the last tensor).
    LiteRT refuses such files too (`info` and `predict` say so); this says which index, and where."""
    def refuse(what: str, value: int, count: int, kind: str) -> None:
        valid = f" (0..{count - 1})" if count else ""
        raise ModelFileError(f"{name}: corrupt .tflite: {what} is {value}, but the model has {count} {kind}{valid}")

    buffers, opcodes = len(model.buffers or []), len(model.operatorCodes or [])
    for g, subgraph in enumerate(model.subgraphs):
        tensors = len(subgraph.tensors or [])
        where = f"subgraph {g}" if g else "the graph"
        for field in ("inputs", "outputs"):
            for value in ints(getattr(subgraph, field)):
                if not 0 <= value < tensors:
                    refuse(f"an {field[:-1]} tensor index of {where}", value, tensors, "tensors")
        for k, op in enumerate(subgraph.operators or []):
            if not 0 <= int(op.opcodeIndex or 0) < opcodes:
                refuse(f"the opcode index of op {k}", int(op.opcodeIndex or 0), opcodes, "opcodes")
            for field in ("inputs", "outputs", "intermediates"):
                code = model.operatorCodes[op.opcodeIndex]
                required = REQUIRED_INPUTS.get(max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0)), 1)
                for position, value in enumerate(ints(getattr(op, field))):
                    optional = field == "inputs" and position >= required  # an absent optional input (a bias) is -1
                    if not (0 <= value < tensors or optional and value == -1):
                        refuse(f"{field[:-1]} {position} of op {k} ({op_name(model, op)})", value, tensors,
                               "tensors")
        for t, tensor in enumerate(subgraph.tensors or []):
            if not 0 <= int(tensor.buffer or 0) < max(buffers, 1):
                refuse(f"the buffer index of tensor {t} ({tensor_name(tensor)})", int(tensor.buffer), buffers,
                       "buffers")
            if any(d < 0 for d in ints(tensor.shape)) or any(d < -1 for d in ints(tensor.shapeSignature)):
                raise ModelFileError(f"{name}: corrupt .tflite: tensor {t} ({tensor_name(tensor)}) has the shape "
                                     f"{ints(tensor.shape)}")
    for entry in model.metadata or []:
        if not 0 <= int(entry.buffer or 0) < buffers:
            refuse(f"the buffer index of metadata {_text(entry.name)!r}", int(entry.buffer), buffers, "buffers")


def ints(values) -> list[int]:
    """A schema vector (numpy array, list or None) as a list of Python ints."""
    return [] if values is None else [int(v) for v in values]


def serialize(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def op_name(model, op) -> str:
    """The builtin operator's name of `op` (CONV_2D, ...); 'CUSTOM:<code>' for custom ops."""
    code = model.operatorCodes[op.opcodeIndex]
    return tflite_names.op_name(code.builtinCode, code.deprecatedBuiltinCode, code.customCode)


def tensor_name(tensor) -> str:
    name = tensor.name or b""
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def dtype_name(tensor) -> str:
    return _DTYPES.get(int(tensor.type), f"type{tensor.type}")


def quant_params(tensor) -> tuple[float, int]:
    """(scale, zero point) of a per-tensor quantised tensor; (0.0, 0) for a float one."""
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return 0.0, 0
    if len(q.scale) > 1:
        raise ModelFileError(f"tensor {tensor_name(tensor)} is quantised per channel; the embedding must be per tensor")
    return float(q.scale[0]), int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0


def producers(graph) -> dict[int, int]:
    """{tensor index: index of the op that writes it}."""
    return {int(t): i for i, op in enumerate(graph.operators or [])
            for t in (op.outputs if op.outputs is not None else [])}


def has_data(model, tensor) -> bool:
    buffer = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
    return buffer is not None and ((buffer.data is not None and len(buffer.data) > 0) or bool(buffer.size))


# ---------------------------------------------------------------------- cut
def cut(model, tensor: int, keep_metadata: bool = False) -> None:
    """Make `tensor` the only output of subgraph 0 (in place): ops not needed for it go, and so do
    the tensors and buffers nobody refers to any more, and (unless `keep_metadata`: the outputs keep
    their meaning) the metadata about the old outputs."""
    graph = model.subgraphs[0]
    made_by = producers(graph)
    keep, todo = set(), [tensor]
    while todo:  # the ops `tensor` depends on, walking back from it
        t = todo.pop()
        i = made_by.get(t)
        if i is None or i in keep:
            continue
        keep.add(i)
        todo += [int(x) for x in graph.operators[i].inputs if x >= 0]
    graph.operators = [op for i, op in enumerate(graph.operators) if i in keep]
    graph.outputs = np.array([tensor], dtype=np.int32)
    _drop_unused_tensors(graph)
    model.signatureDefs = []  # they name the old outputs; the interpreter needs none
    if not keep_metadata:
        model.metadata = [m for m in (model.metadata or []) if _text(m.name) not in _STALE_METADATA]
    _drop_unused_buffers(model)


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _drop_unused_tensors(graph) -> None:
    used = {int(t) for t in graph.inputs} | {int(t) for t in graph.outputs}
    for op in graph.operators:
        for field in (op.inputs, op.outputs, op.intermediates):
            if field is not None:
                used |= {int(t) for t in field if t >= 0}
    order = sorted(used)
    new = {old: i for i, old in enumerate(order)}

    def remap(values):
        return None if values is None else np.array([new[int(t)] if t >= 0 else -1 for t in values], dtype=np.int32)

    graph.tensors = [graph.tensors[i] for i in order]
    graph.inputs, graph.outputs = remap(graph.inputs), remap(graph.outputs)
    for op in graph.operators:
        op.inputs, op.outputs, op.intermediates = remap(op.inputs), remap(op.outputs), remap(op.intermediates)


def _drop_unused_buffers(model) -> None:
    used = {0}  # buffer 0 is the schema's empty sentinel
    for graph in model.subgraphs:
        used |= {int(t.buffer) for t in graph.tensors}
    used |= {int(m.buffer) for m in model.metadata or []}
    order = sorted(b for b in used if b < len(model.buffers))
    new = {old: i for i, old in enumerate(order)}
    model.buffers = [model.buffers[i] for i in order]
    for graph in model.subgraphs:
        for t in graph.tensors:
            t.buffer = new.get(int(t.buffer), 0)
    for m in model.metadata or []:
        m.buffer = new[int(m.buffer)]


# ---------------------------------------------------------------------- graft
@dataclass
class Layer:
    """One FULLY_CONNECTED layer of the head, in float: weights (units, inputs), bias (units,);
    for a quantised head also the (low, high) range of its outputs on the training embeddings."""

    weights: np.ndarray
    bias: np.ndarray
    relu: bool
    out_range: Optional[tuple[float, float]] = None


# Op versions the kernels need for each tensor type (LiteRT's resolver accepts these and newer).
_FC_VERSION = {"float32": 1, "uint8": 1, "int8": 4}
_SOFTMAX_VERSION = {"float32": 1, "uint8": 1, "int8": 2}
_SOFTMAX_ZERO_POINT = {"uint8": 0, "int8": -128}  # the kernels require scale 1/256 and these
_SOFTMAX_SCALE = 1.0 / 256.0
MAX_REQUANT = 128.0  # input scale x weight scale / output scale stays below this (XNNPACK: < 256)


def graft(model, layers: list[Layer], output_dtype: str) -> None:
    """Append the head to subgraph 0 (in place), reading its single output (the embedding).

    The head computes in the embedding's own type: float32, or 8-bit quantised with weights
    symmetric per tensor, int32 bias at input scale x weight scale, each layer's output range from
    the training embeddings, and SOFTMAX at the kernels' fixed 1/256 output scale. A final QUANTIZE
    or DEQUANTIZE gives the output the backbone's own output type (`output_dtype`).
    """
    graph = model.subgraphs[0]
    x = int(graph.outputs[0])
    embedding = graph.tensors[x]
    kind = dtype_name(embedding)
    if kind not in ("float32", "uint8", "int8"):
        raise ModelFileError(f"the embedding {tensor_name(embedding)} is {kind}: a head can be grafted on "
                             "float32, uint8 or int8 tensors only")
    batch = int(embedding.shape[0]) if embedding.shape is not None and len(embedding.shape) else 1
    signature = embedding.shapeSignature
    dynamic = signature is not None and len(signature) and signature[0] == -1
    in_scale = quant_params(embedding)[0]  # the zero point is not needed: int32 bias has none
    for n, layer in enumerate(layers):
        units = int(layer.weights.shape[0])
        last = n == len(layers) - 1
        name = f"edgecls_head/dense_{n}"
        if kind == "float32":
            w = add_const(model, graph, f"{name}/weights", layer.weights.astype(np.float32), "float32")
            b = add_const(model, graph, f"{name}/bias", layer.bias.astype(np.float32), "float32")
            out_scale = out_zero = None
        else:
            w_scale, w_q, w_zero = _quantise_weights(layer.weights, kind)
            w = add_const(model, graph, f"{name}/weights", w_q, kind, w_scale, w_zero)
            b_scale = in_scale * w_scale
            b_q = np.clip(np.rint(layer.bias / b_scale), -2**31, 2**31 - 1).astype(np.int32)
            b = add_const(model, graph, f"{name}/bias", b_q, "int32", b_scale, 0)
            # XNNPACK refuses a requantisation scale (in x w / out) of 256 or more: widen the range then.
            out_scale, out_zero = _activation_params(layer.out_range, kind, min_scale=b_scale / MAX_REQUANT)
        y = add_tensor(graph, f"{name}/{'logits' if last else 'relu'}", [batch, units], kind, out_scale, out_zero,
                       dynamic)
        options = schema().FullyConnectedOptionsT()
        options.fusedActivationFunction = schema().ActivationFunctionType.RELU if layer.relu else 0
        add_op(model, graph, "FULLY_CONNECTED", _FC_VERSION[kind], [x, w, b], [y],
            schema().BuiltinOptions.FullyConnectedOptions, options)
        x, in_scale = y, out_scale
    classes = int(layers[-1].weights.shape[0])
    probs = add_tensor(graph, "edgecls_head/probabilities", [batch, classes], kind,
                    None if kind == "float32" else _SOFTMAX_SCALE, _SOFTMAX_ZERO_POINT.get(kind), dynamic)
    options = schema().SoftmaxOptionsT()
    options.beta = 1.0
    add_op(model, graph, "SOFTMAX", _SOFTMAX_VERSION[kind], [x], [probs], schema().BuiltinOptions.SoftmaxOptions,
           options)
    if output_dtype != kind:  # the backbone's I/O type: uint8 <-> int8 requantise, or float out
        final = add_tensor(graph, "edgecls_head/output", [batch, classes], output_dtype,
                        None if output_dtype == "float32" else _SOFTMAX_SCALE, _SOFTMAX_ZERO_POINT.get(output_dtype),
                        dynamic)
        if output_dtype == "float32":
            add_op(model, graph, "DEQUANTIZE", 2, [probs], [final])
        else:
            add_op(model, graph, "QUANTIZE", 2, [probs], [final])
        probs = final
    graph.outputs = np.array([probs], dtype=np.int32)


def _quantise_weights(weights: np.ndarray, kind: str) -> tuple[float, np.ndarray, int]:
    """Symmetric per-tensor 8-bit weights: int8 zero point 0 (the int8 kernel requires it), uint8 128."""
    scale = float(np.abs(weights).max()) / 127.0 or 1e-8
    q = np.clip(np.rint(weights / scale), -127, 127)
    if kind == "int8":
        return scale, q.astype(np.int8), 0
    return scale, (q + 128).astype(np.uint8), 128


def _activation_params(value_range: Optional[tuple[float, float]], kind: str,
                       min_scale: float = 0.0) -> tuple[float, int]:
    """(scale, zero point) that span `value_range` (which must hold 0, as TFLite's do)."""
    if value_range is None:
        raise ValueError("a quantised head needs each layer's output range")
    low, high = min(0.0, float(value_range[0])), max(0.0, float(value_range[1]))
    scale = max((high - low) / 255.0, min_scale) or 1e-6
    qmin = -128 if kind == "int8" else 0
    zero = int(np.clip(np.rint(qmin - low / scale), qmin, qmin + 255))
    return scale, zero


def add_tensor(graph, name: str, shape: list[int], kind: str, scale: Optional[float] = None,
            zero_point: Optional[int] = None, dynamic: bool = False, buffer: int = 0) -> int:
    s = schema()
    t = s.TensorT()
    t.name = name
    t.shape = np.array(shape, dtype=np.int32)
    if dynamic:
        t.shapeSignature = np.array([-1, *shape[1:]], dtype=np.int32)
    t.type = _TYPES[kind]
    t.buffer = buffer
    if scale is not None:
        q = s.QuantizationParametersT()
        q.scale = np.array([scale], dtype=np.float32)
        q.zeroPoint = np.array([zero_point or 0], dtype=np.int64)
        q.quantizedDimension = 0
        t.quantization = q
    graph.tensors.append(t)
    return len(graph.tensors) - 1


def add_const(model, graph, name: str, values: np.ndarray, kind: str, scale: Optional[float] = None,
           zero_point: Optional[int] = None) -> int:
    buffer = schema().BufferT()
    buffer.data = np.frombuffer(np.ascontiguousarray(values).tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    return add_tensor(graph, name, list(values.shape), kind, scale, zero_point, buffer=len(model.buffers) - 1)


def add_op(model, graph, name: str, version: int, inputs: list[int], outputs: list[int],
        options_type: int = 0, options=None) -> None:
    s = schema()
    op = s.OperatorT()
    op.opcodeIndex = _opcode(model, getattr(s.BuiltinOperator, name), version)
    op.inputs = np.array(inputs, dtype=np.int32)
    op.outputs = np.array(outputs, dtype=np.int32)
    op.builtinOptionsType = options_type
    op.builtinOptions = options
    graph.operators.append(op)


def _opcode(model, code: int, version: int) -> int:
    for i, existing in enumerate(model.operatorCodes):
        if max(int(existing.builtinCode or 0), int(existing.deprecatedBuiltinCode or 0)) == code:
            existing.version = max(int(existing.version or 1), version)
            return i
    entry = schema().OperatorCodeT()
    entry.builtinCode = code
    entry.deprecatedBuiltinCode = min(code, 127)  # the schema's placeholder for codes past 127
    entry.version = version
    model.operatorCodes.append(entry)
    return len(model.operatorCodes) - 1
