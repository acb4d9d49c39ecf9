"""The work behind the device-side commands: `predict` (streaming output), `info` and `doctor`.

Imports only the runtime, rich and the standard library: never TensorFlow. rich is imported
where it is used: `predict` to a pipe or a file writes plain text without it (cold start).
"""

from __future__ import annotations

import builtins
import functools
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from typing import IO, Any

from edgecls.errors import EdgeclsError
from edgecls.runtime.classify import Classifier, Prediction
from edgecls.runtime.labels import clean_text, printable
from edgecls.runtime.sources import expand_images


@functools.cache
def _quiet_pipe_console() -> type:
    from rich.console import Console

    class QuietPipeConsole(Console):
        """A rich Console that ends quietly when the reader of a pipe is gone (`| head`)."""

        def on_broken_pipe(self) -> None:  # rich would exit 1; predict ends quietly instead (`| head`)
            self.quiet = True
            raise BrokenPipeError

    return QuietPipeConsole


def __getattr__(name: str) -> Any:
    # `from edgecls.console import QuietPipeConsole` still works, without importing rich at import time.
    if name == "QuietPipeConsole":
        return _quiet_pipe_console()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def escape(text: str) -> str:
    """rich.markup.escape, imported on first use."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


# ----------------------------------------------------------------------------- predict
def predict(
    model: str,
    images: Sequence[str],
    top_k: int = 1,
    fmt: str = "table",
    threads: int | None = None,
    labels: str | None = None,
    backend: str | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    input_range: tuple[float, float] | None = None,
    resize: str | None = None,
    fit: str | None = None,
) -> int:
    """Classify files, folders and globs, writing one row per image as it goes. Returns the exit code:
    0 all classified, 1 some images failed (each has an error row). Raises EdgeclsError (exit 2)
    for a bad model or when the arguments name no image at all. `input_range`, `resize`, `fit`: see Classifier."""
    out, err = out or sys.stdout, err or sys.stderr
    classifier = Classifier(model, num_threads=threads, labels=labels, backend=backend, input_range=input_range,
                            resize=resize, fit=fit)
    if classifier.labels_note:
        print(f"edgecls: warning: {clean_text(classifier.labels_note)}", file=err)
    stream = _some_image(expand_images(images))
    write = {"table": _table_writer, "json": _json_writer, "csv": _csv_writer}[fmt](out, classifier, top_k)
    started, total, failed = time.perf_counter(), 0, 0
    try:
        for prediction in classifier.classify_many(stream, top_k=top_k):
            write(prediction)
            out.flush()  # rows reach a pipe as they are made, not in 8 KB blocks
            total += 1
            failed += not prediction.ok
    except BrokenPipeError:  # `edgecls predict ... | head`: the reader has all it wants
        silence_closed_pipe(out)
        return 1 if failed else 0
    seconds = time.perf_counter() - started
    rate = f", {total / seconds:.1f} images/s" if seconds > 0 else ""
    note = f"{failed} failed (see the error rows)" if failed else "none failed"
    print(f"edgecls: {total} image{'' if total == 1 else 's'}, {note}, {seconds:.2f} s{rate}", file=err)
    return 1 if failed else 0


def silence_closed_pipe(out: IO[str]) -> None:
    """After the reader of `out` went away: point it at /dev/null, so that Python's own flush at
    exit does not complain either."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    except (AttributeError, OSError, ValueError):
        pass


def class_rows(classes: Sequence[Any]) -> list[dict[str, Any]]:
    """Top-k classes as JSON objects: index, label, score (6 decimals; null for a NaN or inf score a
    broken model gives: bare NaN is not JSON)."""
    return [{"index": c.index, "label": c.label, "score": round(c.score, 6) if math.isfinite(c.score) else None}
            for c in classes]


def _some_image(stream: Iterator[Any]) -> Iterator[Any]:
    """The stream unchanged, unless it holds no image at all: then a one-line error (exit 2)."""
    problems = []
    for item in stream:
        if not isinstance(item, Prediction):
            return chain(problems, [item], stream)
        problems.append(item)
    reasons = "; ".join(f"{printable(str(p.source))}: {printable(str(p.error))}"
                        if p.error and str(p.source) not in p.error else printable(str(p.error)) for p in problems)
    raise EdgeclsError(f"no images to classify: {reasons or 'no arguments'}")


