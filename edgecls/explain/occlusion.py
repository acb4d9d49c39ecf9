"""Model-agnostic saliency maps of any .tflite classifier through the device runtime (no TensorFlow).

Occlusion (Zeiler & Fergus): slide a grey patch over the image; a pixel's saliency is the mean drop
of the target class's probability over the patches that covered it. RISE (Petsiuk et al. 2018):
score N random, smoothed, shifted keep-masks; a pixel's saliency is the mask-weighted mean of the
target's probability, less the mean over all masks. Either way the cost is bounded and known up
front (the patch grid or N), the masked images go through `Classifier.probabilities` in batches
(whole batches when the model has a dynamic batch dimension), and RISE is seeded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from PIL import Image

from edgecls.errors import EdgeclsError
from edgecls.explain.scores import Scores, map_scores
from edgecls.reporter import SILENT, Reporter
from edgecls.runtime import Class, Classifier

METHODS = ("occlusion", "rise")
DEFAULT_MASKS = 500  # RISE masks per image: ~1-3 s for a small model on a Pi-class core
DEFAULT_CELLS = 7  # RISE's coarse grid, cells per side
KEEP_PROBABILITY = 0.5  # RISE: a cell is kept with this probability
CHUNK = 64  # masked images built at once: memory stays bounded for large inputs
FILLS = ("mean", "black", "blur")  # what hidden pixels become (see baseline_image)


@dataclass
class SaliencyMap:
    """A saliency map (H, W) of one image for one class, and how it was made."""

    values: np.ndarray  # float32 (H, W), higher = more important for `target`
    method: str
    target: int  # the class explained
    label: str
    top: list[Class]  # the model's top-3 on the intact image
    evaluations: int  # model evaluations it cost
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def normalized(self) -> np.ndarray:
        """Values scaled to 0..1 (negative evidence clipped): what overlays and mass measures use."""
        clipped = np.clip(self.values, 0, None)
        peak = float(clipped.max())
        return clipped / peak if peak > 0 else clipped

    @property
    def flat(self) -> bool:
        """No pixel with positive evidence: the score never fell (occlusion) or rose with a pixel kept (RISE)."""
        return not bool((self.values > 0).any())

    def flat_warning(self) -> Optional[str]:
        """Why a flat map shows nothing, and what to try instead; None for a map with a peak."""
        if not self.flat:
            return None
        if self.method == "occlusion":
            how = (f"no {self.settings.get('patch')} px patch lowered the score of {self.label!r} "
                   f"({self.top[0].score:.3f} on the intact image)")
            instead = "--method rise (several patches hidden at once), --fill black, or the float32 model"
        else:
            how = f"the score of {self.label!r} did not depend on which cells were kept"
            instead = "more --masks, --fill black, or the float32 model"
        return f"flat map: {how}, so it points nowhere; try {instead}"

    def summary(self) -> dict[str, Any]:
        """JSON-ready: where the mass of the map sits, not the map itself. A flat map has no peak, centre
        or mass (None) and says why (`warning`)."""
        norm = self.normalized()
        total = float(norm.sum())
        ys, xs = np.indices(norm.shape)
        flat = self.flat
        peak = None if flat else [int(v) for v in np.unravel_index(int(np.argmax(self.values)), self.values.shape)]
        centre = ([float((ys * norm).sum() / total), float((xs * norm).sum() / total)] if total > 0 else None)
        summary = {"method": self.method, "target": self.target, "label": self.label,
                   "top": [{"index": c.index, "label": c.label, "score": round(c.score, 6)} for c in self.top],
                   "peak_yx": peak, "centre_of_mass_yx": centre,
                   "top10_area_mass": None if flat else round(top_area_mass(norm, 0.10), 4),
                   "evaluations": self.evaluations, "seconds": round(self.seconds, 3), "settings": self.settings}
        if flat:
            summary["warning"] = self.flat_warning()
        return summary


def top_area_mass(norm: np.ndarray, fraction: float) -> float:
    """Share of the map's mass in its highest `fraction` of pixels (1/fraction-fold = focused)."""
    flat = np.sort(norm.ravel())[::-1]
    total = flat.sum()
    return float(flat[:max(1, int(round(fraction * flat.size)))].sum() / total) if total > 0 else 0.0


