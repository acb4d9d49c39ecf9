"""A command's options made from its options records (edgecls.options): one Typer parameter per field,
in one place, so that adding an option is a field of the record and nothing else.

    @app.command(epilog="Example: ...")
    @takes(BenchOptions)
    def bench_run(options: BenchOptions) -> None:
        bench(options, Reporter())

The command's signature is the records' fields (a nested record's flattened in its place), then the
body's own parameters after its records (a typer.Context, say). Each field becomes
`Annotated[type, typer.Option(...)]` from its Option: flags, help, panel, metavar, shown default,
choices as an Enum (common.choices: case-insensitive, one-line errors), bounds given to the parser only
where the Option says so. The values come back as the record's own: Enum members as their strings,
text through the Option's `parse`, a Path kept as text where the field is text.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgecls.options import Option, as_text, base_type, hints, nested, spec_of

Build = Callable[[dict[str, Any]], Any]


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


def takes(*records: type, panels: Sequence[str] = (), optional: Sequence[type] = ()
          ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command body `body(record, ..., *own)`: Typer sees the records' fields as its options.
    A field two records share (the same name, declared alike) is one option that fills both. A record
    in `optional` is None unless its first field, the one that asks for it, is given (export --target).
    --help shows a panel where its first option comes, or in the order `panels` names them."""

    def decorate(body: Callable[..., Any]) -> Callable[..., Any]:
        parameters: dict[str, inspect.Parameter] = {}
        specs: dict[str, Option] = {}
        builds = []
        for record in records:
            found, build = _parameters(record, asked=record in optional)
            for parameter, spec in found:
                if parameter.name in specs and spec != specs[parameter.name]:
                    raise TypeError(f"{body.__name__}: --{parameter.name} is declared differently in two records")
                parameters.setdefault(parameter.name, parameter)
                specs.setdefault(parameter.name, spec)
            builds.append(_optional(record, build) if record in optional else build)
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for p in list(inspect.signature(body, eval_str=True).parameters.values())[len(records):]]
        repeated = sorted(p.name for p in own if p.name in parameters)
        if repeated:
            raise TypeError(f"{body.__name__}: options named twice: {', '.join(repeated)}")

        def command(**given: Any) -> Any:
            return body(*(build(given) for build in builds), **{p.name: given[p.name] for p in own})

        command.__name__, command.__doc__ = body.__name__, body.__doc__
        command.__module__, command.__qualname__ = body.__module__, body.__qualname__
        command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            _by_panel([*parameters.values(), *own], panels))
        return command

    return decorate


def _by_panel(parameters: list[inspect.Parameter], panels: Sequence[str]) -> list[inspect.Parameter]:
    """The panels named first, in that order (stable: each panel's options in their own order)."""
    def rank(parameter: inspect.Parameter) -> int:
        info = next((a for a in getattr(parameter.annotation, "__metadata__", ()) if hasattr(a, "rich_help_panel")),
                    None)
        panel = getattr(info, "rich_help_panel", None)
        return panels.index(panel) if panel in panels else len(panels)

    return sorted(parameters, key=rank) if panels else parameters


def _parameters(record: type, asked: bool = False) -> tuple[list[tuple[inspect.Parameter, Option]], Build]:
    """The command-line parameters of `record`'s fields and the function that builds it from their values.
    `asked`: the record is made only when its first field is given, which the command line may leave out."""
    parameters: list[tuple[inspect.Parameter, Option]] = []
    parts: list[tuple[str, Build]] = []
    for f in dataclasses.fields(record):
        inner = nested(record, f)
        spec = spec_of(f)
        if inner is not None:  # a record in the record (serve's ModelSettings, bench's RemoteOptions)
            found, build = _parameters(inner, asked=f.default is None)
            parameters += found
            parts.append((f.name, _optional(inner, build) if f.default is None else build))
            continue
        if spec is None or not spec.command_line:
            continue
        parameters.append((_parameter(record, f, spec, asked and not parts), spec))
        parts.append((f.name, _reader(record, f, spec)))

    def build(given: dict[str, Any]) -> Any:
        return record(**{name: read(given) for name, read in parts})

    return parameters, build


def _optional(record: type, build: Build) -> Build:
    """An optional record (`remote: Optional[RemoteOptions]`, export's TargetOptions) is None unless its
    first field, the one that asks for it (--remote HOSTS, --target DEVICE), is given."""
    first = dataclasses.fields(record)[0].name
    return lambda given: build(given) if given.get(first) is not None else None


def annotated(record: type, name: str) -> Any:
    """The `Annotated[type, typer.Option(...)]` of one field of `record`: a command without a record of its
    own declares a shared option (edgecls.runtime.settings') with it."""
    f = next(f for f in dataclasses.fields(record) if f.name == name)
    return _parameter(record, f, spec_of(f)).annotation


def _parameter(record: type, f: Field, spec: Option, asks: bool = False) -> inspect.Parameter:
    """`asks`: the field that asks for an optional record: None when the command line leaves it out."""
    hint = hints(record)[f.name]
    kind = base_type(hint)
    default = None if asks else inspect.Parameter.empty if spec.required else _default(f)
    extra: dict[str, Any] = {}
    if spec.choices:
        kind = choices(f.name.title().replace("_", ""), spec.choices)
        extra = choice(kind, spec.what or spec.flag(f.name))
    elif spec.multiple:
        kind, default = list[str], None
    elif spec.parse is not None:
        kind = str
        default = as_text(spec, default) if default is not inspect.Parameter.empty else default
    elif spec.kind is not None:
        kind = spec.kind
    optional = default is None or (spec.argument and default is not inspect.Parameter.empty) or spec.multiple
    python_type = Optional[kind] if optional else kind  # type: ignore[valid-type]
    if spec.argument:
        info = typer.Argument(help=spec.help, **_shown(spec), **({"metavar": spec.metavar} if spec.metavar else {}))
    else:
        if spec.metavar is not None:
            extra["metavar"] = spec.metavar
        if spec.range_in_help:
            extra.update({k: v for k, v in (("min", spec.low), ("max", spec.high)) if v is not None})
        if spec.eager is not None:
            extra.update(is_eager=True, callback=spec.eager)
        info = typer.Option(*_flags(f, spec, kind), help=spec.help, rich_help_panel=spec.panel, **_shown(spec),
                            **extra)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[python_type, info])


def _flags(f: Field, spec: Option, kind: Any) -> tuple[str, ...]:
    if spec.flags:
        return spec.flags
    flag = spec.flag(f.name)
    return (f"{flag}/--no-{flag[2:]}",) if kind is bool and f.default is True else (flag,)


def _shown(spec: Option) -> dict[str, Any]:
    return {} if spec.show_default is None else {"show_default": spec.show_default}


def _default(f: Field) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return inspect.Parameter.empty if f.default is MISSING else f.default


def _reader(record: type, f: Field, spec: Option) -> Build:
    """The field's value from what the command line gave (the record's own type)."""
    wants_text = base_type(hints(record)[f.name]) is str

    def read(given: dict[str, Any]) -> Any:
        value = given[f.name]
        value = value.value if isinstance(value, Enum) else value
        if value is None or (spec.multiple and not value):  # left out: the record's own default
            default = _default(f)
            return None if default is inspect.Parameter.empty else default
        if spec.parse is not None and not spec.choices:
            return spec.parse(value)
        if isinstance(value, Path) and wants_text:
            return str(value)
        return list(value) if isinstance(value, (list, tuple)) else value

    return read
