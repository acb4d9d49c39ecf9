"""Every `edgecls` command's --help: an example, its defaults, and names instead of Typer's type labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import pytest
import typer
from typer.core import TyperArgument, TyperGroup

from edgecls.cli import app
from edgecls.cli.common import Typer


def _commands() -> list[tuple[tuple[str, ...], object]]:
    """(path, command) for every command and group of the app, the root included."""
    found = []

    def walk(path: tuple[str, ...], command) -> None:
        found.append((path, command))
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                walk((*path, name), sub)

    walk((), typer.main.get_command(app))
    return found


COMMANDS = _commands()
IDS = [" ".join(path) or "edgecls" for path, _ in COMMANDS]


def test_the_walk_finds_every_command():
    assert set(IDS) >= {"edgecls", "train", "export", "predict", "info", "doctor", "explain", "bench", "bench run",
                        "bench compare"}


@pytest.mark.parametrize("path, command", COMMANDS, ids=IDS)
def test_help_shows_no_type_labels_of_flags_or_lists(path, command, cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one row an option: nothing hidden by wrapping
    result = cli(*path, "--help")
    assert result.code == 0, result.err
    assert "<bool>" not in result.out and "<list[" not in result.out, result.out
    assert "Show this message and exit." in result.out
    arguments = [p for p in command.params if isinstance(p, TyperArgument)]
    for argument in arguments:  # named as the usage line names them: MODEL, IMAGES..., PATHS...
        shown = argument.name.upper() + ("..." if argument.nargs != 1 else "")
        assert shown in result.out, (shown, result.out)
    if arguments:
        usage = next(line for line in result.out.splitlines() if "Usage:" in line)
        assert "{" not in usage and all(a.name.upper() in usage for a in arguments), usage


@pytest.mark.parametrize("path, command", COMMANDS, ids=IDS)
def test_help_has_an_example(path, command):
    assert command.epilog and "edgecls " in command.epilog and command.epilog.lstrip().startswith("Example"), path


@pytest.mark.parametrize("path, command", COMMANDS, ids=IDS)
def test_every_option_with_a_value_shows_its_default(path, command):
    ctx = typer.Context(command, info_name=" ".join(path) or "edgecls")
    for param in command.params:
        if isinstance(param, TyperArgument) or param.is_flag and not param.secondary_opts:
            continue  # a plain flag is off unless given; --x/--no-x flags show theirs
        if param.default is None and not isinstance(param.show_default, str):
            continue  # an optional value with no default; its help says what leaving it out does
        _, help_text = param.get_help_record(ctx)
        assert "[default: " in help_text, (path, param.name, help_text)
        assert "[default: (" not in help_text or isinstance(param.show_default, str), (path, param.name)


def test_a_new_command_gets_the_look_without_metavars(monkeypatch, capsys):
    """What edgecls.cli.common.Typer does for a command written plainly (no metavar anywhere)."""
    tiny = Typer()

    @tiny.command(epilog="Example: tiny a.png")
    def look(files: Annotated[list[Path], typer.Argument(help="Files")],
             name: Annotated[Optional[str], typer.Argument(help="A name")] = None,
             loud: Annotated[bool, typer.Option("--loud", help="Shout")] = False) -> None:
        """A tiny command."""

    @tiny.command()
    def other() -> None:
        """Two commands, so `look` is a sub-command with its own usage line."""

    monkeypatch.setenv("COLUMNS", "120")
    with pytest.raises(SystemExit):
        tiny(["look", "--help"], prog_name="tiny")
    out = capsys.readouterr().out
    assert "Usage: tiny look [OPTIONS] FILES... [NAME]" in out
    assert "FILES..." in out and "NAME" in out and "<" not in out, out
    with pytest.raises(SystemExit):
        tiny(["look"], prog_name="tiny", standalone_mode=True)
    assert "Missing argument 'FILES'" in capsys.readouterr().err
