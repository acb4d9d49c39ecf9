"""The numbers of an open-set rule, fitted with numpy: a temperature for the softmax, class prototypes
in the embedding space, and the thresholds that accept a target share of validation images.

Why these (measured by scripts/bench_openset.py; see its report for the figures):
- Temperature scaling (Guo et al., 2017): one number T, fitted by minimising the validation
  negative log-likelihood of softmax(logits / T) as the model outputs it (an 8-bit softmax rounds to
  1/256, and its 0 is taken as half a step: on MNIST 0-7 the float optimum, T 1.27, raised the int8
  file's validation NLL and ECE; the rounded one, T 0.89, lowers both); it changes no top-1 answer.
  A T is kept only where it lowers the validation ECE as well as the NLL: on a model that is already
  calibrated the NLL optimum sits near 1 and can move the ECE either way (catsdogs on the 0.5_160
  backbone: T 0.95 lowered the NLL, 0.1224 -> 0.1205, and raised the ECE, 0.0281 -> 0.0292). Then the
  T between that optimum and 1 nearest the optimum that lowers both is taken, else none (T 1).
- The embedding score is the cosine similarity to the nearest class prototype (spherical k-means
  centres of each class's L2-normalised training embeddings). On other data (MNIST digits and
  photo-like images against a cats/dogs model) it, Mahalanobis distance and the nearest training
  embedding all reject nearly everything the top score lets through; on held-out classes (digits
  8 and 9 against a 0-7 model) the nearest prototype keeps most of the nearest-neighbour's
  rejection, which Mahalanobis to the class means loses, in a fixed number of weights.
- `both` rejects an image when either score is low, each threshold rejecting the same share of
  validation images: the top score raises the accuracy on accepted images, the embedding score
  rejects other data; neither alone does both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import numpy as np

from edgecls.runtime.metrics import PROBABILITY_FLOOR, calibration_figures
from edgecls.runtime.openset import MAX_QUANTILES, RULES

TEMPERATURE_RANGE = (0.05, 20.0)
PER_CLASS = 16  # prototypes per class (fewer for a class with fewer training images)
KMEANS_ROUNDS = 25
TIE = 0.005  # rejection shares closer than this are a tie (then: the better accuracy on accepted images)


# ---------------------------------------------------------------------- temperature
def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray) -> float:
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray,
                    device: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                    floor: float = PROBABILITY_FLOOR) -> float:
    """The T > 0 that minimises the validation NLL of softmax(logits / T), as the device outputs it:
    `device` maps float probabilities to what the model's output gives (an 8-bit softmax rounds them
    to 1/256: the float optimum can raise the NLL of the rounded ones). A log-spaced grid, then a
    golden-section search around its best point. 1.0 for an empty set."""
    logits = np.asarray(logits, np.float64)
    if not len(labels):
        return 1.0

    def loss(log_t: float) -> float:
        if device is None:
            return nll(logits / np.exp(log_t), labels)
        picked = device(softmax(logits / np.exp(log_t)))[np.arange(len(labels)), labels]
        return float(-np.mean(np.log(np.maximum(picked, floor))))

    low, high = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    grid = np.linspace(low, high, 121)
    losses = [loss(t) for t in grid]
    best = int(np.argmin(losses))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if loss(c) <= loss(d):
            b = d
        else:
            a = c
    middle = (a + b) / 2
    found = middle if loss(middle) <= losses[best] else grid[best]
    return float(np.exp(found)) if loss(found) < loss(0.0) else 1.0  # no better than none: none


def calibrating_temperature(logits: np.ndarray, labels: np.ndarray,
                            device: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                            floor: float = PROBABILITY_FLOOR, steps: int = 40) -> float:
    """fit_temperature's T where it lowers both the validation NLL and ECE of what the device outputs;
    else the T on the way from it to 1 nearest to it (`steps` log-spaced) that does; else 1.0."""
    optimum = fit_temperature(logits, labels, device, floor)
    if optimum == 1.0:
        return 1.0
    logits = np.asarray(logits, np.float64)
    as_output = device or (lambda p: p)

    def figures(t: float) -> dict:
        return calibration_figures(as_output(softmax(logits / t)), labels, floor=floor)

    none = figures(1.0)
    for t in [optimum, *np.exp(np.linspace(np.log(optimum), 0.0, steps + 1))[1:-1]]:
        found = figures(float(t))
        if found["nll"] < none["nll"] and found["ece"] < none["ece"]:
            return float(t)
    return 1.0


def quantised_output(dtype: type, scale: float, zero_point: int) -> Callable[[np.ndarray], np.ndarray]:
    """What an 8-bit output tensor of (scale, zero point) makes of float probabilities (identity for float)."""
    if dtype == np.float32 or not scale:
        return lambda p: p
    info = np.iinfo(dtype)
    return lambda p: (np.clip(np.rint(p / scale) + zero_point, info.min, info.max) - zero_point) * scale


# ---------------------------------------------------------------------- prototypes
def normalised(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (an all-zero row stays zero), as TFLite's L2_NORMALIZATION does."""
    embeddings = np.asarray(embeddings, np.float64)
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-6)