def _name(prediction: Prediction) -> str:
    # A file name that is not valid UTF-8 (surrogate escapes) cannot be written to a UTF-8
    # stream or JSON as it is: show its odd bytes as \xNN.
    return printable(str(prediction.source))


def _reason(prediction: Prediction) -> str:
    # Error reasons quote file names too (no such file: NAME): cleaned the same way.
    return printable(str(prediction.error))


def json_ready(value: Any) -> Any:
    """A JSON document with every string (and key) made printable: a file name's undecodable bytes
    as \\xNN, so that it can be written to a strict UTF-8 stream."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {json_ready(k) if isinstance(k, str) else k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


LABEL_WIDTH = 24  # the least a label column gets in predict's table (longer labels end in …)
FILE_ROOM = 30  # columns of predict's table line kept for the file name


def _table_writer(out: IO[str], classifier: Classifier, top_k: int) -> Callable[[Prediction], None]:
    print_line = _line_printer(out)
    k = min(top_k, classifier.num_classes)
    longest = max(5, *(len(label) for label in classifier.labels))  # 5: the header 'label'
    # Labels get the line's width (less room for the file name), shared by the k classes; never under
    # LABEL_WIDTH, so a narrow terminal still shows a useful part of each.
    width = min(longest, max(LABEL_WIDTH, (_line_width(out) - FILE_ROOM) // k - 9))
    column = 7 + width  # "0.982  " + label
    header = "".join(f"{'score':<7}{'label':<{width}}  " for _ in range(k)) + "file"
    print_line(header, lambda: escape(header), "bold")

    def write(prediction: Prediction) -> None:
        name = clean_text(_name(prediction))
        if prediction.error:
            blank = " " * max(0, (column + 2) * k - 5)
            reason = clean_text(_reason(prediction))
            print_line(f"error{blank}{name}: {reason}",
                       lambda: f"[red]error[/]{blank}{escape(name)}: [red]{escape(reason)}[/]")
            return
        cells = [(c.score, _fit(c.label, width)) for c in prediction.classes]
        print_line("".join(f"{score:<7.3f}{label:<{width}}  " for score, label in cells) + name,
                   lambda: "".join(f"{score:<7.3f}{escape(label):<{width}}  " for score, label in cells)
                   + escape(name))

    return write


# Text that rich would not print as it is: markup-like brackets and backslashes (escaped, and the
# escape counts in the padding) and :name: (an emoji even when escaped). Such a line goes through rich.
_NOT_PLAIN = re.compile(r"[\[\\]|:\S*:")


def _line_printer(out: IO[str]) -> Callable[[str, Callable[[], str], str | None], None]:
    """print_line(plain, markup, style): one line of the predict table. rich prints it on a terminal
    (bold header, red errors); to a pipe or a file, where rich would write the plain text anyway, it
    is written directly, so that `edgecls predict` need not import rich (about 5 MiB and 40 ms)."""
    console = None

    def print_line(plain: str, markup: Callable[[], str], style: str | None = None) -> None:
        nonlocal console
        if console is None and _plain_stream(out) and not _NOT_PLAIN.search(plain):
            out.write(plain + "\n")
            return
        if console is None:
            console = _quiet_pipe_console()(file=out, highlight=False, soft_wrap=True)
        console.print(markup(), style=style)

    return print_line


def _line_width(out: IO[str]) -> int:
    """The columns a line of `out` has, as rich would take them: $COLUMNS, else the terminal's, else 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        if out.isatty():
            return os.get_terminal_size(out.fileno()).columns
    except (AttributeError, ValueError, OSError):
        pass
    return 80


