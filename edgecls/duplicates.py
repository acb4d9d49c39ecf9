"""Near-duplicate images: pairs that a perceptual hash (or an embedding) suggests and a second signal
confirms, gathered into groups; and the grouping `edgecls train` keeps on one side of its split.

The rule is strict, because a loose one wrecks a stratified split:
- a pair is a candidate when its hashes (edgecls.runtime.phash, crops included) differ in at most
  CANDIDATE_BITS bits, or, with a backbone, when its embeddings are very close (EMBEDDING_CANDIDATE);
- a candidate is confirmed by its pixels after alignment (PIXEL_CONFIRM), or, for a hash candidate,
  by its embeddings (EMBEDDING_CONFIRM); an unconfirmed candidate joins nothing;
- groups are the connected parts of the confirmed pairs only, and a group larger than GROUP_CAP is
  reported, not used to shape a split (a burst of 30 shots is worth a look, not a 30-image block).

Pictures are compared at HASH_IMAGE_SIZE, decoded by the runtime's own load_image through the
dataset cache (edgecls.data), so the split does not depend on the model's input size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.data import DEDUPE_MODES, Dataset, Split, load_dataset, make_split
from edgecls.reporter import SILENT, Reporter
from edgecls.runtime import phash

HASH_IMAGE_SIZE = 64  # px: pictures are hashed and compared at 64x64 (a second, small dataset cache)
# Bits of 64 two hashes may differ in to be a candidate. Measured on catsdogs (1,784 photos): resized,
# re-encoded (JPEG quality 40) and brightened (+20 %) copies are within 8 bits, centre crops of 0.8..0.97
# within 10 (over the crop alignments); the closest two different photos are 12 apart. Candidates are
# cheap: the pixel check below decides.
CANDIDATE_BITS = 12
PIXEL_CONFIRM = phash.PIXEL_CONFIRM  # the aligned pixels' threshold: see there
# Cosine similarity of centred embeddings (MobileNet V1 0.5_160 on catsdogs: two different photos
# reach 0.84; resized, re-encoded and brightened copies 0.85..0.99, 0.9 crops 0.78..0.97).
EMBEDDING_CONFIRM = 0.90  # confirms a hash candidate
EMBEDDING_CANDIDATE = 0.93  # proposes a pair the hash missed (a mirrored or more cropped copy): pixels decide
GROUP_CAP = 10  # a larger group is reported, not kept together by the split
# When more than this share of the images falls into groups, the rule does not fit the data (small,
# alike pictures: on digits 86 % of the images, in 53 groups of different handwriting): the split
# does not use the groups, and says so. Photo folders hold far fewer (catsdogs: none).
IMPLAUSIBLE_SHARE = 0.5


@dataclass
class Pair:
    """Two images (dataset indices, a < b), the signals measured on them, and the verdict."""

    a: int
    b: int
    found_by: str  # "hash" | "embedding" | "identical" (the same pixels at HASH_IMAGE_SIZE)
    hash_bits: Optional[int]  # the least distance over the crop alignments; None: not computed
    pixels: float  # aligned normalised cross-correlation, 1.0 for the same picture
    embedding: Optional[float] = None  # cosine of the centred embeddings, with a backbone
    confirmed: bool = False

    @property
    def confirmed_by(self) -> str:
        if self.found_by == "identical":
            return "identical pixels"
        signals = [name for name, ok in (("pixels", self.pixels >= PIXEL_CONFIRM),
                                         ("embedding", self.embedding is not None
                                          and self.embedding >= EMBEDDING_CONFIRM)) if ok]
        return " and ".join(signals) or "nothing"

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "found_by": self.found_by, "hash_bits": self.hash_bits,
                "pixels": round(self.pixels, 4),
                "embedding": None if self.embedding is None else round(self.embedding, 4),
                "confirmed": self.confirmed, "confirmed_by": self.confirmed_by if self.confirmed else None}


@dataclass
class Group:
    members: list[int]  # dataset indices, sorted
    pairs: list[Pair]  # the confirmed pairs that join them
    oversized: bool = False  # more than GROUP_CAP members: reported, not used by a split

    @property
    def identical(self) -> bool:
        return all(p.found_by == "identical" for p in self.pairs)


@dataclass
class Duplicates:
    """What find_duplicates found among N images."""

    groups: list[Group]
    candidates: int  # candidate pairs looked at
    rejected: list[Pair] = field(default_factory=list)  # candidates the second signal turned down, closest first

    @property
    def usable(self) -> list[list[int]]:
        """The groups a split keeps together (not the oversized ones)."""
        return [g.members for g in self.groups if not g.oversized]


def find_duplicates(images: np.ndarray, embeddings: Optional[np.ndarray] = None, cap: int = GROUP_CAP,
                    progress: Optional[Callable[[str], None]] = None) -> Duplicates:
    """Identical and near-duplicate groups among uint8 `images` (N, H, W, C), pictures at
    HASH_IMAGE_SIZE; `embeddings` (N, D) add the embedding signals."""
    images = np.asarray(images)
    n = len(images)
    pairs: dict[tuple[int, int], Pair] = {}
    for a, b in _identical_pairs(images):
        pairs[(a, b)] = Pair(a, b, "identical", 0, 1.0, confirmed=True)
    hashes = phash.crop_hashes(images)
    thumbs = phash.Thumbnails(images)
    unit = _unit_embeddings(embeddings) if embeddings is not None else None
    for a, b, bits in phash.close_pairs(hashes, CANDIDATE_BITS):
        if (a, b) in pairs:
            continue
        cosine = float(unit[a] @ unit[b]) if unit is not None else None
        pairs[(a, b)] = Pair(a, b, "hash", bits, thumbs.similarity(a, b), cosine)
    if unit is not None:
        for a, b, cosine in _close_embeddings(unit, EMBEDDING_CANDIDATE):
            if (a, b) not in pairs:
                pairs[(a, b)] = Pair(a, b, "embedding", _bits(hashes, a, b), thumbs.similarity(a, b), cosine)
    for pair in pairs.values():
        if pair.found_by == "hash":
            pair.confirmed = pair.pixels >= PIXEL_CONFIRM or (pair.embedding or 0.0) >= EMBEDDING_CONFIRM
        elif pair.found_by == "embedding":
            pair.confirmed = pair.pixels >= PIXEL_CONFIRM
    confirmed = [p for p in pairs.values() if p.confirmed]
    groups = [Group(members, [p for p in confirmed if p.a in set(members)], len(members) > cap)
              for members in _components(n, confirmed)]
    rejected = sorted((p for p in pairs.values() if not p.confirmed), key=lambda p: -p.pixels)
    return Duplicates(groups, len(pairs), rejected)


def near_copies(originals: np.ndarray, others: np.ndarray, mode: str = "near") -> dict[int, Pair]:
    """{i: the pair} for each of `others` that is a copy of one of `originals` (both uint8 pictures at
    HASH_IMAGE_SIZE): find_duplicates' rule, across the two sets only (a pair's `a` is the
    original's index, `b` the other's). exact: identical pixels only; near: also a hash candidate
    confirmed by the aligned pixels. Where an image is a copy of several, the most alike is given."""
    originals, others = np.asarray(originals), np.asarray(others)
    n = len(originals)
    found: dict[int, Pair] = {}
    first = {hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest(): i for i, image in enumerate(originals)}
    for j, image in enumerate(others):
        i = first.get(hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest())
        if i is not None:
            found[j] = Pair(i, j, "identical", 0, 1.0, confirmed=True)
    if mode != "near" or not n or not len(others):
        return found
    both = np.concatenate([originals, others])
    candidates = [(a, b - n, bits) for a, b, bits in phash.close_pairs(phash.crop_hashes(both), CANDIDATE_BITS)
                  if a < n <= b and b - n not in found]
    if not candidates:
        return found
    involved = sorted({a for a, _, _ in candidates} | {n + j for _, j, _ in candidates})
    at = {index: k for k, index in enumerate(involved)}
    thumbs = phash.Thumbnails(both[involved])  # only the pictures in a candidate pair: the pixel check is the cost
    for a, j, bits in candidates:
        pixels = thumbs.similarity(at[a], at[n + j])
        if pixels >= PIXEL_CONFIRM and (j not in found or pixels > found[j].pixels):
            found[j] = Pair(a, j, "hash", bits, pixels, confirmed=True)
    return found


def _identical_pairs(images: np.ndarray) -> list[tuple[int, int]]:
    """(first, other) for every image whose pixels equal an earlier one's."""
    first: dict[bytes, int] = {}
    found = []
    for i, image in enumerate(images):
        key = hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest()
        if key in first:
            found.append((first[key], i))
        else:
            first[key] = i
    return found


