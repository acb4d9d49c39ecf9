"""JSON as edgecls reads and writes it: strict, size-capped, with one-line errors.

Python's json module reads and writes NaN, Infinity and -Infinity, which are not JSON (other
tools refuse the file) and which pass every range check (comparisons with NaN are false); it
turns 1e400 into inf and gives up on integers past 4300 digits with a ValueError. Every JSON
file edgecls reads goes through `read_json` / `parse_json`, which refuse all of those naming the
field, and every JSON it writes through `dumps`, which refuses to write them.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from edgecls.errors import EdgeclsError
from edgecls.files import FileTooLargeError, read_capped

MAX_JSON_BYTES = 256 << 20  # split.json of a million images is ~8 MB; this only stops /dev/zero
MAX_INT = 2**63  # no count, size, index or seed in edgecls' files comes near; beyond, a float is inexact


class JSONValueError(ValueError):
    """Text that is not strict JSON, or holds a number edgecls cannot use; the message says where."""


class _Huge:
    """An integer literal past MAX_INT, kept as its digit count until the walk names where it is."""

    def __init__(self, digits: int):
        self.digits = digits


def _int(text: str) -> int | _Huge:
    digits = len(text) - text.startswith("-")
    if digits <= 18:  # below 10**18 < 2**63
        return int(text)
    if digits > 19:  # int() of 4301 digits would raise; 20 digits are past 2**63 anyway
        return _Huge(digits)
    value = int(text)
    return value if abs(value) < MAX_INT else _Huge(digits)


def parse_json(text: str | bytes) -> Any:
    """The document in `text`; JSONValueError for what is not strict JSON or holds NaN, an infinite
    number (1e400 too) or an integer beyond 2**63, naming the first such field (e.g. models[1].accuracy.top1)."""
    try:
        doc = json.loads(text, parse_constant=lambda token: math.nan if token == "NaN" else
                         math.copysign(math.inf, -1 if token.startswith("-") else 1), parse_int=_int)
    except RecursionError:
        raise JSONValueError("nested too deeply") from None
    except UnicodeDecodeError:
        raise JSONValueError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise JSONValueError(str(exc)) from None
    where = _first_bad(doc, "")
    if where is not None:
        raise JSONValueError(where)
    return doc


def _first_bad(value: Any, path: str) -> str | None:
    """Where the first number edgecls cannot use is, in words; None when there is none."""
    if isinstance(value, float) and not math.isfinite(value):
        shown = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        return f"{path or 'the document'} is {shown}, not a finite number"
    if isinstance(value, _Huge):
        return f"{path or 'the document'} is an integer of {value.digits} digits"
    if isinstance(value, dict):
        for key, item in value.items():
            found = _first_bad(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _first_bad(item, f"{path}[{i}]")
            if found:
                return found
    return None


def read_json(path: str | os.PathLike, what: str = "JSON file", limit: int = MAX_JSON_BYTES) -> Any:
    """The document in the regular file `path` (read at most `limit` bytes), or a one-line
    EdgeclsError naming `what` it is and the cause."""
    try:
        raw = read_capped(path, limit)
    except FileNotFoundError:
        raise EdgeclsError(f"{what} not found: {path}") from None
    except FileTooLargeError:
        raise EdgeclsError(f"{what} {path} is larger than {limit} bytes") from None
    except OSError as exc:
        raise EdgeclsError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return parse_json(raw)
    except JSONValueError as exc:
        raise EdgeclsError(f"{what} {path} is not valid JSON: {exc}") from None


def dumps(doc: Any, **options: Any) -> str:
    """json.dumps that refuses NaN and infinities (they are not JSON): a ValueError naming where.
    With ensure_ascii=False, a document holding a name that is not UTF-8 (a file name's undecodable
    bytes) is written with \\u escapes instead, so that it can be written as UTF-8 and reads back."""
    try:
        text = json.dumps(doc, allow_nan=False, **options)
    except ValueError:
        where = _first_bad(doc, "")
        raise ValueError(f"cannot write JSON: {where or 'a value is not JSON'}") from None
    if options.get("ensure_ascii") is False:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(doc, allow_nan=False, **{**options, "ensure_ascii": True})
    return text
