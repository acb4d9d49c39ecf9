"""What a user sees in the PNGs: no legend or key on the data, nothing past the figure's edge, measured
with matplotlib's own renderer on the figures the bench, export --target and search draw (4-6 models,
long file names)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "digits-seed" / "report" / "bench.json"
LONG_NAMES = ("mobilenet_v2_int8_per_channel_calibrated_on_300_images.tflite",
              "seed-cnn-int8-dynamic-range-quantised-experimental-2026.tflite",
              "f.tflite", "efficientnet_lite0_float32_reference_from_run_digits_seed0.tflite")


@pytest.fixture
def plt():
    from edgecls.plotting import pyplot

    found = pyplot()
    yield found
    found.close("all")


def shipped_report(extra_names: tuple[str, ...] = ()):
    """The reference model's bench report, with copies of its int8 model under `extra_names`."""
    from edgecls.bench.results import BenchReport

    report = BenchReport.from_json(json.loads(SHIPPED.read_text(encoding="utf-8")))
    for name in extra_names:
        extra = copy.deepcopy(report.models[-1])
        extra.name = name
        report.models.append(extra)
    return report


def drawn(figure):
    """The renderer, after a draw (the layout done, as when the figure is saved)."""
    figure.canvas.draw()
    return figure.canvas.get_renderer()


def legends(figure) -> list:
    return [*figure.legends, *(ax.get_legend() for ax in figure.axes if ax.get_legend() is not None)]


def inside_the_figure(figure, box) -> None:
    whole = figure.bbox
    assert whole.x0 - 0.5 <= box.x0 and box.x1 <= whole.x1 + 0.5, f"{box} past the figure's sides {whole}"
    assert whole.y0 - 0.5 <= box.y0 and box.y1 <= whole.y1 + 0.5, f"{box} past the figure's top or bottom {whole}"


def on_nothing_drawn(figure, renderer, box) -> None:
    """`box` (a legend's) overlaps no axes' plotting area, so no bar, point or line in it."""
    for ax in figure.axes:
        assert not box.overlaps(ax.get_window_extent(renderer)), f"a legend {box} on the plot {ax.bbox}"
        for artist in [*ax.lines, *ax.collections, *ax.patches]:  # every bar, error bar and point drawn
            extent = artist.get_window_extent(renderer)
            if extent.width > 0 and extent.height > 0:
                assert not box.overlaps(extent), f"a legend {box} on {artist}"


def everything_inside(figure, renderer) -> None:
    """Whatever is drawn (axes, their labels and titles, legends, a key's text) is inside the figure."""
    drawn_box = figure.get_tightbbox(renderer)  # inches
    width, height = figure.get_size_inches()
    assert drawn_box.x0 >= -0.01 and drawn_box.y0 >= -0.01 and drawn_box.x1 <= width + 0.01 and \
        drawn_box.y1 <= height + 0.01, f"drawn {drawn_box} past the figure (0, 0, {width}, {height})"


def check_legends(figure, expected: int) -> list:
    renderer = drawn(figure)
    everything_inside(figure, renderer)
    found = legends(figure)
    assert len(found) == expected
    for legend in found:
        box = legend.get_window_extent(renderer)
        inside_the_figure(figure, box)
        on_nothing_drawn(figure, renderer, box)
    return found


@pytest.mark.parametrize("extra", [(), LONG_NAMES], ids=["2 models", "6 models, long names"])
def test_the_accuracy_latency_legend_is_on_no_bar_and_inside_the_figure(plt, extra):
    from edgecls.plotting import LABEL_WIDTH, short_label
    from edgecls.reports.plots import accuracy_latency

    report = shipped_report(extra)
    scored = [m for m in report.models if m.latency and m.accuracy is not None]
    assert len(scored) == 2 + len(extra)
    legend, = check_legends(accuracy_latency(plt, scored), 1)
    shown = [text.get_text() for text in legend.get_texts()]
    # each model once, a name longer than LABEL_WIDTH with its head and end
    assert [name for name in shown if name.endswith(".tflite")] == [short_label(m.name) for m in scored]
    assert any("…" in name and len(name) == LABEL_WIDTH for name in shown) == bool(extra)
    assert "1 thread" in shown and "2 threads" in shown  # a marker per thread count


