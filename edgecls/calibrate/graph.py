"""The .tflite surgery of calibration (flatbuffer object API, no TensorFlow): find a classifier's
logits and embedding, fold a temperature into its SOFTMAX, add the similarity tail, and wrap the
result so that subgraph 0 stays a one-output classifier (see edgecls.runtime.openset).

    plain classifier --(probe)--> outputs [probabilities, logits, embedding] for fitting
    plain classifier --(calibrated)--> SOFTMAX beta = beta / T  [+ tail + IF wrapper]
    calibrated model --(plain: edgecls.tflite.classifier)--> the classifier as it was
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np

from edgecls.runtime.metadata import schema
from edgecls.runtime.openset import PROBABILITIES_OUTPUT, SIGNATURE, SIMILARITY_OUTPUT
from edgecls.tflite import graph as fb
from edgecls.tflite.backbone import find_embedding
from edgecls.tflite.classifier import find_softmax

_EMBEDDING_TYPES = ("float32", "uint8", "int8")
HYBRID_FC_VERSION = 9  # float input, int8 weights, asymmetric input quantisation (TFLite's dynamic-range FC)


@dataclass(frozen=True)
class Tail:
    """Where a classifier's scores come from, in subgraph 0 of its plain model."""

    softmax: Optional[int]  # the index of the SOFTMAX op that makes the output, or None (a logits output)
    beta: float  # its beta (1.0 without one)
    logits: int  # the tensor the temperature divides: the SOFTMAX input, else the output itself
    embedding: Optional[int]  # the pooled features feeding the last classifier layer, or None
    embedding_name: str = ""
    dims: int = 0


def find_tail(model) -> Tail:
    """The SOFTMAX and the logits (edgecls.tflite.classifier.find_softmax) and the embedding
    (edgecls.tflite.backbone's search: the input of the last FULLY_CONNECTED or 1x1 CONV_2D) of subgraph 0."""
    softmax, beta, logits = find_softmax(model)
    graph = model.subgraphs[0]
    index, reason = find_embedding(model)
    embedding = None
    if not reason.startswith("the model's own output"):  # a classifier layer was found: its input
        t = graph.tensors[index]
        shape = [int(d) for d in t.shape] if t.shape is not None else []
        if (fb.dtype_name(t) in _EMBEDDING_TYPES and len(shape) >= 2 and all(d == 1 for d in shape[1:-1])
                and _per_tensor(t)):
            embedding = index
    if embedding is None:
        return Tail(softmax, beta, logits, None)
    t = graph.tensors[embedding]
    return Tail(softmax, beta, logits, embedding, fb.tensor_name(t), int(t.shape[-1]))


def _per_tensor(tensor) -> bool:
    q = tensor.quantization
    return q is None or q.scale is None or len(q.scale) <= 1


def probe(model, tail: Tail) -> bytes:
    """A copy whose subgraph 0 outputs [output, logits, embedding?]: what fitting reads."""
    model = copy.deepcopy(model)
    graph = model.subgraphs[0]
    outputs = [int(graph.outputs[0]), tail.logits] + ([tail.embedding] if tail.embedding is not None else [])
    graph.outputs = np.array(outputs, dtype=np.int32)
    model.signatureDefs = []
    return fb.serialize(model)


# ---------------------------------------------------------------------- calibrated model
def calibrated(model, tail: Tail, temperature: float, prototypes: Optional[np.ndarray]) -> bytes:
    """The classifier with beta / T in its SOFTMAX (when it has one) and, with `prototypes` (M, D),
    the similarity tail and the IF wrapper; metadata entries are kept (the caller rewrites edgecls')."""
    model = copy.deepcopy(model)
    if tail.softmax is not None:
        model.subgraphs[0].operators[tail.softmax].builtinOptions.beta = tail.beta / temperature
    if prototypes is not None:
        similarity = _add_similarity(model, tail, prototypes)
        _wrap(model, similarity)
    return fb.serialize(model)


