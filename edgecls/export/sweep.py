"""Calibration sweep: how the size of the int8 calibration set changes accuracy and agreement.

    points = calib_sweep(open_source("runs/digits-seed"), [25, 100, 300, 1000])
    Console().print(render_sweep(points)); plot_sweep(points, "calib-sweep.png")

Each size N is exported to int8 exactly as `edgecls export` would (N stratified, seeded
train-split images; the same converter or ai-edge-quantizer path, metadata embedded) into a
temporary folder, then scored on the held-out test split through the device runtime, beside the
float32 .tflite as the reference for top-1 agreement. N larger than the train split is capped
to the whole split and the point says so.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecls.artifacts import model_file_name
from edgecls.atomic import private_tempdir
from edgecls.errors import EdgeclsError, require_tensorflow
from edgecls.export.convert import Converted, convert, saved_model
from edgecls.export.modes import INTEGER_MODES
from edgecls.plotting import legend_outside, pyplot, save_png
from edgecls.reporter import SILENT, Reporter
from edgecls.rundir import RunDir
from edgecls.runtime.metrics import correct_count, points_text

SWEEP_FORMAT = "edgecls.calib-sweep/1"
DEFAULT_SIZES = (25, 100, 300, 1000)


@dataclass
class SweepPoint:
    requested: int  # the calibration size asked for
    samples: int  # the images used: requested, or the whole train split when that is smaller
    capped: bool  # requested > the train split
    accuracy: float  # int8 top-1 on the test split
    agreement: float  # top-1 agreement with the float32 .tflite
    float_accuracy: float
    size_bytes: int
    test_images: int
    mode: str
    quantizer: str
    backend: str
    convert_seconds: float


def calib_sweep(source: RunDir, sizes: Sequence[int], quantizer: str = "converter", mode: str = "int8",
                reporter: Reporter = SILENT) -> list[SweepPoint]:
    """One point per entry of `sizes` (in that order); sizes that cap to the same set share its figures."""
    from edgecls.export.job import ExportOptions, device_probabilities, validate_options
    from edgecls.export.report import build_metadata
    from edgecls.runtime.metadata import embed_metadata
    from edgecls.runtime.quant import is_distribution

    sizes = [int(n) for n in sizes]
    if not sizes:
        raise EdgeclsError("the calibration sweep needs at least one size")
    if min(sizes) < 1:
        raise EdgeclsError(f"calibration sizes must be at least 1 (got {min(sizes)})")
    if mode not in INTEGER_MODES:
        raise EdgeclsError(f"the calibration sweep makes int8 or uint8 models, not {mode}")
    validate_options(ExportOptions([mode], quantizer=quantizer))  # the same quantizer checks as export
    require_tensorflow("the calibration sweep")
    model = source.model()
    images, labels = source.images("test")
    if len(images) == 0:
        raise EdgeclsError(f"{source.name} has no test images to score the sweep on")
    sha = source.model_sha256()
    done: dict[int, SweepPoint] = {}  # by images used: a capped size repeats the whole-split point
    points = []
    with saved_model(model) as saved, private_tempdir("edgecls-sweep") as tmp:
        float_model = convert(saved, "float32")
        float_probs = device_probabilities(_write(Path(tmp), "float32", float_model.content), images)
        kind = "probabilities" if is_distribution(float_probs) else "logits"
        float_predicted = float_probs.argmax(1)
        float_accuracy = float(np.mean(float_predicted == labels))
        for requested in sizes:
            calibration = source.calibration(requested)
            used = len(calibration.images)
            if used not in done:
                reporter(f"Calibration sweep: {mode} with {used} calibration images"
                    + (f" (capped from {requested}: the whole train split)" if requested > used else ""))
                started = time.perf_counter()
                converted: Converted = convert(saved, mode, quantizer, calibration.images,
                                               float_model=float_model.content)
                seconds = time.perf_counter() - started
                content = embed_metadata(converted.content, build_metadata(source, converted, calibration, kind, sha))
                predicted = device_probabilities(_write(Path(tmp), f"{mode}_calib{used}", content), images).argmax(1)
                done[used] = SweepPoint(
                    requested=requested, samples=used, capped=False, accuracy=float(np.mean(predicted == labels)),
                    agreement=float(np.mean(predicted == float_predicted)), float_accuracy=float_accuracy,
                    size_bytes=len(content), test_images=len(images), mode=mode, quantizer=quantizer,
                    backend=converted.backend, convert_seconds=round(seconds, 2))
            points.append(SweepPoint(**{**asdict(done[used]), "requested": requested, "capped": requested > used}))
    return points


def _write(folder: Path, name: str, content: bytes) -> Path:
    path = folder / model_file_name(name)
    path.write_bytes(content)
    return path


def sweep_json(points: Sequence[SweepPoint]) -> dict[str, Any]:
    return {"format": SWEEP_FORMAT, "split": "test", "reference": "float32 .tflite",
            "points": [asdict(p) for p in points]}


COLUMNS = ("calib N", "used", "accuracy", "Δ float", "agree", "size")


def sweep_rows(points: Sequence[SweepPoint]) -> list[list[str]]:
    """Text cells under COLUMNS: the terminal table's rows, and what a bench report section takes."""
    return [[str(p.requested), f"{p.samples} (all)" if p.capped else str(p.samples),
             f"{p.accuracy:.4f} ({correct_count(p.accuracy, p.test_images)}/{p.test_images})",
             points_text(p.accuracy - p.float_accuracy), f"{p.agreement:.4f}", f"{p.size_bytes / 1024:.1f}K"]
            for p in points]


