"""What every `edgecls` command module shares: Enum choices, the help's look, and the device-side options.

- `choices`/`choice`: an Enum made from the library's own tuple, parsed case-insensitively with a
  one-line "unknown ..." error; `plain` turns what Typer parsed back into what the library takes.
- `Typer`: a `typer.Typer` whose commands use `Command` and groups `Group`, so that `--help` reads
  like a CLI's: arguments named as in the usage line (`MODEL`, `IMAGES...`, `PATHS...`) without a
  `<list[Path]>` type column, and flags (`--help` too) without a `<bool>` (Typer 0.29 prints both);
  the help itself is drawn by edgecls.cli.helpview (panels, fits the terminal).
- `Backend`, `Threads`, `InputRange`, `ResizeOption`, `FitOption`, `Labels`: options of several device-side
  commands (predict, serve, info, explain, bench), declared once; `LiveEvery`, `LiveFps`, `LiveTimeout`,
  `LiveReconnect`, `LiveCapture`: the live input options of `predict --source` and `serve --source`;
  `AcceptOption`, `UnknownDataOption`, `RuleOption`: the unknown answer's (export, train --backbone, calibrate);
  `CollectDir`, `CollectWhen`, `CollectMaxMb`, `CollectReserveMb`, `Shadow`, `ShadowEvery`: what
  `predict --collect` and `serve --collect` keep.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from edgecls.exits import fail
from edgecls.runtime.capture import CAPTURE_BACKENDS
from edgecls.runtime.openset import RULE_CHOICES
from edgecls.runtime.preprocess import DEFAULT_FIT, DEFAULT_RESIZE, FITS, RESIZE_METHODS

# fail: one line on stderr and the exit code (edgecls.exits', which the lean predict path shares)
__all__ = ["INPUT_RANGE_DEFAULT", "INPUT_RANGE_HELP", "INTERPRETER", "LIVE_PANEL", "OUTPUT", "PREPROCESSING",
           "AcceptOption", "Backend", "Capture", "CollectDir", "CollectMaxMb", "CollectReserveMb", "CollectWhen",
           "Command", "FitOption", "Group", "InputRange", "Labels", "LiveCapture", "LiveEvery", "LiveFps",
           "LiveReconnect", "LiveTimeout", "ResizeOption", "RuleOption", "Shadow", "ShadowEvery", "Threads", "Typer",
           "UnknownDataOption", "choice", "choices", "echo_wrapped", "fail", "plain"]


def echo_wrapped(text: str, err: bool = False) -> None:
    """Closing lines (a summary, "Next: edgecls ...") wrapped by word to the terminal ($COLUMNS, else its
    width; a pipe or a file gets them whole): a command stays one shell command, continued with " \\"."""
    import sys

    from edgecls.console import output_width, wrapped_lines

    for line in wrapped_lines(text, output_width(sys.stderr if err else sys.stdout)):
        typer.echo(line, err=err)


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """An Enum of the library's own choice tuple: the one list the CLI, the TOML and validation share."""
    return Enum(name, {v.replace("-", "_"): v for v in values}, type=str)  # type: ignore[return-value]


def choice(kind: type[Enum], what: str) -> dict[str, Any]:
    """typer.Option arguments for an Enum choice: case-insensitive (`--color RGB`), a one-line
    'unknown <what>' error, and the choices as the metavar."""
    names = [member.value for member in kind]

    def parse(value: Any) -> Enum:
        if isinstance(value, kind):
            return value
        for member in kind:
            if member.value.lower() == str(value).strip().lower():
                return member
        raise typer.BadParameter(f"unknown {what} {value!r}: use one of {', '.join(names)}")

    return {"parser": parse, "metavar": "|".join(names)}


