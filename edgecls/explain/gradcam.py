"""Grad-CAM (Selvaraju et al. 2017) of a Keras model: the last conv layer's activations weighted by
the pooled gradient of the class score, upsampled to the image (ReLU'd when drawn). TensorFlow is imported
inside the functions: the rest of edgecls.explain stays device-side.

The class score is log p(class): gradients of a softmax probability vanish when it saturates,
its log's do not (and for a model ending in logits, the logit itself is used).
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np
from PIL import Image

from edgecls.errors import EdgeclsError
from edgecls.explain.occlusion import SaliencyMap
from edgecls.runtime import Class

_CONV_TYPES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")
# layers that keep a conv's feature map as it is, shape for shape: Grad-CAM looks past them
_ELEMENTWISE_TYPES = ("BatchNormalization", "ReLU", "Activation", "LeakyReLU", "PReLU", "ELU")


def last_conv_layer(model: Any) -> str:
    """Name of the last convolution (followed through its batch norm and activation) of `model`."""
    layers = list(model.layers)
    found = None
    for i, layer in enumerate(layers):
        if type(layer).__name__ in _CONV_TYPES:
            found = i
            while found + 1 < len(layers) and type(layers[found + 1]).__name__ in _ELEMENTWISE_TYPES:
                found += 1
    if found is None:  # no conv layer: the last layer with a spatial (4-D) output
        found = next((i for i in reversed(range(len(layers))) if _is_spatial(layers[i])), None)
    if found is None:
        raise EdgeclsError(f"{model.name} has no convolution or spatial layer: Grad-CAM needs one "
                           "(use a .tflite and --method occlusion|rise instead)")
    return layers[found].name


def gradcam_map(model: Any, pixels: np.ndarray, target: Optional[int] = None, layer: Optional[str] = None,
                labels: Optional[list[str]] = None) -> SaliencyMap:
    """Grad-CAM of uint8 `pixels` (H, W, C) for class `target` (default: the top-1) at `layer`
    (default: the last conv layer)."""
    import keras
    import tensorflow as tf

    started = time.perf_counter()
    layer = layer or last_conv_layer(model)
    try:
        feature = model.get_layer(layer)
    except ValueError:
        names = ", ".join(found.name for found in model.layers if _is_spatial(found))
        raise EdgeclsError(f"no layer {layer!r} in {model.name}; spatial layers: {names}") from None
    if not _is_spatial(feature):
        raise EdgeclsError(f"layer {layer!r} has output {feature.output.shape}, not a feature map (N, H, W, C)")
    probe = keras.Model(model.inputs, [feature.output, model.output])
    batch = tf.convert_to_tensor(pixels[None].astype(np.float32))
    with tf.GradientTape() as tape:
        maps, scores = probe(batch, training=False)
        scores0 = scores[0]
        distribution = bool(np.all(scores0.numpy() >= 0)) and abs(float(tf.reduce_sum(scores0)) - 1) < 1e-3
        target = int(tf.argmax(scores0)) if target is None else int(target)
        if not 0 <= target < int(scores0.shape[-1]):
            raise EdgeclsError(f"class {target} is out of range: the model has {int(scores0.shape[-1])} classes")
        score = tf.math.log(scores0[target] + 1e-12) if distribution else scores0[target]
    grads = tape.gradient(score, maps)[0].numpy()
    activations = maps[0].numpy()
    weights = grads.mean(axis=(0, 1))  # global-average-pooled gradients: one weight per channel
    # kept signed (negative = evidence against); the ReLU of Grad-CAM is SaliencyMap.normalized()'s clip
    cam = (activations * weights).sum(axis=-1).astype(np.float32)
    height, width = pixels.shape[:2]
    values = np.asarray(Image.fromarray(cam).resize((width, height), Image.BILINEAR), np.float32)
    probabilities = scores0.numpy() if distribution else _softmax(scores0.numpy())
    names = labels or [str(i) for i in range(len(probabilities))]
    top = [Class(int(i), names[int(i)], float(probabilities[i])) for i in np.argsort(-probabilities, kind="stable")[:3]]
    return SaliencyMap(values, "gradcam", target, names[target], top, 1, time.perf_counter() - started,
                       {"layer": layer})


def _is_spatial(layer: Any) -> bool:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return False
    return len(shape) == 4 and (shape[1] or 0) > 1 and (shape[2] or 0) > 1


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max())
    return shifted / shifted.sum()
