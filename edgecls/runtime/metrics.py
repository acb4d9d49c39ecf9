"""Classification metrics from probability matrices: numpy only, so that the device side (a bench
of .tflite files) and the workstation side (training) compute them with the same code."""

from __future__ import annotations

import numpy as np


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, per-class accuracy and the confusion matrix (rows: true class, columns: predicted)."""
    predicted = probabilities.argmax(1)
    n = len(class_names)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
    return {
        "test_accuracy": float(np.mean(predicted == labels)),
        "per_class_accuracy": {name: round(float(a), 4) for name, a in zip(class_names, per_class)},
        "confusion_matrix": confusion.tolist(),
        "class_names": class_names,
    }
