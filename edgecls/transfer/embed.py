"""Embeddings of uint8 images through a backbone cut at its embedding, computed with the device
runtime (edgecls.runtime.Classifier: the backbone's own input scale and zero point) and cached on
disk, plus the optional augmented views of the training images.

A view is the image flipped (half the time), turned a few degrees and cropped to a random part
of what stays inside the turned frame, then resized back: seeded per (seed, image, view), so the
same run makes the same views. The cache key is the caller's: it must name everything the
embeddings depend on (backbone bytes, tensor, images, views, seed).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.atomic import write_bytes_atomic
from edgecls.cache import cache_home
from edgecls.errors import EdgeclsError
from edgecls.runtime import Classifier

CACHE_FORMAT = 2  # 2: keyed by the decoded pixels too (a decoder fix must not reuse old embeddings)
VIEW_RECIPE = ("flip", "rotate", "crop")  # what every extra view applies, in this order
MAX_DEGREES = 8.0  # a few degrees: photos are rarely held much crookeder
CROP_SCALE = (0.72, 0.86)  # of the side; 0.86 stays inside a frame turned by 8 degrees


class Embedder:
    """Pooled features (float32, dequantised) of uint8 images, through the cut model's one output."""

    def __init__(self, cut_model: Path, num_threads: Optional[int], input_range: Optional[tuple[float, float]] = None,
                 name: Optional[str] = None):
        self.classifier = Classifier(cut_model, num_threads=num_threads, input_range=input_range)
        self.name = name or self.classifier.path.name  # the backbone as the user named it, for messages
        self.spec = self.classifier.input_spec
        out = self.classifier.interpreter.get_output_details()[0]
        self._index = out["index"]
        scale, zero_point = out["quantization"]
        self._scale = float(scale) if out["dtype"] != np.float32 else 0.0
        self._zero_point = int(zero_point)
        self.size = int(out["shape"][-1])

    def __call__(self, images: Iterator[np.ndarray] | np.ndarray, count: int,
                 progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
        """(count, D) float32 features of `count` uint8 images (an array or a stream of them)."""
        result = np.empty((count, self.size), np.float32)
        step = self.classifier.max_batch  # 1 for a model with a fixed batch of one
        batch: list[np.ndarray] = []
        done = 0
        for image in images:
            batch.append(image)
            if len(batch) == step:
                result[done:done + step] = self._run(np.stack(batch))
                done += step
                batch = []
                if progress:
                    progress(step)
        if batch:
            result[done:done + len(batch)] = self._run(np.stack(batch))
            done += len(batch)
            if progress:
                progress(len(batch))
        if done != count:
            raise ValueError(f"expected {count} images, got {done}")
        return result

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self.classifier.set_input(batch)
        self.classifier.invoke()
        raw = self.classifier.interpreter.get_tensor(self._index).reshape(len(batch), -1)
        if self._scale:
            return ((raw.astype(np.float32) - self._zero_point) * self._scale).astype(np.float32)
        features = raw.astype(np.float32)
        bad = int(np.count_nonzero(~np.isfinite(features).all(axis=1)))
        if bad:  # a float backbone fed the wrong range overflows: a head fitted on NaN would look "collapsed"
            low, high = self.spec.pixel_range
            raise EdgeclsError(f"--backbone {self.name}: its embeddings are not numbers (NaN or infinite) for {bad} of "
                               f"{len(batch)} image(s) at the input range {low:g}..{high:g}: give the range it was "
                               "trained with (--input-range -1,1 or 0,1), or its weights are broken")
        return features


def augmented(images: np.ndarray, views: int, seed: int) -> Iterator[np.ndarray]:
    """For each image in order, `views - 1` augmented copies (uint8, same shape)."""
    for i, image in enumerate(images):
        for v in range(1, views):
            yield augment(np.asarray(image), np.random.default_rng([seed, i, v]))


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One view of a uint8 (H, W, C) image: VIEW_RECIPE with random parameters from `rng`."""
    from PIL import Image

    h, w, c = image.shape
    picture = Image.fromarray(image[..., 0] if c == 1 else image)
    if rng.random() < 0.5:
        picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    picture = picture.rotate(float(rng.uniform(-MAX_DEGREES, MAX_DEGREES)), resample=Image.Resampling.BILINEAR)
    scale = float(rng.uniform(*CROP_SCALE))
    safe = 1.0 / (np.cos(np.radians(MAX_DEGREES)) + np.sin(np.radians(MAX_DEGREES)))  # no corner fill inside
    room = max(0.0, (safe - scale) / 2)
    cx, cy = 0.5 + rng.uniform(-room, room), 0.5 + rng.uniform(-room, room)
    box = ((cx - scale / 2) * w, (cy - scale / 2) * h, (cx + scale / 2) * w, (cy + scale / 2) * h)
    picture = picture.resize((w, h), Image.Resampling.BILINEAR, box=box)
    out = np.asarray(picture, dtype=np.uint8)
    return out[..., None] if c == 1 else out


def cut_embedder(backbone: Any, folder: Path, num_threads: Optional[int],
                 input_range: Optional[tuple[float, float]] = None) -> Embedder:
    """An Embedder of `backbone` (tflite.backbone.Backbone) cut at its embedding; the cut model is
    written to `folder` (a scratch folder the caller removes). `input_range` overrides the backbone's."""
    from edgecls.errors import EdgeclsError
    from edgecls.runtime import ModelFileError
    from edgecls.tflite import graph

    model = graph.load_model(backbone.content, backbone.path.name)
    graph.cut(model, backbone.embedding.index)
    path = Path(folder) / "backbone_cut.tflite"
    path.write_bytes(graph.serialize(model))
    try:
        return Embedder(path, num_threads, input_range or backbone.pixel_range, name=backbone.path.name)
    except ModelFileError as exc:  # name the user's file, not this scratch copy
        reason = str(exc).removeprefix(f"{path.name}: ")
        raise EdgeclsError(f"--backbone {backbone.path.name}, cut at {backbone.embedding.name}: {reason}") from None


def dataset_cache_parts(backbone: Any, embedder: Embedder, dataset: Any) -> dict[str, Any]:
    """What the embeddings of every image of `dataset` (edgecls.data.Dataset) depend on: the cache
    key that `edgecls train --backbone` and `edgecls data check --backbone` share."""
    from edgecls import __version__

    return {"backbone_sha256": backbone.sha256, "tensor": backbone.embedding.name, "data": dataset.fingerprint,
            "pixels": getattr(dataset, "pixels_sha256", ""), "images": int(len(dataset.labels)),
            "shape": list(dataset.images.shape[1:]), "pixel_range": list(embedder.spec.pixel_range),
            "edgecls": __version__}


def embed_dataset(embedder: Embedder, backbone: Any, dataset: Any, folder: Optional[Path],
                  progress: Optional[Callable[[int], None]] = None) -> tuple[np.ndarray, bool]:
    """(features (N, D) of every image of `dataset`, whether they came from the cache in `folder`)."""
    n = len(dataset.labels)
    return cached(folder, dataset_cache_parts(backbone, embedder, dataset), (n, embedder.size),
                  lambda: embedder(iter(dataset.images), n, progress))


def default_cache_folder() -> Path:
    """Where embeddings are cached: beside the decoded datasets (~/.cache/edgecls/embeddings)."""
    return cache_home() / "embeddings"


# ---------------------------------------------------------------------- cache
def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True).encode()).hexdigest()[:24]


def cached(folder: Optional[Path], parts: dict[str, Any], shape: tuple[int, int],
           compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
    """(the embeddings `parts` name, whether they came from the cache). A cached file of another
    shape or type (truncated, from another version) is recomputed; the write is atomic."""
    path = folder / f"{cache_key(parts)}.npy" if folder is not None else None
    if path is not None and path.is_file():
        try:
            found = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            found = None
        if found is not None and found.shape == shape and found.dtype == np.float32:
            return found, True
    result = compute()
    if path is not None:
        buffer = io.BytesIO()
        np.save(buffer, result, allow_pickle=False)
        write_bytes_atomic(path, buffer.getvalue())
    return result, False
