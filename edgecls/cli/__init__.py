"""The `edgecls` command line: thin commands that parse options and call library functions.

One module a command group, so a command's options are found by the file name:
- `root`: the app, `--version`, `main` (errors become one line and an exit code);
- `common`: the help's look (`Typer`), options several commands share; `records`: a command's options made
  from its options record (`takes`), Enum choices;
- `train`, `export`, `calibrate`, `search`, `device` (predict, info, doctor), `explain`, `serve`, `bench` (run,
  compare), `data` (check).
The console script is edgecls.entry: a lean `predict` path without Typer, this app for the rest.

Heavy imports (TensorFlow above all) happen inside the command that needs them, so that
`edgecls predict` on a device never pays for them, and cheap checks (an existing --out, a bad
choice) fail before them.

Style, so that adding an option is one edit:
- a command with an options record (edgecls.options: train, export, search, bench, serve, explain, data
  check) takes its fields through `records.takes`: adding an option is a field of the record, and its help,
  panel, bounds, TOML key and command-line form come from that field;
- the other commands' parameters are `name: Annotated[type, typer.Option(help=...)] = default`; choices are
  Enums made from the library's own tuples by `records.choices` (case-insensitive, one-line errors);
- a default that is not a plain value is shown with `show_default="..."` (never "[default: ...]"
  in the help text: Rich markup eats the brackets); `common.Typer` keeps `<bool>` off flags;
- a command body calls one library function; every command's epilog has at least one example
  (tests/test_cli_help.py checks both the examples and the defaults);
- `train --config FILE.toml` and `--from RUN` give the values of the options not given on the command
  line (train.options.with_config): the TOML keys are the field names.

Exit codes: 0 success; 1 the job ran but failed (e.g. some files in a batch could not be
classified, or int8 agreement fell below --min-agreement); 2 bad input or usage; 130 interrupted
(143 SIGTERM, 129 SIGHUP: treated like Ctrl-C by edgecls.entry).
"""

from edgecls.cli.root import app, main

__all__ = ["app", "main"]