def _bits(hashes: np.ndarray, a: int, b: int) -> int:
    """The least hash distance of a and b over the crop alignments (close_pairs' distance)."""
    pair = list(phash.close_pairs(hashes[[a, b]], 64))
    return pair[0][2]


def _unit_embeddings(embeddings: np.ndarray) -> np.ndarray:
    """Embeddings centred on their mean and scaled to length 1: dot products are cosines."""
    x = np.asarray(embeddings, np.float64)
    x = x - x.mean(0)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _close_embeddings(unit: np.ndarray, threshold: float, chunk: int = 1024) -> list[tuple[int, int, float]]:
    """(a, b, cosine) for a < b with cosine >= threshold, a block of rows at a time."""
    found = []
    for start in range(0, len(unit), chunk):
        block = unit[start:start + chunk] @ unit[start:].T
        ii, jj = np.nonzero(block >= threshold)
        for i, j in zip(ii, jj):
            if i < j:
                found.append((start + int(i), start + int(j), float(block[i, j])))
    return found


def _components(n: int, pairs: list[Pair]) -> list[list[int]]:
    """The connected parts (two or more members) of the graph of `pairs` over n nodes."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for pair in pairs:
        ra, rb = root(pair.a), root(pair.b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for i in sorted({p.a for p in pairs} | {p.b for p in pairs}):
        members.setdefault(root(i), []).append(i)
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])


# ---------------------------------------------------------------------- pictures at the hash size
def hash_images(dataset: Dataset, reporter: Reporter = SILENT) -> np.ndarray:
    """`dataset`'s pictures at HASH_IMAGE_SIZE (same order and count), decoded through the dataset
    cache; a folder's picture that decodes there but not here (never seen) would be black."""
    if dataset.image_size == (HASH_IMAGE_SIZE, HASH_IMAGE_SIZE):
        return np.asarray(dataset.images)
    small = load_dataset(dataset.source, HASH_IMAGE_SIZE, dataset.color, reporter=reporter)
    if dataset.paths is None or small.paths == dataset.paths:
        if len(small.labels) != len(dataset.labels):
            raise ValueError(f"{dataset.source}: {len(small.labels)} images at {HASH_IMAGE_SIZE} px, "
                             f"{len(dataset.labels)} at {dataset.image_size[0]}")
        return np.asarray(small.images)
    at = {path: i for i, path in enumerate(small.paths or [])}
    out = np.zeros((len(dataset.labels), HASH_IMAGE_SIZE, HASH_IMAGE_SIZE, small.images.shape[3]), np.uint8)
    for i, path in enumerate(dataset.paths):
        if path in at:
            out[i] = small.images[at[path]]
    return out


