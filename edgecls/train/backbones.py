"""keras.applications backbones: the backbone, its own preprocessing inside, a new head; weights; fine-tuning.

The model still takes raw 0..255 pixels (so int8 input quantisation stays exact, scale 1 and
zero point -128): each backbone's own preprocessing is a layer inside it. The backbone is one
nested layer named `backbone`, called with training=False so its batch norm stays in inference
mode while frozen and while its top blocks are fine-tuned (Keras' transfer-learning guide).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import keras
from keras import layers

from edgecls.errors import EdgeclsError

BACKBONE_LAYER = "backbone"


@dataclass(frozen=True)
class BackboneSpec:
    application: str  # the keras.applications constructor
    preprocessing: Optional[tuple[float, float]]  # (scale, offset) of our Rescaling; None: the backbone has its own
    fine_tune_from: str  # the first layer of the "top blocks" unfrozen in the fine-tuning phase
    has_alpha: bool
    extra: tuple[tuple[str, object], ...] = ()


# Preprocessing per keras.applications.<module>.preprocess_input: MobileNets take [-1, 1];
# EfficientNet rescales and normalises inside its own graph (it takes 0..255).
SPECS = {
    "mobilenet_v2": BackboneSpec("MobileNetV2", (1 / 127.5, -1.0), "block_13_expand", True),
    "mobilenet_v3_small": BackboneSpec("MobileNetV3Small", (1 / 127.5, -1.0), "expanded_conv_8_expand", True,
                                       (("include_preprocessing", False), ("minimalistic", False))),
    "efficientnet_b0": BackboneSpec("EfficientNetB0", None, "block6a_expand_conv", False),
}
MIN_SIZE = 32  # keras.applications refuse smaller inputs


def keras_cache_dir() -> Path:
    """Where keras.utils.get_file looks for downloaded weights: $KERAS_HOME/models or ~/.keras/models."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def build_backbone_model(arch: str, input_shape: tuple[int, int, int], num_classes: int, *,
                         alpha: Optional[float], weights: str, dropout: float) -> keras.Model:
    """raw pixels -> [preprocessing] -> backbone (inference-mode batch norm) -> pooling -> softmax."""
    spec = SPECS[arch]
    if input_shape[2] != 3:
        raise EdgeclsError(f"--arch {arch} takes RGB images: use --color rgb")
    if min(input_shape[:2]) < MIN_SIZE:
        raise EdgeclsError(f"--img-size {input_shape[0]} is too small for {arch} (use {MIN_SIZE} or more)")
    backbone = _backbone(arch, spec, input_shape, alpha, weights)
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = inputs
    if spec.preprocessing is not None:
        scale, offset = spec.preprocessing
        x = layers.Rescaling(scale, offset=offset, name="preprocess")(x)
    pretrained = weights != "none"
    # A pretrained backbone keeps its batch-norm statistics (training=False); a random one learns them.
    x = backbone(x, training=False) if pretrained else backbone(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"{arch}_classifier")


def _backbone(arch: str, spec: BackboneSpec, input_shape, alpha: Optional[float], weights: str) -> keras.Model:
    constructor = getattr(keras.applications, spec.application)
    kwargs = dict(spec.extra, input_shape=input_shape, include_top=False)
    if spec.has_alpha:
        kwargs["alpha"] = 1.0 if alpha is None else alpha
    source = {"imagenet": "imagenet", "none": None}.get(weights, str(Path(weights).expanduser()))
    captured = io.StringIO()
    try:
        # keras.utils.get_file prints "Downloading data from URL" (and a progress bar) on stdout.
        with contextlib.redirect_stdout(captured), _quiet_size_warning():
            backbone = constructor(weights=source, **kwargs)
    except Exception as exc:  # a failed download is a bare Exception; a bad file a ValueError/OSError
        raise EdgeclsError(_weights_error(arch, weights, exc, captured.getvalue())) from None
    backbone.name = BACKBONE_LAYER
    return backbone


def _weights_error(arch: str, weights: str, exc: Exception, printed: str) -> str:
    text = " ".join(str(exc).split())
    if weights == "imagenet":
        url = re.search(r"https?://\S+?\.h5", printed + " " + text)
        if url:
            name = url.group(0).rsplit("/", 1)[1]
            return (f"cannot download the ImageNet weights of {arch} (offline?): put {name} (from {url.group(0)}) "
                    f"in {keras_cache_dir()}/ (the Keras cache; $KERAS_HOME moves it), or use --weights FILE "
                    "or --weights none")
        return f"cannot build {arch} with ImageNet weights: {text[:200]}"
    if weights == "none":
        return f"cannot build {arch}: {text[:200]}"
    return (f"--weights {weights}: not weights of {arch} without its top at this --alpha "
            f"({type(exc).__name__}: {text[:160]})")


@contextlib.contextmanager
def _quiet_size_warning():
    """MobileNets warn (UserWarning) when the size is not one of ImageNet's: harmless for a new head."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input_shape.*", category=UserWarning)
        yield


def backbone_of(model: keras.Model) -> keras.Model:
    return model.get_layer(BACKBONE_LAYER)


def set_frozen(model: keras.Model, arch: str, fine_tune: bool) -> int:
    """Freeze the backbone; with `fine_tune`, unfreeze its top blocks (batch norm stays frozen).

    Returns the number of backbone layers left trainable.
    """
    backbone = backbone_of(model)
    if not fine_tune:
        backbone.trainable = False
        return 0
    backbone.trainable = True
    names = [layer.name for layer in backbone.layers]
    start = names.index(SPECS[arch].fine_tune_from)
    trainable = 0
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= start and not isinstance(layer, layers.BatchNormalization)
        trainable += layer.trainable
    return trainable
