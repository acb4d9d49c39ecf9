"""Classification metrics from probability matrices: numpy only, so that the device side (a bench
of .tflite files) and the workstation side (training) compute them with the same code."""

from __future__ import annotations

import math

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


# ---------------------------------------------------------------------- an accuracy with its weight
# An accuracy on few images says little: 23 of 24 right is 0.958, but anything from 0.80 to 0.99
# would give that result often. Wherever an accuracy is printed, its count goes with it, and its
# 95 % interval (Wilson score: good at small n and near 0 or 1, where p ± 1.96·sqrt(p(1-p)/n) is not)
# wherever that interval is wide enough to matter.
Z95 = 1.959964  # the 97.5th percentile of the standard normal: a two-sided 95 % interval
SHOWN_INTERVAL = 0.01  # intervals at least 1 point wide are shown (about n < 40,000 images)
FEW_TEST_IMAGES = 100  # fewer held-out test images than this draw a warning


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion correct/n ((0, 1) for n = 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def correct_count(accuracy: float, n: int) -> int:
    """How many of `n` images an accuracy (a fraction k/n) stands for."""
    return int(round(accuracy * n))


def interval_text(correct: int, n: int) -> str:
    """'0.79–0.99' (the 95 % Wilson interval), or '' where it is narrower than SHOWN_INTERVAL."""
    low, high = wilson_interval(correct, n)
    return f"{low:.2f}–{high:.2f}" if n and high - low >= SHOWN_INTERVAL else ""


def accuracy_text(correct: int, n: int, digits: int = 4) -> str:
    """'0.9583 (23/24; 95% CI 0.79–0.99)': an accuracy with its count and, where it matters, its interval."""
    if n == 0:
        return "— (no images)"
    interval = interval_text(correct, n)
    return f"{correct / n:.{digits}f} ({correct}/{n}" + (f"; 95% CI {interval})" if interval else ")")


def points_text(delta: float, digits: int = 2, unit: str = " pt") -> str:
    """A difference of accuracies in points, signed: '+0.56 pt', '0.00 pt' (never '-0.00 pt')."""
    points = round(100 * delta, digits) + 0.0  # + 0.0 turns -0.0 into 0.0
    return (f"{points:+.{digits}f}" if points else f"{0:.{digits}f}") + unit


SIGNIFICANCE = 0.05  # two accuracies on the same images differ when chance gives their gap less often than this


def mcnemar_p(only_a: int, only_b: int) -> float:
    """The exact two-sided McNemar p-value of two models on the same images: `only_a` images only the
    first gets right, `only_b` only the second (a binomial test of the discordant pairs at 1/2)."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def accuracies_tied(correct_a: int, correct_b: int, discordant: tuple[int, int] | None = None) -> bool:
    """Whether two accuracies on the same images are within chance of each other (McNemar at 5 %).
    Without the per-image pairs (`discordant`: images only a, only b gets right), the gap alone is
    judged as if no image went the other way: the most a gap of that size can show (under 6 images
    is never a difference)."""
    only_a, only_b = discordant if discordant is not None else (max(0, correct_a - correct_b),
                                                                max(0, correct_b - correct_a))
    return mcnemar_p(only_a, only_b) >= SIGNIFICANCE


def few_images_warning(n: int, source: str, correct: int | None = None, part: str = "test") -> str | None:
    """A warning when a held-out split is too small to say much, naming where its images came from."""
    if n >= FEW_TEST_IMAGES:
        return None
    spread = ""
    if n and correct is not None:
        low, high = wilson_interval(correct, n)
        spread = f": {correct}/{n} right fits a true accuracy anywhere from {low:.2f} to {high:.2f} (95% interval)"
    more = "--test-fraction, or a test/ folder of your own" if part == "test" else f"--{part}-fraction"
    return (f"only {n} {part} images ({source}), fewer than {FEW_TEST_IMAGES}{spread}; for a firmer figure give the "
            f"{part} split more images ({more})")


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
