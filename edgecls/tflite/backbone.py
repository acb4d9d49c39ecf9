"""Open a pretrained NHWC image classifier or feature extractor .tflite as a backbone and find its
embedding: the pooled feature vector that feeds its last classifier layer.

From the output, walk back through ops that keep a tensor's meaning (SOFTMAX, RESHAPE, SQUEEZE,
QUANTIZE, DEQUANTIZE) to the last op with weights: a FULLY_CONNECTED, or a 1x1 CONV_2D on a 1x1
map (MobileNet V1's Conv2d_1c_1x1). Its input is the embedding. A model that ends in no such
op (a feature extractor) is its own embedding. `--embedding-tensor NAME` overrides the search.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from edgecls.errors import EdgeclsError
from edgecls.runtime import ModelFileError, read_metadata
from edgecls.runtime.interpreter import create_interpreter, find_backend
from edgecls.runtime.model import check_image_input, read_model_bytes
from edgecls.tflite.classifier import plain_bytes
from edgecls.tflite.graph import (
    dtype_name,
    has_data,
    ints,
    load_model,
    op_name,
    producers,
    quant_params,
    tensor_name,
)

PASS_THROUGH = {"SOFTMAX", "RESHAPE", "SQUEEZE", "QUANTIZE", "DEQUANTIZE"}
IMAGE_TYPES = ("float32", "uint8", "int8")


@dataclass(frozen=True)
class Embedding:
    """The tensor the new head reads: where it is, what it holds, and how it was chosen."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # float32 | uint8 | int8
    scale: float  # 0.0 for float32
    zero_point: int
    chosen_by: str  # a sentence: which op it feeds, or "--embedding-tensor"

    @property
    def size(self) -> int:
        return int(self.shape[-1])

    def describe(self) -> str:
        quant = f", scale {self.scale:.6g}, zero point {self.zero_point}" if self.dtype != "float32" else ""
        return f"{self.name} {list(self.shape)} {self.dtype}{quant} ({self.chosen_by})"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "index": self.index, "shape": list(self.shape), "dtype": self.dtype,
                "scale": self.scale, "zero_point": self.zero_point, "chosen_by": self.chosen_by}


@dataclass
class Backbone:
    path: Path
    content: bytes
    sha256: str
    input_shape: tuple[int, int, int]  # H, W, C
    input_dtype: str
    output_dtype: str
    embedding: Embedding
    metadata: Optional[dict]  # edgecls metadata, when the backbone is an edgecls model

    @property
    def pixel_range(self) -> Optional[tuple[float, float]]:
        """The input range the backbone's own edgecls metadata declares, if any."""
        declared = ((self.metadata or {}).get("input") or {}).get("pixel_range")
        return tuple(declared) if declared else None


def _image_inputs(model, name: str) -> list:
    """Subgraph 0's input tensors, refused unless one image within predict's limits (fixed size, at most
    MAX_INPUT_SIDE a side), before anything is allocated."""
    graph = model.subgraphs[0]
    inputs = [graph.tensors[int(i)] for i in graph.inputs]
    if len(inputs) != 1:
        shapes = [ints(t.shape) for t in inputs]
        raise ModelFileError(f"{name}: inputs {shapes} are not one NHWC image [1, H, W, 1|3]")
    check_image_input(ints(inputs[0].shape), ints(inputs[0].shapeSignature) or ints(inputs[0].shape), name)
    return inputs


