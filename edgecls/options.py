"""Options records: one dataclass per command is the single source of its options. Each field says, in one
place, what the option is: its name, type and default (the field's own), its bounds or choices, its help
text and help panel, and how it reads from and writes back to text (a command line, a TOML table).

    @dataclass
    class BenchOptions:
        runs: int = option(200, low=1, panel=MEASURE, help="Timed images per model and thread count")

- edgecls.cli.records makes a command's Typer parameters from its record (adding an option is a field);
- `check(record)` checks every field's bounds and choices with one-line errors naming the option (each
  record's own validate calls it, then checks what involves several fields); a number's bounds are
  edgecls.bounds' (the one documented table) where it names the flag, else the Option's own low/high;
- `to_table(record)` and `from_table(cls, table, where)` write and read the record as TOML values
  (config.toml), `argv(record, ...)` as a command line (a device's).

Standard library only: the device side builds and checks its records without Typer.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, Field, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Optional, Union

from edgecls.bounds import BOUNDS, check_bound
from edgecls.errors import EdgeclsError

SPEC = "option"  # the key of a field's Option in its metadata
OUTPUT = "Output"  # the help panel most commands end with (where their files go)
MAX_SHOWN = 80  # characters of a bad value quoted back in an error (a 10 MB string is not echoed)


@dataclass(frozen=True)
class Option:
    """What one field of an options record is on a command line and in a TOML table."""

    help: str = ""
    panel: Optional[str] = None  # the --help panel (None: "Options", shown last)
    flags: tuple[str, ...] = ()  # its names, e.g. ("--json",); () is --the-field-name (--x/--no-x for a bool that
    #                              defaults to True)
    metavar: Optional[str] = None
    show_default: Union[str, bool, None] = None  # what --help gives as the default (None: the value itself)
    choices: tuple[str, ...] = ()  # the values it takes (the command line matches them case-insensitively)
    what: Optional[str] = None  # how errors name it ("unknown resize method 'x'"); None: its flag
    low: Optional[float] = None  # bounds of a number (each item of a list), checked by check()
    high: Optional[float] = None
    open_low: bool = False  # the bound itself excluded
    open_high: bool = False
    range_in_help: bool = False  # the bounds also go to the command line's parser: shown in --help, refused there
    parse: Optional[Callable[[str], Any]] = None  # its text (command line, TOML string) -> the value
    text: Optional[Callable[[Any], str]] = None  # the value -> the text `parse` reads back
    kind: Any = None  # the command line's type when it is not the field's (Path for a path kept as str)
    argument: bool = False  # positional on the command line
    required: bool = False  # the command line must give it (the record's own default is for library callers)
    multiple: bool = False  # the option may be repeated; `parse` then takes the list of its values
    command_line: bool = True  # False: set by the program, never given (the command line itself, say)
    toml: bool = True  # written to and read from a TOML table (False: how a run is made, not what it is)
    eager: Optional[Callable[..., Any]] = None  # a command-line callback run before the others (--config)

    def flag(self, name: str) -> str:
        """The option's name as a user types it: its first flag, or --the-field-name."""
        return self.flags[0] if self.flags else f"--{name.replace('_', '-')}"


def option(default: Any = MISSING, *, default_factory: Any = MISSING, marks: Optional[dict] = None,
           **spec: Any) -> Any:
    """A field of an options record: `default` as dataclasses.field takes it, then the Option's parts;
    `marks` are further metadata a record's own code reads (bench's measured/host)."""
    return field(default=default, default_factory=default_factory,
                 metadata={SPEC: Option(**spec), **(marks or {})})


def argument(default: Any = MISSING, **spec: Any) -> Any:
    """A positional argument of the command line (PATHS..., MODEL)."""
    return option(default, argument=True, **spec)


def with_spec(base: Any, **changes: Any) -> Any:
    """`base` (a field made by option()) with some of its Option's parts changed and marks added
    (`marks={...}`): an option several records share, declared once, told in each record's own words."""
    marks = changes.pop("marks", {})
    spec = dataclasses.replace(base.metadata[SPEC], **changes)
    return field(default=base.default, default_factory=base.default_factory,
                 metadata={**base.metadata, SPEC: spec, **marks})


