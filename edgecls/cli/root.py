"""The root `edgecls` app: the command groups of edgecls.cli.* put together, `--version`, and `main`
(edgecls' error handling around Typer: one line and an exit code for every error)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from edgecls.cli import bench, calibrate, data, device, explain, export, search, serve, train
from edgecls.cli.common import Typer, fail
from edgecls.exits import INTERRUPTED, guarded, prepare_process, termination

app = Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train a small image classifier, quantise it to int8 TFLite, and run and benchmark it on Pi-class CPUs.\n\n"
    "Exit codes: 0 ok; 1 the job failed (a batch had bad files, a quality gate failed); 2 bad input; 130 interrupted "
    "(143 SIGTERM, 129 SIGHUP).",
    epilog="Example:\n\nedgecls train && edgecls export runs/digits-seed && edgecls bench runs/digits-seed",
)
# Without a name each module's commands join the root (in this order in --help); bench is a group.
for commands in (train.app, export.app, calibrate.app, search.app, device.app, explain.app, serve.app):
    app.add_typer(commands)
app.add_typer(bench.app, name="bench")
app.add_typer(data.app, name="data")


def _show_version(value: bool) -> None:
    if value:
        from edgecls import __version__

        typer.echo(f"edgecls {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the edgecls version and exit", metavar="")] = False,
) -> None:
    """Keeps `edgecls` a group of sub-commands."""


def _cli_exceptions() -> tuple[tuple, tuple, tuple]:
    """(exit, usage-error, abort) exception types. Typer 0.29 has its own Exit/Abort and a vendored
    copy of click (typer._click) and does not install click; older Typers use click itself."""
    exits, usage, aborts = [typer.Exit], [], [typer.Abort]
    try:
        from typer._click import (
            exceptions as vendored,  # a private path, hence the fallbacks
        )

        usage.append(vendored.UsageError)
    except ImportError:
        pass
    try:
        import click
    except ImportError:  # the device side: Typer 0.29 alone
        pass
    else:
        exits.append(click.exceptions.Exit)
        usage.append(click.exceptions.UsageError)
        aborts.append(click.exceptions.Abort)
    return tuple(exits), tuple(usage), tuple(aborts)


def _interrupted() -> None:
    """Ctrl-C, or SIGTERM / SIGHUP (which Typer and click report as a Ctrl-C): one line each."""
    terminated = termination()
    if terminated is not None:
        raise terminated  # guarded says which signal, with its exit code
    fail("interrupted", INTERRUPTED)


def main() -> None:
    """The Typer app with edgecls' error handling (the console script, edgecls.entry, comes here
    for everything but its lean `predict`)."""
    prepare_process()
    exits, usage_errors, aborts = _cli_exceptions()

    def run_app() -> int:
        try:
            # Not standalone: click's usage errors come here and become one line like every other error.
            code = app(standalone_mode=False)  # click returns typer.Exit's code here instead of exiting
        except exits as exc:  # --help, typer.Exit(code)
            raise SystemExit(exc.exit_code) from None
        except usage_errors as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `edgecls` or `edgecls bench`: help was asked for
                typer.echo(exc.format_message())  # the help text
                raise SystemExit(0) from None
            where = " ".join(["edgecls", *(_subcommands(exc.ctx) if exc.ctx is not None else _named(sys.argv[1:]))])
            fail(f"{exc.format_message()} (see {where} --help)", 2)
        except aborts:
            _interrupted()
        if code == INTERRUPTED:  # Typer turns a KeyboardInterrupt into a silent return of 130 (no command returns it)
            _interrupted()
        return code if isinstance(code, int) else 0  # what click's standalone mode would have done

    guarded(run_app)  # edgecls errors, interrupts, a closed pipe, anything unforeseen: one line each


def _subcommands(ctx) -> list[str]:
    """The subcommand names of a click context ("bench", "compare"), without the program's own name, which
    is "python -m edgecls" when run that way."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.insert(0, ctx.info_name)
        ctx = ctx.parent
    return names


def _named(argv: list[str]) -> list[str]:
    """The commands the command line names first ("bench", "compare"): for a usage error click gives no
    context for (an option missing its value)."""
    command, names = typer.main.get_command(app), []
    for token in argv:
        command = getattr(command, "commands", {}).get(token)
        if command is None:
            break
        names.append(token)
    return names


if __name__ == "__main__":
    main()