def open_backbone(path: str | Path, embedding_tensor: Optional[str] = None) -> Backbone:
    """Read and check a backbone .tflite and find its embedding. One-line errors (exit 2)."""
    path = Path(path)
    try:
        file_content = read_model_bytes(path)  # the device runtime's reading and file checks
        model = load_model(file_content, path.name)  # every index checked, the user's file named
        inputs = _image_inputs(model, path.name)
        # What predict and info refuse (an op no interpreter has, a graph LiteRT cannot prepare) is refused
        # here too, naming this file: the interpreter checks the whole model, as it does for them.
        create_interpreter(file_content, find_backend(), 1, path.name)
        metadata = read_metadata(file_content)
        # A calibrated model (every edgecls export) is one IF around its classifier's subgraph: the
        # classifier alone is cut and grafted (cutting the wrapper crashed LiteRT: SIGSEGV).
        content = plain_bytes(file_content)
        if content is not file_content:
            model = load_model(content, path.name)
            inputs = _image_inputs(model, path.name)
        graph = model.subgraphs[0]
    except ModelFileError as exc:
        raise EdgeclsError(f"--backbone {exc}") from None
    image = inputs[0]
    if dtype_name(image) not in IMAGE_TYPES:
        raise EdgeclsError(f"--backbone {path.name}: input type {dtype_name(image)} is not float32, uint8 or int8")
    if len(graph.outputs) != 1:
        raise EdgeclsError(f"--backbone {path.name}: has {len(graph.outputs)} outputs; a backbone has one "
                           "(class scores or a feature vector)")
    output = graph.tensors[int(graph.outputs[0])]
    if embedding_tensor is not None:
        index, reason = _named(model, embedding_tensor, path.name), "--embedding-tensor"
    else:
        index, reason = find_embedding(model)
    tensor = graph.tensors[index]
    shape = tuple(int(d) for d in tensor.shape) if tensor.shape is not None else ()
    if len(shape) < 2 or any(d != 1 for d in shape[1:-1]) or shape[0] != 1:
        raise EdgeclsError(f"--backbone {path.name}: tensor {tensor_name(tensor)} is {list(shape)}, not a pooled "
                           "feature vector [1, D] or [1, 1, 1, D]: name one with --embedding-tensor")
    if dtype_name(tensor) not in IMAGE_TYPES:
        raise EdgeclsError(f"--backbone {path.name}: tensor {tensor_name(tensor)} is {dtype_name(tensor)}; "
                           "the embedding must be float32, uint8 or int8")
    try:
        scale, zero = quant_params(tensor)
    except ModelFileError as exc:
        raise EdgeclsError(f"--backbone {path.name}: {exc}") from None
    embedding = Embedding(index, tensor_name(tensor), shape, dtype_name(tensor), scale, zero, reason)
    return Backbone(path, content, hashlib.sha256(file_content).hexdigest(),
                    tuple(int(d) for d in image.shape[1:]), dtype_name(image), dtype_name(output), embedding, metadata)


def find_embedding(model) -> tuple[int, str]:
    """(tensor index, why) of the pooled features feeding the last layer with weights."""
    graph = model.subgraphs[0]
    made_by = producers(graph)
    tensor = int(graph.outputs[0])
    walked = []
    for _ in range(16):  # a classifier's tail is a handful of ops
        i = made_by.get(tensor)
        if i is None:
            break
        op = graph.operators[i]
        if op.inputs is None or not len(op.inputs):
            break
        name = op_name(model, op)
        if name in PASS_THROUGH:
            walked.append(name)
            tensor = int(op.inputs[0])
            continue
        if name == "FULLY_CONNECTED" or (name == "CONV_2D" and _one_by_one(model, graph, op)):
            return int(op.inputs[0]), f"the input of the last {name}{_after(walked)}"
        break
    return tensor, f"the model's own output{_after(walked)}: no classifier layer at its end"


def _after(walked: list[str]) -> str:
    return f", before {' > '.join(reversed(walked))}" if walked else ""


def _one_by_one(model, graph, op) -> bool:
    """A CONV_2D with a 1x1 kernel on a 1x1 map: a fully connected layer in disguise."""
    if len(op.inputs) < 2 or int(op.inputs[1]) < 0:  # no weights tensor (load_model checked the indices)
        return False
    x, w = graph.tensors[int(op.inputs[0])], graph.tensors[int(op.inputs[1])]
    if x.shape is None or w.shape is None or len(x.shape) != 4 or len(w.shape) != 4 or not has_data(model, w):
        return False
    return tuple(int(d) for d in x.shape[1:3]) == (1, 1) and tuple(int(d) for d in w.shape[1:3]) == (1, 1)


def _named(model, name: str, file: str) -> int:
    graph = model.subgraphs[0]
    names = [tensor_name(t) for t in graph.tensors]
    if name in names:
        index = names.index(name)
        tensor = graph.tensors[index]
        if has_data(model, tensor):
            raise EdgeclsError(f"--embedding-tensor {name}: a constant (weights) of {file}, not a feature tensor")
        return index
    near = ([n for n in names if name.lower() in n.lower()][:3]
            or difflib.get_close_matches(name, names, n=3, cutoff=0.4))
    hint = (f"; did you mean {' or '.join(near)}?" if near
            else "; see the tensor names with a model viewer such as Netron")
    raise EdgeclsError(f"--embedding-tensor {name}: no tensor of that name in {file}{hint}")
