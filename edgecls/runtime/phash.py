"""Perceptual hashes of images and the pixel check that confirms one: the one near-duplicate
toolkit of edgecls (the data check, the group-aware split, and a device keeping frames once).

numpy and Pillow only (it runs on a device install). The hash is the classic DCT hash (pHash, as
the `imagehash` package computes it): the picture in grayscale at 32x32, its 2-D DCT, the 8x8
lowest frequencies, each bit "above the median of those 64". Written here rather than taken from
`imagehash` because that package pulls in SciPy and PyWavelets (tens of MB on a Pi) for what is a
32x32 matrix product, and because here whole batches of already-decoded arrays are hashed at once.

A hash alone is not proof: a 64-bit hash puts dark, low-contrast photos close together whatever
they show. `aligned_similarity` is the second signal: the normalised cross-correlation of two small
grayscale thumbnails, the best over a few alignments (the whole of each, one's centre against the
other whole at a few crop scales, and mirrored), so a resized, re-encoded, brightened or cropped
copy scores near 1 and a different picture does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Union

import numpy as np
from PIL import Image

HASH_SIDE = 32  # the picture is shrunk to 32x32 before the DCT (pHash's usual size)
HASH_BITS_SIDE = 8  # the 8x8 lowest frequencies: a 64-bit hash
THUMB_SIDE = 24  # the thumbnails compared pixel by pixel: small enough to ignore JPEG noise and blur
# Normalised cross-correlation of aligned 24x24 thumbnails (aligned_similarity) that makes two pictures
# one: on catsdogs the injected copies score 0.96 or more, the most alike two different photos among
# 98,000 candidate pairs 0.86.
PIXEL_CONFIRM = 0.92
# Centre crops tried when aligning two pictures: a copy cropped to 80..95 % of the side lines up with
# the other's centre at one of these scales (the whole picture, 1.0, is always tried).
CROP_SCALES = (0.95, 0.9, 0.85, 0.8)
# Centre crops hashed beside the whole picture (crop_hashes): measured on catsdogs, a copy cropped
# to 0.8..0.97 of the side is then within 10 bits of the original (median 2..4); against the whole
# picture alone a 0.9 crop is 10 bits away in the median and up to 20 (where other photos begin).
HASH_CROPS = (0.9, 0.8)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, what Pillow's convert("L") uses


def grayscale(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) or (H, W, C) pixels as float32 luminance (N, H, W) / (H, W)."""
    images = np.asarray(images)
    if images.shape[-1] == 1:
        return images[..., 0].astype(np.float32)
    return images[..., :3].astype(np.float32) @ LUMA


def _resize(gray: np.ndarray, side: int, box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """One float32 (H, W) picture resized to side x side with Pillow's box filter (the mean of
    the covered pixels), optionally from a sub-box of it."""
    picture = Image.fromarray(np.ascontiguousarray(gray, np.float32))
    return np.asarray(picture.resize((side, side), Image.Resampling.BOX, box=box), np.float32)


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix (n, n): D @ x is the DCT of the column x."""
    k = np.arange(n)[:, None]
    matrix = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return matrix.astype(np.float32)


_DCT = _dct_matrix(HASH_SIDE)[:HASH_BITS_SIDE]  # only the rows of the kept frequencies
_BIT_WEIGHTS = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)


def _centre(shape: tuple[int, ...], scale: float) -> tuple[float, float, float, float] | None:
    """The (left, upper, right, lower) box of the centred `scale` part of an (H, W) picture; None: all of it."""
    if scale >= 1.0:
        return None
    h, w = shape[:2]
    return ((1 - scale) * w / 2, (1 - scale) * h / 2, (1 + scale) * w / 2, (1 + scale) * h / 2)


def phash(images: Union[np.ndarray, Image.Image], crop: float = 1.0) -> np.ndarray:
    """64-bit perceptual hashes (uint64, one per image) of uint8 pixels (N, H, W, C) or (H, W, C),
    or of one Pillow image; of the centred `crop` part of each picture when below 1. Bit order:
    row-major over the 8x8 frequencies, the first bit highest."""
    if isinstance(images, Image.Image):
        images = np.asarray(images.convert("RGB"))
    images = np.asarray(images)
    single = images.ndim == 3
    batch = grayscale(images[None] if single else images)
    small = (np.stack([_resize(g, HASH_SIDE, _centre(g.shape, crop)) for g in batch]) if len(batch)
             else np.zeros((0, HASH_SIDE, HASH_SIDE), np.float32))
    low = _DCT @ small @ _DCT.T  # (N, 8, 8): the lowest frequencies of each picture
    flat = low.reshape(len(low), -1)
    bits = flat > np.median(flat, axis=1, keepdims=True)
    hashes = (bits.astype(np.uint64) * _BIT_WEIGHTS).sum(axis=1, dtype=np.uint64)
    return hashes[0] if single else hashes


def to_hex(value: Union[int, np.integer]) -> str:
    return f"{int(value):016x}"


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between uint64 hashes (broadcasting), as uint8."""
    x = np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64))
    if hasattr(np, "bitwise_count"):  # numpy 2
        return np.bitwise_count(x).astype(np.uint8)
    as_bytes = x[..., None].view(np.uint8)  # numpy 1 (tflite_runtime's): a byte lookup table
    return _BYTE_BITS[as_bytes].sum(-1, dtype=np.uint8)


