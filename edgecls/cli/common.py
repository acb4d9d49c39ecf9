"""What every `edgecls` command module shares: the help's look, and the device-side options.

- `Typer`: a `typer.Typer` whose commands use `Command` and groups `Group`, so that `--help` reads
  like a CLI's: arguments named as in the usage line (`MODEL`, `IMAGES...`, `PATHS...`) without a
  `<list[Path]>` type column, and flags (`--help` too) without a `<bool>` (Typer 0.29 prints both);
  the help itself is drawn by edgecls.cli.helpview (panels, fits the terminal).
- `Backend`, `Threads`, `InputRange`, `ResizeOption`, `FitOption`, `Labels`: options of several device-side
  commands (predict, info, calibrate, ...) that take no record, made from edgecls.runtime.settings where each is
  declared; `LiveEvery`, `LiveFps`, `LiveTimeout`, `LiveReconnect`, `LiveCapture`: the live input options
  `predict --source` shares with `serve --source` (declared in edgecls.serve.options.LiveOptions);
  `AcceptOption`, `UnknownDataOption`, `RuleOption`: the unknown answer's (runtime.settings.UnknownAnswer);
  `CollectDir`, `CollectWhen`, `CollectMaxMb`, `CollectReserveMb`, `Shadow`, `ShadowEvery`: what
  `predict --collect` keeps (runtime.settings.CollectSettings, which serve takes as a record).
- Commands that take an options record get their options from it (edgecls.cli.records.takes).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from edgecls.cli.records import annotated, choice, choices, plain
from edgecls.exits import fail
from edgecls.options import OUTPUT
from edgecls.runtime.settings import INTERPRETER, PREPROCESSING, CollectSettings, ModelSettings, UnknownAnswer
from edgecls.serve.options import LIVE_PANEL, LiveOptions

# fail: one line on stderr and the exit code (edgecls.exits', which the lean predict path shares)
__all__ = ["INTERPRETER", "LIVE_PANEL", "OUTPUT", "PREPROCESSING", "AcceptOption", "Backend", "CollectDir",
           "CollectMaxMb", "CollectReserveMb", "CollectWhen", "Command", "FitOption", "Group", "InputRange", "Labels",
           "LiveCapture", "LiveEvery", "LiveFps", "LiveReconnect", "LiveTimeout", "ResizeOption", "RuleOption",
           "Shadow", "ShadowEvery", "Threads", "Typer", "UnknownDataOption", "choice", "choices", "echo_wrapped",
           "fail", "plain"]


def echo_wrapped(text: str, err: bool = False) -> None:
    """Closing lines (a summary, "Next: edgecls ...") wrapped by word to the terminal ($COLUMNS, else its
    width; a pipe or a file gets them whole): a command stays one shell command, continued with " \\"."""
    import sys

    from edgecls.console import output_width, wrapped_lines

    for line in wrapped_lines(text, output_width(sys.stderr if err else sys.stdout)):
        typer.echo(line, err=err)


# ----------------------------------------------------------------------------- the help's look
class _Argument(TyperArgument):
    """A positional argument shown as the usage line names it: MODEL, [IMAGES]..., PATHS... (Click's
    classic form), with no `<path>`/`<list[Path]>` type column: its help says what it takes."""

    @property
    def display_name_raw(self) -> str:  # also the name in errors: "Missing argument 'MODEL'"
        return self.metavar or (self.name or "").upper()

    def display_type_rich(self, ctx: Any) -> None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return f"{name}..." if self.nargs != 1 else name


class _QuietHelpOption:
    """`--help` is a flag: no `<bool>` beside it (Typer builds it without a metavar); and the help is
    edgecls' own layout (edgecls.cli.helpview: panels, wrapped to the terminal, nothing cut)."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""  # what the command's own flags say too (metavar="")
        return option

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from edgecls.cli.helpview import print_help

        print_help(self, ctx)


class Command(_QuietHelpOption, TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument:  # Typer has no hook for its argument class: swap it here
                param.__class__ = _Argument
            elif getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""  # a flag takes no value: no <bool> (so a new flag needs no metavar="")


class Group(_QuietHelpOption, TyperGroup):
    pass


class Typer(typer.Typer):
    """typer.Typer with edgecls' help look on every command and group (see Command, Group)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"cls": Group, "pretty_exceptions_enable": False, **kwargs})

    def command(self, *args: Any, **kwargs: Any) -> Any:
        return super().command(*args, **{"cls": Command, **kwargs})


# ----------------------------------------------------------------------------- device-side options
# predict, info, explain, serve and bench of a .tflite import only edgecls.runtime: never TensorFlow. Each
# option is declared once, in edgecls.runtime.settings (its help, panel and default), and given here as
# the Typer parameter of a command that takes no record.
Backend = annotated(ModelSettings, "backend")
Threads = annotated(ModelSettings, "threads")
InputRange = annotated(ModelSettings, "input_range")
Labels = annotated(ModelSettings, "labels")
ResizeOption = annotated(ModelSettings, "resize")
FitOption = annotated(ModelSettings, "fit")

# Live input (a camera, video file or stream): `predict --source` takes serve's LiveOptions' fields.
LiveEvery = annotated(LiveOptions, "every")
LiveFps = annotated(LiveOptions, "fps")
LiveTimeout = annotated(LiveOptions, "timeout")
LiveReconnect = annotated(LiveOptions, "reconnect")
LiveCapture = annotated(LiveOptions, "capture")

# The unknown answer: calibrate chooses an open-set rule as export and train --backbone do.
AcceptOption = annotated(UnknownAnswer, "accept")
UnknownDataOption = annotated(UnknownAnswer, "unknown_data")
RuleOption = annotated(UnknownAnswer, "rule")

# `predict --collect`: what it keeps (serve takes the same fields as a record).
CollectDir = annotated(CollectSettings, "collect")
CollectWhen = annotated(CollectSettings, "collect_when")
CollectMaxMb = annotated(CollectSettings, "collect_max_mb")
CollectReserveMb = annotated(CollectSettings, "collect_reserve_mb")
Shadow = annotated(CollectSettings, "shadow")
ShadowEvery = annotated(CollectSettings, "shadow_every")
