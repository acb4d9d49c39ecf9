"""`--help` as edgecls draws it: options in titled panels, text wrapped to the terminal, nothing cut.

Typer's own rich help lays each panel out as a six-column table whose widths rich shares out by
content, so in an 80-column terminal an option's help gets 20 columns, long words end in "…" and
a docstring wrapped at 100 columns in the source comes out ragged. Here every panel has two
columns: the option's names and value (at most NAMES_WIDTH wide; longer ones get a line of their
own) and its help, wrapped by word, then its default. Text is wrapped to the width, never cut.

- A panel is the option's own `rich_help_panel` (declared with the option, so it goes wherever the
  option goes); options without one are in "Options", shown last with --help.
- Paragraphs (separated by a blank line) are re-flowed to the width: a line break inside one is
  where the source was wrapped. Lines that start with "- " (a list) or with "edgecls " or "curl " (an
  example) keep their own line; an example too long for the width continues after " \\" on
  the next line, indented, as a shell reads it.
- Only public click attributes are read (params, opts, help, get_help_record, get_usage), so a
  later Typer or click cannot change the layout under us.
"""

from __future__ import annotations

from typing import Any

ARGUMENTS = "Arguments"
OPTIONS = "Options"  # the panel of options that name none (and --help): shown last
COMMANDS = "Commands"
NAMES_WIDTH = 28  # the names column at most; longer names take a line of their own
SHELL_COMMANDS = ("edgecls ", "curl ")  # an epilog line that starts so is a shell command: wrapped with " \\"
GAP = 2
NAME_STYLE, VALUE_STYLE, DEFAULT_STYLE = "bold cyan", "yellow", "dim"


def print_help(command: Any, ctx: Any) -> None:
    """Print `command`'s help for `ctx` (what format_help does for edgecls' commands and groups)."""
    from rich.console import Console, Group
    from rich.padding import Padding
    from rich.text import Text

    console = Console(highlight=False)
    width = console.width
    parts: list[Any] = [Padding(Text(command.get_usage(ctx), style="bold"), (1, 1, 0, 1))]
    if command.help:
        parts.append(Padding(Text.from_markup("\n\n".join(flow(command.help, width - 2))), (1, 1, 0, 1)))
    parts.append(Text(""))
    grouped = [(title, [_param_rows(param, ctx) for param in params]) for title, params in panels(command, ctx)]
    sub = _subcommands(command, ctx)
    if sub:
        grouped.append((COMMANDS, sub))
    # One names column for the whole help, so that the panels line up.
    fitting = [names.cell_len for _, rows in grouped for names, _ in rows if names.cell_len <= NAMES_WIDTH]
    names_width = max(fitting, default=NAMES_WIDTH)
    parts += [_panel(title, rows, width, names_width) for title, rows in grouped]
    if command.epilog:
        parts.append(Padding(Text("\n\n".join(flow(command.epilog, width - 2))), (1, 1, 1, 1)))
    console.print(Group(*parts))


def panels(command: Any, ctx: Any) -> list[tuple[str, list[Any]]]:
    """(title, params) in order: the arguments, each option panel as its first option comes, "Options" last."""
    found: dict[str, list[Any]] = {}
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        is_argument = param.param_type_name == "argument"
        title = getattr(param, "rich_help_panel", None) or (ARGUMENTS if is_argument else OPTIONS)
        found.setdefault(title, []).append(param)
    order = [ARGUMENTS] + [t for t in found if t not in (ARGUMENTS, OPTIONS)] + [OPTIONS]
    return [(title, found[title]) for title in order if title in found]


def _param_rows(param: Any, ctx: Any) -> tuple[Any, Any]:
    """(names and value, help with its default) of one option or argument, as rich Text."""
    from rich.text import Text

    record = param.get_help_record(ctx)
    names, full_help = record if record else (param.human_readable_name, "")
    own = " ".join((param.help or "").split()) if param.param_type_name == "option" else ""
    extra = full_help[len(param.help or ""):].strip() if own and full_help.startswith(param.help or "") else ""
    if not own:  # an argument: Typer's record holds its help and "[required]" together
        own, extra = _split_extra(" ".join(full_help.split()))
    name_text = Text()
    for i, part in enumerate(names.split(" ", 1)):
        name_text.append(("" if i == 0 else " ") + part, style=NAME_STYLE if i == 0 else VALUE_STYLE)
    help_text = Text.from_markup(own) if own else Text()
    if extra:
        help_text.append(("  " if own else "") + extra, style=DEFAULT_STYLE)
    return name_text, help_text


def _split_extra(text: str) -> tuple[str, str]:
    """("help", "[default: x]") from "help  [default: x]" (click's record of an argument)."""
    if text.endswith("]") and "  [" in text:
        head, _, tail = text.rpartition("  [")
        return head, "[" + tail
    return text, ""


def _subcommands(command: Any, ctx: Any) -> list[tuple[Any, Any]]:
    """(name, first sentence of its help) of a group's commands."""
    from rich.text import Text

    if not hasattr(command, "list_commands"):
        return []
    rows = []
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is None or sub.hidden:
            continue
        first = (sub.short_help or sub.help or "").split("\n\n")[0]
        rows.append((Text(name, style=NAME_STYLE), Text(" ".join(first.split()))))
    return rows


def _panel(title: str, rows: list[tuple[Any, Any]], width: int, names_width: int) -> Any:
    """A titled box of two columns: names (NAMES_WIDTH at most; longer names on a line of their own) and help."""
    from rich import box
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    lines: list[Any] = []
    help_width = width - 4 - names_width - GAP  # the panel's borders and padding take 4
    for names, help_text in rows:
        if names.cell_len > names_width:  # e.g. --remote [USER@]HOST[:PORT],...|@FILE: a line of its own
            lines.append(names)
            names = ""
        help_text = break_lists(help_text, help_width)
        row = Table.grid(padding=(0, GAP, 0, 0), expand=True)  # one grid a row: same columns in each
        row.add_column(width=names_width, no_wrap=True)
        row.add_column(ratio=1, overflow="fold")
        row.add_row(names, help_text)
        lines.append(row)
    # A panel never wider than the terminal: rich wraps the help inside its column instead.
    return Panel(Group(*lines), title=title, title_align="left", box=box.ROUNDED, border_style="dim", width=width,
                 padding=(0, 1))


def break_lists(text: Any, width: int) -> Any:
    """`text` (rich Text) with each comma list wider than `width` ("int8,float32,...") broken after a comma
    onto lines of at most `width`: rich would fold it mid-word, as it does any word wider than its column."""
    import re

    cuts: list[int] = []
    for word in re.finditer(r"\S+", text.plain):
        if word.end() - word.start() <= width:
            continue
        line_start, last_comma = word.start(), None
        for at in [m.end() + word.start() for m in re.finditer(",", word.group())] + [word.end()]:
            if at - line_start > width and last_comma is not None:  # the line so far ends at the last comma
                cuts.append(last_comma)
                line_start = last_comma
            last_comma = at if at < word.end() else last_comma
    if not cuts:
        return text
    from rich.text import Text

    return Text("\n").join(text.divide(cuts))


def flow(text: str, width: int) -> list[str]:
    """The paragraphs of a help text or epilog, each re-flowed to `width` columns (see the module's
    docstring for the lines that keep their own place)."""
    import inspect
    import textwrap

    from edgecls.console import command_lines

    out = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines: list[str] = []
        for line in paragraph.splitlines():
            line = line.rstrip()
            keeps_place = line.startswith(("- ", "  ", *SHELL_COMMANDS)) or not lines
            if keeps_place:
                lines.append(line)
            else:
                lines[-1] += " " + line.strip()
        wrapped = []
        for line in lines:
            if line.startswith(SHELL_COMMANDS):
                wrapped += command_lines(line, width)
            else:
                indent = "  " if line.startswith("- ") else ""
                wrapped += textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False,
                                         break_long_words=False) or [""]
        out.append("\n".join(wrapped))
    return out
