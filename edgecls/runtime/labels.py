"""labels.txt: read the TFLite ecosystem's common formats, write one class a line; match a class
folder's name to a label (bench --labels, calibrate)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
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


def match_label(folder: str, labels: Sequence[str]) -> tuple[int, str]:
    """(label index, how it matched) of a class folder's name; a one-line error when none or several do."""
    name = folder.strip().casefold()

    def parts(label: str) -> list[str]:
        return [p.strip().casefold() for p in label.split(",")]

    rules = (("exact", lambda label: label == folder), ("case-insensitive", lambda label: label.casefold() == name),
             ("first comma part", lambda label: parts(label)[0] == name),
             ("comma part", lambda label: name in parts(label)))
    for how, rule in rules:
        hits = [i for i, label in enumerate(labels) if rule(label)]
        if len(hits) == 1:
            return hits[0], how
        if len(hits) > 1:
            shown = ", ".join(f"{i} {labels[i]!r}" for i in hits[:4])
            raise EdgeclsError(f"class folder {printable(folder)!r} matches {len(hits)} labels ({how}: {shown}): "
                               f"rename it to one label, or to its index (e.g. {hits[0]})")
    if folder.isdigit() and int(folder) < len(labels):
        return int(folder), "index"
    close, more = closest_labels(folder, labels)
    listed = " or ".join(f"{i} {labels[i]!r}" for i in close) + (f" (or {more} more)" if more else "")
    which = "that label" if len(close) == 1 and not more else "one of those labels"
    hint = (f": did you mean {listed}? Rename the folder to {which}, a comma part of it or its index"
            if close else ": rename it to a label or its index")
    raise EdgeclsError(f"class folder {printable(folder)!r} matches no label of the model (exactly, case-insensitively "
                       f"or by a comma part of a label like 'tabby, tabby cat'){hint}")


MAX_SUGGESTED = 3


def closest_labels(folder: str, labels: Sequence[str]) -> tuple[list[int], int]:
    """(the indices of the labels a folder name most likely means, at most MAX_SUGGESTED; how many more
    there are), best first: a comma part that is its singular or plural ('ants' -> 'ant, emmet,
    pismire'), else comma parts spelled alike ('Egyptain cat'), else labels with the word in them
    ('cats' -> 'tiger cat', 'Egyptian cat', ...)."""
    import difflib

    name = folder.strip().casefold()
    forms = {name, name + "s", name + "es"}
    for end, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ves", "f")):
        if name.endswith(end) and len(name) > len(end) + 1:
            forms.add(name[: -len(end)] + repl)
    parts = [(i, p.strip().casefold()) for i, label in enumerate(labels) for p in label.split(",")]
    found = [i for i, part in parts if part in forms]
    if not found:  # spelled alike: the closest comma parts first
        close = difflib.get_close_matches(name, [part for _, part in parts], n=MAX_SUGGESTED, cutoff=0.8)
        found = [i for word in close for i, part in parts if part == word]
    if not found:  # the word inside longer labels
        found = [i for i, part in parts if forms & set(part.split())]
    found = list(dict.fromkeys(found))
    return found[:MAX_SUGGESTED], max(0, len(found) - MAX_SUGGESTED)