def spec_of(f: Field) -> Optional[Option]:
    return f.metadata.get(SPEC)


@cache
def hints(cls: type) -> dict[str, Any]:
    """The record's field types, resolved (records use `from __future__ import annotations`)."""
    return typing.get_type_hints(cls)


def base_type(hint: Any) -> Any:
    """int for Optional[int], list[int] for Optional[list[int]]: the type without None."""
    if typing.get_origin(hint) is Union or type(hint).__name__ == "UnionType":
        kinds = [a for a in typing.get_args(hint) if a is not type(None)]
        return kinds[0] if len(kinds) == 1 else hint
    return hint


def nested(cls: type, f: Field) -> Optional[type]:
    """The record type of a field that holds a record (ServeOptions.settings), else None."""
    kind = base_type(hints(cls)[f.name])
    return kind if dataclasses.is_dataclass(kind) else None


def options_of(cls: type) -> Iterator[tuple[Field, Option]]:
    """(field, its Option) of every field that has one, in the record's order (nested records not opened)."""
    for f in dataclasses.fields(cls):
        spec = spec_of(f)
        if spec is not None:
            yield f, spec


# ---------------------------------------------------------------------- checks
def check(record: Any) -> None:
    """Every field's bounds and choices (nested records too), or a one-line EdgeclsError naming the option."""
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check(value)
            continue
        spec = spec_of(f)
        if spec is None or value is None:
            continue
        name = spec.what or spec.flag(f.name)
        for item in value if isinstance(value, (list, tuple)) and spec.choices else [value]:
            if spec.choices and item not in spec.choices:
                raise EdgeclsError(f"unknown {name} {shown(item)}: use one of {', '.join(spec.choices)}")
        numbers = [v for v in (value if isinstance(value, (list, tuple)) else [value])
                   if isinstance(v, (int, float)) and not isinstance(v, bool)]
        flag = spec.flag(f.name)
        for number in numbers:
            if flag in BOUNDS:  # the documented range of every numeric option, one table (edgecls.bounds)
                check_bound(flag, number)
                continue
            if isinstance(number, float) and not math.isfinite(number):
                raise EdgeclsError(f"{spec.flag(f.name)} must be a finite number (got {number})")
            if not _within(number, spec):
                raise EdgeclsError(f"{spec.flag(f.name)} must be {_bounds(spec)} (got {_got(value)})")


def _within(value: float, spec: Option) -> bool:
    low_ok = spec.low is None or (value > spec.low if spec.open_low else value >= spec.low)
    high_ok = spec.high is None or (value < spec.high if spec.open_high else value <= spec.high)
    return low_ok and high_ok


def _bounds(spec: Option) -> str:
    """The bounds in words: 'at least 1', '0 or more', 'more than 0', 'between 8 and 512', 'in [0, 1)'."""
    low, high = _number(spec.low), _number(spec.high)
    if spec.high is None:
        if spec.open_low:
            return f"more than {low}"
        return "0 or more" if spec.low == 0 else f"at least {low}"
    if spec.low is None:
        return f"less than {high}" if spec.open_high else f"at most {high}"
    if spec.open_low == spec.open_high:
        return f"between {low} and {high}"
    return f"in {'(' if spec.open_low else '['}{low}, {high}{')' if spec.open_high else ']'}"