def plain(value: Any) -> Any:
    """What the library takes: Enum members as their strings, paths as strings (a list's too)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


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
# predict, info, explain and bench of a .tflite import only edgecls.runtime: never TensorFlow.
# Their --help panels (a property of each option, see edgecls.cli.helpview):
INTERPRETER = "Interpreter"
PREPROCESSING = "Preprocessing (default: what the model's metadata says)"
OUTPUT = "Output"
_BACKEND_HELP = "litert | tflite_runtime | tensorflow"
_BACKEND_DEFAULT = "$EDGECLS_BACKEND, else the first one installed, in that order"
INPUT_RANGE_HELP = ("LO,HI: the input values pixels 0 and 255 become, for a model that does not scale inside: "
                    "-1,1 (MobileNet style), 0,1, ...; overrides the model's metadata")
INPUT_RANGE_DEFAULT = ("the metadata's range; else 0,255 for a float input (edgecls models scale inside), the raw "
                       "bytes for a quantised one")
Backend = Annotated[Optional[str], typer.Option(help=_BACKEND_HELP, show_default=_BACKEND_DEFAULT,
                                                rich_help_panel=INTERPRETER)]
Threads = Annotated[Optional[int], typer.Option(min=1, help="Interpreter threads", show_default="the CPU count",
                                                rich_help_panel=INTERPRETER)]
InputRange = Annotated[
    Optional[str],
    typer.Option("--input-range", metavar="LO,HI", help=INPUT_RANGE_HELP, show_default=INPUT_RANGE_DEFAULT,
                 rich_help_panel=PREPROCESSING),
]
Labels = Annotated[
    Optional[Path],
    typer.Option(help="Labels file ('0 cat', '0: cat' or one name a line); overrides the model's own labels",
                 show_default="the model's own, else labels.txt beside it, else the class indices",
                 rich_help_panel=OUTPUT),
]

Resize = choices("Resize", RESIZE_METHODS)
Fit = choices("Fit", FITS)
_PREPROCESSING_DEFAULT = f"the model's metadata, else {DEFAULT_RESIZE}"
ResizeOption = Annotated[Optional[Resize], typer.Option(
    help="How a picture is resized to the model's input: match what the model was trained or evaluated with "
    "(Google's Coral MobileNets: nearest)", show_default=_PREPROCESSING_DEFAULT, rich_help_panel=PREPROCESSING,
    **choice(Resize, "resize method"))]
FitOption = Annotated[Optional[Fit], typer.Option(
    help="stretch: the whole picture, aspect ratio not kept; crop: its centre at the model's aspect ratio",
    show_default=f"the model's metadata, else {DEFAULT_FIT}", rich_help_panel=PREPROCESSING, **choice(Fit, "fit"))]


# Live input (a camera, video file or stream): `predict --source` and `serve --source`.
Capture = choices("Capture", CAPTURE_BACKENDS)
LIVE_PANEL = "Live input"
LiveEvery = Annotated[int, typer.Option("--every", min=1, metavar="N", rich_help_panel=LIVE_PANEL,
                                        help="Classify every Nth frame")]
LiveFps = Annotated[Optional[float], typer.Option(
    "--fps", min=0.001, metavar="F", rich_help_panel=LIVE_PANEL, show_default="no limit",
    help="Classify at most F frames a second (of the video's own time for a file)")]
LiveTimeout = Annotated[float, typer.Option(
    "--timeout", min=0.1, metavar="SECONDS", rich_help_panel=LIVE_PANEL,
    help="How long to wait for a stream to connect, or for its next frame")]
LiveReconnect = Annotated[float, typer.Option(
    "--reconnect", min=0, metavar="SECONDS", rich_help_panel=LIVE_PANEL,
    help="After a camera or stream drops, keep reopening it (with back-off) this long; 0: end at once")]
LiveCapture = Annotated[Optional[Capture], typer.Option(
    "--capture", rich_help_panel=LIVE_PANEL, show_default="picamera2 for a camera when installed, else opencv",
    help="The capture backend", **choice(Capture, "capture backend"))]


# ----------------------------------------------------------------------------- the unknown answer
# export, train --backbone and calibrate choose an open-set rule (edgecls.calibrate): one block of options.

_UNKNOWN = "Unknown answer"
Rule = choices("Rule", RULE_CHOICES)
AcceptOption = Annotated[float, typer.Option(
    "--accept", min=0.5, max=0.999, metavar="SHARE", rich_help_panel=_UNKNOWN,
    help="The share of validation images of known classes the unknown rule accepts; below its thresholds an "
         "image is answered 'unknown'")]
UnknownDataOption = Annotated[Optional[Path], typer.Option(
    "--unknown-data", metavar="FOLDER", rich_help_panel=_UNKNOWN, show_default="none",
    help="Images of none of the classes (any layout): the rule that rejects most of them is chosen")]
RuleOption = Annotated[Rule, typer.Option(
    "--rule", rich_help_panel=_UNKNOWN, **choice(Rule, "rule"),
    help="top: the calibrated top probability; embedding: the similarity to the nearest class prototype; "
         "both: either low; auto: both where the model has an embedding, or the best on --unknown-data")]


# ----------------------------------------------------------------------------- collect
# `predict --collect` and `serve --collect`: keep what the model was unsure of (edgecls.runtime.collect).

_COLLECT = "Collect for the next training"
CollectDir = Annotated[Optional[Path], typer.Option(
    "--collect", metavar="DIR", rich_help_panel=_COLLECT, show_default="none: keep nothing",
    help="Keep the images or frames a --collect-when rule picks as DIR/<answer>/NAME (the answer: a label or "
         "unknown) with a JSON sidecar; move each file into the right class folder, then train with them")]
CollectWhen = Annotated[Optional[list[str]], typer.Option(
    "--collect-when", metavar="RULES", rich_help_panel=_COLLECT,
    show_default="unknown for a model with an unknown rule, else uncertain<0.6",
    help="unknown, uncertain<0.6 (calibrated top score), margin<0.2 (top minus second), class=NAME, sample=0.01, "
         "every=600s, disagree (with --shadow): a comma list, or repeat the option; the first rule that fires is "
         "recorded")]
CollectMaxMb = Annotated[Optional[float], typer.Option(
    "--collect-max-mb", metavar="MB", rich_help_panel=_COLLECT, show_default="no cap",
    help="Keep nothing more once DIR holds this many MB (said once, and counted in the summary)")]
CollectReserveMb = Annotated[Optional[float], typer.Option(
    "--collect-reserve-mb", metavar="MB", rich_help_panel=_COLLECT, show_default="200",
    help="Keep nothing that would leave less than this much free space on DIR's disk")]
Shadow = Annotated[Optional[Path], typer.Option(
    "--shadow", metavar="OTHER.tflite", rich_help_panel=_COLLECT, show_default="none",
    help="A second model with the same labels (e.g. the float32 file beside the int8 one) for --collect-when "
         "disagree: it classifies every --shadow-every-th image too")]
ShadowEvery = Annotated[Optional[int], typer.Option(
    "--shadow-every", min=1, metavar="N", rich_help_panel=_COLLECT, show_default="5",
    help="Run the --shadow model on every Nth image or frame offered (1: all)")]
