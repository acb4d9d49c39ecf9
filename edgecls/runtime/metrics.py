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


# ---------------------------------------------------------------------- calibration and "unknown"
CALIBRATION_BINS = 15  # equal-width confidence bins, as Guo et al. (2017) and most reports use
PROBABILITY_FLOOR = 1e-6  # the least probability the NLL takes the log of: log(0) would be -inf


def nll_floor(output_step: float = 0.0) -> float:
    """The NLL's floor for a model whose output is rounded to `output_step` (1/256 for an 8-bit softmax):
    half a step, the most a probability it gives as 0 can be; PROBABILITY_FLOOR for a float output."""
    return max(PROBABILITY_FLOOR, output_step / 2)


def calibration_figures(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS,
                        floor: float = PROBABILITY_FLOOR) -> dict:
    """Expected calibration error (ECE: the gap between confidence and accuracy, weighted over
    `bins` equal-width bins of the top probability), negative log-likelihood (probabilities below
    `floor` taken as `floor`: see nll_floor), and the bins themselves (for a reliability diagram)."""
    confidence = probabilities.max(1).astype(np.float64)
    correct = probabilities.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)  # (lo, hi] bins
    table, ece = [], 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        if count:
            gap = abs(float(correct[members].mean()) - float(confidence[members].mean()))
            ece += count / max(1, len(labels)) * gap
        table.append({"low": round(float(edges[b]), 4), "high": round(float(edges[b + 1]), 4), "count": count,
                      "confidence": round(float(confidence[members].mean()), 6) if count else None,
                      "accuracy": round(float(correct[members].mean()), 6) if count else None})
    picked = probabilities[np.arange(len(labels)), labels].astype(np.float64)
    nll = float(-np.mean(np.log(np.maximum(picked, floor)))) if len(labels) else 0.0
    return {"ece": round(ece, 6), "nll": round(nll, 6), "images": int(len(labels)), "bins": table}


def selective_figures(probabilities: np.ndarray, labels: np.ndarray, unknown: np.ndarray) -> dict:
    """What an unknown rule does to images of known classes: the share it accepts, the accuracy on
    those (selective accuracy) beside the accuracy on all."""
    correct = probabilities.argmax(1) == labels
    accepted = ~np.asarray(unknown, bool)
    return {"accepted": round(float(accepted.mean()), 6) if len(labels) else None,
            "selective_accuracy": round(float(correct[accepted].mean()), 6) if accepted.any() else None,
            "accuracy": round(float(correct.mean()), 6) if len(labels) else None}


def open_set_figures(probabilities: np.ndarray, labels: np.ndarray, unknown: np.ndarray,
                     unknown_set: np.ndarray | None = None, floor: float = PROBABILITY_FLOOR) -> dict:
    """Calibration and the unknown rule on labelled images of known classes (ECE, NLL, accepted share,
    selective accuracy) and, given the rule's flags on images of none of the classes, the share rejected."""
    figures = calibration_figures(probabilities, labels, floor=floor)
    figures.update(selective_figures(probabilities, labels, unknown))
    figures["rejected_unknown"] = (round(float(np.mean(unknown_set)), 6) if unknown_set is not None
                                   and len(unknown_set) else None)
    figures["unknown_images"] = int(len(unknown_set)) if unknown_set is not None else None
    return figures
