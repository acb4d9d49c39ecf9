"""What is inside a .tflite file (`edgecls info`): tensors, ops, quantisation, metadata.

Works on any .tflite, with or without edgecls metadata. The graph is read with the flatbuffer
schema module only after the interpreter has loaded (and so verified) the file.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgecls.errors import EdgeclsError
from edgecls.runtime.interpreter import create_interpreter, find_backend
from edgecls.runtime.metadata import read_metadata, schema
from edgecls.runtime.model import (
    check_classifier,
    input_spec,
    output_kind,
    read_model_bytes,
    resolve_labels,
)


def inspect_model(path: str | os.PathLike, backend: str | None = None) -> dict[str, Any]:
    """A JSON-ready description of the model at `path`. Raises ModelFileError for a bad file."""
    path = Path(path)
    content = read_model_bytes(path)
    chosen = find_backend(backend)
    interpreter = create_interpreter(content, chosen, num_threads=1, name=path.name)
    metadata = read_metadata(content)
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    graph = _graph(content)
    report: dict[str, Any] = {
        "file": str(path),
        "size_bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "backend": {"name": chosen.name, "version": chosen.version},
        "inputs": [_tensor(d) for d in inputs],
        "outputs": [_tensor(d) for d in outputs],
        **graph,
        "classifier": _classifier(interpreter, metadata, path),
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


def _classifier(interpreter: Any, metadata: dict | None, path: Path) -> dict[str, Any]:
    try:
        inp, out = check_classifier(interpreter.get_input_details(), interpreter.get_output_details(), path.name)
        num_classes = int(out["shape"][-1])
        labels, source = resolve_labels(None, metadata, path, num_classes)
        spec = input_spec(inp, metadata, path.name)
    except EdgeclsError as exc:
        return {"image_classifier": False, "reason": str(exc)}
    return {
        "image_classifier": True,
        "input": {"height": spec.height, "width": spec.width, "color": spec.color,
                  "batch": "dynamic" if int(inp["shape_signature"][0]) == -1 else 1,
                  "resize": spec.resize, "fit": spec.fit,
                  "preprocessing_source": "metadata" if ((metadata or {}).get("input") or {}).get("resize")
                  else "default"},
        "num_classes": num_classes,
        "output": output_kind(interpreter, out["index"], metadata),  # unknown: checked per batch
        "labels_source": source,
        "labels": labels,
    }


def _type_names(s) -> dict[int, str]:
    return {v: k.lower() for k, v in vars(s.TensorType).items() if not k.startswith("_")}


def _op_names(model, s) -> list[str]:
    builtin = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Old files keep the code in the deprecated int8 field; new ones in both (the larger wins).
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if number == s.BuiltinOperator.CUSTOM:
            names.append(f"CUSTOM:{(code.CustomCode() or b'?').decode('utf-8', 'replace')}")
        else:
            names.append(builtin.get(number, f"BUILTIN_{number}"))
    return names


def _graph(content: bytes) -> dict[str, Any]:
    """Op histogram, tensor counts and the detected quantisation mode of every subgraph."""
    s = schema()
    model = s.Model.GetRootAs(content, 0)
    op_names, type_names = _op_names(model, s), _type_names(s)
    ops: Counter = Counter()
    constants: Counter = Counter()  # dtype of weights and other tensors stored in the file
    activations: Counter = Counter()  # dtype of tensors computed at run time
    per_channel = False
    tensors = 0
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            ops[op_names[graph.Operators(i).OpcodeIndex()]] += 1
        for i in range(graph.TensorsLength()):
            tensor = graph.Tensors(i)
            tensors += 1
            dtype = type_names.get(tensor.Type(), str(tensor.Type()))
            buffer = model.Buffers(tensor.Buffer()) if 0 < tensor.Buffer() < model.BuffersLength() else None
            stored = buffer is not None and (buffer.DataLength() > 0 or buffer.Offset() > 1)
            (constants if stored else activations)[dtype] += 1
            quant = tensor.Quantization()
            if stored and quant is not None and quant.ScaleLength() > 1:
                per_channel = True
    main = model.Subgraphs(0)  # the interpreter has checked there is one
    input_types = {type_names.get(main.Tensors(main.Inputs(j)).Type()) for j in range(main.InputsLength())}
    return {
        "subgraphs": model.SubgraphsLength(),
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
