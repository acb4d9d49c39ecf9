"""Explain a classifier: where it looks (saliency maps) and where int8 and float part ways.

Modules, one concern each: occlusion (model-agnostic maps of any .tflite through the device
runtime, no TensorFlow), gradcam (Grad-CAM of a Keras model, TensorFlow inside), divergence
(float vs int8 intermediate tensors of one image, layer by layer, no TensorFlow), render (PNG
overlays and contact sheets), job (what `edgecls explain` and `bench --explain-flips` run).
Importing this package never imports TensorFlow (the CLI reads its choice tuples for --help).
"""

from edgecls.explain.divergence import DEFAULT_THRESHOLD_DB
from edgecls.explain.occlusion import FILLS, SaliencyMap, occlusion_map, rise_map
from edgecls.explain.occlusion import METHODS as DEVICE_METHODS

METHODS = (*DEVICE_METHODS, "gradcam")  # gradcam: a run directory's Keras model (edgecls.explain.gradcam)

__all__ = ["DEFAULT_THRESHOLD_DB", "DEVICE_METHODS", "FILLS", "METHODS", "SaliencyMap", "occlusion_map", "rise_map"]