@pytest.mark.parametrize("extra", [(), LONG_NAMES], ids=["2 models", "6 models, long names"])
def test_the_reliability_legend_is_on_no_bar_and_gives_each_model_its_colour(plt, extra):
    from edgecls.bench.calibration import plot

    report = shipped_report()
    data = copy.deepcopy(next(s for s in report.sections if s.key == "calibration").data)
    first = next(iter(data["models"].values()))
    for name in extra:
        data["models"][name] = copy.deepcopy(first)
    legend, = check_legends(plot(plt, data), 1)
    colours = [tuple(handle.get_facecolor()) for handle in legend.legend_handles[1:]]  # after the diagonal
    assert len(colours) == len(data["models"]) and len(set(colours)) == len(colours)


def test_the_latency_distributions_name_each_row_once_and_keep_their_labels_inside(plt):
    from edgecls.reports.plots import distributions

    report = shipped_report(LONG_NAMES)
    timed = [m for m in report.models if m.latency]
    figure = distributions(plt, timed)
    renderer = drawn(figure)
    left, right = figure.axes
    labels = [label for label in left.get_yticklabels() if label.get_text()]
    assert len(labels) == sum(len(m.latency) for m in timed)
    assert not [label for label in right.get_yticklabels() if label.get_visible() and label.get_text()]
    for label in labels:
        inside_the_figure(figure, label.get_window_extent(renderer))
    top = max(labels, key=lambda label: label.get_window_extent(renderer).y0)
    assert top.get_text().startswith(timed[0].name)  # the first model at the top, as in the tables


def numbers_inside_the_plot(figure, ax) -> None:
    """The points' numbers (number_points) sit inside the plotting area: not on the title or past an edge."""
    renderer = drawn(figure)
    area = ax.get_window_extent(renderer)
    numbers = [text for text in ax.texts if text.get_text().isdigit()]
    assert numbers
    for number in numbers:
        box = number.get_window_extent(renderer)
        assert area.x0 <= box.x0 and box.x1 <= area.x1 and area.y0 <= box.y0 and box.y1 <= area.y1, \
            f"number {number.get_text()} at {box}, the plot at {area}"


def search_result(names: list[str]):
    def entry(kind: str, variant: str, p50: float, accuracy: float, size: int):
        return SimpleNamespace(p50_ms=p50, candidate=SimpleNamespace(kind=kind),
                               file=SimpleNamespace(size_bytes=size, val_accuracy=accuracy, variant=variant))

    rows = []
    for i, name in enumerate(names):
        kind = "backbone" if i < 2 else "scratch"
        files = [entry(kind, "int8-pct99.99" if i % 2 else "int8", 0.02 + 0.03 * i, 0.99 - 0.06 * i, 150_000),
                 entry(kind, "float32", 0.05 + 0.04 * i, 0.99 - 0.06 * i, 500_000)]
        rows.append(SimpleNamespace(plan=SimpleNamespace(name=name, kind=kind), entries=files, best=files[0],
                                    status="chosen" if i == 1 else "lost"))
    return SimpleNamespace(rows=rows, options=SimpleNamespace(max_latency_ms=0.05, target="host"),
                           latency_timing=SimpleNamespace(threads=2), val_images=179,
                           target=SimpleNamespace(kind="host"))


def test_the_search_pareto_key_and_legend_stay_inside_the_figure_and_off_the_points(plt):
    from edgecls.search.report import pareto_figure

    names = ["efficientnet_lite0_float_digits_reference_cut-linear-v1",
             "mobilenet_v2_1.0_224_quant_imagenet_edgetpu_style-mlp-v1", "seed-28-a0.5", "seed-28-a1",
             "mobile-64-a0.75", "mobile-96-a1"]
    figure = pareto_figure(plt, search_result(names))
    numbers_inside_the_plot(figure, figure.axes[0])
    key, legend = sorted(check_legends(figure, 2), key=lambda found: found.get_title().get_text() == "")
    title = key.get_title().get_text()
    assert "candidate" in title and "val acc" in title
    lines = [text.get_text() for text in key.get_texts()]
    assert lines[-1] == "* chosen" and lines[1].startswith("* 2")
    for line, name in zip(lines, names):  # each candidate's line, its name's end kept where it is shortened
        assert name[-12:] in line, (line, name)
    inside_the_figure(figure, key.get_title().get_window_extent(drawn(figure)))


