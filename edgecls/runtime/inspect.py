"""What is inside a .tflite file (`edgecls info`): tensors, ops, quantisation, metadata.

Works on any .tflite, with or without edgecls metadata. The graph is read with the generic
flatbuffer reader (no schema module: tflite_runtime has none) only after the interpreter has
loaded (and so verified) the file.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecls.errors import EdgeclsError
from edgecls.runtime import flatbuffer as fb
from edgecls.runtime.interpreter import Backend, create_interpreter, find_backend
from edgecls.runtime.metadata import read_metadata
from edgecls.runtime.model import ModelIO, check_io, read_model_bytes, resolve_labels
from edgecls.runtime.tflite_names import TENSOR_TYPES, op_name

if TYPE_CHECKING:
    from edgecls.runtime.classify import Classifier


def inspect_model(path: str | os.PathLike, backend: str | None = None,
                  labels: str | os.PathLike | None = None) -> dict[str, Any]:
    """A JSON-ready description of the model at `path`; `labels`: a labels file, as predict's --labels
    (else the model's own, else labels.txt beside it, else the class indices). Raises ModelFileError
    for a bad file (or a labels file that does not fit the model)."""
    path = Path(path)
    content = read_model_bytes(path)
    chosen = find_backend(backend)
    interpreter = create_interpreter(content, chosen, num_threads=1, name=path.name)
    metadata = read_metadata(content)
    try:
        io = check_io(interpreter, metadata, path.name)
    except EdgeclsError as exc:  # any .tflite is described; this one is not an image classifier edgecls runs
        classifier = {"image_classifier": False, "reason": str(exc)}
    else:
        found, source = resolve_labels(labels, metadata, path, io.num_classes)  # a bad --labels file: an error
        classifier = _classifier(io, metadata, found, source)
    return _report(path, content, interpreter, chosen, metadata, classifier)


def describe_classifier(classifier: Classifier, content: bytes) -> dict[str, Any]:
    """inspect_model's description of a model already opened as `classifier` from `content` (the file's
    bytes): its checks, settings and labels are the Classifier's, not made again (bench describes the
    models it measures so; the labels are the Classifier's, repeated names told apart)."""
    return _report(classifier.path, content, classifier.interpreter, classifier.backend, classifier.metadata,
                   _classifier(classifier.io, classifier.metadata, classifier.labels, classifier.labels_source))


def _report(path: Path, content: bytes, interpreter: Any, backend: Backend, metadata: dict | None,
            classifier: dict[str, Any]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "file": str(path),
        "size_bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "backend": {"name": backend.name, "version": backend.version},
        "inputs": [_tensor(d) for d in interpreter.get_input_details()],
        "outputs": [_tensor(d) for d in interpreter.get_output_details()],
        **_graph(content),
        "classifier": classifier,
        "metadata": metadata,
    }
    declared = ((metadata or {}).get("quantization") or {}).get("mode")
    report["quantization"]["declared"] = declared
    return report


def _tensor(details: dict) -> dict[str, Any]:
    params = details.get("quantization_parameters") or {}
    scales = [float(s) for s in params.get("scales", ())]
    zero_points = [int(z) for z in params.get("zero_points", ())]
    per_channel = len(scales) > 1
    return {
        "name": details["name"],
        "shape": [int(d) for d in details["shape"]],
        "shape_signature": [int(d) for d in details.get("shape_signature", details["shape"])],
        "dtype": np.dtype(details["dtype"]).name,
        "scale": scales if per_channel else (scales[0] if scales else None),
        "zero_point": zero_points if per_channel else (zero_points[0] if zero_points else None),
        "per_channel": per_channel,
        "quantized_dimension": int(params.get("quantized_dimension", 0)) if per_channel else None,
    }


