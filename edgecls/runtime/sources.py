"""Turn command-line arguments (files, folders, glob patterns) into a lazy stream of image paths."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from edgecls.runtime.classify import Prediction
from edgecls.runtime.labels import printable
from edgecls.runtime.preprocess import IMAGE_EXTENSIONS, is_image_file


def expand_images(arguments: Iterable[str]) -> Iterator[Path | Prediction]:
    """Yield image paths in a stable order, lazily (a 10,000-file folder is walked as it goes).

    A file named explicitly is yielded whatever its extension (decoding will say if it is no
    image); folders are walked recursively and globs expanded, both keeping image files only.
    An argument that names no image becomes a Prediction carrying the reason.
    """
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            yield from _or_reason(walk_images(path), argument,
                                  f"folder contains no images ({', '.join(IMAGE_EXTENSIONS)})")
        elif path.exists() or path.is_symlink():
            yield path
        elif glob.has_magic(argument):
            yield from _or_reason(_glob_images(argument), argument, "no image matches this pattern")
        else:
            yield Prediction(argument, error=f"no such file or folder: {printable(argument)}")


def walk_images(folder: Path) -> Iterator[Path]:
    """Image files under `folder`, recursively, sorted, skipping hidden files and folders."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root, name)
            if is_image_file(path):
                yield path


def _glob_images(pattern: str) -> Iterator[Path]:
    recursive = "**" in pattern  # then the matches already include every file below a folder
    for match in sorted(glob.iglob(pattern, recursive=True)):
        path = Path(match)
        if path.is_dir():
            if not recursive:
                yield from walk_images(path)
        elif is_image_file(path):
            yield path


def _or_reason(paths: Iterator[Path], argument: str, reason: str) -> Iterator[Path | Prediction]:
    empty = True
    for path in paths:
        empty = False
        yield path
    if empty:
        yield Prediction(argument, error=reason)
