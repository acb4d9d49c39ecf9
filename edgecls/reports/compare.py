"""`edgecls bench compare A.json B.json ...`: bench reports from several machines or device
profiles merged into one table (and a plot), each row saying where it was measured."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from edgecls import jsonio
from edgecls.atomic import write_text_atomic
from edgecls.bench.results import BenchReport
from edgecls.bench.schema import read_report_file
from edgecls.errors import EdgeclsError
from edgecls.reports.report import (
    DASH,
    correct_text,
    markup_cell,
    markup_lines,
    md_table,
    ms_text,
    peak_text,
    top1_text,
)

FORMAT = "edgecls.bench-compare/1"
COLUMNS = ("report", "measured on", "model", "format/quant", "top-1", "correct", "agree", "p50", "p99", "img/s",
           "peak MB", "thr")  # times in ms
# The narrow layout: each report's rows under a line naming it and where it was measured; the
# quantisation alone; img/s and peak MB left to compare.md.
NARROW = ("model", "quant", "top-1", "correct", "agree", "p50", "p99", "thr")
LEGEND = ("top-1: the share of the report's test images whose first answer is right (correct: how many); agree: "
          "top-1 agreement with the report's float reference; p50/p99: invoke alone, batch 1, ms per image; img/s: "
          "throughput at the report's batch size; peak MB: a fresh device-side process; thr: interpreter threads.")


def report_labels(paths: Sequence[Path]) -> list[str]:
    """Short names for the reports: the file stem, with as many of its folders as it takes to tell
    them apart when stems repeat (runs/a/bench/bench.json and runs/b/bench/bench.json: a/bench/bench)."""
    def label(path: Path, depth: int) -> str:
        parts = path.with_suffix("").parts
        return "/".join(parts[-(depth + 1):])

    labels = [label(p, 0) for p in paths]
    for depth in range(1, max((len(p.parts) for p in paths), default=1)):
        if len(set(labels)) == len(labels):
            break
        labels = [label(p, depth) if labels.count(labels[i]) > 1 else labels[i] for i, p in enumerate(paths)]
    return labels


def load_reports(paths: Sequence[Path]) -> list[tuple[Path, BenchReport]]:
    """Each file read and checked against the schema. One-line errors."""
    if len(paths) < 1:
        raise EdgeclsError("give the bench reports (JSON) to compare")
    return [(path, read_report_file(path)) for path in map(Path, paths)]


def where(report: BenchReport, short: bool = False) -> str:
    """Where a report's figures come from, in words that cannot be mistaken for a device's own
    when they are not. `short` gives a table cell (rpi5 profile on x86_64), else a sentence."""
    machine, device = report.machine, report.device
    profile = device.profile
    cpus = len(device.cpus_used or []) or machine.usable_cpus
    host = f"{machine.arch}" if short else f"{machine.arch} host, {cpus} CPUs"
    if report.remote:  # benched over SSH by bench --remote: the device by the name it was given
        board = machine.board or f"{machine.arch}, {cpus} CPUs"
        # the report column names the device already: the cell says what it is
        text = ((machine.board or f"{machine.arch} device") if short
                else f"{report.remote.target} ({board})")
        if profile is not None and not device.is_device:
            text += f" under the {profile.key if short else profile.name} profile"
    elif profile is None:
        text = f"{host} host" if short else host
    elif device.is_device:
        text = profile.key if short else profile.name
    else:
        text = f"{profile.key if short else profile.name} profile on {host}"
    if machine.emulated:
        text += " (emulated)" if short else f" (emulated: {machine.emulated})"
    return text


def merged_rows(reports: list[tuple[Path, BenchReport]]) -> list[list[str]]:
    rows = []
    for name, (_path, report) in zip(report_labels([p for p, _ in reports]), reports):
        label = where(report, short=True)
        for model in report.models:
            paired = model.vs_reference
            own = [name, label, model.name, f"{model.kind} {model.mode}", top1_text(model), correct_text(model),
                   "ref" if model.name == report.reference
                   else (f"{paired.agreement:.4f}" if paired else DASH)]
            peak = peak_text(model)
            for t in model.latency or [None]:
                if t is None:
                    rows.append(own + [DASH] * 5)  # p50, p99, img/s, peak MB, thr
                    continue
                rows.append(own + [ms_text(t.invoke_ms.p50), ms_text(t.invoke_ms.p99),
                                   f"{t.throughput.images_per_s:.0f}", peak, str(t.threads)])
    return rows


def compare(paths: Sequence[Path]) -> dict[str, Any]:
    """The merged document: sources, columns, rows (strings, as shown)."""
    reports = load_reports(paths)
    return {
        "format": FORMAT,
        "reports": [{"file": str(path), "name": name, "measured_on": where(r), "is_device": r.device.is_device,
                     "emulated": r.machine.emulated, "created": r.created, "cpu": r.machine.cpu,
                     "arch": r.machine.arch, "profile": r.device.profile.key if r.device.profile else None,
                     "notes": list(r.device.notes)}
                    for name, (path, r) in zip(report_labels([p for p, _ in reports]), reports)],
        "columns": list(COLUMNS),
        "rows": merged_rows(reports),
        "warnings": consistency_warnings(reports),
        "_reports": reports,  # for the plot; dropped before writing
    }


def consistency_warnings(reports: list[tuple[Path, BenchReport]]) -> list[str]:
    """Say so when the reports did not bench the same .tflite files on the same test images:
    their rows are then not a like-for-like comparison of machines."""
    def models(report: BenchReport) -> frozenset:
        return frozenset(m.sha256 for m in report.tflite_models())

    def data(report: BenchReport) -> tuple:
        d = report.data
        # the pixels' digest where the report has one; else what the report does say
        return d.content_sha256 or (d.images, tuple(d.classes), tuple(d.shape or ()))

    warnings = []
    if len({models(r) for _, r in reports}) > 1:
        warnings.append("warning: these reports benched different .tflite files (by SHA-256): compare their rows "
                        "as different models, not as the same model on different machines")
    if len({data(r) for _, r in reports}) > 1:
        warnings.append("warning: these reports scored different test images: their accuracy figures are not "
                        "comparable")
    return warnings


def render_compare_table(merged: dict[str, Any]) -> Any:
    """The merged table for the terminal: every column where it fits the width, else one table per report
    (NARROW, titled with the report's name and where it was measured), whose caption says where the columns
    it leaves out are. tables.data_table draws each: names and figures whole, a table still too wide
    stacked (the model and thread count repeated), never a name folded."""
    from rich.console import Group
    from rich.text import Text

    from edgecls.tables import Fitted, data_table

    notes = [f"{r['name']}: {r['measured_on']}; CPU {r['cpu']}. " + " ".join(r["notes"])
             for r in merged["reports"]]
    notes += merged.get("warnings", [])
    rows = [_cells(row) for row in merged["rows"]]

    def table(columns: Sequence[str], members: list[dict[str, str]], title: str, caption: Optional[list[str]]) -> Any:
        return data_table(columns, [[member[c] for c in columns] for member in members], title=title,
                          caption=markup_lines(caption) if caption else None, names=TEXT_COLUMNS, key=KEY_COLUMNS)

    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault((row["report"], row["measured on"]), []).append(row)
    left_out = [c for c in COLUMNS if c not in NARROW and c not in ("report", "measured on", "format/quant")]
    per_report = Group("[bold]edgecls bench compare[/]",  # the caption under them all, as wide as the terminal
                       *(table(NARROW, members, f"{name}: {where}", None) for (name, where), members in groups.items()),
                       Text.from_markup(markup_lines(notes + [LEGEND, f"{' and '.join(left_out)}: compare.md "
                                                                       "(--report)."])))
    return Fitted(table(COLUMNS, rows, "edgecls bench compare", notes + [LEGEND]), per_report)


TEXT_COLUMNS = ("report", "measured on", "model", "format/quant", "quant")
KEY_COLUMNS = ("model", "thr")  # repeated in each stacked table: a row's model and thread count


def _cells(row: list[str]) -> dict[str, str]:
    """A merged row's cells by column (rich markup), with the quantisation alone ("quant") for NARROW."""
    found = {column: markup_cell(value) for column, value in zip(COLUMNS, row)}
    found["quant"] = markup_cell(row[COLUMNS.index("format/quant")].split(" ", 1)[-1])
    return found


def write_outputs(merged: dict[str, Any], report_dir: Optional[Path], json_path: Optional[Path]) -> list[Path]:
    doc = {k: v for k, v in merged.items() if not k.startswith("_")}
    text = jsonio.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    written = []
    if report_dir is not None:
        from edgecls.reports.plots import pyplot, save

        plot_name = None
        plt = pyplot()
        if plt is not None:
            names = [r["name"] for r in merged["reports"] if r.get("file")]  # as the table names them
            plot_name = save(plt, latency_bars(plt, merged["_reports"], names), report_dir / "compare.png")
            written.append(report_dir / plot_name)
        lines = ["# edgecls bench compare", ""]
        lines += [f"- **{r['name']}** ({r['created']}): {r['measured_on']}; CPU {r['cpu']}."
                  + "".join(f" {n}" for n in r["notes"]) for r in doc["reports"]]
        lines += [f"- {w}" for w in doc.get("warnings", [])]
        lines += ["", LEGEND]
        lines += [""] + md_table(COLUMNS, doc["rows"]) + [""]
        lines += ([f"![p50 invoke latency]({plot_name})", ""] if plot_name
                  else ["(plot skipped: matplotlib is not installed)", ""])
        written.append(write_text_atomic(report_dir / "compare.md", "\n".join(lines)))
        written.append(write_text_atomic(report_dir / "compare.json", text))
    same = report_dir is not None and json_path is not None and \
        Path(json_path).resolve() == (Path(report_dir) / "compare.json").resolve()
    if json_path is not None and not same:  # --json naming the report's own compare.json: written once
        written.append(write_text_atomic(json_path, text))
    return written


def latency_bars(plt: Any, reports: list[tuple[Path, BenchReport]], names: Optional[list[str]] = None) -> Any:
    """Horizontal bars of p50 invoke latency (to p90), one per report, model and thread count;
    hatched where the figures are not a device's own (a host under a profile, or emulation)."""
    labels, p50s, p90s, colors, hatches = [], [], [], [], []
    names = names or report_labels([p for p, _ in reports])
    for i, (name, (_, report)) in enumerate(zip(names, reports)):
        own = report.device.is_device or report.device.profile is None
        own = own and not report.machine.emulated
        for model in report.models:
            for t in model.latency:
                labels.append(f"{name} · {model.name} · {t.threads} thr")
                p50s.append(t.invoke_ms.p50)
                p90s.append(t.invoke_ms.p90)
                colors.append(f"C{i % 10}")
                hatches.append("" if own else "//")
    figure, ax = plt.subplots(figsize=(9, 0.35 * max(len(labels), 4) + 1.2))
    positions = list(range(len(labels)))
    bars = ax.barh(positions, p50s, color=colors, xerr=[[0] * len(p50s), [b - a for a, b in zip(p50s, p90s)]],
                   capsize=2)
    for bar, hatch in zip(bars, hatches):
        bar.set_hatch(hatch)
    if p50s and max(p50s) > 20 * max(min(p50s), 1e-9):  # e.g. emulated beside native: keep both readable
        from edgecls.plotting import plain_log_axis

        plain_log_axis(ax)
    ax.set_yticks(positions, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("invoke latency per image, ms (p50, bar to p90)")
    ax.set_title("Bench reports compared (colour: report; hatched: not the device's own figures)", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    return figure
