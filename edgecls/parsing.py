"""Parsing what users type into options: comma lists, lists of whole numbers, LO,HI ranges.

Every comma-list option (--quant, --keep-float, --threads, --calib-sweep, --input-range,
--augment) goes through here, so they all accept the same spelling and fail with one line.
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


def parse_range(text: str | None, option: str = "--input-range") -> tuple[float, float] | None:
    """'-1,1' -> (-1.0, 1.0), as runtime.metadata.check_range accepts it. One-line EdgeclsError otherwise."""
    from edgecls.runtime.metadata import check_range

    if text is None:
        return None
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        value = (float(parts[0]), float(parts[1]))
    except ValueError:
        raise EdgeclsError(f"{option} takes LO,HI, the values pixels 0 and 255 become, e.g. -1,1 or 0,1 "
                           f"(got {text!r})") from None
    return check_range(value, option, EdgeclsError)