def _number(value: Optional[float]) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _got(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def shown(value: Any) -> str:
    """repr(value), cut to MAX_SHOWN characters, for an error message."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"


def given(record: Any) -> list[str]:
    """The fields of `record` (with an Option) that differ from their defaults, in its order."""
    found = []
    for f, _ in options_of(type(record)):
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if default is MISSING or getattr(record, f.name) != default:
            found.append(f.name)
    return found


# ---------------------------------------------------------------------- text forms
def number_text(value: float) -> str:
    """The shortest text that reads back as exactly `value`: 20.0 -> '20', 0.1 -> '0.1', 1/3 -> its repr."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def as_text(spec: Option, value: Any) -> Any:
    """A value as its text form writes it: the Option's own `text`, lists comma-joined (numbers exact),
    paths as strings; numbers, booleans and strings as they are (TOML keeps their type)."""
    if value is None:
        return None
    if spec.text is not None:
        return spec.text(value)
    if isinstance(value, (list, tuple)):
        return ",".join(number_text(v) if isinstance(v, float) else str(v) for v in value)
    return str(value) if isinstance(value, Path) else value


def to_table(record: Any) -> dict[str, Any]:
    """The record as a TOML table: every field with an Option that TOML keeps, in the record's order
    (None left for the writer to leave out)."""
    return {f.name: _toml_value(spec, getattr(record, f.name)) for f, spec in options_of(type(record)) if spec.toml}


def _toml_value(spec: Option, value: Any) -> Any:
    """A repeatable option's values stay a TOML array (train --add); the rest as their text form writes them."""
    if spec.multiple and spec.parse is None and value is not None:
        return [str(v) for v in value]
    return as_text(spec, value)


def from_table(cls: type, table: dict[str, Any], where: str) -> dict[str, Any]:
    """The field values a TOML table gives (keys may use - for _), each checked against its field's type
    and read by its Option's `parse` when it is text; one-line errors naming `where` (the file) and the
    key. Tables inside (a run's [versions]) are skipped; an unknown key is an error."""
    known = {f.name: (f, spec) for f, spec in options_of(cls) if spec.toml}
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            if isinstance(value, dict):
                continue
            raise EdgeclsError(f"{where}: unknown key {shown(key)} (known: {', '.join(sorted(known))})")
        f, spec = known[name]
        values[name] = _from_toml(name, base_type(hints(cls)[name]), spec, value, where)
    return values


def _from_toml(name: str, kind: Any, spec: Option, value: Any, where: str) -> Any:
    if spec.multiple and spec.parse is None:  # a repeatable option: an array of text (or one text)
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return [value] if isinstance(value, str) else list(value)
        raise EdgeclsError(f"{where}: {name} must be a list of {spec.metavar or 'text'} values, got {shown(value)}")
    if isinstance(value, list) and all(isinstance(v, str) for v in value) and (kind is str or spec.parse):
        value = ",".join(value) if value else "none"  # a TOML list for a comma-list option
    if spec.parse is not None and isinstance(value, str):
        return spec.parse(value)
    wants = kind.__name__ if isinstance(kind, type) else str(kind)
    ok = {"int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool),
          "bool": isinstance(value, bool), "str": isinstance(value, str),
          "Path": isinstance(value, str)}.get(wants, False)
    if not ok:
        raise EdgeclsError(f"{where}: {name} must be {wants}, got {type(value).__name__} {shown(value)}")
    if wants == "float":
        if not math.isfinite(float(value)):
            raise EdgeclsError(f"{where}: {name} must be a finite number, got {value!r}")
        return float(value)
    return Path(value) if wants == "Path" else value


def argv(record: Any, skip: Callable[[Field], bool] = lambda f: False,
         value_of: Callable[[Field, Any], Any] = lambda f, value: value) -> list[str]:
    """The command-line words that give `record`'s values other than the defaults (a device's command
    line): `--flag value`, a bool as the flag that says its value (--latency-only, --no-memory).
    `skip` leaves fields out; `value_of` may replace a value (a host file by its name on the device)."""
    words: list[str] = []
    for f, spec in options_of(type(record)):
        value = getattr(record, f.name)
        if skip(f) or not spec.command_line or spec.argument or value is None or value == f.default:
            continue
        if isinstance(value, bool):
            words.append(spec.flag(f.name) if value else f"--no-{spec.flag(f.name)[2:]}")
            continue
        text = as_text(spec, value_of(f, value))
        words += [spec.flag(f.name), number_text(text) if isinstance(text, float) else str(text)]
    return words