def _add_similarity(model, tail: Tail, prototypes: np.ndarray) -> int:
    """Append to subgraph 0: [DEQUANTIZE] > [RESHAPE to B, D] > L2_NORMALIZATION > FULLY_CONNECTED by the
    prototypes (8-bit weights in a quantised model) > REDUCE_MAX over them: the cosine similarity to the
    nearest prototype, (B, 1) float32."""
    s = schema()
    graph = model.subgraphs[0]
    source = graph.tensors[tail.embedding]
    signature = source.shapeSignature
    dynamic = signature is not None and len(signature) and int(signature[0]) == -1
    batch = int(source.shape[0])
    dims, count = tail.dims, int(prototypes.shape[0])
    x = tail.embedding
    if fb.dtype_name(source) != "float32":
        shape = [int(d) for d in source.shape]
        y = fb.add_tensor(graph, "edgecls_openset/embedding", shape, "float32", dynamic=dynamic)
        fb.add_op(model, graph, "DEQUANTIZE", 2, [x], [y])
        x = y
    if len(source.shape) != 2:  # [B, 1, 1, D] (a pooled feature map): [B, D]; every op is time on a small model
        new_shape = fb.add_const(model, graph, "edgecls_openset/shape", np.array([-1, dims], np.int32), "int32")
        flat = fb.add_tensor(graph, "edgecls_openset/flat", [batch, dims], "float32", dynamic=dynamic)
        options = s.ReshapeOptionsT()
        options.newShape = np.array([-1, dims], np.int32)
        fb.add_op(model, graph, "RESHAPE", 1, [x, new_shape], [flat], s.BuiltinOptions.ReshapeOptions, options)
        x = flat
    unit = fb.add_tensor(graph, "edgecls_openset/normalised", [batch, dims], "float32", dynamic=dynamic)
    fb.add_op(model, graph, "L2_NORMALIZATION", 1, [x], [unit], s.BuiltinOptions.L2NormOptions, s.L2NormOptionsT())
    fc = s.FullyConnectedOptionsT()
    if fb.dtype_name(source) == "float32":
        weights = fb.add_const(model, graph, "edgecls_openset/prototypes", np.asarray(prototypes, np.float32),
                               "float32")
        version = 1
    else:  # a quantised model keeps its prototypes in 8 bits too: a hybrid FULLY_CONNECTED (float in and out)
        scale = float(np.abs(prototypes).max()) / 127.0 or 1.0
        q = np.clip(np.rint(np.asarray(prototypes) / scale), -127, 127).astype(np.int8)
        weights = fb.add_const(model, graph, "edgecls_openset/prototypes", q, "int8", scale, 0)
        fc.asymmetricQuantizeInputs = True
        version = HYBRID_FC_VERSION
    cosines = fb.add_tensor(graph, "edgecls_openset/cosines", [batch, count], "float32", dynamic=dynamic)
    fb.add_op(model, graph, "FULLY_CONNECTED", version, [unit, weights, -1], [cosines],
              s.BuiltinOptions.FullyConnectedOptions, fc)
    axis = fb.add_const(model, graph, "edgecls_openset/axis", np.array([1], np.int32), "int32")
    best = fb.add_tensor(graph, f"edgecls_openset/{SIMILARITY_OUTPUT}", [batch, 1], "float32", dynamic=dynamic)
    reducer = s.ReducerOptionsT()
    reducer.keepDims = True
    fb.add_op(model, graph, "REDUCE_MAX", 1, [cosines, axis], [best], s.BuiltinOptions.ReducerOptions, reducer)
    return best


def _wrap(model, similarity: int) -> None:
    """Subgraph 0 becomes subgraph 1 (outputs: probabilities, similarity; signature SIGNATURE), and a
    new subgraph 0 calls it with one IF (a constant true condition) and outputs the probabilities."""
    s = schema()
    inner = model.subgraphs[0]
    probabilities = int(inner.outputs[0])
    inner.outputs = np.array([probabilities, similarity], dtype=np.int32)
    inner.name = SIGNATURE
    outer = s.SubGraphT()
    outer.tensors, outer.operators, outer.name = [], [], "edgecls_classifier"
    model.subgraphs = [outer, inner]

    def mirror(index: int) -> int:  # a tensor of the wrapper with the same name, shape, type and quantisation
        twin = copy.deepcopy(inner.tensors[index])
        twin.buffer = 0
        outer.tensors.append(twin)
        return len(outer.tensors) - 1

    image, probs, sim = mirror(int(inner.inputs[0])), mirror(probabilities), mirror(similarity)
    condition = fb.add_const(model, outer, "edgecls_openset/always", np.array(True), "bool")
    options = s.IfOptionsT()
    options.thenSubgraphIndex, options.elseSubgraphIndex = 1, 1
    fb.add_op(model, outer, "IF", 1, [condition, image], [probs, sim], s.BuiltinOptions.IfOptions, options)
    outer.inputs = np.array([image], dtype=np.int32)
    outer.outputs = np.array([probs], dtype=np.int32)

    def entry(name: str, tensor: int):
        found = s.TensorMapT()
        found.name, found.tensorIndex = name, tensor
        return found

    kept = []
    for signature in model.signatureDefs or []:  # e.g. the converter's serving_default: now the wrapper's
        if len(signature.inputs or []) == 1 and len(signature.outputs or []) == 1 and not signature.subgraphIndex:
            signature.inputs[0].tensorIndex, signature.outputs[0].tensorIndex = image, probs
            kept.append(signature)
    ours = s.SignatureDefT()
    ours.signatureKey, ours.subgraphIndex = SIGNATURE, 1
    ours.inputs = [entry(fb.tensor_name(inner.tensors[int(inner.inputs[0])]), int(inner.inputs[0]))]
    ours.outputs = [entry(PROBABILITIES_OUTPUT, probabilities), entry(SIMILARITY_OUTPUT, similarity)]
    model.signatureDefs = kept + [ours]