# ---------------------------------------------------------------------- the split's grouping
@dataclass
class Grouping:
    """What `edgecls train --dedupe` kept together, for the split, the log, split.json and metrics.json."""

    mode: str  # near | exact | off
    groups: list[list[int]]  # kept on one side of the split
    oversized: list[list[int]] = field(default_factory=list)  # found, larger than GROUP_CAP: not used
    cross_class: int = 0  # groups whose members are filed under two or more classes
    dropped_exact: int = 0  # byte-identical files the loader dropped
    dropped_across_classes: int = 0  # of those, copies filed under another class than the kept file
    not_used: str = ""  # why the groups found were not used (IMPLAUSIBLE_SHARE)

    @property
    def images(self) -> int:
        return sum(len(g) for g in self.groups)

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "rule": {"candidate_bits": CANDIDATE_BITS, "pixel_confirm": PIXEL_CONFIRM,
                                            "hash_image_size": HASH_IMAGE_SIZE, "group_cap": GROUP_CAP},
                "groups_kept_together": len(self.groups), "images_in_groups": self.images,
                "oversized_groups": len(self.oversized), "cross_class_groups": self.cross_class,
                "byte_identical_dropped": self.dropped_exact,
                "byte_identical_across_classes": self.dropped_across_classes,
                "not_used": self.not_used or None, "groups": self.groups, "oversized": self.oversized}


def default_dedupe(source: str, dataset: Dataset) -> str:
    """near for a folder of image files; off for built-in and IDX data (small grayscale glyphs hash
    alike, and their split is the one every published figure uses)."""
    return "near" if dataset.paths is not None else "off"


def split_grouping(dataset: Dataset, mode: Optional[str], reporter: Reporter = SILENT) -> Grouping:
    """The groups `train` keeps on one side of its split, per `--dedupe` (None: default_dedupe).

    exact: images with the same pixels (at HASH_IMAGE_SIZE); near: also confirmed near-duplicates
    (hash and aligned pixels only: the split must not depend on a backbone)."""
    mode = mode or default_dedupe(dataset.source, dataset)
    copies = [(path, why[len("duplicate of "):]) for path, why in dataset.skipped if why.startswith("duplicate of ")]
    dropped = len(copies)
    across = sum(1 for path, kept in copies if class_folder(path) != class_folder(kept))
    if mode == "off":
        return Grouping(mode, [], dropped_exact=dropped, dropped_across_classes=across)
    if mode not in DEDUPE_MODES:
        raise ValueError(f"unknown dedupe mode {mode!r}")
    images = hash_images(dataset, reporter)
    if mode == "exact":
        pairs = [Pair(a, b, "identical", 0, 1.0, confirmed=True) for a, b in _identical_pairs(images)]
        groups = [Group(m, [], len(m) > GROUP_CAP) for m in _components(len(images), pairs)]
    else:
        groups = find_duplicates(images).groups
    labels = np.asarray(dataset.labels)
    used = [g.members for g in groups if not g.oversized]
    cross = sum(1 for g in groups if len(set(labels[g.members].tolist())) > 1)
    share = sum(len(g.members) for g in groups) / max(1, len(labels))
    if share > IMPLAUSIBLE_SHARE:
        return Grouping(mode, [], [], cross, dropped, across,
                        f"{share:.0%} of the images fell into {len(groups)} groups: the rule does not fit this data "
                        "(small, alike pictures), the plain split is used")
    return Grouping(mode, used, [g.members for g in groups if g.oversized], cross, dropped, across)