def fit_prototypes(embeddings: np.ndarray, labels: np.ndarray, classes: int, per_class: int = PER_CLASS,
                   seed: int = 0) -> np.ndarray:
    """(M, D) unit vectors: up to `per_class` spherical k-means centres of each class's normalised
    embeddings (k-means++ seeding, seeded); a class with fewer images keeps each of them."""
    x = normalised(embeddings)
    rng = np.random.default_rng(seed)
    found = []
    for c in range(classes):
        members = x[labels == c]
        if len(members) == 0:
            continue
        k = min(per_class, len(members))
        if k == len(members):
            found.append(members)
            continue
        centres = _kmeans_plus_plus(members, k, rng)
        for _ in range(KMEANS_ROUNDS):
            nearest = np.argmax(members @ centres.T, 1)
            moved = np.stack([members[nearest == j].sum(0) if np.any(nearest == j) else centres[j] for j in range(k)])
            moved = normalised(moved)
            if np.allclose(moved, centres):
                break
            centres = moved
        found.append(centres)
    return np.concatenate(found).astype(np.float32)


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    chosen = [int(rng.integers(len(x)))]
    distance = 1.0 - x @ x[chosen[0]]
    for _ in range(1, k):
        weights = np.maximum(distance, 0.0)
        pick = int(rng.choice(len(x), p=weights / weights.sum())) if weights.sum() > 0 else int(rng.integers(len(x)))
        chosen.append(pick)
        distance = np.minimum(distance, 1.0 - x @ x[pick])
    return x[chosen]


def similarity(embeddings: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """The cosine similarity of each embedding to its nearest prototype (what the graph's tail computes)."""
    return (normalised(embeddings) @ np.asarray(prototypes, np.float64).T).max(1)


# ---------------------------------------------------------------------- thresholds and the rule
@dataclass
class RuleFigures:
    """One candidate rule on the validation images (and the unknown images, when there are some)."""

    rule: str
    top_threshold: Optional[float]
    similarity_threshold: Optional[float]
    accepted: float  # share of validation images accepted
    selective_accuracy: Optional[float]  # accuracy on those
    rejected: Optional[float]  # share of the unknown images rejected (None without them)

    def to_json(self) -> dict:
        return {"rule": self.rule, "accepted": round(self.accepted, 6),
                "selective_accuracy": None if self.selective_accuracy is None else round(self.selective_accuracy, 6),
                "rejected_unknown": None if self.rejected is None else round(self.rejected, 6)}


def rule_figures(accept: float, top: np.ndarray, correct: np.ndarray, sim: Optional[np.ndarray],
                 unknown_top: Optional[np.ndarray] = None, unknown_sim: Optional[np.ndarray] = None
                 ) -> list[RuleFigures]:
    """Each rule the scores allow (top; with similarities also embedding and both), its thresholds
    set so that at least `accept` of the validation images pass, and what it then does."""
    found = []
    for rule in RULES:
        if rule != "top" and sim is None:
            continue
        top_t, sim_t = _thresholds(rule, accept, top, sim)
        passed = _passes(top, sim, top_t, sim_t)
        rejected = None
        if unknown_top is not None and len(unknown_top):
            rejected = float(1.0 - _passes(unknown_top, unknown_sim, top_t, sim_t).mean())
        found.append(RuleFigures(rule, top_t, sim_t, float(passed.mean()),
                                 float(correct[passed].mean()) if passed.any() else None, rejected))
    return found


def choose(candidates: list[RuleFigures]) -> tuple[RuleFigures, str]:
    """The rule to ship and why. With unknown images: the one that rejects most of them (a tie within
    half a point goes to the better accuracy on accepted validation images); without: `both` where
    there is an embedding, else `top`."""
    by_name = {c.rule: c for c in candidates}
    if candidates[0].rejected is None:
        if "both" in by_name:
            return by_name["both"], ("no unknown images to compare the rules on: both (the top score raises the "
                                     "accuracy on accepted images, the embedding score rejects other data)")
        return by_name["top"], "the model has no embedding edgecls can read: the top score alone"
    best = max(c.rejected for c in candidates)
    close = [c for c in candidates if c.rejected >= best - TIE]
    chosen = max(close, key=lambda c: (c.selective_accuracy or 0.0, c.rule == "both"))
    return chosen, (f"rejects {chosen.rejected:.1%} of the unknown images at {chosen.accepted:.1%} validation "
                    "acceptance, the most of the rules (ties go to the better accuracy on accepted images)")


def _thresholds(rule: str, accept: float, top: np.ndarray, sim: Optional[np.ndarray]
                ) -> tuple[Optional[float], Optional[float]]:
    n = len(top)
    top_sorted = np.sort(top)
    if rule == "top":
        return float(top_sorted[_rank(accept, n)]), None
    sim_sorted = np.sort(sim)
    if rule == "embedding":
        return None, float(sim_sorted[_rank(accept, n)])
    # both: each threshold at the same rank, the highest rank that still accepts `accept` jointly
    rank = _rank(accept, n)
    while rank > 0 and _passes(top, sim, top_sorted[rank], sim_sorted[rank]).mean() < accept:
        rank -= 1
    return float(top_sorted[rank]), float(sim_sorted[rank])


def _rank(accept: float, n: int) -> int:
    """The index into ascending scores whose value, as a threshold (score >= it passes), accepts at least
    `accept` of them."""
    return max(0, min(n - 1, int(np.floor((1.0 - accept) * n + 1e-9))))


def _passes(top: np.ndarray, sim: Optional[np.ndarray], top_t: Optional[float], sim_t: Optional[float]) -> np.ndarray:
    passed = np.ones(len(top), bool)
    if top_t is not None:
        passed &= top >= top_t
    if sim_t is not None:
        passed &= sim >= sim_t
    return passed


def score_table(scores: np.ndarray) -> list[float]:
    """The sorted validation scores the typicality is read from, at most MAX_QUANTILES of them."""
    ordered = np.sort(np.asarray(scores, np.float64))
    if len(ordered) > MAX_QUANTILES:
        ordered = np.quantile(ordered, np.linspace(0.0, 1.0, MAX_QUANTILES))
    return [round(float(v), 7) for v in ordered]