def crop_hashes(images: np.ndarray, crops: tuple[float, ...] = HASH_CROPS) -> np.ndarray:
    """(N, 1 + len(crops)) uint64: each picture's hash, then the hashes of its centred `crops`
    (what close_pairs compares a cropped copy against)."""
    return np.stack([phash(images)] + [phash(images, crop=c) for c in crops], axis=1)


def close_pairs(hashes: np.ndarray, max_distance: int, chunk: int = 1024) -> Iterator[tuple[int, int, int]]:
    """(i, j, distance) for every pair i < j whose hashes differ in at most `max_distance` bits.

    `hashes` is (N,), or (N, K) from crop_hashes: then the distance of a pair is the least of whole
    against whole and either's crops against the other whole, so a copy cropped to one of the crop
    scales is as close as a resized one. Every pair is compared, a block of `chunk` rows at a time:
    10,000 images (K = 3) take seconds, 100,000 a few minutes."""
    hashes = np.asarray(hashes, np.uint64)
    hashes = hashes[:, None] if hashes.ndim == 1 else hashes
    whole = hashes[:, 0]
    for start in range(0, len(hashes), chunk):
        rows = hashes[start:start + chunk]
        columns = whole[None, start:]  # only columns from `start` on: the upper triangle
        distances = hamming(rows[:, :1], columns)
        for k in range(1, hashes.shape[1]):
            np.minimum(distances, hamming(rows[:, k:k + 1], columns), out=distances)
            np.minimum(distances, hamming(rows[:, :1], hashes[None, start:, k]), out=distances)
        ii, jj = np.nonzero(distances <= max_distance)
        keep = ii < jj
        for i, j in zip(ii[keep], jj[keep]):
            yield int(start + i), int(start + j), int(distances[i, j])


# ---------------------------------------------------------------------- the pixel check
def _standardised(thumb: np.ndarray) -> np.ndarray:
    """A thumbnail as a unit vector after removing its mean: the dot product of two is their
    normalised cross-correlation (brightness and contrast changes cancel out)."""
    flat = thumb.reshape(-1).astype(np.float64)
    flat = flat - flat.mean()
    norm = np.linalg.norm(flat)
    return (flat / norm if norm > 1e-6 else flat).astype(np.float32)


class Thumbnails:
    """Each picture's standardised thumbnails: the whole of it, and its centre at CROP_SCALES,
    each also mirrored. `similarity(i, j)` aligns two of them."""

    def __init__(self, images: np.ndarray):
        gray = grayscale(np.asarray(images))
        views = []
        for picture in gray:
            views.append([_standardised(_resize(picture, THUMB_SIDE, _centre(picture.shape, s)))
                          for s in (1.0, *CROP_SCALES)])
        # (N, 1 + len(CROP_SCALES), side * side)
        self.views = np.asarray(views, np.float32).reshape(len(gray), len(CROP_SCALES) + 1, THUMB_SIDE, THUMB_SIDE)
        self.mirrored = self.views[..., ::-1]
        self.flat = self.views.reshape(len(gray), len(CROP_SCALES) + 1, -1)
        self.flat_mirrored = np.ascontiguousarray(self.mirrored).reshape(len(gray), len(CROP_SCALES) + 1, -1)
        # A flat picture (one colour, or nearly) has no structure to compare: it matches nothing.
        self.flat_picture = np.linalg.norm(self.flat[:, 0], axis=1) < 0.5

    def similarity(self, i: int, j: int) -> float:
        """The best normalised cross-correlation of pictures i and j over the alignments: whole
        against whole, either's centre against the other whole, and the same with j mirrored."""
        if self.flat_picture[i] or self.flat_picture[j]:
            return 0.0
        best = -1.0
        for other in (self.flat[j], self.flat_mirrored[j]):
            best = max(best, float(self.flat[i, 0] @ other[0]),
                       float(np.max(self.flat[i, 1:] @ other[0])),  # i is the larger picture: its centre is j
                       float(np.max(other[1:] @ self.flat[i, 0])))  # j is the larger one
        return best


def aligned_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Thumbnails(...).similarity of two uint8 pictures (H, W, C): 1.0 for the same picture."""
    return Thumbnails(np.stack([np.asarray(a), np.asarray(b)]) if np.shape(a) == np.shape(b)
                      else _same_size(a, b)).similarity(0, 1)


def _same_size(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two pictures of different sizes, both resized to the larger one's size (for stacking)."""
    h, w = max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1])
    out = []
    for picture in (a, b):
        gray = grayscale(picture)
        picture = Image.fromarray(np.ascontiguousarray(gray, np.float32))
        out.append(np.asarray(picture.resize((w, h), Image.Resampling.BILINEAR))[..., None])
    return np.stack(out)