def _plain_stream(out: IO[str]) -> bool:
    """Whether a rich Console on `out` would write plain text: no terminal, and none of the things
    rich 13-15 take as one (FORCE_COLOR, TTY_COMPATIBLE, a notebook, IDLE)."""
    if "FORCE_COLOR" in os.environ or "TTY_COMPATIBLE" in os.environ or hasattr(builtins, "get_ipython"):
        return False
    if getattr(sys.stdin, "__module__", "").startswith("idlelib"):
        return False
    try:
        return not out.isatty()
    except (AttributeError, ValueError):
        return True


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _json_writer(out: IO[str], classifier: Classifier, top_k: int) -> Callable[[Prediction], None]:
    import json

    def write(prediction: Prediction) -> None:
        row: dict[str, Any] = {"file": _name(prediction)}
        if prediction.error:
            row["error"] = _reason(prediction)
        else:
            row["classes"] = class_rows(prediction.classes)
        out.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")

    return write


def _csv_writer(out: IO[str], classifier: Classifier, top_k: int) -> Callable[[Prediction], None]:
    import csv

    plain = csv.writer(out, lineterminator="\n")
    quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)  # csv leaves a lone \r unquoted otherwise
    plain.writerow(["file", "rank", "index", "label", "score", "error"])

    def row(values: list[Any]) -> None:
        (quoted if any("\r" in str(v) for v in values) else plain).writerow(values)

    def write(prediction: Prediction) -> None:
        if prediction.error:
            row([_name(prediction), "", "", "", "", _reason(prediction)])
        for rank, c in enumerate(prediction.classes, 1):
            row([_name(prediction), rank, c.index, printable(c.label), f"{c.score:.6f}", ""])

    return write


# ----------------------------------------------------------------------------- info
INFO_LABELS = 12  # labels shown by `edgecls info` (--json has them all)


def show_info(report: dict[str, Any], out: IO[str] | None = None) -> None:
    """Print an `inspect_model` report for a person."""
    from rich.table import Table

    console = _quiet_pipe_console()(file=out or sys.stdout, highlight=False, soft_wrap=True)
    quant = report["quantization"]
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("model", markup_cell(report["file"]))
    facts.add_row("size", f"{report['size_bytes']:,} bytes   sha256 {report['sha256'][:16]}…")
    facts.add_row("read by", f"{report['backend']['name']} {report['backend']['version']}")
    mode = quant["detected"] + (", weights per channel" if quant["weights_per_channel"] else "")
    if quant.get("declared"):
        mode += f"   (metadata says {quant['declared']})"
    facts.add_row("quantisation", escape(mode))
    facts.add_row("graph", f"{report['subgraphs']} subgraph(s), {report['tensors']} tensors")
    facts.add_row("ops", escape(", ".join(f"{name} x{count}" for name, count in report["ops"].items()) or "none"))
    classifier = report["classifier"]
    if classifier["image_classifier"]:
        spec = classifier["input"]
        labels = classifier["labels"]
        facts.add_row("classifier", f"{spec['height']}x{spec['width']} {spec['color']}, batch {spec['batch']}, "
                                    f"{classifier['num_classes']} classes")
        facts.add_row("preprocessing", f"resize {spec['resize']}, {spec['fit']} (from the "
                                       f"{'metadata' if spec['preprocessing_source'] == 'metadata' else 'defaults'})")
        # One label a line with its index: ImageNet names hold commas ("tabby, tabby cat").
        shown = [f"{i:>{len(str(len(labels) - 1))}}  {label}" for i, label in enumerate(labels[:INFO_LABELS])]
        more = f"… {len(labels) - INFO_LABELS} more; " if len(labels) > INFO_LABELS else ""
        facts.add_row("labels", escape("\n".join(shown + [f"({more}from {clean_text(classifier['labels_source'])})"])))
    else:
        facts.add_row("classifier", escape(f"not an image classifier edgecls can run: {classifier['reason']}"))
    console.print(facts)

    tensors = Table(title=None, show_edge=False, box=None, pad_edge=False)
    for name in ("", "name", "shape", "dtype", "scale", "zero point", "per-channel"):
        tensors.add_column(name, style="bold" if name == "" else None)
    for kind in ("inputs", "outputs"):
        for t in report[kind]:
            shape = "[" + ", ".join(str(d) if d >= 0 else "?" for d in t["shape_signature"]) + "]"  # ? = dynamic
            tensors.add_row(kind[:-1], escape(clean_text(t["name"])), escape(shape), t["dtype"],
                            _short(t["scale"]), _short(t["zero_point"]), "yes" if t["per_channel"] else "no")
    console.print()
    console.print(tensors)
    metadata = report["metadata"]
    import json

    console.print()
    if metadata is None:
        console.print("metadata  none (a third-party model: labels from --labels or labels.txt beside it)")
    else:
        shown = {k: v for k, v in metadata.items() if k != "labels"}
        console.print("[bold]metadata[/]")
        for line in json.dumps(shown, indent=2, sort_keys=True).splitlines():  # clean_text would eat newlines
            console.print(escape(clean_text(line)))


