"""PNG plots of a bench report (matplotlib, Agg backend). matplotlib is optional: without it
the plots are skipped with a note, and everything else is still written.

- accuracy-latency.png: top-1 accuracy against p50 invoke latency, per model and thread count
- latency.png: the distributions of per-image times (invoke alone; file -> label)
- confusion-<model>.png: the float reference's confusion matrix, the model's, and the difference
- a section's own figure (SECTION_FIGURES): sustained.png, the sustained run over time; reliability.png,
  accuracy against confidence per bin for each model (bench.calibration)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.bench import calibration, sustain
from edgecls.bench.results import BenchReport, ModelResult
from edgecls.plotting import legend_outside, line_handle, pyplot, save_png, short_label, swatch, text_colour
from edgecls.runtime.metrics import correct_count, wilson_interval

MAX_ANNOTATED_CLASSES = 12  # write the counts in the cells up to this many classes
# The sections that draw a figure of their own data: key -> (file name, figure(plt, data)); the
# module that makes the section draws it.
SECTION_FIGURES = {sustain.SECTION: (sustain.PLOT_NAME, sustain.plot),
                   calibration.SECTION: (calibration.PLOT_NAME, calibration.plot)}


def write_plots(report: BenchReport, folder: Path) -> tuple[list[str], Optional[str]]:
    """(file names written into `folder`, a note if plots were skipped)."""
    plt = pyplot()
    if plt is None:
        for section in report.sections:  # their figures are drawn here: none this time (not a stale name)
            if section.key in SECTION_FIGURES:
                section.plots = []
        return [], "plots skipped: matplotlib is not installed (pip install matplotlib)"
    written = []
    timed = [m for m in report.models if m.latency]
    scored = [m for m in timed if m.accuracy is not None]  # none in a --latency-only bench
    if scored:
        written.append(save(plt, accuracy_latency(plt, scored), folder / "accuracy-latency.png"))
    if timed:
        written.append(save(plt, distributions(plt, timed), folder / "latency.png"))
    for section in report.sections:
        if section.key in SECTION_FIGURES and section.data:  # drawn from its data: a device's JSON is plotted too
            name, figure = SECTION_FIGURES[section.key]
            section.plots = [save(plt, figure(plt, section.data), folder / name)]
            written.append(section.plots[0])
    references = {m.vs_reference.reference for m in report.models if m.vs_reference}
    for model in scored + [m for m in report.models if m.accuracy is not None and m not in scored]:
        paired = model.vs_reference
        reference = report.model(paired.reference) if paired else None
        if reference is not None:
            figure = confusions(plt, reference, model, report.data.classes)
        elif model.name not in references:  # no float model to set it beside (a backbone run): its own matrix
            figure = confusions(plt, None, model, report.data.classes)
        else:
            continue  # the reference: drawn beside each model compared with it
        written.append(save(plt, figure, folder / f"confusion-{slug(model.name)}.png"))
    return written, None


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def save(plt: Any, figure: Any, path: Path) -> str:
    return save_png(plt, figure, path).name


def accuracy_latency(plt: Any, models: list[ModelResult]) -> Any:
    """top-1 against p50 latency, a point per model and thread count: the horizontal bar runs to p90, the
    vertical one is the accuracy's 95 % Wilson interval, and the y axis spans every interval, so that a
    one-image difference looks as small as it is (on 179 images it is 0.56 points in a 9-point interval).
    The legend sits under the plot, never on a bar: a colour per model, a marker per thread count."""
    figure, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    markers = "osD^v<>p"
    threads = sorted({t.threads for m in models for t in m.latency})
    lows, highs = [], []
    for i, model in enumerate(models):
        color = f"C{i % 10}"
        n = model.accuracy.images
        top1 = model.accuracy.top1
        low, high = wilson_interval(correct_count(top1, n), n)
        lows.append(low)
        highs.append(high)
        for t in model.latency:
            p50, p90 = t.invoke_ms.p50, t.invoke_ms.p90
            ax.errorbar([p50], [top1], xerr=[[0], [p90 - p50]], yerr=[[top1 - low], [high - top1]], color=color,
                        marker=markers[threads.index(t.threads) % len(markers)], capsize=3, elinewidth=1)
    ax.set_xlim(left=0)
    span = max(highs) - min(lows)
    ax.set_ylim(max(0.0, min(lows) - 0.08 * span), min(1.0, max(highs) + 0.08 * span))
    images = sorted({m.accuracy.images for m in models})
    ax.set_xlabel("invoke latency per image, ms (p50, bar to p90)")
    ax.set_ylabel(f"top-1 accuracy (bar: 95% interval, {' / '.join(map(str, images))} images)")
    ax.set_title("Accuracy against latency")
    ax.grid(alpha=0.3)
    handles = [swatch(f"C{i % 10}") for i in range(len(models))]
    handles += [line_handle(color="0.3", marker=markers[i % len(markers)], linestyle="none")
                for i in range(len(threads))]
    labels = [short_label(m.name) for m in models]
    labels += [f"{t} thread{'s' if t > 1 else ''}" for t in threads]
    legend_outside(figure, handles, labels, fontsize=8)
    return figure


def distributions(plt: Any, models: list[ModelResult]) -> Any:
    """Box plots of the per-image times, a row per model and thread count, named once on the left (the two
    panels share the rows), the figure as tall as its rows need."""
    labels = [f"{short_label(m.name)}\n{t.threads} thr" for m in models for t in m.latency]
    figure, axes = plt.subplots(1, 2, figsize=(11, max(4.5, 0.4 * len(labels) + 1.2)), sharey=True,
                                layout="constrained")
    for ax, key, title in ((axes[0], "invoke_ms", "invoke alone, batch 1"),
                           (axes[1], "file_ms", "file → label (decode + preprocess + invoke)")):
        samples = [getattr(t, key).samples for m in models for t in m.latency]
        try:
            ax.boxplot(samples, orientation="horizontal", showfliers=True, flierprops={"markersize": 2})
        except TypeError:  # matplotlib before 3.10
            ax.boxplot(samples, vert=False, showfliers=True, flierprops={"markersize": 2})
        ax.set_xlabel("ms per image")
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
    axes[0].invert_yaxis()  # the first model on top, as in the tables
    return figure


PANEL_TITLE_WIDTH = 44  # a model's name over a confusion panel: three panels side by side must not meet


def confusions(plt: Any, reference: Optional[ModelResult], model: ModelResult, classes: list[str]) -> Any:
    """The reference's confusion matrix, the model's and their difference; without a reference, the
    model's alone."""
    own = np.asarray(model.accuracy.confusion)
    if reference is None:
        figure, axes = plt.subplots(1, 1, figsize=(6.2, 5.2))
        axes = [axes]
        panels = ((own, f"{short_label(model.name, PANEL_TITLE_WIDTH)}\n(no float reference to compare with)", "Blues",
                   0, None),)
        diff = None
    else:
        ref = np.asarray(reference.accuracy.confusion)
        diff = own - ref
        figure, axes = plt.subplots(1, 3, figsize=(15, 4.8))
        limit = max(1, int(np.abs(diff).max()))
        ref_name, own_name = (short_label(m.name, PANEL_TITLE_WIDTH) for m in (reference, model))
        panels = ((ref, f"{ref_name}\n(reference)", "Blues", 0, None),
                  (own, f"{own_name}\n(this model)", "Blues", 0, None),
                  (diff, f"{own_name}\n− reference", "RdBu_r", -limit, limit))
    for ax, (matrix, title, cmap, vmin, vmax) in zip(axes, panels):
        image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ticks = range(len(classes))
        size = 10 if len(classes) <= 4 else 7  # a few big cells: numbers that read at a glance
        ax.set_xticks(ticks, classes, rotation=90 if len(classes) > 10 else 0, fontsize=size)
        ax.set_yticks(ticks, classes, fontsize=size)
        if len(classes) <= MAX_ANNOTATED_CLASSES:
            for (row, col), value in np.ndenumerate(matrix):
                if value:  # dark text on light cells, light on dark
                    ax.text(col, row, str(value), ha="center", va="center", fontsize=size,
                            color=text_colour(image.cmap(image.norm(value))))
        if diff is not None and matrix is diff and not diff.any():
            ax.set_title(f"{title}: identical", fontsize=10)
            ax.text(0.5, 0.5, "identical\n(every cell equal)", transform=ax.transAxes, ha="center", va="center",
                    fontsize=12, color="0.25")
        figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    figure.tight_layout()
    return figure
