"""The work behind the device-side commands: `predict` (streaming output), `info` and `doctor`.

Imports only the runtime, rich and the standard library: never TensorFlow. rich is imported
where it is used: `predict` to a pipe or a file writes plain text without it (cold start).
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import IO, Any

from edgecls.errors import EdgeclsError
from edgecls.runtime.classify import Classifier, Prediction
from edgecls.runtime.sources import expand_images
from edgecls.text import clean_text, printable


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
    unknown: bool = True,
    collect: str | None = None,
    collect_when: Sequence[str] | None = None,
    collect_max_mb: float | None = None,
    collect_reserve_mb: float | None = None,
    shadow: str | None = None,
    shadow_every: int | None = None,
) -> int:
    """Classify files, folders and globs, writing one row per image as it goes. Returns the exit code:
    0 all classified, 1 some images failed (each has an error row). Raises EdgeclsError (exit 2)
    for a bad model or when the arguments name no image at all. `input_range`, `resize`, `fit`: see
    Classifier; `unknown=False` (--no-unknown): the raw answer of a model with an open-set rule;
    `collect` (a folder) and the rest: keep the images the rules pick (edgecls.runtime.collect)."""
    out, err = out or sys.stdout, err or sys.stderr
    classifier = Classifier(model, num_threads=threads, labels=labels, backend=backend, input_range=input_range,
                            resize=resize, fit=fit, open_set=unknown)
    collector = None
    if any(v is not None for v in (collect, collect_when, collect_max_mb, collect_reserve_mb, shadow, shadow_every)):
        from edgecls.runtime.collect import collect_options, collector_for

        collector = collector_for(classifier, collect_options(collect, collect_when, collect_max_mb, collect_reserve_mb,
                                                              shadow, shadow_every),
                                  lambda line: print(f"edgecls: {line}", file=err, flush=True))
    if classifier.labels_note:
        print(f"edgecls: warning: {clean_text(classifier.labels_note)}", file=err)
    named_none = [0]  # arguments that named no image (missing, an empty folder, a pattern matching nothing)

    def counted(items: Iterator[Any]) -> Iterator[Any]:
        for item in items:
            named_none[0] += isinstance(item, Prediction)
            yield item

    stream = counted(some_image(expand_images(images)))
    write = {"table": _table_writer, "json": _json_writer, "csv": _csv_writer}[fmt](out, classifier, top_k)
    asked = max(top_k, 2) if collector is not None and collector.needs_two else top_k
    started, total, failed, unknowns = time.perf_counter(), 0, 0, 0
    try:
        for prediction in classifier.classify_many(stream, top_k=asked):
            if collector is not None and prediction.ok:
                collector.consider(prediction.classes, prediction.unknown, prediction.typicality, prediction.source,
                                   path=Path(prediction.source) if isinstance(prediction.source, (str, Path))
                                   else None)
                if asked != top_k:
                    prediction = dataclasses.replace(prediction, classes=prediction.classes[:top_k])
            write(prediction)
            out.flush()  # rows reach a pipe as they are made, not in 8 KB blocks
            total += 1
            failed += not prediction.ok
            unknowns += prediction.unknown
    except BrokenPipeError:  # `edgecls predict ... | head`: the reader has all it wants
        silence_closed_pipe(out)
        return 1 if failed else 0
    except KeyboardInterrupt:
        if collector is not None:  # what was kept before Ctrl-C stays: say how much
            print(f"edgecls: {collector.summary()}", file=err)
        raise
    unknown_count = unknowns if classifier.open_set_rule is not None else None
    print(f"edgecls: {batch_summary(total, failed, named_none[0], time.perf_counter() - started, unknown_count)}",
          file=err)
    if collector is not None:
        print(f"edgecls: {collector.summary()}", file=err)
    return 1 if failed else 0


def batch_summary(rows: int, failed: int, named_none: int, seconds: float, unknowns: int | None = None) -> str:
    """predict's closing line: the images (an argument that named no image, a missing file, an empty folder or
    a pattern matching nothing, is an error row but no image), how many failed, how many were not found, the
    unknowns (None: a model without the rule) and the rate: '1 image, none failed, 1 not found (see the error
    rows), 0.01 s, ...'."""
    images, failed_images = rows - named_none, failed - named_none
    parts = [f"{images} image{'' if images == 1 else 's'}",
             f"{failed_images} failed" if failed_images else "none failed"]
    if named_none:
        parts.append(f"{named_none} not found")
    if failed:
        parts[-1] += " (see the error rows)"
    if unknowns is not None:
        parts.append(f"{unknowns} unknown")
    parts.append(f"{seconds:.2f} s" + (f", {images / seconds:.1f} images/s" if seconds > 0 else ""))
    return ", ".join(parts)


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


UNKNOWN = "unknown"  # the answer shown for an image the model's open-set rule rejects


def verdict_fields(result: Any) -> dict[str, Any]:
    """The open-set verdict of a Prediction or FramePrediction as JSON fields ({} for a model without a rule)."""
    if result.typicality is None:
        return {}
    return {"unknown": bool(result.unknown), "typicality": round(result.typicality, 4)}


def answer_text(result: Any) -> str:
    """What the row answers: "unknown" when the rule rejects the image, else the top label."""
    return UNKNOWN if result.unknown else result.classes[0].label


def some_image(stream: Iterator[Any], verb: str = "classify") -> Iterator[Any]:
    """The stream of expand_images unchanged, unless it holds no image at all: then a one-line error
    (exit 2) naming why, before any model is loaded ("no images to classify: a.png: no such file")."""
    problems = []
    for item in stream:
        if not isinstance(item, Prediction):
            return chain(problems, [item], stream)
        problems.append(item)
    reasons = "; ".join(f"{printable(str(p.source))}: {printable(str(p.error))}"
                        if p.error and str(p.source) not in p.error else printable(str(p.error)) for p in problems)
    raise EdgeclsError(f"no images to {verb}: {reasons or 'no arguments'}")


def _name(prediction: Prediction) -> str:
    # A file name that is not valid UTF-8 (surrogate escapes) cannot be written to a UTF-8
    # stream or JSON as it is: show its odd bytes as \xNN.
    return printable(str(prediction.source))


def _reason(prediction: Prediction) -> str:
    """A row's error without its own file name: the row names the file once (a decoder's message ends with
    the path it was given, 'no such file: NAME', for callers without rows). Cleaned as names are (printable)."""
    reason, source = str(prediction.error), str(prediction.source)
    if reason.endswith(f": {source}"):
        reason = reason[:-len(source) - 2]
    return printable(reason)


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


LABEL_WIDTH = 12  # the least a label column gets in a terminal; a longer label wraps onto the next line
PIPE_LABEL_WIDTH = 24  # labels are padded to this on a pipe (a longer one is written whole, the line longer)
FILE_ROOM = 30  # the least room of predict's table line kept for the file name (a third of a wide one)
SCORE = 5  # "0.982"
GAP = 2


def _table_writer(out: IO[str], classifier: Classifier, top_k: int) -> Callable[[Prediction], None]:
    """predict's table: a line per image, `score label` for each of the k classes, then the file; where
    the k classes do not fit the terminal beside the file, a line per class (the file on the first). A
    label too long for its column wraps onto the next line (never cut); a file name too long for its
    column goes whole on a line of its own under the row. A pipe or a file gets a line per image, whole,
    whatever $COLUMNS says (grep reads it, not a person)."""
    print_line = _line_printer(out)
    k = min(top_k, classifier.num_classes)
    longest = max(5, *(len(label) for label in classifier.labels))  # 5: the header 'label'
    verdict = verdict_columns(classifier, longest)
    total = terminal_width(out)
    per_line = k
    width = min(longest, PIPE_LABEL_WIDTH)
    if total is not None:
        room = total - max(FILE_ROOM, total // 3) - verdict.width  # for the classes, beside the file
        width = min(longest, room // k - SCORE - 2 * GAP)
        if width < min(longest, LABEL_WIDTH):  # k classes do not fit on one line: one a line
            per_line, width = 1, min(longest, max(LABEL_WIDTH, room - SCORE - 2 * GAP))
    file_width = None if total is None else total - verdict.width - per_line * (SCORE + width + 2 * GAP)
    widths = verdict.widths + [SCORE, width] * per_line
    header = verdict.header + [("score", None), ("label", None)] * per_line + [("file", None)]
    _print_grid(print_line, [header], widths, file_width, style="bold")

    def write(prediction: Prediction) -> None:
        name = clean_text(_name(prediction))
        if prediction.error:
            reason = clean_text(_reason(prediction))
            cells = [("error", "red")] + [("", None)] * (len(widths) - 1) + [(f"{name}: {reason}", None)]
            _print_grid(print_line, [cells], widths, file_width)
            return
        classes = [(f"{c.score:.3f}", c.label) for c in prediction.classes]
        lines = [classes[i:i + per_line] for i in range(0, len(classes), per_line)]
        beside = file_width is None or len(name) <= file_width
        rows = [(verdict.cells(prediction) if i == 0 else verdict.blank())
                + [cell for score, label in line for cell in ((score, None), (label, None))]
                + [(name if i == 0 and beside else "", None)] for i, line in enumerate(lines)]
        _print_grid(print_line, rows, widths, file_width)
        if not beside:  # whole on a line of its own under the row (a path is copied, not read in pieces)
            _print_own_line(print_line, name, total, total - file_width)

    return write


def _print_own_line(print_line: Callable[..., None], text: str, total: int, column: int) -> None:
    """`text` on a line of its own: at `column` where it fits from there, else indented by GAP, else from the
    first column; wrapped after a "/" only when it is wider than the terminal itself."""
    indent = next((at for at in (column, GAP) if at + len(text) <= total), 0)
    for part in _cell_wrapper(total).wrap(text) if len(text) > total else [text]:
        print_line(" " * indent + part, lambda part=part: " " * indent + escape(part))


def terminal_width(out: IO[str]) -> int | None:
    """output_width when `out` is a terminal, else None: a pipe or a file gets whole lines even with
    $COLUMNS set (a shell exports it to scripts too)."""
    try:
        return output_width(out) if out.isatty() else None
    except (AttributeError, ValueError):
        return None


class VerdictColumns:
    """The table's `answer` and `typical` columns for a model with an open-set rule (none without)."""

    def __init__(self, enabled: bool, answer_width: int):
        self.enabled = enabled
        self.widths = [answer_width, TYPICAL_WIDTH] if enabled else []
        self.header: list[tuple[str, str | None]] = [("answer", None), ("typical", None)] if enabled else []
        self.width = sum(self.widths) + GAP * len(self.widths)  # the columns they take, gaps included

    def cells(self, result: Any) -> list[tuple[str, str | None]]:
        if not self.enabled:
            return []
        typical = "—" if result.typicality is None else f"{result.typicality:.3f}"
        return [(answer_text(result), "yellow" if result.unknown else None), (typical, None)]

    def blank(self) -> list[tuple[str, str | None]]:
        return [("", None)] * len(self.widths)


ANSWER_WIDTH = 16  # the most the answer column takes (a longer label wraps in it)
TYPICAL_WIDTH = 7  # "typical" and 0.000


def verdict_columns(classifier: Classifier, longest_label: int) -> VerdictColumns:
    return VerdictColumns(classifier.open_set_rule is not None, max(len(UNKNOWN), min(longest_label, ANSWER_WIDTH)))


@functools.cache
def _cell_wrapper(width: int) -> Any:
    """A textwrap wrapper that breaks at spaces and after a "/" (paths wrap at their folders), and folds a
    word longer than the width: text in a cell is wrapped, never cut."""
    import textwrap

    class CellWrapper(textwrap.TextWrapper):
        wordsep_simple_re = re.compile(r"(\s+|(?<=/)(?=[^\s/]))")

    return CellWrapper(width=width, break_on_hyphens=False)


def _print_grid(print_line: Callable[..., None], rows: list[list[tuple[str, str | None]]], widths: list[int],
                last_width: int | None, style: str | None = None) -> None:
    """Rows of (text, style) cells as aligned lines: each cell padded to its column's width (the last
    column to `last_width`, or whole when None), text too long for its column wrapped onto more lines."""
    for row in rows:
        columns = widths + [last_width]
        wrapped = [_cell_wrapper(width).wrap(text) or [""] if width and last_width else [text]
                   for (text, _), width in zip(row, columns)]  # a pipe (no last width): every cell whole
        for n in range(max(len(parts) for parts in wrapped)):
            pieces = [(parts[n] if n < len(parts) else "", cell_style, width)
                      for parts, (_, cell_style), width in zip(wrapped, row, columns)]
            plain = "".join(text.ljust(width) + " " * GAP if width and i < len(pieces) - 1 else text
                            for i, (text, _, width) in enumerate(pieces)).rstrip()

            def markup(pieces=pieces) -> str:
                cells = []
                for i, (text, cell_style, width) in enumerate(pieces):
                    padding = " " * (max(0, width - len(text)) + GAP) if width and i < len(pieces) - 1 else ""
                    cells.append((f"[{cell_style}]{escape(text)}[/]" if cell_style and text else escape(text))
                                 + padding)
                return "".join(cells).rstrip()

            print_line(plain, markup, style)


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


LOG_WIDTH = 200  # a table written to a pipe or a file: wide enough for the widest layout, rows whole


def output_width(out: IO[str] | None = None) -> int | None:
    """The columns to fit output to: $COLUMNS when set, else the terminal's when `out` (stdout) is one;
    None for a pipe or a file, where lines are kept whole (a log is read with grep, not a terminal)."""
    out = out or sys.stdout
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        if out.isatty():
            return os.get_terminal_size(out.fileno()).columns
    except (AttributeError, ValueError, OSError):
        pass
    return None


def command_lines(command: str, width: int) -> list[str]:
    """A shell command (and its '# comment') in lines of at most `width` columns: each line but the last
    ends in ' \\' and the next is indented by 4, so that a shell reads one command. A path too long
    for a line is cut after a '/' with a bare '\\' and goes on at the start of the next line (a shell
    joins the two halves into one word); a quoted word is never cut."""
    code, hash_, comment = command.partition("  # ")
    lines, current = [], ""
    for word in code.split():
        candidate = f"{current} {word}" if current else word
        if current and len(candidate) + 2 > width:  # + " \"
            lines.append(current + " \\")
            current = "    " + word
        else:
            current = candidate
        while len(current) + 2 > width and not current.rstrip().endswith(("'", '"')):
            cut = current.rfind("/", 0, width - 1) + 1  # after a '/', leaving room for the backslash
            if cut <= len(current) - len(current.lstrip()) or cut >= len(current):
                break  # no '/' to cut at: the line stays long rather than break the word
            lines.append(current[:cut] + "\\")
            current = current[cut:]
    lines.append(current)
    note = f"  # {comment}"
    if hash_ and len(lines[-1]) + len(note) <= width:  # a comment that does not fit is left out: it is an aside
        lines[-1] += note
    return lines


def wrapped_lines(text: str, width: int | None) -> list[str]:
    """`text`'s lines wrapped by word to `width` (None: kept whole), continuation lines indented; a line
    "Next: edgecls ..." stays one shell command (command_lines)."""
    import textwrap

    out: list[str] = []
    for line in text.splitlines():
        if width is None:
            out.append(line)
        elif line.startswith("Next: edgecls "):
            out += command_lines(line, width)
        else:
            out += textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False,
                                 subsequent_indent="  ") or [""]
    return out


def print_wrapped(text: str, out: IO[str] | None = None) -> None:
    """Print closing lines (where reports went, what to run next) wrapped to the terminal (see
    output_width: a pipe or a file gets them whole)."""
    out = out or sys.stdout
    for line in wrapped_lines(text, output_width(out)):
        print(line, file=out)


def _line_width(out: IO[str]) -> int:
    """The columns a line of `out` has, as rich would take them: output_width's, else 80."""
    return output_width(out) or 80


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


def _json_writer(out: IO[str], classifier: Classifier, top_k: int) -> Callable[[Prediction], None]:
    import json

    def write(prediction: Prediction) -> None:
        row: dict[str, Any] = {"file": _name(prediction)}
        if prediction.error:
            row["error"] = _reason(prediction)
        else:
            row["classes"] = class_rows(prediction.classes)
            row.update(verdict_fields(prediction))
        out.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")

    return write


def _csv_writer(out: IO[str], classifier: Classifier, top_k: int) -> Callable[[Prediction], None]:
    import csv

    plain = csv.writer(out, lineterminator="\n")
    quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)  # csv leaves a lone \r unquoted otherwise
    verdict = classifier.open_set_rule is not None  # two more columns: unknown (0/1), typicality
    plain.writerow(["file", "rank", "index", "label", "score", "error"]
                   + (["unknown", "typicality"] if verdict else []))

    def row(values: list[Any]) -> None:
        (quoted if any("\r" in str(v) for v in values) else plain).writerow(values)

    def write(prediction: Prediction) -> None:
        if prediction.error:
            row([_name(prediction), "", "", "", "", _reason(prediction)] + (["", ""] if verdict else []))
        extra = [int(prediction.unknown), f"{prediction.typicality:.4f}"] if verdict and not prediction.error else []
        for rank, c in enumerate(prediction.classes, 1):
            row([_name(prediction), rank, c.index, printable(c.label), f"{c.score:.6f}", ""] + extra)

    return write


# ----------------------------------------------------------------------------- info
INFO_LABELS = 12  # labels shown by `edgecls info` (--json has them all)


def show_info(report: dict[str, Any], out: IO[str] | None = None) -> None:
    """Print an `inspect_model` report for a person."""
    from rich.table import Table

    console = _quiet_pipe_console()(file=out or sys.stdout, highlight=False, soft_wrap=True)
    quant = report["quantization"]
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")  # a long path or name wraps inside its cell, never cut
    facts.add_row("model", markup_cell(report["file"]))
    facts.add_row("size", f"{report['size_bytes']:,} bytes")
    facts.add_row("sha256", report["sha256"])
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
        if classifier["labels_source"] == "index":  # no names anywhere: "0 0, 1 1, ..." would say nothing
            facts.add_row("labels", f"none: predictions are class indices 0..{len(labels) - 1} (give --labels FILE, "
                                    "or put a labels.txt beside the model)")
        else:
            # One label a line with its index: ImageNet names hold commas ("tabby, tabby cat").
            listed = Table.grid(padding=(0, 2))
            listed.add_column(justify="right", no_wrap=True)
            listed.add_column(overflow="fold")
            for i, label in enumerate(labels[:INFO_LABELS]):
                listed.add_row(str(i), escape(label))
            more = f"{len(labels) - INFO_LABELS} more (--json lists them); " if len(labels) > INFO_LABELS else ""
            listed.add_row("", escape(f"({more}from {clean_text(classifier['labels_source'])})"))
            facts.add_row("labels", listed)
        facts.add_row("unknown", escape(unknown_rule_text((report["metadata"] or {}).get("openset"))))
    else:
        facts.add_row("classifier", escape(f"not an image classifier edgecls can run: {classifier['reason']}"))
    console.print(facts)

    from edgecls.tables import data_table

    rows = []
    for kind in ("inputs", "outputs"):
        for t in report[kind]:
            shape = "[" + ", ".join(str(d) if d >= 0 else "?" for d in t["shape_signature"]) + "]"  # ? = dynamic
            rows.append([kind[:-1], markup_cell(t["name"]), escape(shape), t["dtype"], _short(t["scale"]),
                         _short(t["zero_point"]), "yes" if t["per_channel"] else "no"])
    # names whole on one line (a tensor name is what a user greps and types); stacked where too wide
    tensors = data_table(("", "name", "shape", "dtype", "scale", "zero point", "per-channel"), rows,
                         names=("", "name", "shape", "dtype", "per-channel"), key=("", "name"), styles={"": "bold"})
    console.print()
    console.print(tensors)
    metadata = report["metadata"]
    import json

    console.print()
    if metadata is None:
        console.print("metadata  none: a third-party model (labels: --labels, or labels.txt beside it)")
    else:
        shown = {k: v for k, v in metadata.items() if k != "labels"}
        console.print("[bold]metadata[/]")
        for line in compact_numbers(json.dumps(shown, indent=2, sort_keys=True)).splitlines():
            console.print(escape(clean_text(line)))  # line by line: clean_text would eat newlines


SHOWN_NUMBERS = 12  # a list of more numbers (an open-set rule's validation scores) is summarised by `info`
_NUMBER_LIST = re.compile(r"\[\s*(-?[\d.eE+-]+(?:\s*,\s*-?[\d.eE+-]+)*)\s*\]")


def compact_numbers(text: str) -> str:
    """Pretty JSON with each list of numbers on one line, and a long one as its count and range."""
    def one_line(match: re.Match) -> str:
        values = [v.strip() for v in match.group(1).split(",")]
        if len(values) <= SHOWN_NUMBERS:
            return "[" + ", ".join(values) + "]"
        return f"[{len(values)} numbers, {values[0]} ... {values[-1]}]"

    return _NUMBER_LIST.sub(one_line, text)


def unknown_rule_text(entry: Any) -> str:
    """One line on a model's open-set rule (its metadata's "openset" entry)."""
    if not isinstance(entry, dict):
        return "no unknown rule (edgecls calibrate MODEL --data FOLDER gives one)"
    parts = [f"rule {entry.get('rule')}, accepts {entry.get('accept', 0):.0%} of validation images"]
    temperature = entry.get("temperature") or {}
    if isinstance(temperature, dict) and temperature.get("value") is not None:
        parts.append(f"temperature {temperature['value']:.3g} ({temperature.get('applied')})")
    return "; ".join(parts)


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


def predict_options(as_json: bool, as_csv: bool, input_range: str | None, **arguments: Any) -> dict[str, Any]:
    """`edgecls predict`'s options as console.predict (and live.predict_stream) take them: the output
    format, the parsed input range and the rest as given."""
    if as_json and as_csv:
        raise EdgeclsError("choose one of --json and --csv")
    if input_range is not None:  # runtime.settings (with the options records) is ~4 ms of a cold predict
        from edgecls.runtime.settings import parse_range

        input_range = parse_range(input_range)
    return {"fmt": "json" if as_json else "csv" if as_csv else "table", "input_range": input_range, **arguments}


def run_predict(model: str, images: Sequence[str], **options: Any) -> int:
    """`edgecls predict MODEL IMAGES...`'s body (edgecls.cli.device.predict calls it too): the exit code."""
    return predict(model, images, **predict_options(**options))
