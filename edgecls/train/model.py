"""Architectures and the augmentation block.

Every model takes raw pixels (0..255, float32) and scales them itself with a Rescaling layer,
so int8 input quantisation is exact. Augmentation is a separate block applied in the
training input pipeline only: it never appears in the saved or exported model.
"""

from __future__ import annotations

import keras
from keras import layers

from edgecls.errors import EdgeclsError
from edgecls.train.options import ARCHITECTURES, KERAS_BACKBONES


def build_model(arch: str, input_shape: tuple[int, int, int], num_classes: int, *, kernel_size: int = 3,
                activation: str = "relu", dropout: float = 0.0, alpha: float | None = None,
                weights: str = "none") -> keras.Model:
    """The network named by `arch` (seed, mobile or a Keras backbone), ending in a softmax over `num_classes`."""
    if arch == "seed":
        return _seed(input_shape, num_classes, kernel_size, activation, dropout, alpha or 1.0)
    if arch == "mobile":
        return _mobile(input_shape, num_classes, dropout, alpha or 1.0)
    if arch in KERAS_BACKBONES:
        from edgecls.train.backbones import build_backbone_model

        return build_backbone_model(arch, input_shape, num_classes, alpha=alpha, weights=weights, dropout=dropout)
    raise EdgeclsError(f"unknown architecture {arch!r}: use one of {', '.join(ARCHITECTURES)}")


def scaled(filters: int, alpha: float) -> int:
    """`filters` times the width multiplier, rounded to a multiple of 8 (at least 8), as MobileNet does: SIMD
    kernels work on 8 or 16 channels at a time. alpha 1 keeps the network as it was."""
    return filters if alpha == 1 else max(8, int(filters * alpha + 4) // 8 * 8)


def _seed(input_shape, num_classes, kernel_size, activation, dropout, alpha: float = 1.0) -> keras.Model:
    """The seed text's network: Conv32-Pool-Conv64-Pool-Flatten-Dense64-DenseN (widths times `alpha`)."""
    if min(input_shape[:2]) < 2 * (kernel_size - 1) + 6:
        raise EdgeclsError(f"--img-size {input_shape[0]} is too small for the seed CNN with kernel {kernel_size}")
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1.0 / 255, name="scale_0_1")(inputs)
    x = layers.Conv2D(scaled(32, alpha), kernel_size, activation=activation, name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(scaled(64, alpha), kernel_size, activation=activation, name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(scaled(64, alpha), activation=activation, name="dense")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="seed_cnn")


# (filters, stride) of each depthwise-separable block, MobileNet-style but small.
_MOBILE_BLOCKS = ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1))


def _mobile(input_shape, num_classes, dropout, alpha: float = 1.0) -> keras.Model:
    """A small depthwise-separable CNN for RGB photos at 64-160 px (widths times `alpha`).

    ReLU6 and batch norm (folded away at conversion) keep activation ranges tight, which
    is what makes MobileNet-style networks quantise well to int8.
    """
    if min(input_shape[:2]) < 32:
        raise EdgeclsError(
            f"--img-size {input_shape[0]} is too small for the mobile CNN (use 32 or more; 64-160 suits it)"
        )
    # Batch-norm statistics must settle within the few hundred steps a small folder gives:
    # Keras' default momentum (0.99) leaves them near their initial values, and inference
    # (which uses them) then predicts one class. Training also recomputes them every epoch
    # (edgecls.train.batchnorm): even at 0.9 they lag the fast-changing weights.
    norm = {"momentum": 0.9}
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_pm1")(inputs)
    x = layers.Conv2D(scaled(16, alpha), 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(**norm, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    for i, (filters, stride) in enumerate(_MOBILE_BLOCKS, start=1):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"dw{i}")(x)
        x = layers.BatchNormalization(**norm, name=f"dw{i}_bn")(x)
        x = layers.ReLU(6.0, name=f"dw{i}_relu")(x)
        x = layers.Conv2D(scaled(filters, alpha), 1, use_bias=False, name=f"pw{i}")(x)
        x = layers.BatchNormalization(**norm, name=f"pw{i}_bn")(x)
        x = layers.ReLU(6.0, name=f"pw{i}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="mobile_cnn")


def default_augmentations(source: str) -> list[str]:
    """Digits and characters must not be mirrored; photos can be."""
    if source == "fashion_mnist":  # clothes may be mirrored; checked first, it ends in "mnist" too
        return ["flip", "zoom", "translate"]
    if source in ("digits", "mnist") or source.rstrip("/").endswith("mnist"):
        return ["rotate", "zoom", "translate"]
    return ["flip", "rotate", "zoom", "translate", "contrast"]


def build_augmentation(names: list[str], seed: int, fill_mode: str = "reflect") -> keras.Sequential | None:
    """Keras preprocessing layers acting on raw 0..255 pixels; None when `names` is empty.

    `fill_mode` "constant" fills with black (right for digits on a black ground), "reflect"
    suits photos.
    """
    if not names:
        return None
    fill = {"fill_mode": fill_mode, "fill_value": 0.0}
    factories = {
        "flip": lambda s: layers.RandomFlip("horizontal", seed=s),
        "rotate": lambda s: layers.RandomRotation(0.04, seed=s, **fill),  # +-15 degrees
        "zoom": lambda s: layers.RandomZoom(0.1, seed=s, **fill),
        "translate": lambda s: layers.RandomTranslation(0.1, 0.1, seed=s, **fill),
        "contrast": lambda s: layers.RandomContrast(0.2, value_range=(0, 255), seed=s),
    }
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise EdgeclsError(f"unknown augmentation {unknown[0]!r}: use {', '.join(factories)} or none")
    return keras.Sequential([factories[name](seed + i) for i, name in enumerate(names)], name="augmentation")