def occlusion_map(clf: Classifier, pixels: np.ndarray, target: Optional[int] = None, patch: Optional[int] = None,
                  stride: Optional[int] = None, fill: str = "mean", reporter: Reporter = SILENT) -> SaliencyMap:
    """Occlusion map of uint8 `pixels` (H, W, C) for class `target` (default: the top-1).

    Patch default: 1/8 of the shorter side (at least 2 px), stride half of it: about 15 x 15 = 225
    evaluations whatever the input size. The patch shows `fill` (see baseline_image): by default the
    image's mean colour, which removes structure without adding a bright or dark blob."""
    height, width = pixels.shape[:2]
    patch = patch or max(2, round(min(height, width) / 8))
    stride = stride or max(1, patch // 2)
    if not (1 <= patch <= min(height, width)) or stride < 1:
        raise EdgeclsError(f"occlusion patch must be 1..{min(height, width)} px and stride at least 1 "
                           f"(got {patch}, {stride})")
    started = time.perf_counter()
    base, target = _base(clf, pixels, target)
    scores, scored_on = map_scores(clf)
    intact = float(scores(pixels[None])[0, target])
    hidden = np.clip(np.rint(baseline_image(pixels, fill)), 0, 255).astype(np.uint8)
    tops = list(range(0, height - patch + 1, stride))
    lefts = list(range(0, width - patch + 1, stride))
    # the last row / column of patches reaches the edge, so every pixel is covered
    tops += [height - patch] if tops[-1] + patch < height else []
    lefts += [width - patch] if lefts[-1] + patch < width else []
    boxes = [(y, x) for y in tops for x in lefts]

    def build(chunk: list[tuple[int, int]]) -> tuple[np.ndarray, None]:
        batch = np.repeat(pixels[None], len(chunk), axis=0)
        for image, (y, x) in zip(batch, chunk):
            image[y:y + patch, x:x + patch] = hidden[y:y + patch, x:x + patch]
        return batch, None

    drop = np.zeros((height, width), np.float64)
    count = np.zeros((height, width), np.float64)
    for chunk, _, occluded in _scored(clf, scores, boxes, build, target, "occlusion", reporter):
        for (y, x), score in zip(chunk, occluded):
            drop[y:y + patch, x:x + patch] += intact - score
            count[y:y + patch, x:x + patch] += 1
    values = (drop / np.maximum(count, 1)).astype(np.float32)
    return SaliencyMap(values, "occlusion", target, clf.labels[target], clf.top_classes(base, 3), len(boxes),
                       time.perf_counter() - started,
                       {"patch": patch, "stride": stride, "fill": fill, **_scored_on(scored_on)})


def rise_map(clf: Classifier, pixels: np.ndarray, target: Optional[int] = None, masks: int = DEFAULT_MASKS,
             cells: int = DEFAULT_CELLS, seed: int = 0, fill: str = "mean", reporter: Reporter = SILENT) -> SaliencyMap:
    """RISE map of uint8 `pixels` (H, W, C) for class `target` (default: the top-1): `masks` evaluations.

    Each mask is a random `cells` x `cells` keep-grid, upsampled bilinearly to one cell larger than
    the image and cropped at a random shift (so cell borders fall anywhere); masked-out pixels show
    `fill` (see baseline_image). A pixel's value: the mean score of the masks that kept it, less the
    mean score of all masks. Same seed, same map."""
    if masks < 1 or cells < 1:
        raise EdgeclsError(f"RISE needs at least 1 mask and 1 cell (got {masks} masks, {cells} cells)")
    height, width = pixels.shape[:2]
    started = time.perf_counter()
    base, target = _base(clf, pixels, target)
    scores, scored_on = map_scores(clf)
    rng = np.random.default_rng(seed)
    cell_h, cell_w = int(np.ceil(height / cells)), int(np.ceil(width / cells))
    hidden = baseline_image(pixels, fill)
    image = pixels.astype(np.float32)

    def make_masks(n: int) -> np.ndarray:
        grids = (rng.random((n, cells, cells)) < KEEP_PROBABILITY).astype(np.float32)
        out = np.empty((n, height, width), np.float32)
        for i, grid in enumerate(grids):
            big = np.asarray(Image.fromarray(grid).resize(((cells + 1) * cell_w, (cells + 1) * cell_h),
                                                                    Image.BILINEAR))
            dy, dx = int(rng.integers(0, cell_h)), int(rng.integers(0, cell_w))
            out[i] = big[dy:dy + height, dx:dx + width]
        return out

    def build(chunk: list[int]) -> tuple[np.ndarray, np.ndarray]:
        keep = make_masks(len(chunk))
        blended = image[None] * keep[..., None] + hidden[None] * (1 - keep[..., None])
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8), keep

    total = np.zeros((height, width), np.float64)
    kept = np.zeros((height, width), np.float64)
    score_sum = 0.0
    for _, keep, masked in _scored(clf, scores, list(range(masks)), build, target, "RISE", reporter):
        total += np.tensordot(masked.astype(np.float64), keep, axes=1)
        kept += keep.sum(axis=0)
        score_sum += float(masked.sum())
    # E[score | pixel kept] - E[score]: RISE's estimate with its constant part (the mean score, which
    # every pixel gets whatever it does) taken away, so that a map shows evidence, not a level
    values = (total / np.maximum(kept, 1e-9) - score_sum / masks).astype(np.float32)
    return SaliencyMap(values, "rise", target, clf.labels[target], clf.top_classes(base, 3), masks,
                       time.perf_counter() - started,
                       {"masks": masks, "cells": cells, "seed": seed, "fill": fill, **_scored_on(scored_on)})


