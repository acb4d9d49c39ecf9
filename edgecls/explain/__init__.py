"""Explain a classifier: where it looks (saliency maps) and where int8 and float part ways.

Modules, one concern each: occlusion (model-agnostic maps of any .tflite through the device
runtime, no TensorFlow), gradcam (Grad-CAM of a Keras model, TensorFlow inside), divergence
(float vs int8 intermediate tensors of one image, layer by layer, no TensorFlow), render (PNG
overlays and contact sheets), job (what `edgecls explain` and `bench --explain-flips` run).
Importing this package never imports TensorFlow.
"""

from edgecls.explain.occlusion import SaliencyMap, occlusion_map, rise_map

__all__ = ["SaliencyMap", "occlusion_map", "rise_map"]
