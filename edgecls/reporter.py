"""How a job tells what it is doing: one Reporter, passed to every job (train, the backbone route,
export, --target, bench, explain) — its log lines, and rich progress bars while it works through
something long.

The default writes lines to stderr (wrapped to a terminal's width, whole in a log) and draws bars only
when stderr is a terminal, so stdout stays the result (a table, --json) and a log file gets lines, not
bar frames. `SILENT` says nothing: the
library's callers and tests that only want the result.

    reporter = Reporter()                       # what the CLI passes
    reporter("Scoring 3 models")                # a log line
    for item in reporter.track(items, "Decoding"): ...
    with reporter.task("Embedding images", total=n) as advance: ... advance(32)
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Optional, TypeVar

Item = TypeVar("Item")


def _to_stderr(line: str) -> None:
    """A log line on stderr: wrapped by word to a terminal's width (continuation lines indented), whole
    in a pipe or a log file, where a line is a record that scripts read."""
    if sys.stderr.isatty():
        from edgecls.console import print_wrapped, terminal_width

        if len(line) > (terminal_width(sys.stderr) or len(line)):
            print_wrapped(line, sys.stderr)
            sys.stderr.flush()
            return
    print(line, file=sys.stderr, flush=True)


class Reporter:
    """Log lines (`reporter(line)`) and progress bars (`track`, `task`)."""

    def __init__(self, lines: Optional[Callable[[str], None]] = None, bars: Optional[bool] = None):
        self.lines = lines if lines is not None else _to_stderr
        self.bars = sys.stderr.isatty() if bars is None else bars  # bars are drawn on stderr

    def __call__(self, line: str) -> None:
        self.lines(line)

    def quiet(self) -> Reporter:
        """The same lines, no bars (for work whose own output is a bar, or a nested job)."""
        return Reporter(self.lines, bars=False)

    def track(self, items: Iterable[Item], description: str, total: Optional[int] = None) -> Iterator[Item]:
        """`items`, one at a time, with a bar of how many are done."""
        if not self.bars:
            yield from items
            return
        with self.task(description, total if total is not None else len(items)) as advance:  # type: ignore[arg-type]
            for item in items:
                yield item
                advance(1)

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[..., None]]:
        """advance(n=1, description=None): a bar of `total` steps (the description may change as it goes)."""
        if not self.bars:
            yield lambda n=1, description=None: None
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(description, total=total)

            def advance(n: int = 1, description: Optional[str] = None) -> None:
                bar.update(task, advance=n, **({"description": description} if description is not None else {}))

            yield advance


SILENT = Reporter(lines=lambda line: None, bars=False)
