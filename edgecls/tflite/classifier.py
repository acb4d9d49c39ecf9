"""A classifier .tflite read as one: the SOFTMAX its scores come from, and the plain classifier inside a
calibrated model (edgecls.calibrate wraps it in one IF with the similarity tail; see edgecls.runtime.openset).

    calibrated model --(plain)--> the classifier as it was (re-calibrating and a backbone cut start from it)

Here, below edgecls.calibrate and the backbone route, so that both unwrap a model without importing each other.
"""

from __future__ import annotations

from typing import Optional

from edgecls.runtime.metadata import ModelFileError
from edgecls.runtime.openset import SIGNATURE
from edgecls.tflite import graph as fb

_PASS_THROUGH = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE"}  # between the SOFTMAX and the output


def find_softmax(model) -> tuple[Optional[int], float, int]:
    """(the SOFTMAX op that makes subgraph 0's output or None, its beta (1.0 without one), the logits: the
    SOFTMAX input, else the output itself), walking back from the output through QUANTIZE/DEQUANTIZE/RESHAPE/
    SQUEEZE."""
    graph = model.subgraphs[0]
    made_by = fb.producers(graph)
    tensor, softmax = int(graph.outputs[0]), None
    for _ in range(8):
        i = made_by.get(tensor)
        if i is None:
            break
        name = fb.op_name(model, graph.operators[i])
        if name == "SOFTMAX":
            softmax = i
            break
        if name not in _PASS_THROUGH:
            break
        tensor = int(graph.operators[i].inputs[0])
    if softmax is None:
        return None, 1.0, int(graph.outputs[0])
    op = graph.operators[softmax]
    return softmax, float(op.builtinOptions.beta) if op.builtinOptions is not None else 1.0, int(op.inputs[0])


def is_wrapped(model) -> bool:
    """A calibrated model: subgraph 0 is one IF calling the classifier (subgraph 1, signature SIGNATURE)."""
    return (len(model.subgraphs) == 2 and len(model.subgraphs[0].operators or []) == 1
            and fb.op_name(model, model.subgraphs[0].operators[0]) == "IF"
            and _text(model.subgraphs[1].name) == SIGNATURE)


def plain(model, beta_before: Optional[float] = None) -> None:
    """Undo calibration in place: the wrapped classifier alone again (its tail cut off), and the
    SOFTMAX's beta as it was before (when the metadata recorded it)."""
    if is_wrapped(model):
        inner = model.subgraphs[1]
        signatures = [sig for sig in model.signatureDefs or [] if _text(sig.signatureKey) != SIGNATURE]
        outer = model.subgraphs[0]
        model.subgraphs = [inner]
        inner.name = outer.name = None
        fb.cut(model, int(inner.outputs[0]), keep_metadata=True)
        for signature in signatures:  # the wrapper's serving_default: the classifier's again
            signature.inputs[0].tensorIndex = int(inner.inputs[0])
            signature.outputs[0].tensorIndex = int(inner.outputs[0])
        model.signatureDefs = signatures
    if beta_before is not None:
        softmax, _, _ = find_softmax(model)
        if softmax is None:
            raise ModelFileError("the metadata records a temperature folded into a SOFTMAX the model does not have")
        model.subgraphs[0].operators[softmax].builtinOptions.beta = float(beta_before)


def plain_bytes(content: bytes) -> bytes:
    """The classifier a calibrated .tflite was made from (its layers as the converter wrote them, for tools
    that read intermediate tensors); any other model unchanged (the same object)."""
    from edgecls.runtime.metadata import read_metadata

    model = fb.load_model(content)
    if not is_wrapped(model):
        return content
    temperature = ((read_metadata(content) or {}).get("openset") or {}).get("temperature") or {}
    plain(model, temperature.get("beta_before") if temperature.get("applied") == "graph" else None)
    return fb.serialize(model)


def rounded_logits(content: bytes) -> Optional[tuple[bytes, float]]:
    """(the classifier cut at its SOFTMAX input, that SOFTMAX's beta) when its probabilities are rounded
    (a quantised SOFTMAX output: steps of 1/256 for int8, so a confident score sits at 0.996 whatever small
    change an image gets), else None. softmax(beta * dequantised logits) is the probability before rounding.
    A calibrated model: its classifier with the calibrated beta, the one that answers."""
    model = fb.load_model(content)
    plain(model)  # no beta_before: the SOFTMAX keeps the beta the calibrated model runs with
    softmax, beta, logits = find_softmax(model)
    if softmax is None:
        return None
    graph = model.subgraphs[0]
    if fb.dtype_name(graph.tensors[int(graph.operators[softmax].outputs[0])]) == "float32":
        return None  # a float SOFTMAX: its output is not rounded to a few steps
    fb.cut(model, logits)
    return fb.serialize(model), beta


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")
