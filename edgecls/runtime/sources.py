"""Turn command-line arguments (files, folders, glob patterns) into a lazy stream of image paths."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from edgecls.errors import EdgeclsError
from edgecls.runtime.classify import Prediction
from edgecls.runtime.preprocess import IMAGE_EXTENSIONS, is_image_file
from edgecls.text import printable


def expand_images(arguments: Iterable[str]) -> Iterator[Path | Prediction]:
    """Yield image paths in a stable order, lazily (a 10,000-file folder is walked as it goes).

    A file named explicitly is yielded whatever its extension (decoding will say if it is no
    image); folders are walked recursively and globs expanded, both keeping image files only.
    An argument that names no image becomes a Prediction carrying the reason.
    """
    for argument in arguments:
        path = Path(argument)
        try:  # a 300-character name or a path through an unreadable folder: that argument's row
            kind = "folder" if path.is_dir() else "file" if path.exists() or path.is_symlink() else ""
        except OSError as exc:
            yield Prediction(argument, error=f"cannot read: {exc.strerror or exc}")
            continue
        if kind == "folder":
            yield from _or_reason(_walk_rows(path), argument,
                                  f"folder contains no images ({', '.join(IMAGE_EXTENSIONS)})")
        elif kind == "file":
            yield path
        elif _has_magic(argument):
            yield from _or_reason(_glob_images(argument), argument, "no image matches this pattern")
        else:
            yield Prediction(argument, error="no such file or folder")  # the row names the argument


def walk_images(folder: Path, unreadable: list[OSError] | None = None) -> Iterator[Path]:
    """Image files under `folder`, recursively, sorted, skipping hidden files and folders.

    Folders that cannot be listed (the top one included) are appended to `unreadable` as they are
    met, so a caller can report them; without it they are skipped silently. Non-regular files with
    an image name (a FIFO, a device) are yielded: the decoder refuses them without opening them."""
    for root, dirs, files in os.walk(folder, onerror=None if unreadable is None else unreadable.append):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root, name)
            if is_image_file(path):
                yield path


def folder_error(exc: OSError) -> str:
    """The reason a folder could not be listed, for an error row or a skip list."""
    return f"cannot read folder: {(exc.strerror or str(exc)).lower()}"


def _walk_rows(folder: Path) -> Iterator[Path | Prediction]:
    """walk_images with each unreadable folder as an error row, in walking order."""
    unreadable: list[OSError] = []
    for path in walk_images(folder, unreadable):
        yield from _drain(unreadable)
        yield path
    yield from _drain(unreadable)


def _drain(unreadable: list[OSError]) -> Iterator[Prediction]:
    while unreadable:
        exc = unreadable.pop(0)
        yield Prediction(exc.filename if exc.filename is not None else "?", error=folder_error(exc))


def _has_magic(argument: str) -> bool:
    """glob.has_magic's test, without importing glob on every predict (~0.6 ms of a cold start)."""
    return any(c in argument for c in "*?[")


def _glob_images(pattern: str) -> Iterator[Path | Prediction]:
    import glob

    recursive = "**" in pattern  # then the matches already include every file below a folder
    for match in sorted(glob.iglob(pattern, recursive=True)):
        path = Path(match)
        if path.is_dir():
            if not recursive:
                yield from _walk_rows(path)
        elif is_image_file(path):
            yield path


def _or_reason(paths: Iterator[Path], argument: str, reason: str) -> Iterator[Path | Prediction]:
    empty = True
    for path in paths:
        empty = False
        yield path
    if empty:
        yield Prediction(argument, error=reason)


MAX_UNKNOWN = 5000  # images read from an --unknown-data folder (a seeded sample of a bigger one)


def read_images(folder: Path, decode: Callable[[Path], np.ndarray], limit: int = MAX_UNKNOWN, seed: int = 0,
                what: str = "--unknown-data", skipped: list[str] | None = None) -> np.ndarray:
    """The decoded images of a folder, any layout, recursively (a seeded sample of `limit` of a bigger
    one): unreadable ones are left out (listed in `skipped`); none readable is a one-line error."""
    from edgecls.runtime.preprocess import ImageError

    if not folder.is_dir():
        raise EdgeclsError(f"{what} {folder} is not a folder")
    paths = list(walk_images(folder))
    if len(paths) > limit:
        chosen = np.random.default_rng(seed).choice(len(paths), limit, replace=False)
        paths = [paths[i] for i in sorted(chosen)]
    found = []
    for path in paths:
        try:
            found.append(decode(path))
        except ImageError as exc:
            if skipped is not None:
                skipped.append(f"{printable(str(path))}: {exc}")
    if not found:
        raise EdgeclsError(f"{what} {folder} has no readable images")
    return np.stack(found)
