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


# ---------------------------------------------------------------------- 80 columns (issue 22)
@pytest.mark.parametrize("path, command", COMMANDS, ids=IDS)
def test_help_fits_80_columns_with_nothing_cut(path, command, cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = cli(*path, "--help")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert [line for line in lines if len(line) > 80] == [], result.out
    assert "…" not in result.out, result.out
    for param in command.params:  # every option's name is there whole (a name is never cut or folded)
        for name in getattr(param, "opts", []):
            if name.startswith("--"):
                assert any(name in line for line in lines), (name, result.out)


def test_train_help_groups_its_options_in_panels_declared_with_each_option(cli, monkeypatch):
    train = dict(COMMANDS)[("train",)]
    panels = {param.name: getattr(param, "rich_help_panel", None) for param in train.params}
    # the panel is a property of the option itself (so it goes wherever the option is declared)
    assert panels["data"] == panels["img_size"] == panels["val_fraction"] == "Data"
    assert panels["arch"] == panels["dropout"] == "Model"
    assert panels["epochs"] == panels["lr"] == panels["patience"] == "Training"
    assert panels["backbone"] == panels["views"] and panels["backbone"].startswith("Backbone route")
    assert panels["alpha"] == "Model" and panels["weights"].startswith("Keras backbones")  # alpha: seed/mobile too
    assert panels["teacher"] == panels["mixup"] and panels["teacher"].startswith("Distillation")
    assert panels["out"] == panels["force"] == "Output"
    monkeypatch.setenv("COLUMNS", "80")
    out = cli("train", "--help").out
    titles = [line.split("─ ", 1)[1].split(" ─")[0] for line in out.splitlines() if line.startswith("╭─ ")]
    assert titles[:3] == ["Data", "Model", "Training"] and titles[-2:] == ["Output", "Options"], titles
    assert len(out.splitlines()) < 175  # was 235 at 80 columns; 148 before --from/--add, 162 before --teacher's panel


@pytest.mark.parametrize("path, command", COMMANDS, ids=IDS)
def test_help_examples_use_paths_a_user_has(path, command):
    assert "shared/data" not in (command.epilog or "") and "shared/data" not in (command.help or "")


def test_help_paragraphs_are_reflowed_and_examples_keep_their_own_lines():
    from edgecls.cli.helpview import flow
    from edgecls.console import command_lines

    source = ("Each file is scored with the device-side runtime on the validation split before anything is\n"
              "written: a table of size, accuracy and top-1 agreement with the Keras float model. Writes\n"
              "OUT/model_<mode>.tflite.")
    [paragraph] = flow(source, 60)
    lines = paragraph.splitlines()
    assert all(len(line) <= 60 for line in lines)
    # filled lines, not the source's 95-column lines cut in two (ragged: 60, 35, 60, 30 ...)
    assert all(len(line) > 48 for line in lines[:-1]), lines
    examples = flow("Examples:\n\nedgecls bench a.tflite\nedgecls bench b.tflite --threads 1,2", 60)
    assert examples == ["Examples:", "edgecls bench a.tflite\nedgecls bench b.tflite --threads 1,2"]
    wrapped = command_lines("edgecls train --data photos/ --backbone mobilenet_v1_0.25_128_quant.tflite --out runs/x",
                            40)
    assert all(len(line) <= 40 for line in wrapped) and all(line.endswith(" \\") for line in wrapped[:-1])
    assert " ".join(line.rstrip(" \\").strip() for line in wrapped).split() == (
        "edgecls train --data photos/ --backbone mobilenet_v1_0.25_128_quant.tflite --out runs/x".split())


def test_a_wrapped_command_is_still_one_command_for_the_shell():
    """'Next: edgecls ...' lines wrapped to the terminal: a shell given the lines reads the same words,
    a path longer than a line included (cut after a '/', joined again by the shell's line continuation)."""
    import shlex
    import subprocess

    from edgecls.console import command_lines

    words = ["edgecls", "predict", "/tmp/pytest-of-root/pytest-108/models0/quad_int8_meta/quad_int8_meta.tflite",
             "IMAGES...", "--labels", "/a b/labels.txt", "--resize", "nearest"]
    lines = command_lines(" ".join(shlex.quote(w) for w in words) + "  # the file the advice takes", 50)
    assert all(len(line) <= 50 for line in lines), lines
    done = subprocess.run(["bash", "-c", "printf '%s\\n' " + "\n".join(lines).split(" ", 1)[1]],
                          capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == words[1:]


@pytest.mark.parametrize("path, command", COMMANDS, ids=IDS)
def test_help_examples_and_defaults_copy_whole_at_80_columns(path, command, cli, monkeypatch):
    """An example that takes more than a line goes on after ' \\' (a shell reads one command), and a comma
    list default is broken after a comma, never inside an item."""
    import shlex

    monkeypatch.setenv("COLUMNS", "80")
    result = cli(*path, "--help")
    assert result.code == 0, result.err
    blocks: list[list[str]] = [[]]
    for line in result.out.split("╰")[-1].splitlines():  # the epilog: paragraphs between blank lines
        if line.strip():
            blocks[-1].append(line.strip().removeprefix("Example: "))
        elif blocks[-1]:
            blocks.append([])
    shown = []
    for block in blocks:
        if block and block[0].startswith(("edgecls ", "curl ")):
            text = ""
            for line in block:  # as a shell joins them: " \\" goes on with a space, a bare "\\" without
                text = text[:-1] + line if text.endswith("\\") else (text + " " + line).strip()
            shown.append(text.split("  # ")[0])
        for line in block[:-1]:
            if block[0].startswith(("edgecls ", "curl ")):
                assert line.endswith("\\"), (line, block)  # a line of a command that goes on ends in a backslash
    examples = [line.strip().removeprefix("Example: ") for line in (command.epilog or "").splitlines()
                if line.strip().removeprefix("Example: ").startswith(("edgecls ", "curl "))]
    for example in examples:
        assert any(shlex.split(text) == shlex.split(example.split("  # ")[0]) for text in shown), (example, shown)
    import re

    cells = "\n".join(line.strip(" │") for line in result.out.splitlines())
    for param in command.params:
        default = getattr(param, "default", None)
        if isinstance(default, str) and "," in default and param.show_default is not False:
            found = [m.group(1).split("\n") for m in re.finditer(r"\[default:\s*([^\]]*)\]", cells)
                     if re.sub(r"\s+", "", m.group(1)) == default]
            assert found, (default, result.out)
            for pieces in found:  # each line of the list ends after a comma: no item is split
                assert all(piece.strip().endswith(",") for piece in pieces[:-1] if piece.strip()), pieces
