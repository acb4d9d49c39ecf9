"""What `edgecls export --target` shows: the decision table and the accuracy-latency (Pareto) plot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, TypeVar

from edgecls.export.report import _size
from edgecls.plotting import legend_outside, numbered_key, pyplot, save_png

if TYPE_CHECKING:
    from edgecls.export.target import TargetResult

Item = TypeVar("Item")

_STATUS_STYLE = {"chosen": "bold green", "passed": "", "rejected": "red", "failed": "red", "skipped": "dim"}
_STATUS_COLOUR = {"chosen": "tab:green", "passed": "tab:blue", "rejected": "tab:red"}


def render_target_table(result: TargetResult):
    """The decision for the terminal: one row per candidate (validation figures with their count, target
    latency, status), a legend under it that explains every column and how ties are judged, then why
    each candidate that was not chosen lost. Fitted to the width (tables.data_table); nothing is cut."""
    from rich.console import Group
    from rich.text import Text

    # Why each one lost, under the table: a column would be squeezed out of an 80-column terminal.
    why = Text("\n".join(f"{row.name}: {'; '.join(row.reasons)}" for row in result.rows if row.reasons))
    table = _target_table(result, COLUMNS)
    return Group(table, why) if why.plain else table


COLUMNS = ("candidate", "status", "val acc", "correct", "Δ pt", "agree", "p50 ms", "×f32", "size")


def _target_table(result: TargetResult, columns: tuple[str, ...]):
    from edgecls.bench.latency import SPREAD_RULE, ms_decimals
    from edgecls.console import markup_cell
    from edgecls.runtime.metrics import accuracy_text, few_images_warning, points_text
    from edgecls.tables import data_table

    test = result.test
    lines = [f"Chosen on {result.val_images} validation images (Keras float accuracy "
             f"{result.keras_val_accuracy:.4f}); latency: invoke p50 at batch 1, {result.threads} thread(s). "
             + " ".join(result.placement),
             "val acc: top-1 on the validation split (correct: how many); Δ pt: against the Keras float model; agree: "
             "top-1 agreement with it; p50 ms: invoke, batch 1, on the target; ×f32: p50 over float32's, the median "
             "of the interleaved rounds' ratios (steadier under load than the ratio of the two p50s); size: of the "
             "file, metadata included. Chosen: the fastest within the budget; " + SPREAD_RULE
             + "; among tied files the most accurate (within chance counts as equal), then the clearly smaller, "
             "then the simpler one."]
    if test.get("images"):
        n = test["images"]
        correct = int(round(test["accuracy"] * n))
        lines.append(f"Chosen file on the held-out test split ({n} images, read after the choice): accuracy "
                     f"{accuracy_text(correct, n)} against Keras float {test['keras_accuracy']:.4f} "
                     f"({points_text(-test['drop_points'] / 100)}), agreement {test['agreement']:.4f}.")
        few = few_images_warning(n, "the run's test split", correct)
        if few:
            lines.append(f"Warning: {few}.")
    written = getattr(result, "report", None)  # export.json, once the choice is written
    if written is not None and written.models:  # what was written: the choice, its record embedded
        shipped = written.models[0]
        lines.append(f"Shipped: {shipped.file}, {_size(shipped.size_bytes)}: the chosen file with this decision"
                     + (" and its unknown rule" if shipped.openset else "") + " embedded.")
    rows = []
    places = ms_decimals(*(row.p50_ms for row in result.rows))
    for row in result.rows:
        style = _STATUS_STYLE.get(row.status, "")
        cells = [markup_cell(row.name), f"[{style}]{row.status}[/]" if style else row.status]
        if row.check is not None:
            m = row.check
            ratio = row.latency.vs_reference if row.latency else None
            cells += [f"{m.accuracy:.4f}", f"{m.correct}/{len(m.right)}" if m.right is not None else "-",
                      points_text(-row.drop_points / 100, unit=""), f"{m.agreement:.4f}",
                      f"{row.p50_ms:.{places}f}" if row.p50_ms is not None else "-",
                      f"{ratio.invoke_p50_ratio:.2f}" if ratio else ("1.00" if row.name == "float32" else "-"),
                      _size(m.size_bytes)]
        else:
            cells += ["-"] * (len(columns) - 2)
        rows.append(cells)
    return data_table(columns, rows, title=markup_cell(f"Which file to ship: --target {result.target.spec}"),
                      caption="\n".join(markup_cell(line) for line in lines), names=("candidate", "status"))


def plot_pareto(result: TargetResult, max_drop: float, path: Path) -> Optional[Path]:
    """The Pareto plot (pareto_figure) as a PNG; None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    return save_png(plt, pareto_figure(plt, result, max_drop), path, dpi=120)


