"""The one matplotlib set-up: the Agg backend (files only, never a window) and atomic PNG writes.

matplotlib is optional on the device side: `pyplot()` returns None when it is not installed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
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
    """Write `figure` as a PNG (temporary name, then rename) and close it. The image is cut to what is
    drawn (bbox_inches="tight"): no text at a figure's edge is ever cut off, and no empty margin kept."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    plt.close(figure)
    return write_bytes_atomic(Path(path), buffer.getvalue())


# Legends outside the plot: a legend inside the axes covers data sooner or later (a long model name,
# six models, two thread counts), wherever matplotlib puts it.
LEGEND_MARGIN_IN = 0.15  # between an outside legend and the figure's edge


def legend_outside(figure: Any, handles: list, labels: list[str], side: str = "lower center", **options: Any) -> Any:
    """A figure legend outside the plot: below it (`side` "lower center", in as many columns as the figure's
    width holds) or right of it ("right center"). The figure needs layout="constrained" (it makes the room);
    the figure grows by the legend's size, so the plot keeps its own."""
    renderer = figure.canvas.get_renderer()
    width, height = figure.get_size_inches()
    rows = 1 if side == "lower center" else len(labels)
    while True:
        columns = -(-len(labels) // rows)  # the entries spread evenly over the rows
        legend = figure.legend(handles, labels, loc=f"outside {side}", ncols=columns, **options)
        box = legend.get_window_extent(renderer)
        if columns == 1 or box.width / figure.dpi <= width - 2 * LEGEND_MARGIN_IN:
            break
        legend.remove()
        rows += 1
    if side == "lower center":
        figure.set_size_inches(max(width, box.width / figure.dpi + 2 * LEGEND_MARGIN_IN),
                               height + box.height / figure.dpi)
    else:
        figure.set_size_inches(width + box.width / figure.dpi + LEGEND_MARGIN_IN,
                               max(height, box.height / figure.dpi + 2 * LEGEND_MARGIN_IN))
    return legend


def swatch(colour: str) -> Any:
    """A legend handle that is a patch of `colour` (a model drawn in that colour in several ways)."""
    from matplotlib.patches import Patch

    return Patch(color=colour)


def line_handle(**style: Any) -> Any:
    """A legend handle that is a line of `style` (Line2D's color, marker, linestyle, linewidth ...), drawn
    nowhere else: what a marker or a dash means across models."""
    from matplotlib.lines import Line2D

    return Line2D([], [], **style)


def numbered_key(figure: Any, columns: Sequence[str], rows: list[list[str]], right: Sequence[str] = (),
                 starred: Optional[int] = None, note: str = "chosen", fontsize: float = 8) -> Any:
    """A key right of the plot: a table in monospace whose row i is numbered i + 1 (as number_points numbers
    the points), the `starred` row (an index) marked "*" with `note` under the table; columns named in
    `right` right-aligned (figures), each as wide as its widest cell. It is a legend without handles, so the
    layout makes room for it (legend_outside)."""
    table = [["", *columns]] + [[f"{'*' if i == starred else ' '}{i + 1:>2}", *row] for i, row in enumerate(rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    header, *lines = ["  ".join(cell.rjust(w) if name in right else cell.ljust(w)
                                for cell, w, name in zip(line, widths, ["", *columns])).rstrip() for line in table]
    lines += ["", f"* {note}"] if starred is not None else []
    blank = [line_handle(linestyle="none") for _ in lines]
    font = {"family": "monospace", "size": fontsize}
    return legend_outside(figure, blank, lines, "right center", title=header, prop=font, title_fontproperties=font,
                          alignment="left", handlelength=0, handletextpad=0, frameon=False)


LABEL_WIDTH = 64  # characters of a model's name in a plot's legend or labels (the tables have it whole)


def short_label(name: str, width: int = LABEL_WIDTH) -> str:
    """`name` in at most `width` characters: its head and its end kept (file names differ at both)."""
    if len(name) <= width:
        return name
    head = (width - 1) // 3
    return f"{name[:head]}…{name[-(width - 1 - head):]}"


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