def _short(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return f"{len(value)} values"
    if isinstance(value, float):
        text = f"{value:.8g}"
        return text if "." in text or "e" in text else text + ".0"
    return str(value)


# ----------------------------------------------------------------------------- doctor
def show_doctor(report: dict[str, Any], out: IO[str] | None = None) -> None:
    from rich.table import Table

    from edgecls.runtime.cpu import features_text

    console = _quiet_pipe_console()(file=out or sys.stdout, highlight=False, soft_wrap=True)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    backend = report["backend"]
    # Every value comes from the machine or the environment ($EDGECLS_BACKEND, /proc/cpuinfo):
    # shown as text, never read as rich markup or passed on as terminal escapes.
    found = (markup_cell(f"{backend['name']} {backend['version']}") if backend["name"]
             else f"[red]none[/]: {markup_cell(backend['error'])}")
    if report["backend_forced"]:
        found += markup_cell(f"   (forced by $EDGECLS_BACKEND={report['backend_forced']})")
    installed = ", ".join(f"{name} {version}" for name, version in report["backends_installed"].items() if version)
    rows = [
        ("edgecls", report.get("edgecls", "?")),
        ("platform", report["platform"]),
        ("architecture", f"{report['arch']} ({report['python_bits']}-bit Python)"),
        ("cpu", f"{report['cpu']}, {report['cpu_count']} cores"),
        *([("board", report["board"])] if report.get("board") else []),
        ("cpu features", features_text(report.get("cpu_features") or {})),
        ("memory", f"{report['memory_mb']} MB" if report["memory_mb"] else "unknown"),
        ("python", report["python"]),
        ("numpy", report["numpy"]),
        ("pillow", report["pillow"]),
        ("interpreter", found),
        ("installed", installed or "no interpreter package"),
        ("tensorflow", "installed (used only by train/export, and as the last-resort interpreter)"
         if report["tensorflow_installed"] else "not installed (not needed on a device)"),
        ("live input", _capture_row(report.get("capture_backends") or {})),
    ]
    for key, value in rows:
        grid.add_row(key, value if key == "interpreter" else markup_cell(value))
    console.print(grid)
    for warning in report["warnings"]:
        console.print(f"[yellow]warning:[/] {markup_cell(warning)}")
    if report["ok"] and not report["warnings"]:
        console.print("[green]ok[/]: this machine can run edgecls predict and bench on .tflite models")


def _capture_row(found: dict[str, Any]) -> str:
    """What `predict --source` can read with, and how to get what is missing."""
    parts = [f"picamera2 {found['picamera2']}" if found.get("picamera2") else
             "no picamera2 (Raspberry Pi OS: sudo apt install python3-picamera2, venv with --system-site-packages)",
             f"opencv {found['opencv']} (cameras, video files, rtsp/http streams)" if found.get("opencv") else
             "no OpenCV (pip install 'edgecls[camera]' for cameras, video files and streams)"]
    return "; ".join(parts)


def markup_cell(value: Any) -> str:
    """Text from data (model and file names, CPU names, notes) as a rich cell: shown as it is, never
    read as markup ([bold] stays "[bold]"), without control characters or undecodable bytes."""
    return escape(clean_text(printable(str(value))))
