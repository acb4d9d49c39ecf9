"""Label-issue candidates: images whose given class the rest of the data disagrees with.

Out-of-fold probabilities: the embeddings are cut into K stratified folds, and each fold is scored
by the transfer route's numpy head (edgecls.transfer.head) fitted on the other folds, so no image
is judged by a model that saw its label. Then, in the manner of confident learning (Northcutt et al.,
2021; written here, not taken from cleanlab, whose licence a product cannot ship):
- each class's threshold is the mean probability the model gives that class on the images filed
  under it (a class the model is less sure of gets a lower bar);
- an image is a candidate when another class clears its threshold and beats the given class there
  (an off-diagonal entry of the "confident joint"), the suggested class being that one;
- every image is ranked by its normalised margin, p(given) - max p(other): most negative first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from edgecls.transfer.head import HeadOptions, fit_head, select_head

FOLDS = 5
INNER_VAL = 0.1  # of each fold's training part, held out for the head's early stopping
MIN_PER_CLASS = FOLDS  # a class with fewer images than folds cannot be scored out of fold


@dataclass
class LabelIssues:
    probabilities: np.ndarray  # (N, K) out-of-fold
    labels: np.ndarray  # (N,) given
    thresholds: np.ndarray  # (K,) per-class confidence thresholds
    margin: np.ndarray  # (N,) p(given) - max p(other): the ranking score, lowest first
    suggested: np.ndarray  # (N,) the most likely other class
    candidates: np.ndarray  # indices flagged (off-diagonal of the confident joint), worst first
    oof_accuracy: float  # of the out-of-fold argmax against the given labels
    l2: float
    folds: int

    def ranking(self) -> np.ndarray:
        """Every index, most suspicious first."""
        return np.argsort(self.margin, kind="stable")

    def to_json(self, names: list[str], ids: list[Any], limit: Optional[int] = None) -> dict[str, Any]:
        rows = [{"image": ids[i], "given": names[self.labels[i]], "suggested": names[self.suggested[i]],
                 "p_given": round(float(self.probabilities[i, self.labels[i]]), 4),
                 "p_suggested": round(float(self.probabilities[i, self.suggested[i]]), 4),
                 "margin": round(float(self.margin[i]), 4)} for i in self.candidates[:limit]]
        return {"method": f"{self.folds}-fold out-of-fold probabilities of a linear head (weight decay {self.l2:g}); "
                          "confident-learning thresholds; ranked by normalised margin",
                "thresholds": {n: round(float(t), 4) for n, t in zip(names, self.thresholds)},
                "out_of_fold_accuracy": round(self.oof_accuracy, 4), "count": int(len(self.candidates)),
                "candidates": rows}


def out_of_fold(features: np.ndarray, labels: np.ndarray, classes: int, seed: int = 0, folds: int = FOLDS,
                progress: Optional[Callable[[int], None]] = None) -> tuple[np.ndarray, float]:
    """(N, classes) probabilities, each row from a head that never saw that image; the weight decay
    is chosen on the first fold's inner validation split and kept for the others."""
    labels = np.asarray(labels)
    fold_of = _folds(labels, classes, folds, seed)
    result = np.zeros((len(labels), classes), np.float32)
    options = HeadOptions(kind="linear", seed=seed)
    l2: Optional[float] = None
    for k in range(folds):
        held = np.flatnonzero(fold_of == k)
        rest = np.flatnonzero(fold_of != k)
        inner = _folds(labels[rest], classes, int(round(1 / INNER_VAL)), seed + 1 + k) == 0
        train, val = rest[~inner], rest[inner]
        x, y, xv, yv = features[train], labels[train], features[val], labels[val]
        if l2 is None:
            head, _ = select_head(x, y, xv, yv, classes, options)
            l2 = head.l2
        else:
            head = fit_head(x, y, xv, yv, classes, HeadOptions(kind="linear", seed=seed, l2=l2))
        result[held] = head.probabilities(features[held])
        if progress:
            progress(1)
    return result, float(l2 or 0.0)


def _folds(labels: np.ndarray, classes: int, folds: int, seed: int) -> np.ndarray:
    """Each image's fold, 0..folds-1: every class dealt round-robin over the folds in a seeded order."""
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(len(labels), np.int64)
    for c in range(classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold_of[members] = (np.arange(len(members)) + rng.integers(folds)) % folds
    return fold_of


def find_label_issues(probabilities: np.ndarray, labels: np.ndarray, l2: float = 0.0,
                      folds: int = FOLDS) -> LabelIssues:
    """Confident-learning candidates from out-of-fold `probabilities` (N, K) and the given `labels`."""
    p = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels)
    n, k = p.shape
    rows = np.arange(n)
    thresholds = np.array([p[labels == c, c].mean() if np.any(labels == c) else 1.0 for c in range(k)])
    others = p.copy()
    others[rows, labels] = -np.inf
    suggested = others.argmax(1)
    margin = p[rows, labels] - others[rows, suggested]
    # The confident class: the most probable class among those above their threshold.
    above = np.where(p >= thresholds[None, :], p, -np.inf)
    confident = np.where(np.isfinite(above.max(1)), above.argmax(1), -1)
    flagged = np.flatnonzero((confident >= 0) & (confident != labels) & (margin < 0))
    suggested[flagged] = confident[flagged]
    flagged = flagged[np.argsort(margin[flagged], kind="stable")]
    accuracy = float(np.mean(p.argmax(1) == labels)) if n else 0.0
    return LabelIssues(p.astype(np.float32), labels, thresholds, margin, suggested, flagged, accuracy, l2, folds)
