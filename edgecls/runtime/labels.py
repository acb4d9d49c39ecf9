"""labels.txt: read the TFLite ecosystem's common formats, write one class a line."""

from __future__ import annotations

import os
import re
from pathlib import Path

from edgecls.errors import EdgeclsError
from edgecls.files import FileTooLargeError, read_capped
from edgecls.text import clean_text, printable

MAX_LABELS_BYTES = 4 << 20
_INDEXED = re.compile(r"^\s*(\d+)\s*[:\s]\s*(.*?)\s*$")  # "0 cat" or "0: cat"
def parse_labels(text: str) -> list[str]:
    """Labels from `0 cat` / `0: cat` lines or one name a line; blank lines skipped, BOM dropped."""
    lines = [line.strip() for line in text.lstrip("\ufeff").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise EdgeclsError("labels file is empty")
    matches = [_INDEXED.match(line) for line in lines]
    if all(m and m.group(2) for m in matches):
        by_index = {int(m.group(1)): clean_text(m.group(2)) for m in matches}
        if len(by_index) != len(lines):
            raise EdgeclsError("labels file gives the same index twice")
        if sorted(by_index) != list(range(len(by_index))):
            raise EdgeclsError("labels file indices are not 0..N-1")
        return [by_index[i] for i in range(len(by_index))]
    return [clean_text(line) for line in lines]


def read_labels(path: str | os.PathLike) -> list[str]:
    path = Path(path)
    try:
        data = read_capped(path, MAX_LABELS_BYTES)
    except FileTooLargeError:
        raise EdgeclsError(f"labels file {path} is larger than {MAX_LABELS_BYTES} bytes") from None
    except OSError as exc:
        raise EdgeclsError(f"cannot read labels file {path}: {exc.strerror or exc}") from None
    return labels_from_bytes(data, path)


def labels_from_bytes(data: bytes, path: str | os.PathLike) -> list[str]:
    """The labels in the bytes of the labels file `path` (errors name it)."""
    try:
        return parse_labels(data.decode("utf-8-sig", errors="replace"))
    except EdgeclsError as exc:
        raise EdgeclsError(f"{path}: {exc}") from None


def labels_text(labels: list[str]) -> str:
    """labels.txt for `labels`, one a line; in the `0 name` index syntax when plain lines would not
    read back the same (class folders named "0 cat", "3 apples"). A label that no syntax can carry
    (a line break, a control character, blank, edge spaces) is refused."""
    for label in labels:
        if not label or clean_text(label) != label or label != label.strip():
            raise EdgeclsError(f"class name {printable(label)!r} cannot be written to labels.txt (a line break, "
                               "control character or leading/trailing space): rename it")
    if len(set(labels)) != len(labels):  # an answer must say which class it is
        twice = next(label for label in labels if labels.count(label) > 1)
        raise EdgeclsError(f"class name {printable(twice)!r} is given to {labels.count(twice)} classes: class names "
                           "must be unique")
    plain = "".join(f"{label}\n" for label in labels)
    try:
        if parse_labels(plain) == labels:
            return plain
    except EdgeclsError:  # plain lines that read as a bad index list ("7: x", "8: y")
        pass
    return "".join(f"{i} {label}\n" for i, label in enumerate(labels))
