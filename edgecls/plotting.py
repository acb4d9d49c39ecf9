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
