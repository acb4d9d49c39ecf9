"""The device side of edgecls: numpy, Pillow and a TFLite interpreter, never TensorFlow or Keras
when a standalone interpreter (LiteRT, tflite_runtime) is installed.

    from edgecls.runtime import Classifier
    clf = Classifier("model.tflite", num_threads=4)
    for label in clf.classify("cat.jpg", top_k=3):
        print(label.index, label.label, label.score)
"""

from edgecls.runtime.classify import Class, Classifier, Prediction
from edgecls.runtime.interpreter import Backend, find_backend
from edgecls.runtime.labels import read_labels
from edgecls.runtime.metadata import ModelFileError, read_metadata
from edgecls.runtime.model import InputSpec
from edgecls.runtime.preprocess import ImageError, load_image
from edgecls.runtime.stream import FramePrediction, LiveStream

__all__ = [
    "Backend",
    "Class",
    "Classifier",
    "FramePrediction",
    "ImageError",
    "InputSpec",
    "LiveStream",
    "ModelFileError",
    "Prediction",
    "find_backend",
    "load_image",
    "read_labels",
    "read_metadata",
]
