"""Where along the network a quantised model parts ways with its float twin, on one image (no TensorFlow).

Both .tflite files run with every intermediate tensor kept (LiteRT's
`experimental_preserve_all_tensors`, without the XNNPACK delegate, whose fused kernels keep no
intermediates). Each float op's output is matched with the quantised model's tensor of the same
name and shape: the TF converter names a tensor after the Keras layers fused into it
('seed_cnn_1/conv2_1/Relu;...'), identically in the float32 and int8 exports of one model. Ops left
unmatched (third-party pairs, renamed tensors) are paired in op order by (op type, shape).
Quantised tensors are dequantised, scale * (q - zero_point), per channel where they are per
channel, and compared by SNR (dB) and cosine.

A layer is over the threshold on an image when its SNR is below `threshold_db`, or (once a
baseline of typical images is measured, see `DivergenceProbe.calibrate`) more than `drop_db`
below that layer's median SNR while under HEALTHY_DB (40 dB: an error that small is no divergence):
a flip of a healthy model is rarely a broken layer, more often an
ordinary error that grows unusually at one layer, or a near tie that only the softmax decides.
The divergence point is the first layer over: errors accumulate, so the first, not the worst,
is where to look.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np

from edgecls.errors import EdgeclsError

# The native-stderr guard and the quantiser of an input batch: internal names, imported here only.
from edgecls.native_stderr import quiet_native_stderr
from edgecls.runtime import Classifier, find_backend
from edgecls.runtime.model import read_model_bytes
from edgecls.runtime.quant import input_converter

DEFAULT_DROP_DB = 6.0  # below a layer's typical SNR: 4x its usual error power
# A layer at this SNR or more is healthy whatever its typical SNR: its error is under 1/10,000 of its
# signal. (A softmax that is usually saturated can drop from 70 to 58 dB on a near tie: that is the tie,
# not a diverging layer.)
HEALTHY_DB = 40.0
BASELINE_IMAGES = 50  # typical images for the per-layer median SNR
DEFAULT_THRESHOLD_DB = 20.0  # healthy int8 layers of edgecls models sit at 30-45 dB (scripts/explain_report.py)
_SKIPPED_OPS = {"QUANTIZE", "DEQUANTIZE", "SHAPE", "STRIDED_SLICE", "PACK", "DELEGATE"}
_SCOPE_SUFFIX = re.compile(r"_\d+$")  # the SavedModel export names layer `conv1`'s scope `conv1_1`


@dataclass
class LayerDivergence:
    """One matched op: float output against the quantised output, dequantised."""

    index: int  # op index in the float model
    op: str
    layer: str  # the Keras layer the tensor name points to, else the tensor name
    tensor: str
    shape: list[int]
    snr_db: float  # inf when identical
    cosine: float
    matched_by: str  # "name" or "order"


@dataclass
class Divergence:
    layers: list[LayerDivergence]
    threshold_db: float
    typical_db: Optional[list[float]] = None  # per layer: the median SNR on typical images
    drop_db: float = DEFAULT_DROP_DB

    def over(self, i: int) -> Optional[str]:
        """Why layer i is over the threshold ('below 20 dB', '7.1 dB under its typical 41.3 dB'), or None."""
        snr = self.layers[i].snr_db
        if snr < self.threshold_db:
            return f"{snr:.1f} dB, below {self.threshold_db:g} dB"
        if (self.typical_db is not None and np.isfinite(self.typical_db[i]) and snr < HEALTHY_DB
                and snr < self.typical_db[i] - self.drop_db):
            return f"{snr:.1f} dB, {self.typical_db[i] - snr:.1f} dB under its typical {self.typical_db[i]:.1f} dB"
        return None

    @property
    def first_index(self) -> Optional[int]:
        return next((i for i in range(len(self.layers)) if self.over(i)), None)

    @property
    def first_over(self) -> Optional[LayerDivergence]:
        """The first layer over the threshold (divergence point), or None."""
        i = self.first_index
        return None if i is None else self.layers[i]

    @property
    def worst(self) -> Optional[LayerDivergence]:
        return min(self.layers, key=lambda row: row.snr_db, default=None)

    def to_json(self) -> dict[str, Any]:
        i = self.first_index
        return {"threshold_db": self.threshold_db, "drop_db": self.drop_db,
                "first_over": self.layers[i].layer if i is not None else None,
                "first_over_reason": self.over(i) if i is not None else None,
                "layers": [{**asdict(row), "snr_db": _finite(row.snr_db),
                            "typical_db": _finite(self.typical_db[k]) if self.typical_db else None}
                           for k, row in enumerate(self.layers)]}


def layer_name(tensor: str, op: str = "") -> str:
    """'seed_cnn_1/conv2_1/Relu;seed_cnn_1/conv2_1/BiasAdd' -> 'conv2'. A tensor named without Keras
    scopes ('StatefulPartitionedCall_1:0', the output) is called by its op ('softmax'), else as it is."""
    parts = tensor.split(";")[0].split("/")
    if len(parts) < 3:  # no model scope / layer scope / op: not a Keras layer name
        return op.lower() if op else tensor.split(";")[0]
    return _SCOPE_SUFFIX.sub("", parts[1])


class DivergenceProbe:
    """A float .tflite and its quantised twin, loaded once, compared layer by layer image after image."""

    def __init__(self, float_model: str | os.PathLike, quant_model: str | os.PathLike, backend: Optional[str] = None,
                 threshold_db: float = DEFAULT_THRESHOLD_DB, input_range: Optional[tuple[float, float]] = None,
                 drop_db: float = DEFAULT_DROP_DB):
        self.threshold_db, self.drop_db = threshold_db, drop_db
        self.typical_db: Optional[list[float]] = None
        self.float_clf = Classifier(float_model, num_threads=1, backend=backend, input_range=input_range)
        self.quant_clf = Classifier(quant_model, num_threads=1, backend=backend, input_range=input_range)
        if self.float_clf.input_spec.shape != self.quant_clf.input_spec.shape:
            raise EdgeclsError(f"{self.float_clf.path.name} and {self.quant_clf.path.name} take different inputs")
        self._float = _Traced(self.float_clf, backend)
        self._quant = _Traced(self.quant_clf, backend)
        self.pairs = _match(self._float.ops, self._quant.ops)
        if not self.pairs:
            raise EdgeclsError(f"no intermediate tensors of {self.float_clf.path.name} match "
                               f"{self.quant_clf.path.name}'s: are they the same network?")

    def compare(self, pixels: np.ndarray) -> Divergence:
        """Per-layer SNR and cosine of the two models on uint8 `pixels` (H, W, C)."""
        self._float.run(pixels)
        self._quant.run(pixels)
        rows = []
        for f_op, q_op, how in self.pairs:
            ref, got = self._float.value(f_op), self._quant.value(q_op)
            rows.append(LayerDivergence(f_op["index"], f_op["op_name"], layer_name(f_op["name"], f_op["op_name"]),
                                        f_op["name"], list(ref.shape), snr_db(ref, got), cosine(ref, got), how))
        return Divergence(rows, self.threshold_db, self.typical_db, self.drop_db)

    def calibrate(self, images: np.ndarray) -> list[float]:
        """Measure each layer's typical SNR (the median over `images`, uint8 (N, H, W, C)): from then on a
        layer also counts as over the threshold on an image where it falls `drop_db` below it."""
        if not len(images):
            raise EdgeclsError("no images to measure the typical per-layer divergence on")
        self.typical_db = None
        table = np.array([[row.snr_db for row in self.compare(image).layers] for image in images])
        table = np.where(np.isfinite(table), table, 200.0)  # identical outputs: far above any threshold
        self.typical_db = [float(v) for v in np.median(table, axis=0)]
        return self.typical_db


class _Traced:
    """An interpreter of `clf`'s model that keeps every tensor, without delegates."""

    def __init__(self, clf: Classifier, backend: Optional[str]):
        cls = find_backend(backend).interpreter_class
        module = sys.modules[cls.__module__]
        extra: dict[str, Any] = {"experimental_preserve_all_tensors": True}
        resolver = getattr(module, "OpResolverType", None)
        if resolver is not None:  # XNNPACK fuses ops and keeps no intermediate tensor
            extra["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        content = read_model_bytes(clf.path)  # the capped reader, as the Classifier read it
        if (clf.metadata or {}).get("openset"):
            from edgecls.tflite.classifier import plain_bytes  # a calibrated model: its classifier's own layers

            content = plain_bytes(content)
        try:
            with quiet_native_stderr():
                self.interpreter = cls(model_content=content, num_threads=1, **extra)
        except TypeError:
            raise EdgeclsError(f"the {find_backend(backend).name} interpreter cannot keep intermediate tensors "
                               "(experimental_preserve_all_tensors): use LiteRT (pip install ai-edge-litert)") from None
        inp = self.interpreter.get_input_details()[0]
        self.interpreter.resize_tensor_input(inp["index"], [1, *clf.input_spec.shape])
        self.interpreter.allocate_tensors()
        self._input = inp["index"]
        self._to_input = input_converter(clf.input_spec)
        details = {d["index"]: d for d in self.interpreter.get_tensor_details()}
        self.ops = []
        for op in self.interpreter._get_ops_details():  # a private but long-stable API (classify uses it too)
            if op["op_name"] in _SKIPPED_OPS or len(op["outputs"]) != 1:
                continue
            tensor = details[int(op["outputs"][0])]
            if tensor["dtype"] not in (np.float32, np.int8, np.uint8, np.int16):
                continue
            self.ops.append({"index": op["index"], "op_name": op["op_name"], "name": tensor["name"],
                             "tensor": tensor["index"], "shape": tuple(int(d) for d in tensor["shape"]),
                             "dtype": tensor["dtype"], "quant": tensor.get("quantization_parameters") or {}})

    def run(self, pixels: np.ndarray) -> None:
        self.interpreter.set_tensor(self._input, self._to_input(pixels[None]))
        self.interpreter.invoke()

    def value(self, op: dict) -> np.ndarray:
        raw = self.interpreter.get_tensor(op["tensor"])
        return dequantize(raw, op["quant"])


def dequantize(raw: np.ndarray, quant: dict) -> np.ndarray:
    """scale * (q - zero_point) as float64, per channel along `quantized_dimension` when it has several."""
    if raw.dtype == np.float32:
        return raw.astype(np.float64)
    scales = np.asarray(quant.get("scales", [1.0]), np.float64)
    zeros = np.asarray(quant.get("zero_points", [0]), np.float64)
    if scales.size == 0:
        raise EdgeclsError("a quantised tensor without a scale")
    if scales.size > 1:
        shape = [1] * raw.ndim
        shape[int(quant.get("quantized_dimension", 0))] = -1
        scales, zeros = scales.reshape(shape), zeros.reshape(shape)
    return scales * (raw.astype(np.float64) - zeros)


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """10 log10(signal power / error power); inf when equal, -inf-free for a zero signal (0 dB)."""
    noise = float(np.sum((reference - other) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0:
        return float("inf")
    if signal == 0:
        return 0.0
    return float(10 * np.log10(signal / noise))


def cosine(reference: np.ndarray, other: np.ndarray) -> float:
    a, b = reference.ravel(), other.ravel()
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / norms) if norms else (1.0 if not a.any() and not b.any() else 0.0)


def _match(float_ops: list[dict], quant_ops: list[dict]) -> list[tuple[dict, dict, str]]:
    """(float op, quantised op, how) in float op order: by tensor name and shape, else by op order."""
    by_name = {(op["name"], op["shape"]): op for op in quant_ops}
    pairs: dict[int, tuple[dict, dict, str]] = {}
    for op in float_ops:
        twin = by_name.get((op["name"], op["shape"]))
        if twin is not None:
            pairs[op["index"]] = (op, twin, "name")
    used = {pair[1]["index"] for pair in pairs.values()}
    rest = [op for op in quant_ops if op["index"] not in used]
    position = 0
    for op in float_ops:  # order alignment for the rest: the next unused quantised op of the same type and shape
        if op["index"] in pairs:
            continue
        for j in range(position, len(rest)):
            if (rest[j]["op_name"], rest[j]["shape"]) == (op["op_name"], op["shape"]):
                pairs[op["index"]] = (op, rest[j], "order")
                position = j + 1
                break
    return [pairs[op["index"]] for op in float_ops if op["index"] in pairs]


def _finite(value: float) -> Optional[float]:
    return round(value, 3) if np.isfinite(value) else None
