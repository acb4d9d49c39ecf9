"""Outliers: images far from every class in embedding space (a screenshot among photos, a blank
frame, a picture of something else entirely).

An image's distance to a class is the mean cosine distance of its embedding (as the backbone gives
it, not centred) to its NEIGHBOURS nearest images of that class, itself and its own near-duplicates
left out; its score is the least of those over the classes (far from every class means far from the
nearest one). An image is flagged when the logarithm of its score is more than ROBUST_Z robust
standard deviations (1.4826 x the median absolute deviation) above the median.

Measured on catsdogs (MobileNet V1 0.5_160): six odd images added (a grey frame, noise, a gradient,
three handwritten digits, which are each other's neighbours) score 4.4 to 5.6 robust deviations; of
the 1,784 photos, the four above ROBUST_Z (4.1 to 3.7) are two logos filed as a cat and a dog
("Planned Pethood", "YAHOO! MAIL"), a thumbnail-sized photo and a close-up through a wire fence, the
next ones (3.3 and below) ordinary photos. Many neighbours matter: with 5 the digits hide among each
other; centring the embeddings, or Euclidean distance, hid most odd images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

NEIGHBOURS = 20
ROBUST_Z = 3.5
MAD_TO_STD = 1.4826


@dataclass
class Outliers:
    scores: np.ndarray  # (N,) least mean distance to a class's nearest images
    nearest_class: np.ndarray  # (N,) the class that least was reached at
    threshold: float
    flagged: np.ndarray  # indices, most distant first

    def to_json(self, names: list[str], ids: list[Any], limit: Optional[int] = None) -> dict[str, Any]:
        return {"method": f"Least mean cosine distance to the {NEIGHBOURS} nearest images of a class; flagged above "
                          f"median + {ROBUST_Z:g} robust standard deviations of its logarithm",
                "threshold": round(self.threshold, 4),
                "median": round(float(np.median(self.scores[np.isfinite(self.scores)])), 4),
                "count": int(len(self.flagged)),
                "images": [{"image": ids[i], "nearest_class": names[self.nearest_class[i]],
                            "score": round(float(self.scores[i]), 4)} for i in self.flagged[:limit]]}


def find_outliers(embeddings: np.ndarray, labels: np.ndarray, classes: int,
                  same_group: Optional[list[list[int]]] = None, chunk: int = 1024) -> Outliers:
    """Score every image (see the module's docstring); `same_group` lists near-duplicate groups whose
    members do not count as each other's neighbours."""
    x = np.asarray(embeddings, np.float64)
    x = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    labels = np.asarray(labels)
    n = len(x)
    per_class = np.full((n, classes), np.inf)
    for start in range(0, n, chunk):
        distance = 1.0 - x[start:start + chunk] @ x.T  # (rows, N)
        rows = np.arange(start, min(start + chunk, n))
        distance[rows - start, rows] = np.inf  # not its own neighbour
        for group in same_group or []:
            inside = [i for i in group if start <= i < start + chunk]
            for i in inside:
                distance[i - start, group] = np.inf
        for c in range(classes):
            columns = distance[:, labels == c]
            k = min(NEIGHBOURS, columns.shape[1])
            if k:
                nearest = np.partition(columns, k - 1, axis=1)[:, :k]
                finite = np.where(np.isfinite(nearest), nearest, np.nan)
                with np.errstate(all="ignore"):
                    per_class[rows, c] = np.where(np.isnan(finite).all(1), np.inf, np.nanmean(finite, axis=1))
    scores = per_class.min(1)
    nearest_class = per_class.argmin(1)
    with np.errstate(divide="ignore"):
        logs = np.log(np.maximum(scores, 1e-9))
    finite = logs[np.isfinite(logs)]
    median = float(np.median(finite)) if len(finite) else 0.0
    spread = MAD_TO_STD * float(np.median(np.abs(finite - median))) if len(finite) else 0.0
    threshold = float(np.exp(median + ROBUST_Z * spread))  # back on the scores' scale
    flagged = np.flatnonzero(np.isfinite(scores) & (scores > threshold))
    flagged = flagged[np.argsort(-scores[flagged], kind="stable")]
    return Outliers(scores, nearest_class, threshold, flagged)
