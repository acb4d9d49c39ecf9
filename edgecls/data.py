"""Datasets as uint8 pixel arrays, integer labels and class names, plus a saved, stratified split.

Sources: the embedded `digits`; a folder of class sub-folders (decoded once with the runtime's
own `load_image` into a memory-mapped cache); a folder of MNIST-format IDX files; and
`mnist` / `fashion_mnist` / `cifar10` through Keras' download-and-cache.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import shutil
import struct
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls import __version__, jsonio
from edgecls.atomic import owner_alive
from edgecls.cache import cache_home
from edgecls.errors import EdgeclsError, first_line
from edgecls.files import open_regular, read_capped, sha256_of
from edgecls.reporter import SILENT, Reporter
from edgecls.runtime.preprocess import ImageError, load_image
from edgecls.runtime.sources import folder_error, walk_images
from edgecls.text import clean_text, printable

BUILTIN_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")
SPLIT_NAMES = ("train", "val", "test")
# How `edgecls train` treats near-duplicates when it makes a split (edgecls.duplicates.split_grouping):
# each group kept on one side (near: confirmed near-duplicates; exact: identical pixels), or not at all.
DEDUPE_MODES = ("near", "exact", "off")
FOLDER_DEFAULT_SIZE = 96
MAX_IDX_BYTES = 4 << 30  # 4 GiB: MNIST's largest file is 47 MB
CACHE_FORMAT = 4  # 3: keyed by content and location, verified on read; 4: pixels in line with paths after a skip


@dataclass
class Dataset:
    images: np.ndarray  # uint8 (N, H, W, C); a read-only memory map for cached folders
    labels: np.ndarray  # int64 (N,)
    class_names: list[str]
    source: str  # what the user named: "digits", "mnist", a folder path
    color: str
    # For folder datasets: each image's path relative to the folder (cache order).
    paths: Optional[list[str]] = None
    # A split that comes with the data (train/val/test sub-folders, Keras' own test set).
    given_split: Optional[dict[str, np.ndarray]] = None
    # Identifies the content, so a saved split can check it still refers to the same images.
    fingerprint: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    # SHA-256 of the decoded pixels (a folder's cache file): what anything computed from the pixels
    # (embeddings) must be keyed by; the fingerprint names the files, not how they were decoded.
    pixels_sha256: str = ""
    # The folders whose images were added after the data's own (train --from RUN --add), in order.
    added_from: tuple[str, ...] = ()

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    def skipped_warnings(self) -> list[str]:
        """What was left out, one line a kind: unreadable files (the first few named) and byte-identical
        duplicates (which would leak between train and test) are different news."""
        duplicates = sum(1 for _, reason in self.skipped if reason.startswith("duplicate"))
        unreadable = [s for s in self.skipped if not s[1].startswith("duplicate")]
        found = []
        if unreadable:
            first = "; ".join(clean_text(f"{p}: {r}") for p, r in unreadable[:3])  # file names can hold escapes
            found.append(f"skipped {len(unreadable)} unreadable image file(s): {first}")
        if duplicates:
            found.append(f"skipped {duplicates} byte-identical duplicate file(s) (they would leak between train "
                         "and test)")
        return found

    def take(self, indices: np.ndarray) -> Part:
        """The images at `indices`, with their labels, ids (file relative to the data, or index) and files."""
        indices = np.asarray(indices)
        if self.paths is None:
            ids, files = [int(i) for i in indices], None
        else:
            ids = [self.paths[i] for i in indices]
            files = [Path(self.source) / p for p in ids]
        return Part(np.asarray(self.images[indices]), np.asarray(self.labels[indices]), ids, files)


@dataclass
class Part:
    """Some images of a dataset (a split part): uint8 pixels, labels, ids and, for a folder, the files."""

    images: np.ndarray
    labels: np.ndarray
    ids: list[Any]
    files: Optional[list[Path]]


def native_format(source: str) -> tuple[Optional[int], Optional[str]]:
    """(size, colour) a source has of its own; None where the user must or may choose."""
    return {
        "digits": (28, "grayscale"),
        "mnist": (28, "grayscale"),
        "fashion_mnist": (28, "grayscale"),
        "cifar10": (32, "rgb"),
    }.get(source, (None, None))


def check_source(source: str) -> None:
    """A one-line error when `source` names no dataset (neither a built-in name nor a folder): cheap, so
    that a command refuses it before loading TensorFlow or anything else."""
    if source in BUILTIN_DATASETS:
        return
    path = Path(source).expanduser()
    if not path.exists():
        raise EdgeclsError(
            f"dataset {source!r} not found: give a folder of class sub-folders, a folder of IDX files, "
            f"or one of {', '.join(BUILTIN_DATASETS)}"
        )
    if not path.is_dir():
        raise EdgeclsError(f"dataset {source!r} is a file: give the folder that holds the class sub-folders")


def load_dataset(source: str, img_size: Optional[int] = None, color: Optional[str] = None,
                 cache_dir: Optional[Path] = None, reporter: Reporter = SILENT) -> Dataset:
    """Load `source` as uint8 images of `img_size` x `img_size` in `color` (defaults per source)."""
    check_source(source)
    if source in BUILTIN_DATASETS:
        size, native_color = native_format(source)
        dataset = _load_digits() if source == "digits" else _load_keras(source)
        return _conform(dataset, img_size or size, color or native_color)
    path = Path(source).expanduser()
    if _idx_files(path):
        dataset = _load_idx_folder(path)
        return _conform(dataset, img_size or dataset.image_size[0], color or dataset.color)
    return _load_image_folder(path, img_size or FOLDER_DEFAULT_SIZE, color or "rgb", cache_dir, reporter)


def _conform(dataset: Dataset, img_size: int, color: str) -> Dataset:
    """Resize / recolour an array dataset through the runtime's own load_image (no skew)."""
    if dataset.image_size == (img_size, img_size) and dataset.color == color:
        return dataset
    converted = np.stack([load_image(image, (img_size, img_size), color) for image in dataset.images])
    dataset.images, dataset.color = converted, color
    return dataset


