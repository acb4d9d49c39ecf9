"""The work behind the device-side commands: `predict` (streaming output), `info` and `doctor`.

Imports only the runtime, rich and the standard library: never TensorFlow.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgecls.errors import EdgeclsError
from edgecls.runtime.classify import Classifier, Prediction
from edgecls.runtime.labels import clean_text, printable
from edgecls.runtime.sources import expand_images


class QuietPipeConsole(Console):
    """A rich Console that ends quietly when the reader of a pipe is gone (`| head`)."""

    def on_broken_pipe(self) -> None:  # rich would exit 1; predict ends quietly instead (`| head`)
        self.quiet = True
        raise BrokenPipeError


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
) -> int:
    """Classify files, folders and globs, writing one row per image as it goes. Returns the exit code:
    0 all classified, 1 some images failed (each has an error row). Raises EdgeclsError (exit 2)
    for a bad model or when the arguments name no image at all. `input_range`: see Classifier."""
    out, err = out or sys.stdout, err or sys.stderr
    classifier = Classifier(model, num_threads=threads, labels=labels, backend=backend, input_range=input_range)
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
    """Top-k classes as JSON objects: index, label, score (6 decimals)."""
    return [{"index": c.index, "label": c.label, "score": round(c.score, 6)} for c in classes]


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


def _table_writer(out: IO[str], classifier: Classifier, top_k: int) -> Callable[[Prediction], None]:
    console = QuietPipeConsole(file=out, highlight=False, soft_wrap=True)
    k = min(top_k, classifier.num_classes)
    width = min(max(5, *(len(label) for label in classifier.labels)), 24)  # 5: the header 'label'
    column = 7 + width  # "0.982  " + label
    console.print(escape("".join(f"{'score':<7}{'label':<{width}}  " for _ in range(k)) + "file"), style="bold")

    def write(prediction: Prediction) -> None:
        name = escape(clean_text(_name(prediction)))
        if prediction.error:
            blank = " " * max(0, (column + 2) * k - 5)
            console.print(f"[red]error[/]{blank}{name}: [red]{escape(clean_text(_reason(prediction)))}[/]")
            return
        cells = "".join(f"{c.score:<7.3f}{escape(_fit(c.label, width)):<{width}}  " for c in prediction.classes)
        console.print(cells + name)

    return write


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _json_writer(out: IO[str], classifier: Classifier, top_k: int) -> Callable[[Prediction], None]:
    def write(prediction: Prediction) -> None:
        row: dict[str, Any] = {"file": _name(prediction)}
        if prediction.error:
            row["error"] = _reason(prediction)
        else:
            row["classes"] = class_rows(prediction.classes)
        out.write(json.dumps(row, ensure_ascii=False) + "\n")

    return write


def _csv_writer(out: IO[str], classifier: Classifier, top_k: int) -> Callable[[Prediction], None]:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "rank", "index", "label", "score", "error"])

    def write(prediction: Prediction) -> None:
        if prediction.error:
            writer.writerow([_name(prediction), "", "", "", "", _reason(prediction)])
        for rank, c in enumerate(prediction.classes, 1):
            writer.writerow([_name(prediction), rank, c.index, c.label, f"{c.score:.6f}", ""])

    return write


# ----------------------------------------------------------------------------- info
def show_info(report: dict[str, Any], out: IO[str] | None = None) -> None:
    """Print an `inspect_model` report for a person."""
    console = QuietPipeConsole(file=out or sys.stdout, highlight=False, soft_wrap=True)
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
        shown = ", ".join(labels[:12]) + (f", … ({len(labels)} in all)" if len(labels) > 12 else "")
        facts.add_row("classifier", f"{spec['height']}x{spec['width']} {spec['color']}, batch {spec['batch']}, "
                                    f"{classifier['num_classes']} classes")
        facts.add_row("labels", escape(f"{shown}   (from {clean_text(classifier['labels_source'])})"))
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
    console = QuietPipeConsole(file=out or sys.stdout, highlight=False, soft_wrap=True)
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