def sweep_notes(points: Sequence[SweepPoint]) -> list[str]:
    if not points:
        return []
    p = points[0]
    notes = [f"{p.mode} by {p.backend}, scored on {p.test_images} test images through the device runtime; "
             f"float32 accuracy {p.float_accuracy:.4f}. calib N: calibration images asked for; used: how many the "
             "train split gave; accuracy: top-1 (correct/images); Δ float: against float32, in points; agree: top-1 "
             "agreement with float32; size: of the file."]
    if any(q.capped for q in points):
        notes.append("(all): more than the train split holds was asked for; the whole split was used.")
    return notes


def render_sweep(points: Sequence[SweepPoint]):
    """A table for the terminal (tables.data_table): N asked / used, accuracy, Δ vs float, agreement, size."""
    from edgecls.tables import data_table

    return data_table(COLUMNS, sweep_rows(points), caption=" ".join(sweep_notes(points)))


def plot_sweep(points: Sequence[SweepPoint], path: str | Path, title: str = "") -> Path:
    """The sweep's plot (sweep_figure) as a PNG."""
    plt = pyplot()
    if plt is None:
        raise ImportError("matplotlib is not installed")
    if not points:
        raise EdgeclsError("no sweep points to plot")
    return save_png(plt, sweep_figure(plt, points, title), Path(path), dpi=120)


def sweep_figure(plt: Any, points: Sequence[SweepPoint], title: str = "") -> Any:
    """Accuracy and agreement against calibration size (log axis), float32 accuracy as a line; the legend
    under the plot."""
    unique = sorted({p.samples: p for p in points}.values(), key=lambda p: p.samples)
    x = [p.samples for p in unique]
    figure, axis = plt.subplots(figsize=(6, 4), layout="constrained")
    axis.plot(x, [p.accuracy for p in unique], "o-", label=f"{unique[0].mode} accuracy (test)")
    axis.plot(x, [p.agreement for p in unique], "s--", label="top-1 agreement with float32")
    axis.axhline(unique[0].float_accuracy, color="grey", linestyle=":", label="float32 accuracy")
    axis.set_xscale("log")
    axis.set_xticks(x, [f"{p.samples}\n(all)" if p.capped else str(p.samples) for p in unique])
    axis.minorticks_off()
    low = min(min(p.accuracy, p.agreement, p.float_accuracy) for p in unique)
    axis.set_ylim(max(0.0, low - 0.02), 1.005)  # some context: a 0.1-point wiggle is not a cliff
    axis.set_xlabel("calibration images (train split, stratified)")
    axis.set_ylabel("fraction of test images")
    axis.set_title(title or f"Calibration size sweep ({unique[0].test_images} test images)")
    axis.grid(True, alpha=0.3)
    handles, labels = axis.get_legend_handles_labels()
    legend_outside(figure, handles, labels, fontsize=8)  # under the plot: inside, it sat on the last point
    return figure