def class_folder(path: str) -> str:
    """The class folder of a path relative to the data (its train/val/test part skipped)."""
    parts = Path(path).parts
    return parts[1] if len(parts) > 2 and parts[0] in _PART_FOLDERS else parts[0]


_PART_FOLDERS = ("train", "training", "val", "valid", "validation", "test", "testing")


def grouped_split(dataset: Dataset, mode: Optional[str], val_fraction: float, test_fraction: float, seed: int,
                  reporter: Reporter = SILENT) -> Split:
    """`train`'s split: make_split with the near-duplicate groups of `--dedupe` kept on one side, what was
    kept together recorded in split.dedupe (split.json, metrics.json) and said in the log. A split that
    comes with the data is never cut again: groups spanning its parts are reported as leakage."""
    grouping = split_grouping(dataset, mode, reporter)
    split = make_split(dataset, val_fraction, test_fraction, seed, groups=grouping.groups)
    parts = split.part_of(len(dataset.labels))
    spanning = [g for g in grouping.groups + grouping.oversized if len({parts[i] for i in g if parts[i]}) > 1]
    split.dedupe = {**grouping.to_json(), "groups_spanning_parts": len(spanning)}
    if grouping.dropped_across_classes:
        reporter(f"warning: {grouping.dropped_across_classes} byte-identical file(s) are filed under another class "
                 f"than the copy kept: label conflicts, see edgecls data check {dataset.source}")
    if grouping.not_used:
        reporter(f"warning: near-duplicates (--dedupe {grouping.mode}): {grouping.not_used}")
    elif grouping.mode != "off":
        found = (f"{len(grouping.groups)} groups of {grouping.images} images kept on one side of the split"
                 if grouping.groups else "none found")
        extra = [text for text, n in ((f"{len(grouping.oversized)} larger than {GROUP_CAP} not kept together",
                                       len(grouping.oversized)),
                                      (f"{grouping.cross_class} filed under two classes (label conflicts)",
                                       grouping.cross_class)) if n]
        reporter(f"Near-duplicates (--dedupe {grouping.mode}): {found}" + (f"; {'; '.join(extra)}" if extra else ""))
    if spanning:
        reporter(f"warning: {len(spanning)} near-duplicate group(s) span the train/val/test parts the data came with "
            f"(they are never re-split): the held-out figures are flattered; see edgecls data check {dataset.source}")
    return split


def train_test_leaks(dataset: Dataset, split: Split) -> list[int]:
    """The test images (dataset indices) with a confirmed near-duplicate in the train part: what `bench`
    notes for a run whose split did not keep its groups together (made before it did, or oversized)."""
    if dataset.paths is None:  # built-in and IDX data: small glyphs hash alike (see default_dedupe)
        return []
    parts = split.part_of(len(dataset.labels))
    leaked = set()
    for group in find_duplicates(hash_images(dataset)).groups:
        if any(parts[i] == "train" for i in group.members):
            leaked.update(i for i in group.members if parts[i] == "test")
    return sorted(leaked)


def dedupe_metrics(record: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """split.dedupe without its index lists: what metrics.json says."""
    if record is None:
        return None
    return {k: v for k, v in record.items() if k not in ("groups", "oversized")}


def check_hint(record: Optional[dict[str, Any]], data: str) -> str:
    """The sentence `train`'s summary ends with when it kept groups together or dropped duplicates."""
    if not record:
        return ""
    said = [text for text, n in (
        (f"{record['groups_kept_together']} near-duplicate groups kept together", record["groups_kept_together"]),
        (f"{record['byte_identical_dropped']} byte-identical files dropped", record["byte_identical_dropped"]),
        (f"{record['oversized_groups']} groups too large to keep together", record["oversized_groups"]),
        (f"{record.get('byte_identical_across_classes', 0)} copies filed under two classes",
         record.get("byte_identical_across_classes", 0)),
        (f"{record.get('groups_spanning_parts', 0)} groups spanning the data's own parts",
         record.get("groups_spanning_parts", 0))) if n]
    if record.get("not_used"):
        said.append("the near-duplicate rule did not fit the data and was not used")
    if not said:
        return ""
    return f" Check your data ({', '.join(said)}): edgecls data check {data}"
