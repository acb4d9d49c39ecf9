"""What `edgecls explain` and `edgecls bench --explain-flips` run: maps of images, of a run's worst
test images, and of the images where int8 and float disagree, with their per-layer divergence.

The device path (a .tflite, occlusion or RISE) never imports TensorFlow; Grad-CAM (a run
directory) and `--dataset` load the Keras model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from edgecls import jsonio
from edgecls.atomic import check_folder_writable, write_text_atomic

# bench's test-set loader (a run's test split with image ids): an internal name, imported here only
from edgecls.bench.testset import run_test_set
from edgecls.bounds import check_bound
from edgecls.console import some_image
from edgecls.errors import EdgeclsError
from edgecls.explain import METHODS
from edgecls.explain.divergence import BASELINE_IMAGES, DEFAULT_THRESHOLD_DB, HEALTHY_DB, Divergence, DivergenceProbe
from edgecls.explain.occlusion import SaliencyMap, device_map
from edgecls.explain.options import DEFAULT_WORST, ExplainOptions
from edgecls.explain.render import Panel, overlay_png, pyplot, sheet_png, short, slug, top3_lines
from edgecls.options import check
from edgecls.reporter import SILENT, Reporter
from edgecls.runtime import Classifier, ImageError, Prediction, load_image
from edgecls.runtime.labels import printable

# expand_images (files, folders, globs -> paths or error Predictions): an internal runtime name, imported here only.
from edgecls.runtime.sources import expand_images

if TYPE_CHECKING:
    from edgecls.bench.inputs import Inputs
    from edgecls.bench.options import BenchOptions
    from edgecls.bench.results import BenchReport, ModelResult, Section
    from edgecls.bench.testset import TestSet
    from edgecls.reports.job import Analysis

SUMMARY_NAME = "explain.json"
MAX_EXPLAINED_FLIPS = 200  # flips mapped per model pair; the rest are counted, not drawn
FOCUS_FRACTION = 0.10  # "where a map looks": its top 10 % of pixels (for the float/int8 overlap)


# ---------------------------------------------------------------------- edgecls explain MODEL IMAGES...
def explain_images(model: Path, images: Sequence[str], options: ExplainOptions,
                   reporter: Reporter = SILENT) -> dict[str, Any]:
    """A map per image: Grad-CAM for a run directory, occlusion/RISE for a .tflite. A bad image is an
    error row and the rest go on. Returns the JSON summary (also written to OUT/explain.json)."""
    sources = list(some_image(expand_images(images), "explain"))  # no image at all: refused before the model loads
    out = _out_dir(options.out, Path(model), options.force)
    mapper = _mapper(Path(model), options, reporter)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    used: set[str] = set()  # two inputs (a/x.png, b/x.png) must never write the same PNG
    for source in sources:
        if isinstance(source, Prediction):
            rows.append({"image": str(source.source), "error": source.error})
            continue
        try:
            pixels = mapper.preprocess(source)
        except ImageError as exc:
            rows.append({"image": str(source), "error": str(exc)})
            continue
        smap = mapper.map(pixels)
        name = _unique(f"{slug(Path(source).stem)}-{smap.method}", used)
        overlay_png(pixels, smap, out / name, title=f"{printable(Path(source).name)} — {mapper.name}")
        rows.append({"image": str(source), "png": str(out / name), **smap.summary()})
        reporter(f"{Path(source).name}: {smap.label} ({smap.top[0].score:.3f}) -> {out / name}")
    if not rows:
        raise EdgeclsError("no images to explain: name image files, folders or glob patterns")
    summary = {"model": str(model), "method": mapper.method, "images": rows,
               "failed": sum("error" in row for row in rows)}
    if pyplot() is None:
        summary["note"] = ("matplotlib is not installed: the PNGs show the image and its map only (no colour bar, "
                           "no labels); pip install matplotlib for the full figures")
        reporter(f"note: {summary['note']}")
    write_text_atomic(out / SUMMARY_NAME, jsonio.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    summary["summary_file"] = str(out / SUMMARY_NAME)
    return summary


class _Mapper:
    """Decode images for, and make maps of, one model: a .tflite through the runtime or a Keras run."""

    def __init__(self, name: str, method: str, preprocess: Callable[[Any], np.ndarray],
                 make: Callable[[np.ndarray], SaliencyMap]):
        self.name, self.method, self.preprocess, self.map = name, method, preprocess, make


def _mapper(model: Path, options: ExplainOptions, reporter: Reporter) -> _Mapper:
    method = options.method
    if method is not None and method not in METHODS:
        raise EdgeclsError(f"unknown --method {method!r}: use one of {', '.join(METHODS)}")
    if model.is_dir():
        if method not in (None, "gradcam"):
            raise EdgeclsError(f"--method {method} maps a .tflite through the runtime; {model} is a run directory "
                               f"(Grad-CAM): give one of its exports, e.g. {model / 'export' / 'model_int8.tflite'}")
        from edgecls.explain.gradcam import gradcam_map
        from edgecls.rundir import open_run

        run = open_run(model)
        keras_model = run.model()
        size, color = (run.img_size, run.img_size), run.color
        return _Mapper(str(model), "gradcam", lambda source: load_image(source, size, color),
                       lambda pixels: gradcam_map(keras_model, pixels, options.target, options.layer, run.labels))
    if method == "gradcam":
        raise EdgeclsError(f"Grad-CAM needs the Keras model (a run directory); {model} is a .tflite: "
                           f"use --method occlusion or rise")
    clf = Classifier(model, num_threads=options.threads, labels=options.labels, backend=options.backend,
                     input_range=options.input_range)
    method = method or "occlusion"
    settings = {"masks": options.masks, "seed": options.seed} if method == "rise" else {}
    settings["fill"] = options.fill
    return _Mapper(clf.path.name, method, clf.preprocess,
                   lambda pixels: device_map(clf, pixels, method, options.target, reporter, **settings))


def _unique(stem: str, used: set[str]) -> str:
    """stem.png, or stem-2.png, stem-3.png ... when an earlier input of this run took the name."""
    name, n = f"{stem}.png", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}.png"
    used.add(name)
    return name


def _out_dir(out: Optional[str | Path], model: Path, force: bool = False) -> Path:
    """Where the PNGs and explain.json go: --out, else beside what is explained (RUN_DIR/explain for a
    run directory, MODEL-explain/ beside a .tflite). An earlier result there (its explain.json) is never
    replaced unless `force`: --out refuses, the default folder takes the next free name (explain-2, ...).
    Not created here: the caller makes it once the inputs are known to be good."""
    if out:
        folder = Path(out)
        if folder.exists() and not folder.is_dir():
            raise EdgeclsError(f"--out {folder} is a file, not a folder")
        if (folder / SUMMARY_NAME).exists() and not force:
            raise EdgeclsError(f"--out {folder} holds an earlier result ({SUMMARY_NAME}): give another --out, or "
                               "--force to replace it")
        check_folder_writable("--out", folder, folder)  # read-only, or under a file: before any map is made
        return folder
    base = model / "explain" if model.is_dir() else model.with_name(f"{slug(model.stem)}-explain")
    folder, n = base, 1
    while not force and (folder.exists() and (not folder.is_dir() or (folder / SUMMARY_NAME).exists())):
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    check_folder_writable("the output folder", folder, folder)  # beside a model on a read-only disk, say
    return folder


# ---------------------------------------------------------------------- edgecls explain --dataset RUN
def explain_dataset(run_dir: Path, options: ExplainOptions, count: int = DEFAULT_WORST,
                    reporter: Reporter = SILENT) -> dict[str, Any]:
    """The `count` test images with the highest loss (-log p(true class)), each with Grad-CAM for the
    predicted and for the true class, on one contact sheet: mislabelled or ambiguous data shows."""
    from edgecls.explain.gradcam import gradcam_map
    from edgecls.rundir import open_run

    check_bound("--worst", count)
    run = open_run(run_dir)
    model = run.model()
    test = run_test_set(run)  # the test split with bench's image ids (file names, or dataset indices)
    images, labels, ids = test.images, test.labels, test.ids
    reporter(f"Scoring {len(images)} test images of {run_dir}")
    probabilities = run.probabilities(images)
    loss = -np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1))
    worst = np.argsort(-loss, kind="stable")[:count]
    names = list(run.labels)
    rows, panels = [], []
    for i in worst:
        predicted = int(probabilities[i].argmax())
        pred_map = gradcam_map(model, images[i], predicted, options.layer, names)
        true_map = gradcam_map(model, images[i], int(labels[i]), options.layer, names)
        wrong = predicted != int(labels[i])
        rows.append({"test_index": int(i), "id": ids[i], "true": names[labels[i]], "predicted": names[predicted],
                     "loss": round(float(loss[i]), 4), "wrong": wrong, "map_predicted": pred_map.summary(),
                     "map_true": true_map.summary()})
        panels.append([
            Panel(images[i], title=short(str(ids[i]), 28), caption=[f"true: {short(names[labels[i]])}",
                                                           f"loss {loss[i]:.2f}"], highlight=wrong),
            Panel(images[i], pred_map.normalized(), title=f"predicted '{short(names[predicted])}'",
                  caption=top3_lines(pred_map)),
            Panel(images[i], true_map.normalized(), title=f"true '{short(names[labels[i]])}'",
                  caption=[f"p(true) {probabilities[i][labels[i]]:.3f}"]),
        ])
    out = _out_dir(options.out, run_dir, options.force)
    out.mkdir(parents=True, exist_ok=True)
    sheet = sheet_png(panels, out / "worst-test-images.png",
                      title=f"{run_dir.name}: the {len(worst)} test images with the highest loss (Grad-CAM, layer "
                            f"{pred_map.settings['layer']}; red frame = wrong)",
                      column_titles=["image", "map: predicted class", "map: true class"],
                      per_row=sheet_groups(len(panels), 3))
    summary = {"run": str(run_dir), "method": "gradcam", "test_images": int(len(images)),
               "wrong": int(np.sum(probabilities.argmax(1) != labels)), "worst": rows, "sheet": str(out / sheet)}
    write_text_atomic(out / SUMMARY_NAME, jsonio.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    summary["summary_file"] = str(out / SUMMARY_NAME)
    return summary


# ---------------------------------------------------------------------- edgecls bench --explain-flips N
def sheet_groups(images: int, panels: int) -> int:
    """Images side by side on a contact sheet of `panels` panels each: about as wide as it is tall."""
    return max(1, min(images, round((images / panels) ** 0.5 * 1.25)))


def check_explain_flips(extra: Optional[int], threshold_db: Optional[float]) -> None:
    """Fail before a bench measures anything when --explain-flips is given badly."""
    if extra is not None:
        check_bound("--explain-flips", extra)
    if threshold_db is not None:
        check_bound("--explain-threshold", threshold_db)


def flips_analysis(options: BenchOptions, extra: int, threshold_db: Optional[float] = None) -> Analysis:
    """`bench --explain-flips` as an analysis for `edgecls.reports.job.bench(options, analyses)`: checked
    now (before anything is measured), run on the finished report and the very test images the bench
    measured, with its backend and (validated) input range."""
    check_explain_flips(extra, threshold_db)

    def analyse(report: BenchReport, inputs: Inputs, report_dir: Optional[Path], reporter: Reporter) -> None:
        add_explain_flips(report, inputs.test, report_dir, extra, threshold_db,
                          backend=options.backend, input_range=options.input_range, reporter=reporter)

    return analyse


def add_explain_flips(report: BenchReport, test: TestSet, report_dir: Optional[Path],
                      extra: int = 0, threshold_db: Optional[float] = None, method: str = "occlusion",
                      backend: Optional[str] = None, input_range: Optional[tuple[float, float]] = None,
                      reporter: Reporter = SILENT) -> list[Section]:
    """For each quantised .tflite of a bench report and its float32 twin: every image where their
    top-1 differs plus the `extra` least-confident agreements, with both models' maps and top-3 and
    the per-layer divergence; a report section each (table + contact sheets) and a flip matrix.
    Without a float32 and a quantised .tflite, a note says so (the bench's own report is kept)."""
    threshold_db = DEFAULT_THRESHOLD_DB if threshold_db is None else threshold_db
    models = report.tflite_models()
    floats = [m for m in models if m.mode == "float32"]
    quantised = [m for m in models if m.mode not in ("float32", "float16")]
    if not floats or not quantised:
        note = ("--explain-flips: nothing explained; it needs a float32 and a quantised .tflite among the benched "
                f"models (got: {', '.join(m.name + ' ' + m.mode for m in models) or 'none'})")
        reporter(f"note: {note}")
        report.notes.append(note)
        return []
    sections = []
    for model in quantised:
        sections += _explain_pair(report, floats[0], model, test, report_dir, extra, threshold_db, method, backend,
                                  input_range, reporter)
    return sections


def _explain_pair(report: BenchReport, float_entry: ModelResult, quant_entry: ModelResult, test: TestSet,
                  report_dir: Optional[Path], extra: int, threshold_db: float, method: str, backend: Optional[str],
                  input_range: Optional[tuple[float, float]], reporter: Reporter) -> list[Section]:
    from edgecls.bench.results import add_section

    fname, qname, mode = float_entry.name, quant_entry.name, quant_entry.mode  # mode: int8, dynamic, ...
    probe = DivergenceProbe(float_entry.path, quant_entry.path, backend, threshold_db, input_range)
    f_clf, q_clf = probe.float_clf, probe.quant_clf
    f_prob, q_prob = f_clf.probabilities(test.images), q_clf.probabilities(test.images)
    f_top, q_top = f_prob.argmax(1), q_prob.argmax(1)
    flips = np.flatnonzero(f_top != q_top)
    agree = np.flatnonzero(f_top == q_top)
    least = agree[np.argsort(np.minimum(f_prob[agree].max(1), q_prob[agree].max(1)), kind="stable")[:extra]]
    chosen = list(flips[:MAX_EXPLAINED_FLIPS]) + list(least)
    if len(agree):  # each layer's typical SNR, on agreeing images spread over the test set
        spread = np.linspace(0, len(agree) - 1, min(BASELINE_IMAGES, len(agree))).astype(int)
        probe.calibrate(test.images[agree[spread]])
    reporter(f"Explaining {len(flips)} flip(s) and {len(least)} least-confident agreement(s) of {qname} against "
             f"{fname} ({method} maps, per-layer divergence)")
    names = test.class_names
    rows, panels, records = [], [], []
    started = time.perf_counter()
    for i in reporter.track(chosen, f"explaining {qname}"):
        pixels = test.images[i]
        f_map = device_map(f_clf, pixels, method)
        q_map = device_map(q_clf, pixels, method)
        divergence = probe.compare(pixels)
        flipped = bool(f_top[i] != q_top[i])
        first, worst = divergence.first_over, divergence.worst
        overlap = focus_overlap(f_map, q_map)
        where = (f"{first.layer} ({divergence.over(divergence.first_index)})" if first
                 else f"none (lowest: {worst.layer}, {_db(worst.snr_db)})")
        rows.append([str(test.ids[i]), "flip" if flipped else "agree", names[test.labels[i]],
                     _top3_text(f_map), _top3_text(q_map), where, f"{overlap:.2f}"])
        records.append({"index": int(i), "id": test.ids[i], "flipped": flipped, "true": names[test.labels[i]],
                        "float": f_map.summary(), "quantised": q_map.summary(), "focus_overlap": round(overlap, 4),
                        "divergence": divergence.to_json()})
        panels.append(_flip_row(pixels, str(test.ids[i]), names[test.labels[i]], flipped, f_map, q_map, divergence,
                                quant_entry.mode))
    plots = _write_sheets(panels, report_dir, qname, fname, method, threshold_db, quant_entry.mode)
    over = [r for r in records if r["divergence"]["first_over"]]
    notes = [
        f"{len(flips)} of {len(test.labels)} test images flip between {fname} and {qname}"
        + (f" ({len(flips) - MAX_EXPLAINED_FLIPS} not mapped: only the first {MAX_EXPLAINED_FLIPS})"
           if len(flips) > MAX_EXPLAINED_FLIPS else "") + f"; {len(least)} least-confident agreements added.",
        f"Maps: {method} through the device runtime, for each model's own top-1. Overlap: the share of the float "
        f"map's top {FOCUS_FRACTION:.0%} pixels that are also in the {mode} map's (1 = both look at the same place).",
        f"Divergence: SNR of each layer's {mode} output (dequantised) against float on that image. 'First diverging "
        f"layer': the first below {threshold_db:g} dB, or more than {probe.drop_db:g} dB under its typical SNR (the "
        f"median on {min(BASELINE_IMAGES, len(agree))} agreeing images; grey in the charts) while under "
        f"{HEALTHY_DB:g} dB; none: the flip is a near tie that the last layers decide.",
        _first_over_tally(over),
        f"{time.perf_counter() - started:.1f} s for {len(chosen)} images.",
    ]
    key = f"explain-flips-{slug(qname).lower().replace('.', '-')}"
    columns = ["image", "kind", "true", f"{fname} top-3", f"{qname} top-3", "first diverging layer", "overlap"]
    section = add_section(report, key, f"Explained flips: {qname} against {fname}", columns, rows, notes, plots,
                          data={"float": fname, "quantised": qname, "threshold_db": threshold_db, "method": method,
                                "flips": int(len(flips)), "images": records})
    if not len(flips):  # no flip: no matrix to draw (an empty one would only say so less plainly)
        report.sections = [s for s in report.sections if s.key != key + "-matrix"]
        return [section]
    matrix = flip_matrix(f_top[flips], q_top[flips], names, mode)
    matrix_title = f"Flip matrix: {fname} top-1 (rows) → {qname} top-1 (columns)"
    matrix_section = add_section(report, key + "-matrix", matrix_title,
                                 matrix[0], matrix[1],
                                 [f"{len(flips)} flip{'' if len(flips) == 1 else 's'}; classes with no flip are "
                                  "left out."],
                                 data={"pairs": matrix[2]})
    return [section, matrix_section]


def _flip_row(pixels: np.ndarray, image_id: str, true: str, flipped: bool, f_map: SaliencyMap, q_map: SaliencyMap,
              divergence: Divergence, mode: str = "int8") -> list[Panel]:
    first = divergence.first_over
    layers = divergence.layers
    return [
        Panel(pixels, title=short(image_id, 28), caption=[f"true: {short(true)}", "FLIP" if flipped else "agree"],
              highlight=flipped),
        Panel(pixels, f_map.normalized(), title=f"float → '{short(f_map.label)}'", caption=top3_lines(f_map)),
        Panel(pixels, q_map.normalized(), title=f"{mode} → '{short(q_map.label)}'", caption=top3_lines(q_map)),
        Panel(snr={"layers": [row.layer for row in layers],
                   "snr": [row.snr_db if np.isfinite(row.snr_db) else None for row in layers],
                   "typical": divergence.typical_db, "threshold": divergence.threshold_db,
                   "first": divergence.first_index, "mode": mode},
              title=f"first diverging: {first.layer}" if first else
              "no layer diverges" + (": a near tie" if flipped else "")),
    ]


def _write_sheets(panels: list[list[Panel]], report_dir: Optional[Path], qname: str, fname: str, method: str,
                  threshold_db: float, mode: str = "int8") -> list[str]:
    from edgecls.explain.render import MAX_SHEET_ROWS

    if report_dir is None or not panels:
        return []
    report_dir.mkdir(parents=True, exist_ok=True)
    pages = [panels[i:i + MAX_SHEET_ROWS] for i in range(0, len(panels), MAX_SHEET_ROWS)]
    written = []
    for n, page in enumerate(pages, 1):
        suffix = f"-{n}" if len(pages) > 1 else ""
        title = (f"{qname} against {fname}: flips and least-confident agreements ({method} maps; SNR threshold "
                 f"{threshold_db:g} dB)" + (f", page {n} of {len(pages)}" if len(pages) > 1 else ""))
        written.append(sheet_png(page, report_dir / f"explain-flips-{slug(qname)}{suffix}.png", title,
                                 ["image", "float map", f"{mode} map", "per-layer SNR"]))
    return written


def focus_overlap(a: SaliencyMap, b: SaliencyMap, fraction: float = FOCUS_FRACTION) -> float:
    """Share of a's top-`fraction` pixels that are in b's top-`fraction` too."""
    k = max(1, int(round(fraction * a.values.size)))
    top_a = set(np.argsort(-a.values.ravel(), kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b.values.ravel(), kind="stable")[:k].tolist())
    return len(top_a & top_b) / k


def flip_matrix(reference: np.ndarray, model: np.ndarray, names: list[str],
                mode: str = "int8") -> tuple[list[str], list[list[str]], list]:
    """(columns, rows, pairs) of flip counts: reference class (rows) to model class (columns), flipped classes
    only; `mode` names the quantised model's kind in the corner cell ("float ↓ / dynamic →")."""
    rows_used = sorted(set(reference.tolist()))
    cols_used = sorted(set(model.tolist()))
    counts: dict[tuple[int, int], int] = {}
    for r, m in zip(reference.tolist(), model.tolist()):
        counts[(r, m)] = counts.get((r, m), 0) + 1
    columns = [f"float ↓ / {mode} →"] + [short(names[c]) for c in cols_used] + ["total"]
    rows = [[short(names[r])] + [str(counts.get((r, c), "")) for c in cols_used]
            + [str(sum(counts.get((r, c), 0) for c in cols_used))] for r in rows_used]
    pairs = [{"float": names[r], "quantised": names[m], "count": n} for (r, m), n in sorted(counts.items())]
    return columns, rows, pairs


def _first_over_tally(records: list[dict]) -> str:
    if not records:
        return "No layer diverged on any explained image: the flips are near ties that the last layers decide."
    tally: dict[str, int] = {}
    for record in records:
        tally[record["divergence"]["first_over"]] = tally.get(record["divergence"]["first_over"], 0) + 1
    text = ", ".join(f"{layer} ({n})" for layer, n in sorted(tally.items(), key=lambda kv: -kv[1]))
    return f"First diverging layer, by images: {text}."


def _top3_text(smap: SaliencyMap) -> str:
    return ", ".join(f"{short(c.label, 16)} {c.score:.2f}" for c in smap.top[:3])


def _db(value: float) -> str:
    return "identical" if not np.isfinite(value) else f"{value:.1f} dB"


# ---------------------------------------------------------------------- the command
def run_explain(options: ExplainOptions, reporter: Reporter = SILENT) -> int:
    """`edgecls explain`: maps of MODEL on IMAGES, or of the worst test images of --dataset RUN.
    Prints a table (or the JSON summary) and returns the exit code: 0 ok, 1 some images failed."""
    check(options)
    model, images = options.model, options.images or []
    if options.dataset is not None:
        if model is not None or images:
            raise EdgeclsError("--dataset RUN explains a run's own test images: give no MODEL or IMAGES with it")
        summary = explain_dataset(options.dataset, options, options.worst, reporter=reporter)
    else:
        if model is None or not images:
            raise EdgeclsError("give MODEL (a .tflite or a run directory) and IMAGES, or --dataset RUN")
        summary = explain_images(model, images, options, reporter=reporter)
    if options.as_json:
        print(jsonio.dumps(summary, indent=1, ensure_ascii=False))
    else:
        _print_summary(summary)
    return 1 if summary.get("failed") else 0


def _print_summary(summary: dict[str, Any]) -> None:
    from edgecls.console import LOG_WIDTH, QuietPipeConsole, markup_cell, output_width
    from edgecls.tables import data_table

    if "worst" in summary:
        rows = [[markup_cell(str(row["id"])), markup_cell(row["true"]), markup_cell(row["predicted"]),
                 f"{row['loss']:.3f}"] for row in summary["worst"]]
        table = data_table(("image", "true", "predicted", "loss"), rows, names=("image", "true", "predicted"),
                           title=markup_cell(f"Worst test images of {summary['run']}"),
                           caption="image: its file or index in the dataset; loss: -log p(true class), highest first.")
        files = f"Contact sheet: {summary['sheet']}; summary: {summary['summary_file']}"
    else:
        pngs = [Path(row["png"]) for row in summary["images"] if "error" not in row]
        folders = {png.parent for png in pngs}
        # One folder for every PNG (--out): the table names the files, the caption the folder once.
        folder = folders.pop() if len(folders) == 1 else None
        rows = []
        for row in summary["images"]:
            if "error" in row:
                rows.append([markup_cell(row["image"]), "[red]error[/red]", markup_cell(row["error"]), "", "", "", ""])
                continue
            top, peak = row["top"][0], row["peak_yx"]
            png = Path(row["png"]).name if folder is not None else row["png"]
            rows.append([markup_cell(Path(row["image"]).name), markup_cell(top["label"]), f"{top['score']:.3f}",
                         "[yellow]flat[/yellow]" if peak is None else f"{peak[0]}, {peak[1]}",
                         "-" if row["top10_area_mass"] is None else f"{row['top10_area_mass']:.2f}",
                         str(row["evaluations"]), markup_cell(png)])
        where = f", in {folder}" if folder is not None else ""
        table = data_table(("image", "top-1", "score", "peak (y, x)", "top-10% mass", "evaluations", "PNG"), rows,
                           names=("image", "top-1", "PNG"), title=markup_cell(f"{summary['method']} maps of "
                                                                              f"{summary['model']}"),
                           caption=markup_cell("top-1 and score: the class explained and its probability; peak "
                                               "(y, x): the map's strongest pixel (flat: none, the map points "
                                               "nowhere); top-10% mass: the share of the map in its strongest tenth "
                                               "of the pixels (near 1: focused, near 0.1: spread); evaluations: model "
                                               f"runs the map took; PNG: the picture{where}."))
        flat = [row for row in summary["images"] if row.get("warning")]
        files = "".join(f"! {Path(row['image']).name}: {row['warning']}\n" for row in flat)
        files += f"Summary: {summary['summary_file']}"
    console = QuietPipeConsole(width=output_width() or LOG_WIDTH)
    console.print(table)
    console.print(markup_cell(files))