def device_map(clf: Classifier, pixels: np.ndarray, method: str = "occlusion", target: Optional[int] = None,
               reporter: Reporter = SILENT, **settings: Any) -> SaliencyMap:
    """The device-side map by name: 'occlusion' or 'rise'."""
    if method == "occlusion":
        return occlusion_map(clf, pixels, target, reporter=reporter, **settings)
    if method == "rise":
        return rise_map(clf, pixels, target, reporter=reporter, **settings)
    raise EdgeclsError(f"unknown device-side method {method!r}: use one of {', '.join(METHODS)}")


def baseline_image(pixels: np.ndarray, fill: str = "mean") -> np.ndarray:
    """What a hidden pixel becomes, as a float32 image like `pixels`: the image's mean colour (removes
    structure, keeps brightness), black (right where the background is dark and grey paint would itself be
    evidence, as on MNIST), or a strong blur of the image (keeps colour and layout, drops detail)."""
    if fill == "mean":
        return np.broadcast_to(pixels.reshape(-1, pixels.shape[-1]).mean(axis=0), pixels.shape).astype(np.float32)
    if fill == "black":
        return np.zeros(pixels.shape, np.float32)
    if fill == "blur":
        from PIL import ImageFilter

        image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        blurred = np.asarray(image.filter(ImageFilter.GaussianBlur(max(2, min(pixels.shape[:2]) // 8))), np.float32)
        return blurred.reshape(pixels.shape)
    raise EdgeclsError(f"unknown fill {fill!r}: use one of {', '.join(FILLS)}")


def _base(clf: Classifier, pixels: np.ndarray, target: Optional[int]) -> tuple[np.ndarray, int]:
    if pixels.dtype != np.uint8 or pixels.shape != clf.input_spec.shape:
        raise EdgeclsError(f"expected uint8 pixels of shape {clf.input_spec.shape}, got {pixels.dtype} {pixels.shape}")
    base = clf.probabilities(pixels[None])[0]
    target = int(base.argmax()) if target is None else int(target)
    if not 0 <= target < clf.num_classes:
        raise EdgeclsError(f"class {target} is out of range: the model has {clf.num_classes} classes")
    return base, target


def _scored_on(scored_on: Optional[str]) -> dict[str, str]:
    """The settings entry that says a map measured other scores than the model's output (none: its own)."""
    return {"scores": scored_on} if scored_on else {}


def _scored(clf: Classifier, scores: Scores, items: list, build: Callable[[list], tuple[np.ndarray, Any]], target: int,
            what: str, reporter: Reporter) -> Iterator[tuple[list, Any, np.ndarray]]:
    """(chunk of items, what build gave beside the batch, the target's probability for each image by `scores`)
    chunk by chunk, with the reporter's progress bar. build(chunk) -> (uint8 batch, anything)."""
    step = max(clf.max_batch, min(CHUNK, len(items)))
    with reporter.task(f"{what}: {len(items)} evaluations", len(items)) as advance:
        for i in range(0, len(items), step):
            chunk = items[i:i + step]
            batch, extra = build(chunk)
            yield chunk, extra, scores(batch)[:, target]
            advance(len(chunk))
