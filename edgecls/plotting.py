"""The one matplotlib set-up: the Agg backend (files only, never a window) and atomic PNG writes.

matplotlib is optional on the device side: `pyplot()` returns None when it is not installed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Optional

from edgecls.atomic import write_bytes_atomic


def pyplot() -> Optional[Any]:
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(plt: Any, figure: Any, path: Path, dpi: int = 100) -> Path:
    """Write `figure` as a PNG (temporary name, then rename) and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    return write_bytes_atomic(Path(path), buffer.getvalue())


def cap_fraction_axis(ax: Any) -> None:
    """An accuracy (fraction) y axis never runs past 1.0 (matplotlib's margin would take it to 1.05)."""
    low, high = ax.get_ylim()
    if high > 1.0:
        ax.set_ylim(min(low, 0.99), 1.0)


def text_colour(rgba: Any) -> str:
    """Black or white, whichever reads on a cell of colour `rgba` (by its relative luminance)."""
    red, green, blue = rgba[:3]
    return "black" if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.5 else "white"
