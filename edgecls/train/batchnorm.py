"""Precise batch-norm statistics: recomputed from the train images at the end of every epoch.

Why (issue 11, measured on 60 photos a class, `--arch mobile`): batch norm's moving mean and
variance are averages over the last few dozen batches, taken while the weights were still
changing fast. Inference uses them, and they no longer match the network's current weights:
after epoch 1 the validation accuracy was 0.50 (every image one class) with the moving
statistics, 0.70 with statistics recomputed for the current weights. This callback recomputes
them ("precise BN", Wu & Johnson 2021) on un-augmented train images, what inference sees, just
before Keras validates, so validation, early stopping and the saved model all use them.
Frozen batch norm (a pretrained backbone, called in inference mode) is left alone.
"""

from __future__ import annotations

import keras
import numpy as np

REFRESH_IMAGES = 512  # enough batches for stable statistics at a small cost (forward passes only)


def trainable_batch_norms(model: keras.Layer) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer inside `model` (nested models included) that trains."""
    found, stack = [], [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, keras.layers.BatchNormalization):
            if layer.trainable:
                found.append(layer)
        stack.extend(getattr(layer, "layers", []))
    return found


def refresh_statistics(model: keras.Model, images: np.ndarray, batch_size: int) -> None:
    """Set every trainable batch norm's moving mean and variance to the average over `images`' batches.

    A momentum of k / (k + 1) at batch k makes Keras' moving average the plain mean of the batches.
    """
    layers = trainable_batch_norms(model)
    if not layers or len(images) == 0:
        return
    saved = [layer.momentum for layer in layers]
    try:
        for k, start in enumerate(range(0, len(images), batch_size)):
            for layer in layers:
                layer.momentum = k / (k + 1)
            model(np.asarray(images[start:start + batch_size], np.float32), training=True)
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum


class RefreshBatchNorm(keras.callbacks.Callback):
    """After the last training batch of each epoch (before validation), refresh the statistics."""

    def __init__(self, model: keras.Model, images: np.ndarray, steps_per_epoch: int, batch_size: int):
        super().__init__()
        self.inference_model, self.images = model, images
        self.steps, self.batch_size = steps_per_epoch, max(batch_size, 32)

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.steps - 1:
            refresh_statistics(self.inference_model, self.images, self.batch_size)
