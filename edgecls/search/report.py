"""What `edgecls search` shows: the candidate table (terminal and search.md) and the Pareto plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from edgecls.export.target_report import number_points, pareto_front
from edgecls.plotting import legend_outside, numbered_key, plain_log_axis, pyplot, save_png, short_label

if TYPE_CHECKING:
    from edgecls.search.job import Row, SearchResult

COLUMNS = ("candidate", "kind", "status", "file", "val acc", "right", "p50 ms", "size", "train s")
_STATUS_STYLE = {"chosen": "bold green", "lost": "", "failed": "red", "skipped": "dim"}
_KIND_COLOUR = {"backbone": "tab:purple", "scratch": "tab:blue", "student": "tab:orange"}


def _cells(row: Row) -> list[str]:
    """A row's cells: its best file (the chosen one, or its best within the budget, else its fastest)."""
    best = row.best
    name = row.plan.name + (" (reused)" if row.reused else "")
    seconds = row.record.seconds.get("train") if row.record is not None else None
    trained = f"{seconds:.0f}" if seconds is not None else "-"
    if best is None:
        p50 = f"({row.shape_p50_ms:.3f})" if row.shape_p50_ms is not None else "-"
        return [name, row.plan.kind, row.status, "-", "-", "-", p50, "-", trained]
    f = best.file
    return [name, row.plan.kind, row.status, f.variant, f"{f.val_accuracy:.4f}", f"{f.val_correct}/{f.val_images}",
            f"{best.p50_ms:.3f}" if best.p50_ms is not None else "-", _size(f.size_bytes), trained]


def _size(size: Optional[int]) -> str:
    if size is None:
        return "-"
    return f"{size / 1024:.0f}K" if size < 1 << 20 else f"{size / (1 << 20):.1f}M"


def caption(result: SearchResult) -> list[str]:
    """The sentences under the table: what every figure is, the budget, and the test figures after the choice."""
    from edgecls.runtime.metrics import accuracy_text, few_images_warning

    o, t = result.options, result.latency_timing
    budget = f"p50 <= {o.max_latency_ms:g} ms" + (f", size <= {o.max_size_kb:g} KB" if o.max_size_kb else "")
    if not t.latency:
        latency = "Latency: nothing was timed."
    else:
        which = "" if t is result.timing else "no candidate was trained; its untrained shapes' int8 files: "
        latency = " ".join([f"Latency: {which}invoke p50 at batch 1, {t.threads} thread(s), every file timed in one "
                            "interleaved bench.", *t.placement])
    lines = [f"Budget: {budget} on --target {o.target}. {latency}",
             f"val acc / right: top-1 on the {result.val_images} validation pictures (the choice is made on them); "
             "file: the candidate's best file within the budget (else its fastest); p50 in parentheses: the "
             "untrained shape's int8 file, timed before training. Chosen: the most validation pictures right within "
             "the budget; equal counts go to the faster, then the smaller, then the simpler file."]
    test = result.test
    if test.get("images"):
        lines.append(f"Chosen file on the held-out test split ({test['images']} pictures, read after the choice): "
                     f"accuracy {accuracy_text(test['correct'], test['images'])}.")
        few = few_images_warning(test["images"], "the search's test split", test["correct"])
        if few:
            lines.append(f"Warning: {few}.")
    if t.load_average:
        lines.append(f"Load average when timing began: {t.load_average[0]:.2f} (1 min).")
    return lines


def render_search_table(result: SearchResult):
    """The table for the terminal, fitted to its width (tables.data_table), why each candidate lost under it."""
    from rich.console import Group
    from rich.text import Text

    from edgecls.console import markup_cell
    from edgecls.tables import data_table

    rows = []
    for row in result.rows:
        cells = [markup_cell(cell) for cell in _cells(row)]
        style = _STATUS_STYLE.get(row.status, "")
        if style:
            cells[2] = f"[{style}]{cells[2]}[/]"
        rows.append(cells)
    table = data_table(COLUMNS, rows, title=f"edgecls search: --target {markup_cell(result.options.target)}",
                       caption="\n".join(markup_cell(line) for line in caption(result)),
                       names=("candidate", "kind", "status", "file"))
    why = Text("\n".join(f"{row.plan.name}: {row.reason}" for row in result.rows if row.reason))
    return Group(table, why) if why.plain else table


