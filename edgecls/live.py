"""The work behind `edgecls predict MODEL --source SOURCE`: classify a camera, video file or network
stream and write one row per classified frame (table, JSON lines or CSV), then a summary line.

Imports only the runtime, rich and the standard library: never TensorFlow. Exit codes: 0 the
source ended (a video's end, --duration); 1 it failed mid-way (a stream that dropped and did not
come back, a truncated video: the rows so far are kept); 2 it could not be opened; 130 Ctrl-C.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import numpy as np

from edgecls.console import class_rows, json_ready, silence_closed_pipe, verdict_columns, verdict_fields
from edgecls.provenance import iso_time
from edgecls.runtime.capture import SourceError
from edgecls.runtime.classify import Classifier
from edgecls.runtime.stream import DEFAULT_RECONNECT, DEFAULT_TIMEOUT, FramePrediction, LiveStream

Writer = Callable[[FramePrediction], None]


def predict_stream(
    model: str,
    source: str,
    top_k: int = 1,
    fmt: str = "table",
    threads: int | None = None,
    labels: str | None = None,
    backend: str | None = None,
    input_range: tuple[float, float] | None = None,
    resize: str | None = None,
    fit: str | None = None,
    every: int = 1,
    fps: float | None = None,
    duration: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    reconnect: float = DEFAULT_RECONNECT,
    capture: str | None = None,
    unknown: bool = True,
    collect: str | None = None,
    collect_when: Sequence[str] | None = None,
    collect_max_mb: float | None = None,
    collect_reserve_mb: float | None = None,
    shadow: str | None = None,
    shadow_every: int | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Classify `source` frame by frame, writing a row per frame as it goes and a summary to `err`.
    Returns the exit code (0, or 130 after Ctrl-C); raises SourceError (exit 2 before the first frame,
    1 after) when the source cannot be opened or fails, after the summary of the frames done."""
    out, err = out or sys.stdout, err or sys.stderr

    def log(message: str) -> None:
        print(f"edgecls: {message}", file=err, flush=True)

    classifier = Classifier(model, num_threads=threads, labels=labels, backend=backend, input_range=input_range,
                            resize=resize, fit=fit, open_set=unknown)
    collector, observe, asked = None, None, top_k
    if any(v is not None for v in (collect, collect_when, collect_max_mb, collect_reserve_mb, shadow, shadow_every)):
        from edgecls.runtime.collect import collect_options, collector_for

        collector = collector_for(classifier, collect_options(collect, collect_when, collect_max_mb, collect_reserve_mb,
                                                              shadow, shadow_every), log)
        asked = max(top_k, 2) if collector is not None and collector.needs_two else top_k

        def observe(result: FramePrediction, frame: Any) -> None:
            collector.consider(result.classes, result.unknown, result.typicality, source, pixels=np.asarray(frame),
                               frame=result.frame, timestamp=result.timestamp)

    stream = classifier.classify_stream(source, top_k=asked, every=every, fps=fps, duration=duration,
                                        timeout=timeout, reconnect=reconnect, capture=capture, log=log,
                                        observe=observe)
    write = {"table": _table_writer, "json": _json_writer, "csv": _csv_writer}[fmt](out, classifier, top_k, stream)

    def summarise() -> None:
        print(summary_line(stream), file=err)
        if collector is not None:
            print(f"edgecls: {collector.summary()}", file=err)

    try:
        for result in stream:
            if asked != top_k:
                result = dataclasses.replace(result, classes=result.classes[:top_k])
            write(result)
            out.flush()  # a row reaches a pipe as soon as its frame is classified
    except KeyboardInterrupt as exc:  # the usual way to end a camera: the rows are kept, the summary follows
        # (SIGTERM from a service manager, or SIGHUP, arrive as edgecls.errors.Terminated: said so)
        stream.close(f"stopped by {getattr(exc, 'name', 'Ctrl-C')}")
        summarise()
        return getattr(exc, "exit_code", 130)
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        stream.close()
        silence_closed_pipe(out)
        return 0
    except SourceError:
        if stream.frames:  # with no frame done, the error line alone says it all
            summarise()
        raise
    summarise()
    return 0


def summary_line(stream: LiveStream) -> str:
    """'edgecls: 300 frames from camera:0 in 10.0 s (29.9 FPS), latency p50 3.1 ms, p90 4.0 ms; ...'"""
    s = stream.summary()
    frames = f"{s['frames']} frame{'' if s['frames'] == 1 else 's'}"
    rate = f" ({s['fps']:.1f} FPS)" if s["fps"] else ""
    latency = (f", latency p50 {s['latency_ms']['p50']:.2f} ms, p90 {s['latency_ms']['p90']:.2f} ms"
               if s["frames"] else "")
    notes = [f"{s['dropped']} dropped (the model was slower than the source)" if s["dropped"] else "0 dropped"]
    if s["skipped"]:
        notes.append(f"{s['skipped']} skipped by --every/--fps")
    if s["reconnects"]:
        notes.append(f"{s['reconnects']} reconnect{'' if s['reconnects'] == 1 else 's'}")
    if s.get("unknown") is not None:
        notes.append(f"{s['unknown']} unknown")
    if s["end"] and s["end"] != "error":
        notes.append(s["end"])
    return (f"edgecls: {frames} from {s['source']} in {s['seconds']:.2f} s{rate}{latency}; " + ", ".join(notes))