def test_the_target_pareto_key_and_legend_stay_inside_the_figure_and_off_the_points(plt):
    from edgecls.export.target_report import pareto_figure

    names = ["float32", "dynamic", "int8", "float16", "int8-litert", "int8-pct99.9", "int8-pct99.99",
             "int8-fallback1", "int8-fallback2", "int8-fallback3"]
    rows = [SimpleNamespace(name=name, status="chosen" if name == "int8" else "passed", p50_ms=0.02 + 0.01 * i,
                            check=SimpleNamespace(accuracy=0.9274, size_bytes=130_000 + 30_000 * (i % 3)))
            for i, name in enumerate(names)]
    result = SimpleNamespace(rows=rows, keras_val_accuracy=0.9274, threads=2, val_images=179,
                             target=SimpleNamespace(spec="rpi5", kind="profile"))
    figure = pareto_figure(plt, result, 0.5)
    numbers_inside_the_plot(figure, figure.axes[0])  # the points at the top: numbered below them, off the title
    key, legend = sorted(check_legends(figure, 2), key=lambda found: found.get_title().get_text() == "")
    lines = [text.get_text() for text in key.get_texts()]
    assert [line.lstrip("* ").split()[1] for line in lines[:10]] == names and lines[2].startswith("* 3  int8")
    # the legend names only what is drawn: no file was rejected, and one point (all tie on accuracy) is no front
    assert [text.get_text() for text in legend.get_texts()] == [
        "Keras float 0.9274", "budget: 0.5 pt below Keras float", "chosen", "passed"]


def test_the_calibration_sweep_legend_is_off_the_lines(plt):
    from edgecls.export.sweep import SweepPoint, sweep_figure

    points = [SweepPoint(n, n, False, accuracy, agreement, 0.8827, 140_000, 179, "int8", "tflite", "xnnpack", 1.0)
              for n, accuracy, agreement in ((25, 0.8827, 0.9944), (100, 0.8883, 0.9888), (300, 0.8883, 0.9888))]
    check_legends(sweep_figure(plt, points), 1)


def test_the_sustained_run_legend_is_off_the_lines_and_gives_each_model_once(plt):
    from edgecls.bench.sustain import plot

    names = ["model_float32.tflite", LONG_NAMES[0], LONG_NAMES[1], "model_int8.tflite"]
    samples = [{"t": t, "p50_ms": {n: 0.02 + 0.01 * i for i, n in enumerate(names)},
                "p90_ms": {n: 0.2 if t % 4 < 2 else 0.04 for n in names}, "temp_c": None, "mhz": 2600.0,
                "throttled": None} for t in range(1, 11)]
    data = {"samples": samples, "models": names, "window_s": 3, "seconds": 10, "threads": 2,
            "frequency_source": "/proc/cpuinfo"}
    legend, = check_legends(plot(plt, data), 1)
    shown = [text.get_text() for text in legend.get_texts()]
    assert len(shown) == len(names) + 2 and shown[-2:] == ["p50", "p90"]  # a colour per model, a style per line


def test_the_confusion_panels_titles_do_not_meet(plt):
    from edgecls.reports.plots import confusions

    report = shipped_report(LONG_NAMES[1:2])
    reference, _, model = report.models[-3:]
    figure = confusions(plt, reference, model, report.data.classes)
    renderer = drawn(figure)
    everything_inside(figure, renderer)
    titles = [ax.title.get_window_extent(renderer) for ax in figure.axes if ax.get_title()]
    assert len(titles) == 3
    for left, right in zip(titles, titles[1:]):
        assert left.x1 < right.x0, f"titles {left} and {right} meet"