# ----------------------------------------------------------------------------- digits
def _load_digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise EdgeclsError("the digits dataset ships inside scikit-learn: pip install 'edgecls[train]'") from None
    bunch = load_digits()
    # 8x8 values 0..16 -> raw 0..255 pixels, then the shared load_image resizes to 28x28.
    raw = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.stack([load_image(img, (28, 28), "grayscale") for img in raw])
    return Dataset(images, bunch.target.astype(np.int64), [str(i) for i in range(10)], "digits", "grayscale",
                   fingerprint=_digest(images, bunch.target))


# ----------------------------------------------------------------------------- keras downloads
_KERAS_FILES = {
    "mnist": ("mnist.npz", "mnist.npz"),
    "fashion_mnist": ("fashion-mnist/", "train-images-idx3-ubyte.gz and the other three files"),
    "cifar10": ("cifar-10-batches-py.tar.gz", "cifar-10-batches-py.tar.gz"),
}
_CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_FASHION_CLASSES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]


def _load_keras(name: str) -> Dataset:
    try:
        import keras
    except ImportError:
        raise EdgeclsError(f"the {name} dataset downloads through Keras: pip install 'edgecls[train]'") from None
    loader = getattr(keras.datasets, name)
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as exc:  # Keras raises a bare Exception on a failed download
        cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"
        where, what = _KERAS_FILES[name]
        raise EdgeclsError(
            f"could not download {name} ({first_line(exc) or type(exc).__name__}; offline?): put {what} in "
            f"{cache / where} "
            f"and run again, or train on a local folder"
        ) from None
    images = np.concatenate([x_train, x_test])
    if images.ndim == 3:
        images = images[..., None]
    labels = np.concatenate([y_train, y_test]).reshape(-1).astype(np.int64)
    n_train = len(x_train)
    classes = {"mnist": [str(i) for i in range(10)], "fashion_mnist": _FASHION_CLASSES, "cifar10": _CIFAR10_CLASSES}[
        name
    ]
    return Dataset(images.astype(np.uint8), labels, classes, name, "grayscale" if images.shape[-1] == 1 else "rgb",
                   given_split={"train": np.arange(n_train), "test": np.arange(n_train, len(images))},
                   fingerprint=f"{name}:{len(images)}")


