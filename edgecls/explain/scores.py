"""The class probabilities a device-side map measures: the model's own, or for a quantised SOFTMAX (int8
probabilities in steps of 1/256) the same probabilities before that rounding (no TensorFlow).

An int8 classifier that is sure of an image answers 0.996 (127 of 127) and keeps answering it while a patch
hides a piece of the digit: its occlusion map would be flat. Its logits (the SOFTMAX input, int8 too but in
steps of about 0.1) do move, so the map scores softmax(beta * dequantised logits) from a copy of the model
cut at the SOFTMAX input: the probability the SOFTMAX rounds, computed in float.
"""

from __future__ import annotations

import importlib.util
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from edgecls.errors import EdgeclsError
from edgecls.runtime import Classifier
from edgecls.runtime.interpreter import create_interpreter
from edgecls.runtime.model import read_model_bytes
from edgecls.runtime.quant import input_converter, softmax

Scores = Callable[[np.ndarray], np.ndarray]  # uint8 batch (B, H, W, C) -> float probabilities (B, N)
UNROUNDED = "from logits"  # settings["scores"]: the float softmax of the dequantised logits, not the rounded output

_made: weakref.WeakKeyDictionary[Classifier, tuple[Scores, str | None]] = weakref.WeakKeyDictionary()


def map_scores(clf: Classifier) -> tuple[Scores, str | None]:
    """(the scorer a map of `clf` uses, what it scores when that is not the model's own output, else None);
    made once per classifier (bench --explain-flips maps many images with one)."""
    if clf not in _made:
        _made[clf] = _scores(clf)
    return _made[clf]


def _scores(clf: Classifier) -> tuple[Scores, str | None]:
    if clf.backend.name != "tensorflow" and importlib.util.find_spec("ai_edge_litert") is None:
        return clf.probabilities, None  # the cut needs LiteRT's schema module; else TensorFlow's, on a device
    try:
        from edgecls.tflite.classifier import rounded_logits

        cut = rounded_logits(read_model_bytes(clf.path))
    except EdgeclsError:  # no flatbuffer schema on this device, or a graph the cut does not follow
        cut = None
    if cut is None:
        return clf.probabilities, None
    return _LogitScores(clf, *cut), UNROUNDED


class _LogitScores:
    """softmax(beta * logits) of a uint8 batch, the logits read from the model cut at its SOFTMAX input."""

    def __init__(self, clf: Classifier, content: bytes, beta: float):
        self.interpreter: Any = create_interpreter(content, clf.backend, clf.num_threads, name=clf.path.name)
        self._input = self.interpreter.get_input_details()[0]
        output = self.interpreter.get_output_details()[0]
        self._output = output["index"]
        scale, zero_point = output["quantization"]
        self._scale, self._zero_point = (float(scale) or 1.0), int(zero_point)
        self._dynamic = int(self._input["shape_signature"][0]) == -1
        self._batch = int(self._input["shape"][0])  # a fixed batch is one image (what Classifier takes)
        self._to_input = input_converter(clf.input_spec)
        self.beta = beta

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        step = max(1, len(batch)) if self._dynamic else 1
        return np.concatenate([self._run(batch[i:i + step]) for i in range(0, len(batch), step)])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) != self._batch:
            self.interpreter.resize_tensor_input(self._input["index"], [len(batch), *batch.shape[1:]])
            self.interpreter.allocate_tensors()
            self._batch = len(batch)
        self.interpreter.set_tensor(self._input["index"], self._to_input(batch))
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._output).reshape(len(batch), -1)
        return softmax(self.beta * self._scale * (raw.astype(np.float64) - self._zero_point))
