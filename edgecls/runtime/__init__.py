"""The device side of edgecls: numpy, Pillow and a TFLite interpreter, never TensorFlow or Keras
when a standalone interpreter (LiteRT, tflite_runtime) is installed.

    from edgecls.runtime import Classifier
    clf = Classifier("model.tflite", num_threads=4)
    answer = clf.classify("cat.jpg", top_k=3)  # an Answer: the classes, and beside them .unknown, .typicality
    for label in answer:
        print(label.index, label.label, label.score)

The names below are imported on first use (PEP 562): importing one runtime module must not load
them all (live input alone, runtime.stream and runtime.capture, costs a cold `edgecls predict` of
one file about 10 ms and several MiB).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it
_EXPORTS = {
    "Answer": "openset",
    "Backend": "interpreter",
    "Class": "classify",
    "Classifier": "classify",
    "FramePrediction": "stream",
    "ImageError": "preprocess",
    "InputSpec": "model",
    "LiveStream": "stream",
    "ModelFileError": "metadata",
    "Prediction": "classify",
    "find_backend": "interpreter",
    "load_image": "preprocess",
    "read_labels": "labels",
    "read_metadata": "metadata",
}
__all__ = ["Answer", "Backend", "Class", "Classifier", "FramePrediction", "ImageError", "InputSpec", "LiveStream",
           "ModelFileError", "Prediction", "find_backend", "load_image", "read_labels", "read_metadata"]
assert sorted(__all__) == sorted(_EXPORTS)

if TYPE_CHECKING:
    from edgecls.runtime.classify import Class, Classifier, Prediction
    from edgecls.runtime.interpreter import Backend, find_backend
    from edgecls.runtime.labels import read_labels
    from edgecls.runtime.metadata import ModelFileError, read_metadata
    from edgecls.runtime.model import InputSpec
    from edgecls.runtime.openset import Answer
    from edgecls.runtime.preprocess import ImageError, load_image
    from edgecls.runtime.stream import FramePrediction, LiveStream


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
