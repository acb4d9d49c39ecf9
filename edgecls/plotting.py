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


def plain_log_axis(axis: Any, which: str = "x") -> None:
    """A log-scale axis ticked at 1, 2 and 5 of each decade, labelled as plain numbers (0.05, 0.1, 0.2):
    matplotlib's own labels a latency axis 2x10^-2, 3x10^-2 ... and runs them into each other."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ticks = axis.xaxis if which == "x" else axis.yaxis
    (axis.set_xscale if which == "x" else axis.set_yscale)("log")
    ticks.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ticks.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ticks.set_minor_formatter(NullFormatter())


def text_colour(rgba: Any) -> str:
    """Black or white, whichever reads on a cell of colour `rgba` (by its relative luminance)."""
    red, green, blue = rgba[:3]
    return "black" if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.5 else "white"


def plot_history(history: dict, path: Path, best_epoch: Optional[int] = None) -> Optional[Path]:
    """The training curves as a PNG (see history_figure); None when matplotlib is not installed."""
    plt = pyplot()
    if plt is None:
        return None
    return save_png(plt, history_figure(plt, history, best_epoch), path)


def history_figure(plt: Any, history: dict, best_epoch: Optional[int] = None) -> Any:
    """Accuracy and loss per epoch, train and validation (`history` maps loss/accuracy/val_loss/
    val_accuracy to lists, and optionally "phase" to each epoch's phase name: a dashed line marks where
    a new phase starts); `best_epoch` (1-based), the epoch whose weights were kept, marked on both."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = list(range(1, len(history.get("loss", [])) + 1))
    phases = history.get("phase", [])
    starts = [(i + 0.5, phases[i]) for i in range(1, len(phases)) if phases[i] != phases[i - 1]]
    for ax, key in zip(axes, ("accuracy", "loss")):
        ax.plot(epochs, history.get(key, []), label="train")
        ax.plot(epochs, history.get(f"val_{key}", []), label="validation")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.4", linestyle="--", linewidth=1, label=f"kept: epoch {best_epoch}")
        if key == "accuracy":
            cap_fraction_axis(ax)
        for x, name in starts:
            ax.axvline(x, color="grey", linestyle="--", linewidth=1, label=f"{name} starts")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig
