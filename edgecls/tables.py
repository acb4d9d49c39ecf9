"""Tables for the terminal that fit its width without cutting a name, a path or a number.

Every table the CLI prints is made by `data_table`: names, paths and numbers are kept whole on one
line (rich's `no_wrap`), only prose wraps, at its spaces. Where the whole table does not fit the width
it is drawn at, its columns are dealt into stacked tables, each repeating the key column(s) (the
model's name) so that every row can still be read; a name wider than the terminal itself is folded
only then, as the last resort. `Fitted` chooses between whole layouts (bench's accuracy and latency
tables, compare's per-model tables) by the same measure. Imports only rich, when a table is drawn.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

UNBOUNDED = 1 << 16  # "as wide as it wants": Measurement.get clamps to the width it is given


class Fitted:
    """A rich renderable drawn as the first of its layouts (renderables, widest first) that fits the width
    it is given, by rich's own measure; the last when none does. So a table keeps every column in a wide
    terminal and stacks or drops some in a narrow one, and no row is ever wrapped by the terminal."""

    def __init__(self, *layouts: Any):
        self.layouts = layouts

    def chosen(self, console: Any, options: Any) -> Any:
        from rich.measure import Measurement

        unbounded = options.update_width(UNBOUNDED)
        for layout in self.layouts[:-1]:
            if Measurement.get(console, unbounded, layout).maximum <= options.max_width:
                return layout
        return self.layouts[-1]

    def __rich_console__(self, console: Any, options: Any) -> Any:
        yield self.chosen(console, options)

    def __rich_measure__(self, console: Any, options: Any) -> Any:
        from rich.measure import Measurement

        return Measurement.get(console, options, self.chosen(console, options))


class DataTable:
    """A table of text cells (rich markup) drawn whole where it fits, else as stacked tables that each
    fit: the key columns, then as many of the other columns, in order, as the width holds. The title goes
    on the first table and the caption under the last. Build it with `data_table`."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None,
                 caption: str | None, names: Collection[str], prose: Collection[str], key: Collection[str],
                 styles: dict[str, str], show_header: bool):
        self.columns = list(columns)
        self.rows = [list(row) for row in rows]
        self.title, self.caption, self.show_header = title, caption, show_header
        self.names, self.prose, self.styles = set(names), set(prose), styles
        self.key = [c for c in self.columns if c in set(key)] or self.columns[:1]
        self._cell_widths: list[int] | None = None

    def cell_width(self, column: str) -> int:
        """The widest cell of `column`, as drawn (markup taken out); measured once for all columns, where
        laying the table out asks for it again for every trial layout."""
        if self._cell_widths is None:
            from rich.text import Text

            self._cell_widths = [max([Text.from_markup(row[i]).cell_len for row in self.rows] or [0])
                                 for i in range(len(self.columns))]
        return self._cell_widths[self.columns.index(column)]

    def table(self, columns: Sequence[str], title: str | None, caption: str | None, fold: bool = False,
              short_headers: Collection[str] = ()) -> Any:
        """A rich Table of `columns`: names and numbers whole (their full width is the least they take),
        prose wrapped at its spaces; with `short_headers`, a header wider than its column's cells on
        lines of their width (broken at its spaces and after a "/"); with `fold`, a cell too wide for the
        terminal folds (the last resort)."""
        from rich import box
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD, title=title, caption=caption, caption_justify="left",
                      collapse_padding=True, pad_edge=False, show_header=self.show_header)
        at = [self.columns.index(c) for c in columns]
        for column in columns:
            whole = column not in self.prose
            widest = self.cell_width(column)
            header = header_lines(column, widest) if column in short_headers else column
            widest = max([widest] + ([len(line) for line in header.splitlines()] if self.show_header else []))
            table.add_column(header, justify="left" if column in self.names or column in self.prose else "right",
                             style=self.styles.get(column), overflow="fold", no_wrap=whole and not fold,
                             min_width=widest if whole and not fold else None)
        for row in self.rows:
            table.add_row(*(row[i] for i in at))
        return table

    def groups(self, console: Any, width: int) -> list[list[str]]:
        """The columns of each stacked table: the key columns, then the next columns while they fit."""
        others = [c for c in self.columns if c not in self.key]
        groups: list[list[str]] = []
        for column in others:
            if groups and self._shortened(console, self._with_key(groups[-1] + [column]), width) is not None:
                groups[-1].append(column)
            else:
                groups.append([column])
        return [self._with_key(group) for group in groups] or [self.key]

    def _with_key(self, columns: Sequence[str]) -> list[str]:
        return [c for c in self.columns if c in self.key or c in columns]

    def _shortened(self, console: Any, columns: Sequence[str], width: int) -> list[str] | None:
        """The headers to put on several lines for a table of `columns` to fit `width` (the fewest, those
        widest over their cells first), or None where it does not fit even so."""
        from rich.measure import Measurement

        def excess(column: str) -> int:
            return len(column) - self.cell_width(column)

        options = console.options.update_width(UNBOUNDED)
        shortened: list[str] = []
        for column in [None, *sorted((c for c in columns if excess(c) > 0), key=excess, reverse=True)]:
            shortened += [column] if column else []
            table = self.table(columns, None, None, short_headers=shortened)
            if Measurement.get(console, options, table).minimum <= width:
                return shortened
        return None

    def layout(self, console: Any, width: int) -> list[Any]:
        """The renderables to draw at `width`: the whole table (headers on several lines, widest first,
        where that is what it takes), or the stacked tables and the caption under them, as wide as the
        terminal."""
        from rich.text import Text

        shortened = self._shortened(console, self.columns, width)
        if shortened is not None:
            return [self.table(self.columns, self.title, self.caption, short_headers=shortened)]
        tables = []
        for i, group in enumerate(self.groups(console, width)):
            fitting = self._shortened(console, group, width)
            tables.append(self.table(group, self.title if i == 0 else None, None, fold=fitting is None,
                                     short_headers=group if fitting is None else fitting))
        return tables + ([Text.from_markup(self.caption)] if self.caption else [])

    def __rich_console__(self, console: Any, options: Any) -> Any:
        yield from self.layout(console, options.max_width)

    def __rich_measure__(self, console: Any, options: Any) -> Any:
        from rich.measure import Measurement

        whole = Measurement.get(console, options, self.table(self.columns, self.title, None))
        return Measurement(min(whole.minimum, options.max_width), whole.maximum)


def data_table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None,
               caption: str | None = None, names: Collection[str] = (), prose: Collection[str] = (),
               key: Collection[str] = (), styles: dict[str, str] | None = None, show_header: bool = True) -> DataTable:
    """A table for the terminal (rows of rich-markup cells under `columns`) that fits its width.

    `names`: left-aligned columns of names and paths, kept whole; `prose`: left-aligned columns of
    sentences, wrapped at their spaces; every other column is a right-aligned figure, kept whole.
    `key`: the columns repeated in each stacked table (default: the first column)."""
    return DataTable(columns, rows, title=title, caption=caption, names=names, prose=prose, key=key,
                     styles=styles or {}, show_header=show_header)


def header_lines(header: str, width: int) -> str:
    """`header` on lines of `width` columns (or of its longest part), broken at its spaces and after a
    "/" or "-" between words: a figure's column need not be as wide as its name ("acc.\\naccepted", "rmse/\\nscale")."""
    import re

    parts = [p for p in re.split(r"(?<=[^\W\d_]{3}[/-])(?=[^\W\d_]{3})|\s+", header) if p]
    width = max([width] + [len(p) for p in parts])
    lines: list[str] = []
    for part in parts:
        joined = f"{lines[-1]}{'' if lines[-1].endswith(('/', '-')) else ' '}{part}" if lines else part
        if lines and len(joined) <= width:
            lines[-1] = joined
        else:
            lines.append(part)
    return "\n".join(lines)


def text_kinds(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[list[str], list[str]]:
    """(names, prose) of a table made of data: a column of figures is neither; a column of text is prose
    when it holds sentences (a cell with a space, longer than a name), else names."""
    names, prose = [], []
    for i, column in enumerate(columns):
        cells = [str(row[i]) for row in rows if row[i] is not None]
        if all(_is_figure(cell) for cell in cells):
            continue
        sentences = any(" " in cell.strip() and len(cell) > PROSE_LONGER_THAN for cell in cells)
        (prose if sentences else names).append(column)
    return names, prose


PROSE_LONGER_THAN = 24  # a cell with spaces and more characters than this is a sentence, wrapped at its spaces


def _is_figure(cell: str) -> bool:
    text = cell.strip().rstrip("%×x").lstrip("+-−±×")
    if text in ("", "—", "-"):
        return True
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False
