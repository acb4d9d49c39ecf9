"""Text a user will read, made safe to print: control characters (terminal escapes) and bidi
overrides removed, undecodable file-name bytes made visible. One home for every printer: errors,
labels, predict rows, dataset warnings."""

from __future__ import annotations

import re

# Control characters (terminal escapes) and the bidirectional overrides and isolates, which make a
# printed name read differently from what it is ("gnp.exe" shown as "exe.png").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str) -> str:
    """Strip control characters (terminal escapes) and bidi overrides from a label or file name before printing it.

    Undecodable bytes in file names (surrogate escapes) become U+FFFD, which any terminal prints.
    """
    text = _utf8(text, "replace")
    return _CONTROL.sub("", text)


def printable(text: str) -> str:
    """`text` as valid UTF-8 for any stream or JSON: a file name's undecodable bytes (surrogate
    escapes) become the text \\xNN, so the name stays recognisable. Control characters are kept
    (JSON and CSV quote them); pass the result through clean_text for a terminal."""
    return _utf8(text, "backslashreplace")


def _utf8(text: str, errors: str) -> str:
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", errors)
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte (from a JSON \ud800 escape)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
