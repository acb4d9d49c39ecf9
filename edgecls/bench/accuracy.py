"""Accuracy of each model, and of each model against the float reference, on the same images.

Pure numpy on probability matrices (N images x C classes): whoever produced them (Keras, the
device runtime) is the caller's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgecls.bench.results import Accuracy, ClassAccuracy, Flip, Paired
from edgecls.runtime.metrics import classification_metrics

MAX_TOP_K = 5


def top_k(num_classes: int) -> int:
    return min(MAX_TOP_K, num_classes)


def model_accuracy(probabilities: np.ndarray, truth: np.ndarray, class_names: list[str]) -> Accuracy:
    """top-1, top-k (k = min(5, classes)), macro-F1, per-class counts and accuracy, confusion matrix."""
    metrics = classification_metrics(probabilities, truth, class_names)
    confusion = np.asarray(metrics["confusion_matrix"])
    k = top_k(len(class_names))
    best_k = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    correct = confusion.diagonal()
    support = confusion.sum(axis=1)
    per_class = {name: ClassAccuracy(n=int(n), correct=int(c), accuracy=round(float(c / n), 6) if n else None)
                 for name, n, c in zip(class_names, support, correct)}
    return Accuracy(
        top1=float(metrics["test_accuracy"]),
        topk=float(np.mean(np.any(best_k == truth[:, None], axis=1))),
        k=k,
        macro_f1=macro_f1(confusion),
        images=int(len(truth)),
        per_class=per_class,
        confusion=confusion.tolist(),
    )


def macro_f1(confusion: np.ndarray) -> float:
    """Mean F1 over the classes that occur in the truth or the predictions."""
    tp = confusion.diagonal().astype(float)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)  # 2TP + FP + FN
    present = denominator > 0
    if not present.any():
        return 0.0
    return float(np.mean(2 * tp[present] / denominator[present]))


def paired(reference: np.ndarray, probabilities: np.ndarray, truth: np.ndarray, ids: Sequence[Any],
           class_names: list[str], reference_name: str) -> Paired:
    """A model against the float reference on the same images: Δ accuracy, top-1 agreement,
    mean |Δ probability|, per-class Δ accuracy, and every image whose top-1 flipped."""
    ref_top, top = reference.argmax(1), probabilities.argmax(1)
    agree = ref_top == top
    delta = np.abs(probabilities.astype(np.float64) - reference)
    flipped = [Flip(index=int(i), id=ids[i], reference=class_names[ref_top[i]], model=class_names[top[i]],
                    true=class_names[truth[i]])
               for i in np.flatnonzero(~agree)]
    per_class = {}
    for c, name in enumerate(class_names):
        members = truth == c
        if members.any():
            per_class[name] = round(float(np.mean(top[members] == c) - np.mean(ref_top[members] == c)), 6)
    return Paired(
        reference=reference_name,
        delta_accuracy=float(np.mean(top == truth) - np.mean(ref_top == truth)),
        agreement=float(np.mean(agree)),
        mean_abs_dprob=float(delta.mean()),  # over every image and class
        max_abs_dprob=float(delta.max()) if delta.size else 0.0,
        per_class_delta=per_class,
        flipped=flipped,
    )