def _classifier(io: ModelIO, metadata: dict | None, labels: list[str], labels_source: str) -> dict[str, Any]:
    spec = io.spec
    return {
        "image_classifier": True,
        "input": {"height": spec.height, "width": spec.width, "color": spec.color,
                  "batch": "dynamic" if io.dynamic_batch else 1,
                  "resize": spec.resize, "fit": spec.fit,
                  "preprocessing_source": "metadata" if ((metadata or {}).get("input") or {}).get("resize")
                  else "default"},
        "num_classes": io.num_classes,
        "output": io.output_kind,  # unknown: checked per batch
        "labels_source": labels_source,
        "labels": labels,
    }


def _op_names(model: fb.Table) -> list[str]:
    """The name of each operator code of the model, by opcode index."""
    return [op_name(code.scalar(fb.OPCODE_BUILTIN, fb.INT32), code.scalar(fb.OPCODE_DEPRECATED_BUILTIN, fb.INT8),
                    code.string(fb.OPCODE_CUSTOM)) for code in model.tables(fb.MODEL_OPERATOR_CODES)]


def _type_name(code: int) -> str | None:
    return TENSOR_TYPES[code].lower() if 0 <= code < len(TENSOR_TYPES) else None


def _graph(content: bytes) -> dict[str, Any]:
    """Op histogram, tensor counts and the detected quantisation mode of every subgraph."""
    model = fb.model_table(content)
    op_names = _op_names(model)
    buffer_count = model.count(fb.MODEL_BUFFERS)
    ops: Counter = Counter()
    constants: Counter = Counter()  # dtype of weights and other tensors stored in the file
    activations: Counter = Counter()  # dtype of tensors computed at run time
    per_channel = False
    tensors = 0
    for graph in model.tables(fb.MODEL_SUBGRAPHS):
        for op in graph.tables(fb.SUBGRAPH_OPERATORS):
            ops[op_names[op.scalar(fb.OPERATOR_OPCODE_INDEX, fb.UINT32)]] += 1
        for tensor in graph.tables(fb.SUBGRAPH_TENSORS):
            tensors += 1
            code = tensor.scalar(fb.TENSOR_TYPE, fb.INT8)
            dtype = _type_name(code) or str(code)
            index = tensor.scalar(fb.TENSOR_BUFFER, fb.UINT32)
            buffer = model.at(fb.MODEL_BUFFERS, index) if 0 < index < buffer_count else None  # 0: the empty buffer
            stored = buffer is not None and fb.holds_data(buffer)
            (constants if stored else activations)[dtype] += 1
            quant = tensor.table(fb.TENSOR_QUANTIZATION)
            if stored and quant is not None and quant.count(fb.QUANTIZATION_SCALE) > 1:
                per_channel = True
    main = model.at(fb.MODEL_SUBGRAPHS, 0)  # the interpreter has checked there is one
    input_types = {_type_name(main.at(fb.SUBGRAPH_TENSORS, j).scalar(fb.TENSOR_TYPE, fb.INT8))
                   for j in main.scalars(fb.SUBGRAPH_INPUTS, fb.INT32)}
    return {
        "subgraphs": model.count(fb.MODEL_SUBGRAPHS),
        "tensors": tensors,
        "ops": dict(ops.most_common()),
        "quantization": {"detected": _quant_mode(constants, activations, input_types),
                         "weights_per_channel": per_channel},
    }


def _quant_mode(constants: Counter, activations: Counter, input_types: set) -> str:
    """float32 | float16 | dynamic | int8 | uint8 | int8 (float I/O) | int16x8: where the integers are."""
    # int16x8 computes (nearly) every activation in int16; an int8 model may keep a few int16
    # tensors (an LSTM's cell state, a 16-bit softmax), which must not make it int16x8.
    if activations["int16"] > activations["int8"] + activations["uint8"]:
        return "int16x8"
    if activations["int8"] or activations["uint8"]:  # integer activations: full integer quantisation
        for io_type in ("uint8", "int8"):
            if io_type in input_types:
                return io_type
        return "int8 (float I/O)"
    if constants["float16"]:
        return "float16"
    if constants["int8"] or constants["uint8"]:
        return "dynamic"
    return "float32"