def pareto_figure(plt: Any, result: TargetResult, max_drop: float) -> Any:
    """Validation accuracy against p50 latency on the target; marker area ∝ file size; the budget
    as a dashed line, the Pareto front as a step line, the chosen file ringed. Points are numbered
    and named in a key beside the plot (candidates often sit on top of each other); the legend sits
    under the plot: neither covers a point."""
    timed = [r for r in result.rows if r.check is not None and r.p50_ms is not None]
    figure, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    largest = max(r.check.size_bytes for r in timed)
    for row in timed:
        area = 80 + 900 * row.check.size_bytes / largest
        colour = _STATUS_COLOUR.get(row.status, "grey")
        ax.scatter([row.p50_ms], [row.check.accuracy], s=area, color=colour, alpha=0.45, edgecolors="black",
                   linewidths=0.6, zorder=3)
        if row.status == "chosen":
            ax.scatter([row.p50_ms], [row.check.accuracy], s=area * 2.2, facecolors="none", edgecolors="tab:green",
                       linewidths=2.5, zorder=4)
    front = pareto_front(timed, lambda r: r.p50_ms, lambda r: r.check.accuracy)
    ax.step([r.p50_ms for r in front], [r.check.accuracy for r in front], where="post", color="grey", alpha=0.6,
            linewidth=1, zorder=2, label="Pareto front" if len(front) > 1 else None)  # one point draws no line
    keras = result.keras_val_accuracy
    ax.axhline(keras, color="black", linestyle=":", linewidth=1, label=f"Keras float {keras:.4f}")
    ax.axhline(keras - max_drop / 100, color="tab:red", linestyle="--", linewidth=1,
               label=f"budget: {max_drop:g} pt below Keras float")
    shown = {row.status for row in timed}
    for status, colour in _STATUS_COLOUR.items():  # the legend names only what the plot shows
        if status in shown:
            ax.scatter([], [], s=80, color=colour, alpha=0.45, edgecolors="black", label=status)
    low = min([r.check.accuracy for r in timed] + [keras - max_drop / 100])
    span = max(keras - low, 0.01)
    ax.set_ylim(low - 0.12 * span, min(1.0, keras) + 0.12 * span)
    ax.set_xlim(0, max(r.p50_ms for r in timed) * 1.2)
    ax.set_xlabel(f"invoke latency p50, ms (batch 1, {result.threads} thread(s))")
    ax.set_ylabel(f"top-1 accuracy, validation ({result.val_images} images)")
    where = {"host": "this host", "profile": f"this host under the {result.target.spec} profile's constraints"}.get(
        result.target.kind, f"measured on {result.target.spec}")
    ax.set_title(f"Candidates for --target {result.target.spec} (latency: {where}); marker area: file size",
                 fontsize=10, wrap=True)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    legend_outside(figure, handles, labels, fontsize=8)
    chosen = next((i for i, r in enumerate(timed) if r.status == "chosen"), None)
    numbered_key(figure, ("candidate", "p50 ms", "val acc", "size"),
                 [[r.name, f"{r.p50_ms:.3f}", f"{r.check.accuracy:.4f}", _size(r.check.size_bytes)] for r in timed],
                 right=("p50 ms", "val acc", "size"), starred=chosen)
    number_points(figure, ax, [(r.p50_ms, r.check.accuracy) for r in timed])
    return figure


LABEL_GAP_PX = 18  # the least distance between two numbers' centres
LABEL_RISE_PX = 34  # numbers sit this far above their points, joined to them by a line


def number_points(figure: Any, ax: Any, points: list[tuple[float, float]]) -> None:
    """Number the points 1..n above them. Candidates often sit on top of each other (same accuracy,
    near latencies): numbers that would collide are pushed apart sideways, each joined to its point by
    a thin line, so that every number reads on its own."""
    figure.canvas.draw()  # the axes' final limits and place: data to pixels
    to_pixels, to_data = ax.transData.transform, ax.transData.inverted().transform
    top = ax.bbox.y1 - LABEL_GAP_PX / 2  # a number above this would sit on the axes' edge or the title
    placed: list[tuple[float, float]] = []  # label centres in pixels
    for number, (x, y) in sorted(enumerate(points, start=1), key=lambda item: item[1][0]):
        px, py = to_pixels((x, y))
        lx, ly = px, py + LABEL_RISE_PX if py + LABEL_RISE_PX <= top else py - LABEL_RISE_PX
        for qx, qy in placed:  # push right past any label too close on the same height
            if abs(qy - ly) < LABEL_GAP_PX and lx - qx < LABEL_GAP_PX:
                lx = qx + LABEL_GAP_PX
        placed.append((lx, ly))
        ax.annotate(str(number), (x, y), xytext=tuple(to_data((lx, ly))), textcoords="data", ha="center",
                    va="center", fontsize=8, fontweight="bold", zorder=5,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "0.6", "linewidth": 0.5},
                    arrowprops={"arrowstyle": "-", "color": "0.45", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 2}
                    ).set_in_layout(False)  # placed in pixels of the layout drawn: the layout must not move for it


def pareto_front(items: list[Item], latency: Callable[[Item], float], accuracy: Callable[[Item], float]) -> list[Item]:
    """The items no other item beats on both latency and accuracy, fastest first."""
    front, best = [], -1.0
    for item in sorted(items, key=lambda i: (latency(i), -accuracy(i))):
        if accuracy(item) > best:
            front.append(item)
            best = accuracy(item)
    return front