# ----------------------------------------------------------------------------- IDX files
def _idx_files(folder: Path) -> dict[str, tuple[Path, Path]]:
    """{"train"|"test": (images, labels)} for MNIST-format files in `folder`."""
    found: dict[str, dict[str, Path]] = {}
    for path in folder.iterdir():
        name = path.name.lower()
        if not path.is_file() or "idx" not in name:
            continue
        part = "test" if name.startswith(("t10k", "test")) else "train"
        kind = "images" if "idx3" in name else "labels" if "idx1" in name else None
        if kind:
            found.setdefault(part, {})[kind] = path
    return {part: (p["images"], p["labels"]) for part, p in found.items() if len(p) == 2}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (raw or gzip) as a uint8 array."""
    try:
        with open_regular(path) as raw:
            handle = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
            data = handle.read(MAX_IDX_BYTES + 1)  # a gzip bomb or /dev/zero stops here
    except (OSError, EOFError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise EdgeclsError(f"cannot read IDX file {path}: {reason}") from None
    if len(data) > MAX_IDX_BYTES:
        raise EdgeclsError(f"IDX file {path} holds more than {MAX_IDX_BYTES} bytes")
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise EdgeclsError(f"{path} is not a uint8 IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise EdgeclsError(f"{path} is truncated: its header is cut short")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != int(np.prod(shape)):
        raise EdgeclsError(f"{path} is truncated: header says {shape}, file holds {len(data) - header} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _load_idx_folder(folder: Path) -> Dataset:
    parts = _idx_files(folder)
    images, labels, given = [], [], {}
    start = 0
    for part in ("train", "test"):
        if part not in parts:
            continue
        x, y = read_idx(parts[part][0]), read_idx(parts[part][1])
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise EdgeclsError(
                f"{parts[part][0].name} and {parts[part][1].name} do not match ({x.shape} images, {y.shape} labels)"
            )
        images.append(x[..., None])
        labels.append(y.astype(np.int64))
        given[part] = np.arange(start, start + len(x))
        start += len(x)
    x, y = np.concatenate(images), np.concatenate(labels)
    classes = [str(i) for i in range(int(y.max()) + 1)]
    return Dataset(x, y, classes, str(folder), "grayscale",
                   given_split=given if len(given) == 2 else None, fingerprint=_digest(x, y))


# ----------------------------------------------------------------------------- image folders
def _class_folders(root: Path) -> list[Path]:
    try:
        return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    except OSError as exc:
        raise EdgeclsError(f"cannot read dataset folder {root}: {(exc.strerror or str(exc)).lower()}") from None


def _image_files(folder: Path, unreadable: list[OSError]) -> list[Path]:
    """Image files below `folder`, recursively, hidden files and folders skipped, links not followed;
    folders that cannot be listed go to `unreadable` (reported as skipped)."""
    return list(walk_images(folder, unreadable))


def check_class_name(name: str, where: Path) -> None:
    """Refuse a class folder name that labels.txt and a terminal cannot carry unchanged."""
    if clean_text(name) != name or name != name.strip():
        raise EdgeclsError(f"class folder name {printable(name)!r} in {where} has a line break, control "
                           "character or leading/trailing space: rename the folder")


def has_test_part(folder: Path) -> bool:
    """Whether a --data folder comes with its own test part (a test/ split folder, IDX t10k files): what
    bench scores of it, where it scores all of a folder without one."""
    return folder.is_dir() and ("test" in _split_folders(folder) or "test" in _idx_files(folder))


def _split_folders(root: Path) -> dict[str, Path]:
    names = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}
    found = {}
    for split, aliases in names.items():
        for alias in aliases:
            if (root / alias).is_dir():
                found[split] = root / alias
                break
    return found if "train" in found and len(found) >= 2 else {}


def _load_image_folder(root: Path, img_size: int, color: str, cache_dir: Optional[Path],
                       reporter: Reporter) -> Dataset:
    splits = _split_folders(root)
    class_root = splits.get("train", root)
    folders = [p.name for p in _class_folders(class_root)]
    if not folders:
        raise EdgeclsError(f"{root} has no class sub-folders: put each class's images in a folder named after it")
    # A folder name that is not UTF-8 (Latin-1 'caf\xe9') is named by its printable text: what labels.txt,
    # the metadata and every report can carry and read back; the folder itself is still found by its name.
    classes = [printable(name) for name in folders]
    for name in classes:
        check_class_name(name, class_root)
    if len(set(classes)) != len(classes):
        twice = next(name for name in classes if classes.count(name) > 1)
        raise EdgeclsError(f"two class folders in {class_root} are both named {twice!r} once printed (one of them "
                           "is not UTF-8): rename one")
    entries: list[tuple[Path, int, str]] = []  # (file, label, split)
    unreadable: list[OSError] = []
    for split, base in (splits.items() if splits else [("", root)]):
        for label, name in enumerate(folders):
            folder = base / name
            files = _image_files(folder, unreadable) if folder.is_dir() else []
            if not files and split in ("", "train"):
                raise EdgeclsError(
                    f"class folder {folder} has no images "
                    f"({', '.join(e[1:] for e in ('.jpg', '.png', '.bmp', '.gif', '.webp'))})"
                    + (f"; {folder_error(unreadable[-1])}" if unreadable else "")
                )
            entries += [(f, label, split) for f in files]
        extra = [printable(p.name) for p in _class_folders(base) if p.name not in folders]
        if extra:
            raise EdgeclsError(f"{base} has class folders not in {class_root}: {', '.join(extra[:5])}")
    if len(classes) < 2:
        raise EdgeclsError(f"{root} has only one class ({classes[0]}): a classifier needs at least two")

    hashes = _content_hashes([e[0] for e in entries], reporter, root.name)
    key = _folder_key(root, entries, hashes, img_size, color)
    base_dir = cache_dir or default_cache_dir()
    cache = base_dir / key
    channels = 1 if color == "grayscale" else 3
    opened = _open_cache(cache, root, entries, img_size, channels)
    if opened is None:
        _build_cache(cache, root, entries, hashes, img_size, color, reporter)
        opened = _open_cache(cache, root, entries, img_size, channels)
        if opened is None:
            raise EdgeclsError(f"the dataset cache {cache} fails its own check right after being written "
                               "(a disk problem?): remove it and run again", exit_code=1)
    index, images, labels = opened
    skipped = [tuple(s) for s in index["skipped"]]
    skipped += [(str(exc.filename), folder_error(exc)) for exc in unreadable]
    if len(images) == 0:
        raise EdgeclsError(f"none of the {len(entries)} image files in {root} could be decoded "
                           f"(first: {index['skipped'][0][0]}: {index['skipped'][0][1]})")
    given = None
    if splits:
        split_of = np.array(index["splits"])
        given = {s: np.flatnonzero(split_of == s) for s in splits}
    # The split's fingerprint is the files' content, not the cache key (which includes the folder's
    # location): a copy of the folder made elsewhere is still the same data.
    return Dataset(images, labels, classes, str(root), color, paths=index["paths"], given_split=given,
                   fingerprint=index["content_fingerprint"], skipped=skipped, pixels_sha256=index["images_sha256"])


def default_cache_dir() -> Path:
    return cache_home() / "datasets"


def _content_hashes(paths: list[Path], reporter: Reporter, name: str) -> list[str]:
    """Each file's SHA-256 (chunked reads; regular files only), or "!reason" when it cannot be read."""
    def one(path: Path) -> str:
        try:
            return sha256_of(path)
        except OSError as exc:
            return f"!cannot read: {exc.strerror or exc}"

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return list(reporter.track(pool.map(one, paths), f"Reading {name}", len(paths)))


