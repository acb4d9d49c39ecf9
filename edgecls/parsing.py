"""Parsing what users type into options: comma lists, lists of whole numbers.

Every comma-list option (--quant, --keep-float, --threads, --calib-sweep, --augment) goes through
here, so they all accept the same spelling and fail with one line (LO,HI of --input-range is
edgecls.runtime.settings.parse_range).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from edgecls.errors import EdgeclsError


def split_list(text: str | Iterable[str] | None, unique: bool = False) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']; several values (a repeated option) are each split and joined.
    `unique` drops repeats, keeping the first."""
    if text is None:
        return []
    values = [text] if isinstance(text, str) else list(text)
    names: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if part and not (unique and part in names):
                names.append(part)
    return names


def int_list(text: Optional[str], option: str, example: str, unique: bool = False) -> Optional[list[int]]:
    """'1,2,4' -> [1, 2, 4], each at least 1. None stays None. One-line errors naming `option`."""
    if text is None:
        return None
    try:
        values = [int(part) for part in split_list(text, unique=unique)]
    except ValueError:
        raise EdgeclsError(f"{option} takes a comma list of whole numbers, e.g. {example} (got {text!r})") from None
    if not values:
        raise EdgeclsError(f"{option} takes a comma list of whole numbers, e.g. {example} (got {text!r})")
    if min(values) < 1:
        raise EdgeclsError(f"{option} must be at least 1 (got {min(values)})")
    return values
