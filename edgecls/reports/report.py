"""A bench report (bench.results.BenchReport) as a terminal table, Markdown and files on disk.

The terminal table and the Markdown one are made from the same rows. Extra sections (a
quantisation diagnosis, a calibration sweep: see results.add_section) are titled tables that both
renderers show after the main one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from edgecls import jsonio
from edgecls.atomic import check_file_writable, check_folder_writable, write_text_atomic
from edgecls.bench.results import BenchReport, Latency, ModelResult
from edgecls.console import (
    markup_cell,  # one implementation for every table of data; compare imports it here
)
from edgecls.errors import EdgeclsError
from edgecls.files import read_capped
from edgecls.jsonio import MAX_JSON_BYTES
from edgecls.reporter import SILENT, Reporter
from edgecls.runtime.labels import clean_text, printable
from edgecls.runtime.metrics import correct_count, interval_text, points_text

JSON_NAME = "bench.json"
MARKDOWN_NAME = "bench.md"
COLUMNS = ("model", "format/quant", "size", "top-1", "correct", "95% CI", "top-k", "Δ vs float", "agree", "p50",
           "p90", "p99", "img/s", "init", "peak MB", "thr")  # times in ms (the legend under the table says so)
# The narrow layout (a terminal that cannot hold COLUMNS): accuracy and latency as two tables.
ACCURACY_COLUMNS = ("model", "quant", "top-1", "correct", "95% CI", "Δ vs float", "agree")
LATENCY_COLUMNS = ("model", "size", "thr", "p50", "p90", "p99", "img/s", "init", "peak MB")
MAX_FLIPPED_SHOWN = 50
DASH = "—"


# ---------------------------------------------------------------------- the main table
def table_rows(report: BenchReport) -> list[list[str]]:
    """One row per model and thread count under COLUMNS; a model's own figures only on its first row."""
    rows = []
    for model in report.models:
        own = [model.name, f"{model.kind} {model.mode}", size_cell(model), top1_text(model), correct_text(model),
               interval_cell(model), DASH if model.accuracy is None else f"{model.accuracy.topk:.4f}",
               *vs_reference_cells(report, model)]
        for i, timing in enumerate(model.latency or [None]):
            first = own if i == 0 else [""] * len(own)
            rows.append(first + latency_cells(model, timing, first_row=i == 0))
    return rows


def size_cell(model: ModelResult) -> str:
    return size_text(model.size_bytes) + (f" ×{model.size_ratio:.2f}" if model.size_ratio else "")


def correct_text(model: ModelResult) -> str:
    """How many test images the top-1 stands for: '158/179' (a dash without accuracy)."""
    if model.accuracy is None:
        return DASH
    n = model.accuracy.images
    return f"{correct_count(model.accuracy.top1, n)}/{n}"


def interval_cell(model: ModelResult) -> str:
    """The top-1's 95 % Wilson interval where it is a point or more wide, else a dash."""
    if model.accuracy is None:
        return DASH
    n = model.accuracy.images
    return interval_text(correct_count(model.accuracy.top1, n), n) or DASH


def vs_reference_cells(report: BenchReport, model: ModelResult) -> list[str]:
    """(Δ vs float, agree) of a model: 'ref' for the reference itself."""
    if model.name == report.reference:
        return ["ref", "ref"]
    paired = model.vs_reference
    return [points_text(paired.delta_accuracy), f"{paired.agreement:.4f}"] if paired else [DASH, DASH]


def latency_cells(model: ModelResult, timing: Optional[Latency], first_row: bool = True) -> list[str]:
    """(p50, p90, p99, img/s, init, peak MB, thr) of one thread count; peak memory on a model's first row."""
    if timing is None:
        return [DASH] * 7
    invoke = timing.invoke_ms
    return [ms_text(invoke.p50), ms_text(invoke.p90), ms_text(invoke.p99), f"{timing.throughput.images_per_s:.0f}",
            f"{timing.init_ms:.1f}", peak_text(model) if first_row else "", str(timing.threads)]


def top1_text(model: ModelResult) -> str:
    """A model's top-1 as a cell; a dash for a --latency-only bench (no accuracy)."""
    return DASH if model.accuracy is None else f"{model.accuracy.top1:.4f}"