def _folder_key(root: Path, entries: list[tuple[Path, int, str]], hashes: list[str], img_size: int,
                color: str) -> str:
    """A key that changes with any file's content, name, label or split, the folder's location, or the options.

    (Sizes and times are not enough: unzip and tar give two different folders the same ones.)"""
    h = hashlib.sha256(f"{CACHE_FORMAT}|{img_size}|{color}|".encode())
    h.update(os.fsencode(str(root.resolve())) + b"\n")
    for (path, label, split), content in zip(entries, hashes):
        h.update(f"{path.relative_to(root)}|{label}|{split}|{content}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:24]


def _open_cache(cache: Path, root: Path, entries: list[tuple[Path, int, str]], img_size: int,
                channels: int) -> Optional[tuple[dict, np.ndarray, np.ndarray]]:
    """(index, images, labels) of a cache entry that passes its checks, else None (and the entry is removed).

    Checked: the index's shape, the arrays' shape and dtype, the images' digest, and that every
    path's label and split are what the folder says now (a tampered or half-written entry is rebuilt)."""
    if not cache.is_dir():
        return None
    try:
        index = json.loads(read_capped(cache / "index.json", 1 << 30).decode("utf-8"))
        n = len(index["paths"])
        expected = {str(path.relative_to(root)): (label, split) for path, label, split in entries}
        images = np.load(cache / "images.npy", mmap_mode="r")
        labels = np.load(cache / "labels.npy")
        ok = (index["format"] == CACHE_FORMAT and index["img_size"] == img_size
              and images.dtype == np.uint8 and images.shape == (n, img_size, img_size, channels)
              and labels.dtype == np.int64 and labels.shape == (n,) and len(index["splits"]) == n
              and isinstance(index["skipped"], list) and isinstance(index["content_fingerprint"], str)
              and all(expected.get(p) == (int(y), s) for p, y, s in zip(index["paths"], labels, index["splits"]))
              and sha256_of(cache / "images.npy") == index["images_sha256"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError, EOFError):
        ok = False
    if ok:
        return index, images, labels
    shutil.rmtree(cache, ignore_errors=True)
    return None


def _decode(path: Path, content: str, img_size: int, color: str) -> tuple[Optional[np.ndarray], str]:
    """(pixels or None, reason) for one file; never raises (one bad file must not end a job)."""
    if content.startswith("!"):
        return None, content[1:]
    try:
        return load_image(path, (img_size, img_size), color), ""
    except ImageError as exc:
        return None, str(exc)
    except Exception as exc:  # a Pillow plugin choking on a hostile file
        return None, f"cannot decode: {type(exc).__name__}: {first_line(exc)}"


def _reserve(path: Path) -> None:
    """Allocate a memory-mapped file's blocks now: on a full disk, writing through the map would
    kill the process with SIGBUS; here it is an ordinary ENOSPC."""
    with open(path, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise


def _new_memmap(path: Path, count: int, img_size: int, channels: int) -> np.memmap:
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(count, img_size, img_size, channels))
    _reserve(path)
    return images


def _build_cache(cache: Path, root: Path, entries, hashes: list[str], img_size: int, color: str,
                 reporter: Reporter) -> None:
    """Decode every file once into cache/images.npy (uint8, memory-mappable); atomic, and leftovers
    of killed builds (their process gone) are removed."""
    channels = 1 if color == "grayscale" else 3
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        for stale in cache.parent.glob(".*.partial-*"):
            if not owner_alive(stale):
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{cache.name}.partial-{os.getpid()}-", dir=cache.parent))
    except OSError as exc:
        raise EdgeclsError(f"cannot write the dataset cache in {cache.parent}: {exc.strerror or exc}") from None
    try:
        buffer = _new_memmap(tmp / "all.npy", len(entries), img_size, channels)
        keep, skipped, seen = [], [], {}
        content_hash = hashlib.sha256()  # of the kept files' bytes and labels: survives a plain `cp -r`
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            results = pool.map(lambda e: _decode(e[0][0], e[1], img_size, color), zip(entries, hashes))
            for i, (pixels, reason) in enumerate(
                reporter.track(results, f"Decoding {root.name}", len(entries))
            ):
                rel = str(entries[i][0].relative_to(root))
                content = hashes[i]
                if pixels is None:
                    skipped.append((rel, reason))
                elif content in seen:  # byte-identical duplicates would leak across the split
                    skipped.append((rel, f"duplicate of {seen[content]}"))
                else:
                    seen[content] = rel
                    buffer[len(keep)] = pixels
                    keep.append(i)
                    content_hash.update(
                        f"{rel}|{entries[i][1]}|{entries[i][2]}|{content}\n".encode("utf-8", "surrogateescape")
                    )
        images = _new_memmap(tmp / "images.npy", len(keep), img_size, channels)
        # The buffer holds the kept images packed in order (row k is the k-th kept file): copy its first
        # rows, in chunks (never a second full copy in memory).
        for start in range(0, len(keep), 1024):
            images[start:start + 1024] = buffer[start:min(start + 1024, len(keep))]
        images.flush()
        del images, buffer
        (tmp / "all.npy").unlink()
        np.save(tmp / "labels.npy", np.array([entries[i][1] for i in keep], dtype=np.int64))
        index = {
            "format": CACHE_FORMAT, "edgecls": __version__, "root": str(root), "img_size": img_size, "color": color,
            "paths": [str(entries[i][0].relative_to(root)) for i in keep],
            "splits": [entries[i][2] for i in keep],
            "skipped": skipped,
            "content_fingerprint": content_hash.hexdigest()[:24],
            "images_sha256": sha256_of(tmp / "images.npy"),
        }
        (tmp / "index.json").write_text(jsonio.dumps(index))
        try:
            os.replace(tmp, cache)
        except OSError:  # another process built the same cache meanwhile: theirs is as good as ours
            if not (cache / "index.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EdgeclsError(f"cannot write the dataset cache in {cache.parent}: {exc.strerror or exc} "
                           "(free some space, or set EDGECLS_CACHE to another disk)", exit_code=1) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------- split
@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_source: str = ""  # where the test images came from, in words (the log and metrics.json say it)
    # What kept near-duplicates together (edgecls.duplicates.Grouping.to_json); None: nothing did.
    dedupe: Optional[dict] = None
    # A split taken from another run, grown by added images (edgecls.retraining); None: made here.
    origin: Optional[dict] = None

    def to_json(self, dataset: Dataset, seed: int, fractions: tuple[float, float]) -> dict:
        doc = {
            "format": "edgecls.split/1", "source": dataset.source, "fingerprint": dataset.fingerprint,
            "seed": seed, "val_fraction": fractions[0], "test_fraction": fractions[1],
            "train": self.train.tolist(), "val": self.val.tolist(), "test": self.test.tolist(),
            # what the held-out parts are, by content: another run's parts compare equal when they are the same
            "digests": {part: part_digest(dataset.images, getattr(self, part)) for part in ("val", "test")},
        }
        if dataset.paths is not None:
            doc["test_files"] = [dataset.paths[i] for i in self.test]
        if self.dedupe is not None:
            doc["dedupe"] = self.dedupe
        if self.origin is not None:
            doc["from"] = self.origin
        return doc

    def part_of(self, count: int) -> np.ndarray:
        """Each of `count` dataset images' part: "train", "val", "test", or "" (in none)."""
        parts = np.full(count, "", dtype=object)
        for name in SPLIT_NAMES:
            parts[np.asarray(getattr(self, name), dtype=np.int64)] = name
        return parts


class ClassCountError(EdgeclsError):
    """The data has another number of classes than the labels a model was given: its own files disagree,
    and no other data or device fixes that."""


def split_data(dataset: Dataset, labels: list[str], saved: Optional[dict], seed: int,
               labels_source: str = "the model") -> Split:
    """The split of a model's dataset (which must have as many classes as `labels`, which come from
    `labels_source`): the saved one, checked (a run directory's), else a seeded one as train makes it."""
    if len(dataset.class_names) != len(labels):
        raise ClassCountError(f"{labels_source} names {len(labels)} classes but its data {dataset.source} has "
                              f"{len(dataset.class_names)}")
    return load_split(saved, dataset) if saved is not None else make_split(dataset, 0.1, 0.1, seed)


def make_split(dataset: Dataset, val_fraction: float, test_fraction: float, seed: int,
               groups: Optional[list[list[int]]] = None) -> Split:
    """A stratified, seeded split; a split that comes with the data is kept (val carved from train if needed).

    `groups` (lists of dataset indices, e.g. near-duplicates) are each put in one part whole, where
    the split is ours to make; without groups the split is the same as with none given."""
    rng = np.random.default_rng(seed)
    given = dataset.given_split or {}
    own = "the data's own test set" if dataset.paths is None else "the test/ folder"
    if "train" in given and "val" in given and "test" in given:
        return Split(given["train"], given["val"], given["test"], f"{len(given['test'])} images of {own}")
    if "train" in given:
        # Keep the part that came with the data; carve the missing one from its train part.
        if "val" in given:
            train, test = _stratified(dataset, given["train"], [test_fraction], rng, groups)
            return Split(train, given["val"], test,
                         f"{len(test)} images carved from the {len(given['train'])} of train/ (--test-fraction "
                         f"{test_fraction:g}, stratified, seeded; a test/ folder beside train/ and val/ is used "
                         "instead when present)")
        train, val = _stratified(dataset, given["train"], [val_fraction], rng, groups)
        return Split(train, val, given["test"], f"{len(given['test'])} images of {own}")
    train, val, test = _stratified(dataset, np.arange(len(dataset.labels)), [val_fraction, test_fraction], rng,
                                   groups)
    return Split(train, val, test, f"{len(test)} images drawn from all {len(dataset.labels)} (--test-fraction "
                                   f"{test_fraction:g}, stratified, seeded)")


def _units(pool: np.ndarray, groups: Optional[list[list[int]]]) -> dict[int, list[int]]:
    """{index: its group's members in `pool`} for the groups with at least two members there."""
    inside = set(np.asarray(pool).tolist())
    unit_of: dict[int, list[int]] = {}
    for group in groups or []:
        members = sorted(i for i in group if i in inside)
        if len(members) > 1:
            unit_of.update((i, members) for i in members)
    return unit_of


def _check_class_size(dataset: Dataset, label: int, count: int, need: int) -> None:
    if count < need + 1:
        raise EdgeclsError(
            f"class {dataset.class_names[label]!r} has {count} usable images: the split needs at least "
            f"{need + 1} per class (one in each held-out part and at least two to train)"
        )


def _stratified(dataset: Dataset, pool: np.ndarray, fractions: list[float], rng,
                groups: Optional[list[list[int]]] = None) -> list[np.ndarray]:
    """The split's partition: each class shuffled, and the held-out parts filled in that order, the
    rest to train. (stratified_sample below is the other stratified draw: a fixed-size sample.)

    Each of `groups` goes whole where its first member in the shuffled order falls (a group with
    members in two classes with the class met first), so a held-out part can hold a group's size
    minus one image more than its share. Without groups this is the plain stratified cut."""
    unit_of = _units(pool, groups)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    labels = dataset.labels[pool]
    placed: set[int] = set()
    for label in range(len(dataset.class_names)):
        members = pool[labels == label]
        _check_class_size(dataset, label, len(members), len(fractions) + 1)
        takes = [max(1, int(round(fraction * len(members)))) for fraction in fractions]
        filled = [0] * len(fractions)
        for index in rng.permutation(members).tolist():
            if index in placed:
                continue
            unit = unit_of.get(index, [index])
            part = next((p for p in range(len(fractions)) if filled[p] < takes[p]), None)
            if part is None:
                parts[0] += unit
            else:
                parts[part + 1] += unit
                filled[part] += len(unit)
            placed.update(unit)
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def load_split(doc: dict, dataset: Dataset) -> Split:
    """The saved split, checked: it must name this data, and its parts must be disjoint lists of
    integer indices into it (a held-out accuracy on training images would be a lie)."""
    fingerprint = doc.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise EdgeclsError("the saved split (split.json) has no fingerprint of its data: it cannot be "
                           "checked against the dataset; train the run again")
    if dataset.fingerprint and fingerprint != dataset.fingerprint:
        if dataset.added_from:
            raise EdgeclsError(f"the data at {dataset.source}, or the images added to it from "
                               f"{', '.join(dataset.added_from)}, changed since the run was trained (its split no "
                               "longer applies): a run's --add folders must stay as they were; collect the next "
                               "round into a new folder")
        raise EdgeclsError(f"the data at {dataset.source} is not the data the run was trained on (it changed since, or "
                           "is another dataset): its split no longer applies")
    n = len(dataset.labels)
    parts = []
    for name in SPLIT_NAMES:
        values = doc.get(name)
        # type() is int: bools, floats and strings are not indices
        if not isinstance(values, list) or not all(type(v) is int for v in values):
            raise EdgeclsError(f"the saved split (split.json) is malformed: its {name} part must be a list "
                               "of integer indices")
        if values and (min(values) < 0 or max(values) >= n):
            raise EdgeclsError("the saved split refers to images the dataset does not have")
        parts.append(np.asarray(values, dtype=np.int64))
    joined = np.concatenate(parts)
    if len(np.unique(joined)) != len(joined):
        raise EdgeclsError("the saved split (split.json) is malformed: its train, val and test parts overlap "
                           "or repeat an image (held-out scores would be measured on training images)")
    if not len(parts[0]):
        raise EdgeclsError("the saved split (split.json) is malformed: its train part is empty")
    return Split(*parts)


def reuse_split(doc: dict, dataset: Dataset) -> Split:
    """A split made before (a split.json document: edgecls search makes one for all its candidates), checked
    against `dataset` as loaded now: the same files (indices do not depend on the decoded picture size)."""
    found = load_split(doc, dataset)
    found.test_source = doc.get("test_source") or f"{len(found.test)} images of the given split"
    found.dedupe = doc.get("dedupe")
    return found


def image_digests(images: np.ndarray) -> list[str]:
    """The SHA-256 of each image's pixels (uint8, as decoded at the run's size and colour): what says two
    splits hold the same images, whatever files or indices they came from."""
    return [hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() for image in images]


def part_digest(images: np.ndarray, indices: np.ndarray) -> str:
    """One digest of a split part's content: the SHA-256 of its images' sorted digests (order-free)."""
    digests = sorted(image_digests(np.asarray(images[np.asarray(indices, dtype=np.int64)])))
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for array in arrays:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:24]


def stratified_sample(labels: np.ndarray, samples: Optional[int], seed: int) -> np.ndarray:
    """Positions into `labels`: `samples` of them (all if None or more), each class in proportion.

    Quotas are floor(n * share) plus the largest remainders, and every present class gets at
    least one image when n allows. The result is in a seeded random order.
    """
    labels = np.asarray(labels)
    total = len(labels)
    rng = np.random.default_rng(seed)
    if samples is None or samples >= total:
        return rng.permutation(total)
    classes, counts = np.unique(labels, return_counts=True)
    exact = samples * counts / total
    quota = np.floor(exact).astype(int)
    if samples >= len(classes):
        quota = np.maximum(quota, 1)
    while quota.sum() < samples:  # hand out the rest by largest remainder, where a class has room
        room = np.where(quota < counts, exact - quota, -np.inf)
        quota[int(np.argmax(room))] += 1
    while quota.sum() > samples:  # the minimum of one per class overshot: take from the largest
        quota[int(np.argmax(quota))] -= 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return rng.permutation(np.concatenate(chosen))