def markdown_table(result: SearchResult) -> str:
    """search.md: the same table in Markdown, with why each candidate lost."""
    lines = [f"# edgecls search: --target {result.options.target}", ""]
    lines += ["| " + " | ".join(COLUMNS + ("why",)) + " |", "| " + " | ".join("---" for _ in range(len(COLUMNS) + 1))
              + " |"]
    for row in result.rows:
        cells = _cells(row) + [row.reason.replace("|", "/") or ("**chosen**" if row.status == "chosen" else "")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + caption(result) + [""]
    return "\n".join(lines)


KEY_NAME_WIDTH = 40  # characters of a candidate's name in the plot's key (search.md has it whole)


def plot_pareto(result: SearchResult, path: Path) -> Optional[Path]:
    """The Pareto plot (pareto_figure) as a PNG; None without matplotlib or with nothing timed."""
    plt = pyplot()
    if plt is None or not any(e.p50_ms is not None for r in result.rows for e in r.entries):
        return None
    return save_png(plt, pareto_figure(plt, result), path, dpi=120)


def pareto_figure(plt: Any, result: SearchResult) -> Any:
    """Validation accuracy against p50 latency on the target (log scale), marker area ∝ file size, colour by
    kind; every file a faint dot, each candidate's best file numbered (the key beside the plot, the legend
    under it: neither covers a point); the latency budget as a dashed line, the Pareto front over all files
    as a step line, the chosen one ringed."""
    timed = [e for r in result.rows for e in r.entries if e.p50_ms is not None]
    figure, ax = plt.subplots(figsize=(8, 5.5), layout="constrained")
    largest = max(e.file.size_bytes for e in timed)

    def area(entry: Any) -> float:
        return 40 + 900 * entry.file.size_bytes / largest

    best_rows = [r for r in result.rows if r.best is not None and r.best.p50_ms is not None]
    for entry in timed:
        ax.scatter([entry.p50_ms], [entry.file.val_accuracy], s=area(entry) * 0.35,
                   color=_KIND_COLOUR[entry.candidate.kind], alpha=0.18, edgecolors="none", zorder=2)
    for row in best_rows:
        e = row.best
        ax.scatter([e.p50_ms], [e.file.val_accuracy], s=area(e), color=_KIND_COLOUR[row.plan.kind], alpha=0.55,
                   edgecolors="black", linewidths=0.6, zorder=3)
        if row.status == "chosen":
            ax.scatter([e.p50_ms], [e.file.val_accuracy], s=area(e) * 2.2, facecolors="none", edgecolors="tab:green",
                       linewidths=2.5, zorder=4)
    front = pareto_front(timed, lambda e: e.p50_ms, lambda e: e.file.val_accuracy)
    ax.step([e.p50_ms for e in front], [e.file.val_accuracy for e in front], where="post", color="grey", alpha=0.6,
            linewidth=1, zorder=1, label="Pareto front (all files)")
    budget = result.options.max_latency_ms
    ax.axvline(budget, color="tab:red", linestyle="--", linewidth=1, label=f"latency budget {budget:g} ms")
    for kind, colour in _KIND_COLOUR.items():
        ax.scatter([], [], s=80, color=colour, alpha=0.55, edgecolors="black", label=kind)
    plain_log_axis(ax)
    lows = [e.p50_ms for e in timed] + [budget]
    ax.set_xlim(min(lows) / 1.6, max(lows) * 1.6)
    accuracies = [e.file.val_accuracy for e in timed]
    span = max(max(accuracies) - min(accuracies), 0.02)
    ax.set_ylim(min(accuracies) - 0.12 * span, min(1.0, max(accuracies) + 0.15 * span))
    t = result.latency_timing
    ax.set_xlabel(f"invoke latency p50, ms, log scale (batch 1, {t.threads} thread(s))")
    ax.set_ylabel(f"top-1 accuracy, validation ({result.val_images} pictures)")
    where = {"host": "this host", "profile": f"this host under the {result.options.target} profile's constraints"
             }.get(result.target.kind, f"measured on {result.options.target}")
    ax.set_title(f"edgecls search, --target {result.options.target} (latency: {where}); marker area: file size",
                 fontsize=10, wrap=True)
    ax.grid(alpha=0.3, which="both")
    handles, labels = ax.get_legend_handles_labels()
    legend_outside(figure, handles, labels, fontsize=8)
    chosen = next((i for i, r in enumerate(best_rows) if r.status == "chosen"), None)
    numbered_key(figure, ("candidate", "file", "p50 ms", "val acc"),
                 [[short_label(r.plan.name, KEY_NAME_WIDTH), r.best.file.variant, f"{r.best.p50_ms:.3f}",
                   f"{r.best.file.val_accuracy:.3f}"] for r in best_rows], right=("p50 ms", "val acc"),
                 starred=chosen, fontsize=7.5)
    number_points(figure, ax, [(r.best.p50_ms, r.best.file.val_accuracy) for r in best_rows])
    return figure
