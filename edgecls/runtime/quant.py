"""The pure conversions between pixels, tensors and scores: quantise, dequantise, softmax.

numpy only (the size of pycoral's `adapters`); one tolerance policy for "is this a probability
distribution", used by the runtime, export and bench alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from edgecls.runtime.metadata import ModelFileError

if TYPE_CHECKING:
    from edgecls.runtime.model import InputSpec

DISTRIBUTION_TOLERANCE = 1e-3  # float rows: a softmax sums to 1 within float32 rounding


def quant_tolerance(num_classes: int, output_scale: float) -> float:
    """The tolerance for a quantised softmax's rows: they sum to 1 only up to half a step per class."""
    return DISTRIBUTION_TOLERANCE + 0.5 * num_classes * output_scale


def input_converter(spec: InputSpec) -> Callable[..., np.ndarray]:
    """uint8 pixels -> the input tensor's values, chosen once per model (the hot path calls it).

    A pixel v becomes the real value lo + v * (hi - lo) / 255, quantised with the model's own
    scale and zero point. For edgecls models (range 0..255, scale 1, zero point -128) that is
    exactly v - 128, done as a byte XOR with 0x80. `convert(batch, out)` writes into `out` (an
    array of the input's shape and dtype, reused call after call: no allocation on the hot path)
    and returns it, or returns the batch itself when it already is the input (uint8, no shift).
    """
    low, high = spec.pixel_range
    step = (high - low) / 255.0
    if spec.dtype == np.float32:
        if (low, high) == (0.0, 255.0):
            return lambda batch, out=None: batch.astype(np.float32) if out is None else _copied(batch, out)
        scale, offset = np.float32(step), np.float32(low)

        def affine(batch: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
            if out is None:
                return batch.astype(np.float32) * scale + offset
            np.multiply(batch, scale, out=out, dtype=np.float32)  # the same float32 maths, in place
            return np.add(out, offset, out=out)

        return affine
    info = np.iinfo(spec.dtype)
    if spec.scale <= 0:
        raise ModelFileError(f"{spec.dtype.__name__} input has no quantisation scale")
    real = low + np.arange(256) * step
    table = np.clip(np.rint(real / spec.scale + spec.zero_point), info.min, info.max).astype(spec.dtype)
    offset = table.astype(np.int64) - np.arange(256)
    if np.all(offset == offset[0]):
        if spec.dtype == np.uint8 and offset[0] == 0:
            return lambda batch, out=None: batch
        if spec.dtype == np.int8 and offset[0] == -128:
            return _flip_sign
    return lambda batch, out=None: table[batch] if out is None else np.take(table, batch, out=out)


_FLIP = np.uint8(0x80)


def _flip_sign(batch: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """v - 128 for uint8 v, as int8: a byte XOR with 0x80 (edgecls' own int8 models)."""
    if out is None:
        return np.bitwise_xor(batch, _FLIP).view(np.int8)
    return np.bitwise_xor(batch, _FLIP, out=out.view(np.uint8)).view(np.int8)


def single_writer(spec: InputSpec, out: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """classify()'s input step: one image's uint8 pixels (H, W, C) as the input tensor (1, H, W, C),
    written into `out` (reused) where a conversion is needed. For edgecls' own int8 models the XOR goes
    straight into out's bytes: half the time of input_converter's batch form (no views made per call),
    which is a tenth of a small model's invoke."""
    convert = input_converter(spec)
    if convert is _flip_sign:
        target, xor = out.view(np.uint8)[0], np.bitwise_xor
        flips = np.full(target.shape, _FLIP)  # an array operand: numpy converts no scalar per call (-0.2 us)

        def write(pixels: np.ndarray) -> np.ndarray:
            xor(pixels, flips, out=target)
            return out

        return write
    return lambda pixels: convert(pixels[None], out)


def row_writer(spec: InputSpec, rows: np.ndarray) -> Callable[[np.ndarray, int], None]:
    """classify_many's input step: one image's uint8 pixels (H, W, C) converted into row i of `rows` (a batch
    of the input's dtype, reused), right after it is decoded, while its pixels are still in the cache:
    one pass, where stacking a batch and then converting it made two over memory (~18 us an image on
    the 96x96 mobile CNN)."""
    convert = input_converter(spec)
    if convert is _flip_sign:
        target, xor = rows.view(np.uint8), np.bitwise_xor
        flips = np.full(target.shape[1:], _FLIP)
        return lambda pixels, i: xor(pixels, flips, out=target[i])
    probe = np.zeros((1, *spec.shape), np.uint8)
    if convert(probe, rows[:1]) is probe:  # the pixels are the input already (uint8, no shift)
        return lambda pixels, i: np.copyto(rows[i], pixels)
    return lambda pixels, i: convert(pixels[None], rows[i:i + 1])


def _copied(batch: np.ndarray, out: np.ndarray) -> np.ndarray:
    np.copyto(out, batch)
    return out


def output_converter(dtype: type, scale: float, zero_point: int) -> Callable[[np.ndarray], np.ndarray]:
    """Output tensor -> float32 scores.

    An 8-bit output is looked up in a 256-entry table of (value - zero point) * scale, computed
    once from the integer values: no int8 wraparound, and one numpy call on the hot path.
    """
    if dtype == np.float32:
        return lambda raw: raw
    table = _output_table(dtype, scale, zero_point)
    return lambda raw: table.take(raw.view(np.uint8))


def output_scores(dtype: type, scale: float, zero_point: int) -> list[float] | None:
    """For a top-1 read straight from an 8-bit output: the score of each bit pattern (value & 0xFF)
    as the Python float output_converter gives, when the scores keep the values' order (so the
    argmax of the raw tensor is the argmax of the scores, ties to the lower index alike); else None."""
    if dtype == np.float32:
        return None
    table = _output_table(dtype, scale, zero_point)
    in_value_order = table[np.argsort(np.arange(256, dtype=np.uint8).view(dtype), kind="stable")]
    return table.tolist() if bool(np.all(np.diff(in_value_order) > 0)) else None


def _output_table(dtype: type, scale: float, zero_point: int) -> np.ndarray:
    values = np.arange(256, dtype=np.uint8).view(dtype).astype(np.float64)  # every bit pattern
    return ((values - zero_point) * scale).astype(np.float32)


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits, shifted by the row maximum (no overflow)."""
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def is_distribution(scores: np.ndarray, tolerance: float = DISTRIBUTION_TOLERANCE) -> bool:
    """Whether each row is a probability distribution (no negatives, sums to 1), within `tolerance`."""
    return bool(scores.min() >= -tolerance and np.all(np.abs(scores.sum(axis=-1) - 1.0) <= tolerance))
