"""A bench report (bench.results.BenchReport) as a terminal table, Markdown and files on disk.

The terminal table and the Markdown one are made from the same rows. Extra sections (a
quantisation diagnosis, a calibration sweep: see add_section) are titled tables that both
renderers show after the main one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

from edgecls import jsonio
from edgecls.atomic import check_folder_writable, write_text_atomic
from edgecls.bench.results import BenchReport, ModelResult, Section
from edgecls.console import (
    markup_cell,  # one implementation for every table of data; compare imports it here
)
from edgecls.errors import EdgeclsError
from edgecls.runtime.labels import clean_text, printable

JSON_NAME = "bench.json"
MARKDOWN_NAME = "bench.md"
COLUMNS = ("model", "format/quant", "size", "top-1", "top-k", "Δ vs float", "agree", "p50", "p90", "p99", "img/s",
           "init", "peak MB", "thr")  # times in ms (the caption says so)
MIN_CONSOLE_WIDTH = 144  # never squash the numbers: a narrower terminal wraps the lines instead
MAX_FLIPPED_SHOWN = 50
DASH = "—"


def add_section(report: BenchReport, key: str, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                notes: Sequence[str] = (), plots: Sequence[str] = (), data: Any = None) -> Section:
    """Add (or replace) an extra titled table: how other analyses plug into the bench's report.

    `plots` are PNG file names the caller wrote into the report folder; `data` is free-form JSON."""
    if not re.fullmatch(r"[a-z0-9_-]+", key):
        raise ValueError(f"section key {key!r}: use lower-case letters, digits, - and _")
    section = Section(key=key, title=title, columns=list(columns), rows=[list(r) for r in rows], notes=list(notes),
                      plots=list(plots), data=data)
    report.sections = [s for s in report.sections if s.key != key] + [section]
    return section


# ---------------------------------------------------------------------- the main table
def table_rows(report: BenchReport) -> list[list[str]]:
    """One row per model and thread count; a model's own figures only on its first row."""
    rows = []
    for model in report.models:
        paired = model.vs_reference
        is_reference = model.name == report.reference
        own = [
            model.name,
            f"{model.kind} {model.mode}",
            size_text(model.size_bytes) + (f" ×{model.size_ratio:.2f}" if model.size_ratio else ""),
            top1_text(model),
            DASH if model.accuracy is None else f"{model.accuracy.topk:.4f}",
            "ref" if is_reference else (f"{paired.delta_accuracy * 100:+.2f} pt" if paired else DASH),
            "ref" if is_reference else (f"{paired.agreement:.4f}" if paired else DASH),
        ]
        peak = peak_text(model)
        for i, timing in enumerate(model.latency or [None]):
            first = own if i == 0 else [""] * len(own)
            if timing is None:
                rows.append(first + [DASH] * 6 + [DASH])
                continue
            invoke = timing.invoke_ms
            rows.append(first + [
                ms_text(invoke.p50), ms_text(invoke.p90), ms_text(invoke.p99),
                f"{timing.throughput.images_per_s:.0f}", f"{timing.init_ms:.1f}",
                peak if i == 0 else "", str(timing.threads),
            ])
    return rows


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
    """The sentences every rendering starts with: what was measured, on what, how."""
    machine, data, settings = report.machine, report.data, report.settings
    reference = report.reference or "none (no float model)"
    what = (f"{data.images} {'held-out test' if data.part == 'test' else ''} images of {data.source}"
            .replace("  ", " ") + f"; float reference: {reference}; top-k is top-{settings.top_k}.")
    if data.part == "unlabelled":
        what = f"Latency only: {data.images} unlabelled images ({data.source}), no accuracy."
    lines = [
        what,
        f"p50/p90/p99: invoke alone, batch 1, ms per image; {settings.warmup} warm-up, then "
        f"{settings.rounds} interleaved rounds of {settings.per_round} images per model and thread count; "
        f"img/s at batch {settings.batch_size}; init: ms to load, verify and allocate; peak MB: a fresh "
        f"device-side process; size: K KiB, M MiB (× the float32 file). "
        f"Interpreter {machine.backend.name} {machine.backend.version}.",
    ]
    return lines + list(report.device.notes) + list(report.notes)


def render_bench_table(report: BenchReport) -> Any:
    """The main table as a rich Table (the terminal rendering)."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, title="edgecls bench", caption=markup_lines(headline(report)),
                  caption_justify="left", collapse_padding=True, pad_edge=False)
    for i, column in enumerate(COLUMNS):
        table.add_column(column, justify="left" if i < 2 else "right", no_wrap=i < 2)
    for row in table_rows(report):
        table.add_row(*map(markup_cell, row))
    return table




def markup_lines(lines: Sequence[str]) -> str:
    return "\n".join(markup_cell(line) for line in lines)


def print_tables(*tables: Any) -> None:
    """Print rich renderables at least MIN_CONSOLE_WIDTH wide (a pipe or a log gets whole rows)."""
    from rich.console import Console

    from edgecls.console import QuietPipeConsole

    console = QuietPipeConsole(width=max(MIN_CONSOLE_WIDTH, Console().width))
    for table in tables:
        console.print(table)


def render_sections(report: BenchReport) -> list[Any]:
    """Rich tables of the extra sections."""
    from rich import box
    from rich.table import Table

    tables = []
    for section in report.sections:
        table = Table(*map(markup_cell, section.columns), box=box.SIMPLE_HEAD,
                      title=markup_cell(section.title), caption=markup_lines(section.notes) or None,
                      caption_justify="left")
        for row in section.rows:
            table.add_row(*(markup_cell(_cell(v)) for v in row))
        tables.append(table)
    return tables


def _cell(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, float):
        return f"{value:.4g}"
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
        out += [f"## {section.title}", ""] + md_table(section.columns, [[_cell(v) for v in row]
                                                                        for row in section.rows]) + [""]
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
            accuracy = model.accuracy.per_class[name].accuracy
            cells.append(DASH if accuracy is None else f"{accuracy:.4f}")
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
        if json_path.is_dir():
            raise EdgeclsError(f"cannot write to --json {json_path}: it is a folder; give a file name")
        check_folder_writable("--json", json_path, json_path.parent)


def write_reports(report: BenchReport, report_dir: Optional[Path] = None, json_path: Optional[Path] = None,
                  log: Callable[[str], None] = print) -> list[Path]:
    """Plots, Markdown and JSON in `report_dir`, and/or the JSON at `json_path`; each file atomic."""
    from edgecls.bench.plots import write_plots

    written: list[Path] = []
    if report_dir is not None:
        plots, note = write_plots(report, report_dir)
        if note:
            log(f"note: {note}")
            report.notes = [n for n in report.notes if n != note] + [note]
        report.report_files = [*plots, MARKDOWN_NAME, JSON_NAME]
        written += [report_dir / name for name in plots]
        written.append(write_text_atomic(report_dir / MARKDOWN_NAME, markdown(report, plots)))
        written.append(write_text_atomic(report_dir / JSON_NAME, json_text(report)))
    same = report_dir is not None and json_path is not None and \
        Path(json_path).resolve() == (Path(report_dir) / JSON_NAME).resolve()
    if json_path is not None and not same:  # --json naming the report's own bench.json: written once
        written.append(write_text_atomic(json_path, json_text(report)))
    return written


def json_text(report: BenchReport) -> str:
    """bench.json's text: the report's to_json(), one key a line."""
    return jsonio.dumps(report.to_json(), indent=1, ensure_ascii=False) + "\n"
