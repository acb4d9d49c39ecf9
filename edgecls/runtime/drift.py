"""Is the world the model sees still the one it was trained on? The last answers against the training
split: the class mix (a named divergence), the mean calibrated confidence and the unknown rate —
what `edgecls serve` exposes at /metrics (and its live summary), so a dashboard can alarm.

- **The window** is the last `window` answers (DEFAULT_WINDOW), counted, not timed: the noise of a
  divergence measured on a sample depends on how many answers it holds, so a count keeps one alarm
  threshold right for a camera at 10 frames a second and an upload endpoint at one image an hour.
- **The divergence** is Jensen–Shannon, in bits (log base 2: 0 for the same mix, 1 for no class in
  common), between the share of each class among the window's answers that are not unknown and the
  training split's share (the model's metadata: `openset.class_counts.train`, or `.fit` for a
  model calibrated before the whole split was counted: a stratified sample of it). Chosen over the
  population stability index and Kullback–Leibler: both are infinite when a class is absent from
  one side — common in a window of a few hundred answers — unless a smoothing constant is picked,
  which then sets the figure; JS needs none, is symmetric and bounded, so a threshold means the same
  for every model. Sampling alone makes it non-zero: with n answers over K classes drawn from the
  training mix, about (K - 1) / (8 n ln 2) (`noise`): 0.003 for 10 classes and 500 answers. It is
  left out (None) below MIN_ANSWERS known answers.
- **Confidence** is the mean calibrated top probability of every answer in the window; the
  **unknown rate** the share answered unknown (None for a model without an unknown rule).

numpy only (a device install runs it); thread-safe (a server's interpreter threads add to one window).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

DEFAULT_WINDOW = 500  # answers: the divergence's sampling noise is ~0.003 for 10 classes (see the module doc)
MIN_ANSWERS = 30  # known answers below which the class mix says too little to compare
DIVERGENCE = "jensen-shannon (bits)"


def training_distribution(metadata: Optional[dict[str, Any]], classes: int) -> Optional[np.ndarray]:
    """The training split's class shares from an edgecls model's metadata: `openset.class_counts.train`
    (the whole train split, written by export and train --backbone), else `.fit` (the images the
    calibration fitted on: a stratified sample of the train split, or half of `edgecls calibrate`'s
    --data); None when the model carries neither (third-party, or made before they were recorded)."""
    openset = metadata.get("openset") if isinstance(metadata, dict) else None
    found = openset.get("class_counts") if isinstance(openset, dict) else None
    counts = found.get("train", found.get("fit")) if isinstance(found, dict) else None
    if not isinstance(counts, list) or len(counts) != classes or not all(
            isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) and c >= 0 for c in counts):
        return None
    total = float(sum(counts))
    return np.asarray(counts, np.float64) / total if total > 0 else None


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """The Jensen–Shannon divergence of two distributions over the same classes, in bits (0..1)."""
    p = np.asarray(p, np.float64) / max(float(np.sum(p)), 1e-300)
    q = np.asarray(q, np.float64) / max(float(np.sum(q)), 1e-300)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        present = a > 0
        return float(np.sum(a[present] * np.log2(a[present] / m[present])))

    return min(1.0, max(0.0, (kl(p) + kl(q)) / 2))


def sampling_noise(answers: int, classes: int) -> float:
    """About what the divergence of `answers` drawn from the training mix itself comes to (the module doc)."""
    return (classes - 1) / (8 * answers * math.log(2)) if answers else math.inf


@dataclass(frozen=True)
class DriftFigures:
    """The window's figures; None where there is nothing to say (see the module doc)."""

    answers: int  # in the window
    window: int
    divergence: Optional[float]
    noise: Optional[float]  # what sampling alone would give for this many known answers
    mean_confidence: Optional[float]
    unknown_rate: Optional[float]
    shares: list[float]  # of each class among the window's known answers
    training: Optional[list[float]]

    def to_json(self, labels: Sequence[str]) -> dict[str, Any]:
        def rounded(value: Optional[float]) -> Optional[float]:
            return None if value is None else round(value, 6)

        return {"answers": self.answers, "window": self.window, "divergence": rounded(self.divergence),
                "divergence_kind": DIVERGENCE, "noise": rounded(self.noise),
                "mean_confidence": rounded(self.mean_confidence), "unknown_rate": rounded(self.unknown_rate),
                "classes": {label: {"window": round(share, 6),
                                    "training": None if self.training is None else round(self.training[i], 6)}
                            for i, (label, share) in enumerate(zip(labels, self.shares))}}


class Drift:
    """The last `window` answers of one model: `add` each, read `figures()`."""

    def __init__(self, classes: int, training: Optional[np.ndarray], window: int = DEFAULT_WINDOW,
                 has_unknown: bool = True):
        if window < 1:
            raise ValueError("window must be at least 1")
        self.classes, self.training, self.window, self.has_unknown = classes, training, window, has_unknown
        self._answers: deque[tuple[int, float, bool]] = deque()
        self._counts = np.zeros(classes, np.int64)  # known answers per class in the window
        self._confidence = 0.0  # the sum over the window
        self._unknown = 0
        self._lock = threading.Lock()

    def add(self, index: int, confidence: float, unknown: bool = False) -> None:
        """One answer: its top class, its calibrated top probability, whether it was unknown."""
        confidence = float(confidence) if math.isfinite(confidence) else 0.0
        with self._lock:
            self._answers.append((index, confidence, unknown))
            self._take(index, confidence, unknown, 1)
            if len(self._answers) > self.window:
                self._take(*self._answers.popleft(), -1)

    def _take(self, index: int, confidence: float, unknown: bool, sign: int) -> None:
        self._confidence += sign * confidence
        if unknown:
            self._unknown += sign
        elif 0 <= index < self.classes:
            self._counts[index] += sign

    def figures(self) -> DriftFigures:
        with self._lock:
            n, counts, confidence, unknown = len(self._answers), self._counts.copy(), self._confidence, self._unknown
        known = int(counts.sum())
        shares = (counts / known).tolist() if known else [0.0] * self.classes
        divergence = noise = None
        if self.training is not None and known >= MIN_ANSWERS:
            divergence = jensen_shannon(counts, self.training)
            noise = sampling_noise(known, int(np.count_nonzero(self.training)))
        return DriftFigures(n, self.window, divergence, noise, confidence / n if n else None,
                            unknown / n if n and self.has_unknown else None, shares,
                            None if self.training is None else self.training.tolist())