def _clock(timestamp: float) -> str:
    """Local time of day with milliseconds, for the table."""
    return time.strftime("%H:%M:%S", time.localtime(timestamp)) + f".{int(timestamp * 1000) % 1000:03d}"


def position_text(seconds: float) -> str:
    """Seconds into a video as m:ss.mmm (1:02.300), or h:mm:ss.mmm past an hour."""
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    text = f"{minutes:02d}:{rest / 1000:06.3f}" if hours else f"{minutes}:{rest / 1000:06.3f}"
    return f"{hours}:{text}" if hours else text


def _table_writer(out: IO[str], classifier: Classifier, top_k: int, stream: LiveStream) -> Writer:
    """A line per classified frame: frame number, where it is (a video file: its position in the video;
    a camera or stream: the local time it was captured), latency, top-k; fitted to the terminal as
    predict's table is (labels wrap in their column, k classes one a line where they do not fit)."""
    from edgecls.console import GAP, LABEL_WIDTH, PIPE_LABEL_WIDTH, SCORE, _line_printer, _print_grid, terminal_width

    print_line = _line_printer(out)
    k = min(top_k, classifier.num_classes)
    longest = max(5, *(len(label) for label in classifier.labels))  # 5: the header 'label'
    verdict = verdict_columns(classifier, longest)
    in_video = stream.spec.kind == "file"
    fixed = [7, 12, 7] + verdict.widths  # frame, time or position, ms; answer and typicality with a rule
    total = terminal_width(out)
    per_line, width = k, min(longest, PIPE_LABEL_WIDTH)
    if total is not None:
        room = total - sum(fixed) - GAP * len(fixed)
        width = min(longest, room // k - SCORE - 2 * GAP)
        if width < min(longest, LABEL_WIDTH):  # k classes do not fit on one line: one a line
            per_line, width = 1, min(longest, max(LABEL_WIDTH, room - SCORE - 2 * GAP))
    widths = fixed + [SCORE, width] * per_line
    header = [("frame".rjust(7), None), ("position" if in_video else "time", None), ("ms".rjust(7), None)]
    header += verdict.header + [("score", None), ("label", None)] * per_line

    def write(result: FramePrediction) -> None:
        at = position_text(result.position) if result.position is not None else _clock(result.timestamp)
        first = [(f"{result.frame:>7}", None), (at, None), (f"{result.latency_ms:>7.2f}", None)]
        first += verdict.cells(result)
        classes = [(f"{c.score:.3f}", c.label) for c in result.classes]
        rows = []
        for i in range(0, len(classes), per_line):
            lead = first if i == 0 else [("", None)] * len(fixed)
            rows.append(lead + [cell for score, label in classes[i:i + per_line]
                                for cell in ((score, None), (label, None))])
        _print_grid(print_line, rows, widths[:-1], last_width)

    last_width = None if total is None else width  # the last label: whole on a pipe
    return _header_first(lambda: _print_grid(print_line, [header], widths[:-1], last_width, style="bold"), write)


def _header_first(header: Callable[[], None], write: Writer) -> Writer:
    """`write`, with the header written just before the first row: a source that cannot be opened
    leaves stdout empty and its one error line alone on stderr."""
    pending = [header]

    def first_then_write(result: FramePrediction) -> None:
        if pending:
            pending.pop()()
        write(result)

    return first_then_write


def _json_writer(out: IO[str], classifier: Classifier, top_k: int, stream: LiveStream) -> Writer:
    source = json_ready(stream.source)

    def write(result: FramePrediction) -> None:
        row: dict[str, Any] = {"source": source, "frame": result.frame, "time": iso_time(result.timestamp),
                               "latency_ms": round(result.latency_ms, 3), "classes": class_rows(result.classes),
                               **verdict_fields(result)}
        if result.position is not None:  # a video file: where in the video (its own clock), as well as when
            row["position_s"] = round(result.position, 3)
        out.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")

    return write


def _csv_writer(out: IO[str], classifier: Classifier, top_k: int, stream: LiveStream) -> Writer:
    writer = csv.writer(out, lineterminator="\n")
    verdict = classifier.open_set_rule is not None  # two more columns: unknown (0/1), typicality
    in_video = stream.spec.kind == "file"  # one more: the position in the video, as the table and --json have

    def write(result: FramePrediction) -> None:
        extra = [int(result.unknown), f"{result.typicality:.4f}"] if verdict else []
        where = [f"{result.position:.3f}" if result.position is not None else ""] if in_video else []
        for rank, c in enumerate(result.classes, 1):
            writer.writerow([result.frame, iso_time(result.timestamp), *where, f"{result.latency_ms:.3f}", rank,
                             c.index, c.label, f"{c.score:.6f}", *extra])

    columns = ["frame", "time", *(["position_s"] if in_video else []), "latency_ms", "rank", "index", "label", "score"]
    return _header_first(lambda: writer.writerow(columns + (["unknown", "typicality"] if verdict else [])), write)
