"""Fit a classifier head on embeddings with numpy only: softmax regression, or one hidden ReLU
layer, trained by seeded mini-batch Adam with L2, early stopping on the validation loss (the best
epoch's weights are kept). Features are standardised for training and the standardisation is
folded into the first layer afterwards, so the head takes the raw embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from edgecls.train.options import HEADS

# Weight decays tried by select_head, the one with the lowest validation loss kept. Measured on
# catsdogs with MobileNet V1 embeddings: 1e-4 overfits (val loss 0.145), 3e-2 is best (0.117).
L2_GRID = (1e-3, 1e-2, 3e-2, 1e-1)
STD_FLOOR = 0.05  # of the mean feature spread: the least a feature is divided by when standardising


@dataclass
class HeadOptions:
    kind: str = "linear"  # linear | mlp
    hidden: int = 128  # units of the mlp's hidden layer
    epochs: int = 200
    patience: int = 20  # epochs without a better validation loss; 0: no early stopping
    lr: float = 1e-3
    l2: float = 1e-4  # weight decay: the loss is mean cross-entropy + l2 * sum of squared weights
    batch_size: int = 64
    seed: int = 0


@dataclass
class Head:
    """The fitted layers on the raw embedding: [(weights (units, inputs), bias (units,)), ...];
    every layer but the last is followed by a ReLU."""

    layers: list[tuple[np.ndarray, np.ndarray]]
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    l2: float = 0.0

    @property
    def best_val_loss(self) -> float:
        return min(row["val_loss"] for row in self.history)

    def hidden(self, x: np.ndarray) -> list[np.ndarray]:
        """The output of each layer (ReLU applied to all but the last, the logits)."""
        outputs = []
        for n, (w, b) in enumerate(self.layers):
            x = x @ w.T + b
            if n < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
            outputs.append(x)
        return outputs

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.hidden(np.asarray(x, np.float64))[-1]

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return _softmax(self.logits(x)).astype(np.float32)


def fit_head(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, classes: int,
             options: HeadOptions = HeadOptions()) -> Head:
    """Train per `options`; history rows have epoch, loss, accuracy, val_loss, val_accuracy."""
    if options.kind not in HEADS:
        raise ValueError(f"unknown head {options.kind!r}")
    rng = np.random.default_rng(options.seed)
    x, x_val = np.asarray(x, np.float64), np.asarray(x_val, np.float64)
    mean, std = x.mean(0), x.std(0)
    # A (nearly) constant feature, e.g. a ReLU that is never on: dividing by its tiny spread would
    # blow its folded weight up and, in an 8-bit head, leave every other weight at zero.
    std = np.maximum(std, STD_FLOOR * std.mean() + 1e-8)
    xs, xv = (x - mean) / std, (x_val - mean) / std
    sizes = [x.shape[1], options.hidden, classes] if options.kind == "mlp" else [x.shape[1], classes]
    # Glorot-uniform hidden weights (what Keras starts from); the last layer starts at zero, the
    # usual start of a softmax regression: every class equally likely, no random tilt to undo.
    params = []
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        params += [rng.uniform(-limit, limit, (fan_out, fan_in)), np.zeros(fan_out)]
    params += [np.zeros((classes, sizes[-2])), np.zeros(classes)]
    adam = _Adam(params, options.lr)
    onehot = np.eye(classes)[y]
    best, best_loss, stale, history = [p.copy() for p in params], np.inf, 0, []
    for epoch in range(1, options.epochs + 1):
        order = rng.permutation(len(x))
        for start in range(0, len(x), options.batch_size):
            rows = order[start:start + options.batch_size]
            adam.step(_gradients(params, xs[rows], onehot[rows], options.l2))
        loss, acc = _evaluate(params, xs, y)
        val_loss, val_acc = _evaluate(params, xv, y_val)
        history.append({"epoch": epoch, "loss": loss, "accuracy": acc, "val_loss": val_loss, "val_accuracy": val_acc})
        if val_loss < best_loss - 1e-6:
            best, best_loss, stale = [p.copy() for p in params], val_loss, 0
        else:
            stale += 1
            if options.patience and stale >= options.patience:
                break
    if not options.patience:  # no early stopping: the last epoch is the model
        best = params
    best_epoch = int(np.argmin([h["val_loss"] for h in history])) + 1 if options.patience else len(history)
    layers = [(best[i], best[i + 1]) for i in range(0, len(best), 2)]
    w0, b0 = layers[0]
    layers[0] = (w0 / std, b0 - (w0 / std) @ mean)  # fold the standardisation into the first layer
    return Head(layers, history, best_epoch, options.l2)


def select_head(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, classes: int,
                options: HeadOptions = HeadOptions(), grid: Sequence[float] = L2_GRID) -> tuple[Head, list[dict]]:
    """fit_head once per weight decay in `grid`; the head with the lowest validation loss, and a
    row per try (l2, val_loss, val_accuracy, best_epoch)."""
    heads = [fit_head(x, y, x_val, y_val, classes, replace(options, l2=l2)) for l2 in grid]
    tries = [{"l2": h.l2, "val_loss": round(h.best_val_loss, 6), "best_epoch": h.best_epoch,
              "val_accuracy": round(h.history[h.best_epoch - 1]["val_accuracy"], 6)} for h in heads]
    return min(heads, key=lambda h: h.best_val_loss), tries


def _forward(params: list[np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    activations = [x]
    for i in range(0, len(params), 2):
        z = activations[-1] @ params[i].T + params[i + 1]
        activations.append(np.maximum(z, 0.0) if i + 2 < len(params) else z)
    return activations


def _gradients(params: list[np.ndarray], x: np.ndarray, onehot: np.ndarray, l2: float) -> list[np.ndarray]:
    activations = _forward(params, x)
    delta = (_softmax(activations[-1]) - onehot) / len(x)  # cross-entropy through softmax
    grads: list[Optional[np.ndarray]] = [None] * len(params)
    for layer in range(len(params) // 2 - 1, -1, -1):
        w = params[2 * layer]
        grads[2 * layer] = delta.T @ activations[layer] + 2 * l2 * w
        grads[2 * layer + 1] = delta.sum(0)
        if layer:
            delta = (delta @ w) * (activations[layer] > 0)
    return grads  # type: ignore[return-value]


def _evaluate(params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    logits = _forward(params, x)[-1]
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].mean()), float(np.mean(logits.argmax(1) == y))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class _Adam:
    def __init__(self, params: list[np.ndarray], lr: float, beta1: float = 0.9, beta2: float = 0.999):
        self.params, self.lr, self.b1, self.b2, self.t = params, lr, beta1, beta2, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            p -= self.lr * (m / (1 - self.b1 ** self.t)) / (np.sqrt(v / (1 - self.b2 ** self.t)) + 1e-8)
