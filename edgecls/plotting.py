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


def plot_history(history: dict, path: Path) -> Optional[Path]:
    """The training curves (accuracy and loss, train and validation, per epoch) as a PNG; None when
    matplotlib is not installed. `history` maps loss/accuracy/val_loss/val_accuracy to lists, and
    optionally "phase" to each epoch's phase name: a dashed line marks where a new phase starts."""
    plt = pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = list(range(1, len(history.get("loss", [])) + 1))
    phases = history.get("phase", [])
    starts = [(i + 0.5, phases[i]) for i in range(1, len(phases)) if phases[i] != phases[i - 1]]
    for ax, key in zip(axes, ("accuracy", "loss")):
        ax.plot(epochs, history.get(key, []), label="train")
        ax.plot(epochs, history.get(f"val_{key}", []), label="validation")
        for x, name in starts:
            ax.axvline(x, color="grey", linestyle="--", linewidth=1, label=f"{name} starts")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return save_png(plt, fig, path)