def peak_text(model: ModelResult) -> str:
    """A model's peak memory (MB) as a cell; a dash where it was not measured."""
    return f"{model.memory.peak_rss_mb:.1f}" if model.memory is not None and model.memory.measured else DASH


def size_text(n: int) -> str:
    return f"{n / 1024:.0f}K" if n < 1 << 20 else f"{n / 2**20:.2f}M"


def ms_text(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def headline(report: BenchReport) -> list[str]:
    """The sentences every rendering starts with: what was measured, on what, how; what each column is."""
    return [what_was_measured(report), *legend(report, COLUMNS), *report.device.notes, *report.notes]


def what_was_measured(report: BenchReport) -> str:
    data = report.data
    if data.part == "unlabelled":
        return f"Latency only: {data.images} unlabelled images ({data.source}), no accuracy."
    reference = report.reference or "none (no float model)"
    images = f"image{'' if data.images == 1 else 's'}"
    return (f"{data.images} {'held-out test' if data.part == 'test' else ''} {images} of {data.source}"
            .replace("  ", " ") + f"; float reference: {reference}.")


def legend(report: BenchReport, columns: Sequence[str]) -> list[str]:
    """What each of `columns` means, in the order shown: the lines under a table."""
    settings, machine = report.settings, report.machine
    reference = report.reference or "the float reference"
    has_keras = any(m.kind == "keras" for m in report.models)
    ratio = " (× the float32 file" + ("" if "format/quant" in columns else ": bench.md") + ")"
    meaning = {
        "format/quant": "format/quant: the file's kind and quantisation",
        "quant": "quant: the quantisation" + (" (the Keras model is float32)" if has_keras else ""),
        "size": "size: K KiB, M MiB" + (ratio if report.latency_reference else ""),
        "top-1": "top-1: the share of the test images whose first answer is right",
        "correct": "correct: how many",
        "95% CI": "95% CI: where the true accuracy lies, by the Wilson interval (— where it is under a point wide)",
        "top-k": f"top-k: the right class among the first {settings.top_k}",
        "Δ vs float": f"Δ vs float: top-1 points against {reference}",
        "agree": f"agree: the share of images with the same top-1 as {reference}",
        "p50": (f"p50/p90/p99: invoke alone, batch 1, ms per image ({settings.warmup} warm-up, then {settings.rounds} "
                f"interleaved rounds of {settings.per_round} image{'' if settings.per_round == 1 else 's'} per model "
                "and thread count)"),
        "img/s": f"img/s: at batch {settings.batch_size}",
        "init": "init: ms to load, verify and allocate",
        "peak MB": "peak MB: a fresh device-side process",
        "thr": "thr: interpreter threads",
    }
    parts = [meaning[c] for c in shown_columns(report, columns) if c in meaning]
    timed = "p50" in columns
    return ["; ".join(parts) + (f". Interpreter {machine.backend.name} {machine.backend.version}." if timed else ".")]


def shown_columns(report: BenchReport, columns: Sequence[str]) -> list[str]:
    """`columns` without those that would hold only dashes in this report: no accuracy (--latency-only),
    or no float reference to pair with (Δ, agreement)."""
    hidden = set()
    if report.data.part == "unlabelled":
        hidden |= {"top-1", "correct", "95% CI", "top-k"}
    if report.reference is None:
        hidden |= {"Δ vs float", "agree"}
    return [c for c in columns if c not in hidden]


def render_bench_table(report: BenchReport) -> Any:
    """The main table for the terminal: one table with every column where it fits the width it is drawn
    at, else an accuracy table and a latency table (each stacked further where it still does not fit:
    tables.data_table); names and figures are never cut or folded."""
    from edgecls.tables import Fitted

    return Fitted(_wide_table(report), _split_tables(report))


TEXT_COLUMNS = ("model", "format/quant", "quant")
KEY_COLUMNS = ("model", "thr")  # repeated in each stacked table: a row's model and thread count


def _table(title: str, columns: Sequence[str], caption: Sequence[str], rows: Sequence[Sequence[str]]) -> Any:
    from edgecls.tables import data_table

    return data_table(columns, [[markup_cell(cell) for cell in row] for row in rows], title=title,
                      caption=markup_lines(caption), names=TEXT_COLUMNS, key=KEY_COLUMNS)


def _wide_table(report: BenchReport) -> Any:
    columns = shown_columns(report, COLUMNS)
    keep = [COLUMNS.index(c) for c in columns]
    return _table("edgecls bench", columns, headline(report), [[row[i] for i in keep] for row in table_rows(report)])


def _split_tables(report: BenchReport) -> Any:
    from rich.console import Group

    measured = what_was_measured(report)
    notes = [*report.device.notes, *report.notes]
    if report.data.part == "unlabelled":  # no accuracy: the latency table alone
        return _table("edgecls bench: latency", LATENCY_COLUMNS,
                      [measured, *legend(report, LATENCY_COLUMNS), *notes], _latency_rows(report))
    columns = shown_columns(report, ACCURACY_COLUMNS)
    rows = []
    for model in report.models:
        cells = dict(zip(ACCURACY_COLUMNS, [model.name, model.mode, top1_text(model), correct_text(model),
                                            interval_cell(model), *vs_reference_cells(report, model)]))
        rows.append([cells[c] for c in columns])
    accuracy = _table("edgecls bench: accuracy", columns,
                      [measured, *legend(report, ACCURACY_COLUMNS),
                       f"top-{report.settings.top_k}, macro-F1 and per-class accuracy: in bench.md and bench.json "
                       "(--report DIR, --json FILE)."], rows)
    latency = _table("edgecls bench: latency", LATENCY_COLUMNS, [*legend(report, LATENCY_COLUMNS), *notes],
                     _latency_rows(report))
    return Group(accuracy, latency)


def _latency_rows(report: BenchReport) -> list[list[str]]:
    rows = []
    for model in report.models:
        for i, timing in enumerate(model.latency or [None]):
            p50, p90, p99, rate, init, peak, threads = latency_cells(model, timing, first_row=i == 0)
            first = [model.name, size_text(model.size_bytes)] if i == 0 else ["", ""]
            rows.append([*first, threads, p50, p90, p99, rate, init, peak])
    return rows


def markup_lines(lines: Sequence[str]) -> str:
    return "\n".join(markup_cell(line) for line in lines)


def print_tables(*tables: Any) -> None:
    """Print rich renderables at the terminal's width ($COLUMNS, else its own; tables that do not fit take
    their narrow layout, see tables.Fitted); a pipe or a log gets the wide layout with whole rows."""
    from edgecls.console import LOG_WIDTH, QuietPipeConsole, output_width

    console = QuietPipeConsole(width=output_width() or LOG_WIDTH)
    for table in tables:
        console.print(table)


def render_sections(report: BenchReport) -> list[Any]:
    """The extra sections as terminal tables (tables.data_table: names whole, sentences wrapped, stacked
    where the section is wider than the terminal)."""
    from edgecls.tables import data_table, text_kinds

    tables = []
    for section in report.sections:
        rows = section_cells(section)
        names, prose = text_kinds(section.columns, rows)
        tables.append(data_table([markup_cell(c) for c in section.columns],
                                 [[markup_cell(cell) for cell in row] for row in rows],
                                 title=markup_cell(section.title), caption=markup_lines(section.notes) or None,
                                 names=[markup_cell(c) for c in names], prose=[markup_cell(c) for c in prose]))
    return tables


def section_cells(section: Any) -> list[list[str]]:
    """A section's rows as text, each column's numbers with one number of decimals (the most any of them
    needs, at SIGNIFICANT digits): 0.9940 above 0.9939, not 0.994."""
    columns = list(zip(*section.rows)) if section.rows else []
    formats = [_column_format(values) for values in columns]
    return [[_cell(value, fmt) for value, fmt in zip(row, formats)] for row in section.rows]


SIGNIFICANT = 4  # digits of a float in a section's cell (the smallest number of its column sets the decimals)
MOST_DECIMALS = 6  # past this, a column's numbers are written in scientific notation


def _column_format(values: Sequence[Any]) -> str:
    import math

    floats = [abs(v) for v in values if isinstance(v, float) and math.isfinite(v)]
    if not floats:
        return f".{SIGNIFICANT}g"
    decimals = 0
    for value in floats:
        text = f"{value:.{SIGNIFICANT}g}"
        if "e" in text:
            if value and value < 1:
                return f".{SIGNIFICANT - 1}e"
            continue
        decimals = max(decimals, len(text.partition(".")[2]))
    return f".{SIGNIFICANT - 1}e" if decimals > MOST_DECIMALS else f".{decimals}f"


def _cell(value: Any, fmt: str = f".{SIGNIFICANT}g") -> str:
    if value is None:
        return DASH
    if isinstance(value, float):
        return format(value, fmt)
    return str(value)


# ---------------------------------------------------------------------- Markdown
def markdown(report: BenchReport, plots: Sequence[str] = ()) -> str:
    """The whole report as Markdown: the main table, latency details, per-class accuracy, flipped
    images, memory, extra sections and the plots."""
    machine = report.machine
    out = ["# edgecls bench", "",
           f"Measured {report.created} on {machine.cpu} ({machine.arch}, {machine.usable_cpus} usable "
           f"CPUs, {machine.system}, Python {machine.python})"
           + (f", EMULATED ({machine.emulated}): its latency is not a device figure." if machine.emulated
              else "."), ""]
    out += [f"- {line}" for line in headline(report)] + [""]
    out += md_table(COLUMNS, table_rows(report)) + [""]
    out += ["## Latency in detail", ""] + md_table(*_latency_details(report)) + [""]
    if report.data.classes:  # none in a --latency-only bench
        out += ["## Per-class accuracy", ""] + md_table(*_per_class(report)) + [""]
    out += _flipped(report)
    out += _memory(report)
    for section in report.sections:
        out += [f"## {section.title}", ""] + md_table(section.columns, section_cells(section)) + [""]
        out += [f"- {note}" for note in section.notes] + ([""] if section.notes else [])
        out += [f"![{name}]({name})" for name in section.plots] + ([""] if section.plots else [])
    shown = {name for section in report.sections for name in section.plots}
    plots = [name for name in plots if name not in shown]  # a section's plot is shown in its section
    if plots:
        out += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    return "\n".join(out).rstrip() + "\n"


def md_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(md_cell(c) for c in cells) + " |"

    return [line(columns), line(["---"] * len(columns))] + [line(row) for row in rows]


_LINE_BREAKS = str.maketrans({"\r": " ", "\n": " ", "\t": " ", "\v": " ", "\f": " "})


def md_cell(value: Any) -> str:
    """`value` as one Markdown (GFM) table cell that reads as it is: on one line, without control
    characters or undecodable bytes (shown as \\xNN), with its backslashes and pipes escaped."""
    text = clean_text(printable(str(value)).translate(_LINE_BREAKS))
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _latency_details(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    columns = ["model", "threads", "p50", "p90", "p99", "mean", "std", "min", "file→label p50", "p90", "p99",
               "first", "load", "batch", "img/s", "p50 ÷ float32"]
    rows = []
    for model in report.models:
        for t in model.latency:
            inv, fil, ratio = t.invoke_ms, t.file_ms, t.vs_reference
            rows.append([model.name, str(t.threads)] + [ms_text(v) for v in (inv.p50, inv.p90, inv.p99, inv.mean)]
                        + [f"{inv.std:.3f}", ms_text(inv.min)] + [ms_text(v) for v in (fil.p50, fil.p90, fil.p99)]
                        + [ms_text(t.first_inference_ms), ms_text(t.load_ms), str(t.throughput.batch),
                           f"{t.throughput.images_per_s:.0f}",
                           f"{ratio.invoke_p50_ratio:.3f}" if ratio else DASH])
    return columns, rows


def _per_class(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    models = report.models
    columns = ["class", "n"] + [m.name for m in models]
    rows = []
    for name in report.data.classes:
        first = models[0].accuracy.per_class[name]
        cells = [name, str(first.n)]
        for model in models:
            own = model.accuracy.per_class[name]
            cells.append(DASH if own.accuracy is None else f"{own.accuracy:.4f} ({own.correct}/{own.n})")
        rows.append(cells)
    return columns, rows


def _flipped(report: BenchReport) -> list[str]:
    out = []
    for model in report.models:
        paired = model.vs_reference
        if not paired:
            continue
        flipped = paired.flipped
        out += [f"## Flipped top-1: {model.name} against {paired.reference}", "",
                f"{len(flipped)} of {model.accuracy.images} images (agreement {paired.agreement:.4f}; "
                f"mean |Δ probability| {paired.mean_abs_dprob:.5f}).", ""]
        if flipped:
            shown = flipped[:MAX_FLIPPED_SHOWN]
            out += md_table(["image", paired.reference, model.name, "true"],
                            [[str(f.id), f.reference, f.model, f.true] for f in shown])
            if len(flipped) > len(shown):
                out.append(f"\n({len(flipped) - len(shown)} more in the JSON report)")
            out.append("")
    return out


def _memory(report: BenchReport) -> list[str]:
    baseline = report.memory_baseline
    rows = []
    for model in report.models:
        memory = model.memory
        if memory is None:
            continue
        if not memory.measured:
            rows.append([model.name, DASH, memory.error])
        else:
            heavy = ", ".join(memory.heavy_modules or []) or "none"
            rows.append([model.name, f"{memory.peak_rss_mb:.1f}",
                         f"{memory.measure or 'peak RSS'}; TensorFlow/Keras imported: {heavy}"])
    if not rows:
        return []
    base = (f"A fresh Python that imports edgecls.runtime and the interpreter, loads the model and classifies "
            f"one image, with {report.device.threads[0]} thread(s). Baseline (the same, no model): "
            f"{baseline.peak_rss_mb:.1f} MB." if baseline is not None and baseline.measured else "")
    return (["## Peak memory of a device-side process", "", base, ""]
            + md_table(["model", "peak MB", "notes"], rows) + [""])


# ---------------------------------------------------------------------- files
def check_writable(json_path: Optional[Path], report_dir: Optional[Path]) -> None:
    """Fail before any measuring if a report destination cannot be written. Leaves nothing behind."""
    if report_dir is not None:
        if report_dir.exists() and not report_dir.is_dir():
            raise EdgeclsError(f"cannot write to --report {report_dir}: it is a file, not a folder")
        check_folder_writable("--report", report_dir, report_dir)
    if json_path is not None:
        check_file_writable("--json", json_path)


def write_reports(report: BenchReport, report_dir: Optional[Path] = None, json_path: Optional[Path] = None,
                  reporter: Reporter = SILENT) -> list[Path]:
    """Plots, Markdown and JSON in `report_dir`, and/or the JSON at `json_path`; each file atomic."""
    from edgecls.reports.plots import write_plots

    written: list[Path] = []
    if report_dir is not None:
        before = _listed_files(report_dir / JSON_NAME)  # an earlier report's own files, to remove those now gone
        plots, note = write_plots(report, report_dir)
        if note:
            reporter(f"note: {note}")
            report.notes = [n for n in report.notes if n != note] + [note]
        shown = [name for section in report.sections for name in section.plots if name not in plots]
        report.report_files = [*plots, *shown, MARKDOWN_NAME, JSON_NAME]  # the analyses' PNGs too
        written += [report_dir / name for name in plots]
        written.append(write_text_atomic(report_dir / MARKDOWN_NAME, markdown(report, plots)))
        written.append(write_text_atomic(report_dir / JSON_NAME, json_text(report)))
        for name in set(before) - set(report.report_files):  # e.g. an --explain-flips sheet of the last bench
            with contextlib.suppress(OSError):
                (report_dir / name).unlink()
    if json_path is not None and not json_is_the_reports(report_dir, json_path):  # else written once, above
        written.append(write_text_atomic(json_path, json_text(report)))
    return written


def _listed_files(path: Path) -> list[str]:
    """The files an earlier bench.json in that folder lists as its report's (plain names only), or none."""
    try:
        listed = jsonio.parse_json(read_capped(path, MAX_JSON_BYTES)).get("report_files") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [name for name in listed if isinstance(name, str) and name == Path(name).name and name.endswith(".png")]


def json_is_the_reports(report_dir: Optional[Path], json_path: Optional[Path]) -> bool:
    """Whether --json names the report folder's own bench.json (one file, written and listed once)."""
    return report_dir is not None and json_path is not None and \
        Path(json_path).resolve() == (Path(report_dir) / JSON_NAME).resolve()


def json_text(report: BenchReport) -> str:
    """bench.json's text: the report's to_json(), one key a line."""
    return jsonio.dumps(report.to_json(), indent=1, ensure_ascii=False) + "\n"
