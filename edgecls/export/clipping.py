"""Percentile clipping of int8 activation ranges: a calibration method beyond the converter's min/max.

    calibrated = calibrate_tf(saved, "int8", calibration.images)    # min/max statistics per tensor
    converted = quantize_clipped(calibrated, calibration.images, 99.9)

TensorFlow's calibrator records each activation's min and max over the calibration images, so
one outlier (one image, one unit) sets the scale of a whole tensor and crushes every other value
into a few int8 steps. Here the calibrated (still float) model is run on the same calibration
images, each activation's range is narrowed to the given percentile of its values, written back
into the statistics the quantiser reads, and the model quantised as the converter's int8 path
would. The model input keeps its exact 0..255 range; ranges are only ever narrowed.
"""

from __future__ import annotations

import warnings

import numpy as np

from edgecls.errors import EdgeclsError
from edgecls.export.convert import (
    Converted,
    _plain_interpreter,
    check_converted,
    quantize_mixed,
    representative_images,
)

SAMPLES_PER_IMAGE = 4096  # values kept per image and tensor: enough for a 99.99th percentile of a few hundred images
_BATCH = 32


def clip_ranges(calibrated: bytes, images: np.ndarray, percentile: float, seed: int = 0) -> bytes:
    """The calibrated model with each activation's min/max narrowed to the `percentile` (and
    100 - `percentile`) of its values on `images` (uint8 N,H,W,C)."""
    if not 50.0 < percentile < 100.0:
        raise EdgeclsError(f"a clipping percentile must be between 50 and 100 (got {percentile})")
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    graph = model.subgraphs[0]
    inputs = set(int(i) for i in graph.inputs)
    ranged = [i for i, t in enumerate(graph.tensors)
              if i not in inputs and t.quantization is not None and t.quantization.min is not None
              and len(t.quantization.min) == 1]  # activations carry one (per-tensor) range
    values = _activation_samples(calibrated, representative_images(images), ranged, seed)
    for index in ranged:
        if not values[index]:
            continue
        pooled = np.concatenate(values[index])
        low, high = np.percentile(pooled, [100.0 - percentile, percentile])
        q = graph.tensors[index].quantization
        # Only narrow, and keep 0 inside the range (the quantiser needs an exact zero).
        q.min = [float(min(0.0, max(q.min[0], low)))]
        q.max = [float(max(0.0, min(q.max[0], high)))]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def quantize_clipped(calibrated: bytes, images: np.ndarray, percentile: float, mode: str = "int8") -> Converted:
    """A full integer model (checked as every int8 export is) from percentile-clipped ranges."""
    mixed = quantize_mixed(clip_ranges(calibrated, images, percentile), mode)  # no denylists: nothing kept float
    return Converted(mode, mixed.content, mixed.backend, check_converted(mixed.content, mode, mixed.backend))


def _activation_samples(calibrated: bytes, images: np.ndarray, tensors: list[int], seed: int) -> dict[int, list]:
    """{tensor index: [values of each batch]}: a seeded subsample of each tensor's values per image."""
    rng = np.random.default_rng(seed)
    found: dict[int, list] = {i: [] for i in tensors}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = _plain_interpreter(calibrated, preserve_all_tensors=True)
    entry = interpreter.get_input_details()[0]
    for start in range(0, len(images), _BATCH):
        batch = images[start:start + _BATCH]
        interpreter.resize_tensor_input(entry["index"], list(batch.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(entry["index"], batch.astype(np.float32))
        interpreter.invoke()
        for index in tensors:
            try:
                value = interpreter.get_tensor(index)
            except ValueError:  # a tensor the interpreter did not keep
                continue
            flat = np.asarray(value, dtype=np.float32).reshape(len(batch), -1)
            if flat.shape[1] > SAMPLES_PER_IMAGE:
                flat = flat[:, rng.choice(flat.shape[1], SAMPLES_PER_IMAGE, replace=False)]
            found[index].append(flat.ravel())
    return found
