"""Image facts of a dataset: sizes, aspect ratios, colour modes, EXIF rotations, grayscale pictures
in an RGB set, tiny and unreadable files, and the class balance.

File facts come from each file's header (Pillow opens it lazily: no pixels are decoded); whether a
colour picture is really gray comes from the decoded pixels the check has anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from edgecls.runtime.preprocess import PILLOW_FORMATS

TINY_SIDE = 32  # px: a picture with a side under this has little left to learn from
EXTREME_ASPECT = 3.0  # longer side over shorter: squeezed to a square, such a picture loses its shape
GRAY_TOLERANCE = 3  # largest channel difference (0..255) of a colour picture that is really gray
IMBALANCE = 3.0  # largest class over the smallest: worth saying
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
EXIF_ORIENTATION = 0x0112


@dataclass
class FileFacts:
    path: str  # relative to the dataset folder
    width: int = 0
    height: int = 0
    mode: str = ""
    format: str = ""
    orientation: int = 1  # EXIF orientation tag (1: upright; 2..8: the decoder turns or mirrors it)
    error: str = ""


@dataclass
class Facts:
    files: list[FileFacts]  # every image file of a folder (empty for arrays: digits, IDX)
    class_counts: dict[str, int]
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    gray_in_rgb: list[int] = field(default_factory=list)  # dataset indices of colour pictures that are gray
    rgb_set: bool = True

    @property
    def readable(self) -> list[FileFacts]:
        return [f for f in self.files if not f.error]

    def tiny(self) -> list[FileFacts]:
        return [f for f in self.readable if min(f.width, f.height) < TINY_SIDE]

    def smaller_than(self, side: int) -> list[FileFacts]:
        return [f for f in self.readable if min(f.width, f.height) < side]

    def extreme_aspect(self) -> list[FileFacts]:
        return [f for f in self.readable if max(f.width, f.height) >= EXTREME_ASPECT * max(1, min(f.width, f.height))]

    def rotated(self) -> list[FileFacts]:
        return [f for f in self.readable if f.orientation not in (0, 1)]

    def grayscale_files(self) -> list[FileFacts]:
        return [f for f in self.readable if f.mode in GRAYSCALE_MODES]

    def modes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self.readable:
            counts[f.mode] = counts.get(f.mode, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def imbalance(self) -> float:
        counts = [c for c in self.class_counts.values()]
        return max(counts) / max(1, min(counts)) if counts else 1.0

    def to_json(self, input_side: Optional[int] = None, ids: Optional[list[Any]] = None) -> dict[str, Any]:
        readable = self.readable
        widths = np.array([f.width for f in readable]) if readable else np.zeros(0)
        heights = np.array([f.height for f in readable]) if readable else np.zeros(0)
        aspect = np.maximum(widths, heights) / np.maximum(1, np.minimum(widths, heights)) if readable else widths

        def stats(values: np.ndarray) -> Optional[dict[str, float]]:
            if not len(values):
                return None
            return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}

        doc: dict[str, Any] = {
            "files": len(self.files), "class_counts": self.class_counts, "imbalance": round(self.imbalance(), 3),
            "width": stats(widths), "height": stats(heights), "aspect_ratio": stats(np.round(aspect, 3)),
            "modes": self.modes(), "formats": _count(f.format for f in readable),
            "exif_rotated": [f.path for f in self.rotated()],
            "tiny": [f"{f.path} ({f.width}x{f.height})" for f in self.tiny()],
            "extreme_aspect": [f"{f.path} ({f.width}x{f.height})" for f in self.extreme_aspect()],
            "grayscale_files": [f.path for f in self.grayscale_files()] if self.rgb_set else [],
            "gray_pictures": [ids[i] if ids is not None else i for i in self.gray_in_rgb],
            "unreadable": [{"file": p, "reason": r} for p, r in self.unreadable],
        }
        if input_side:
            doc["smaller_than_input"] = {"side": input_side, "count": len(self.smaller_than(input_side))}
        return doc


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def file_facts(root: Path, relative: str) -> FileFacts:
    """One file's header facts; never raises (an unreadable file is a fact too)."""
    facts = FileFacts(relative)
    try:
        with Image.open(root / relative, formats=PILLOW_FORMATS) as image:
            facts.width, facts.height = image.width, image.height
            facts.mode, facts.format = image.mode, image.format or ""
            try:
                facts.orientation = int(image.getexif().get(EXIF_ORIENTATION, 1))
            except Exception:  # malformed EXIF: the decoder keeps the pixels as stored, so say upright
                facts.orientation = 1
            if facts.orientation in (5, 6, 7, 8):  # the picture is turned by 90 degrees once upright
                facts.width, facts.height = facts.height, facts.width
    except Exception as exc:  # the loader's own reason is kept for files it skipped; this is a fallback
        facts.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return facts


def gray_pictures(images: np.ndarray, chunk: int = 512) -> list[int]:
    """Indices of RGB pictures (uint8 (N, H, W, 3)) whose channels are equal within GRAY_TOLERANCE."""
    found: list[int] = []
    for start in range(0, len(images), chunk):
        block = np.asarray(images[start:start + chunk]).astype(np.int16)
        spread = np.abs(block - block[..., :1]).max(axis=(1, 2, 3))
        found += (start + np.flatnonzero(spread <= GRAY_TOLERANCE)).tolist()
    return found


def dataset_facts(dataset: Any, pictures: Optional[np.ndarray] = None) -> Facts:
    """Facts of an edgecls.data.Dataset: its files' headers (a folder), the gray pictures among
    `pictures` (the dataset's images at any size, RGB) and its class balance."""
    counts = np.bincount(np.asarray(dataset.labels), minlength=len(dataset.class_names))
    class_counts = {name: int(c) for name, c in zip(dataset.class_names, counts)}
    rgb = dataset.color == "rgb"
    gray = gray_pictures(pictures if pictures is not None else dataset.images) if rgb else []
    if dataset.paths is None:
        return Facts([], class_counts, gray_in_rgb=gray, rgb_set=rgb)
    root = Path(dataset.source)
    skipped = {path: why for path, why in dataset.skipped}
    relative = list(dataset.paths) + [p for p in skipped if not skipped[p].startswith("duplicate")]
    files = [file_facts(root, p) for p in relative]
    unreadable = [(p, why) for p, why in dataset.skipped if not why.startswith("duplicate")]
    for f in files:  # the loader's reason wins: it is the decoder's own
        if f.path in skipped:
            f.error = f.error or skipped[f.path]
    gray_files = {f.path for f in files if f.mode in GRAYSCALE_MODES}  # listed as grayscale files already
    gray = [i for i in gray if dataset.paths[i] not in gray_files]
    return Facts(files, class_counts, unreadable, gray, rgb)
