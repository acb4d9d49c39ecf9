"""The `edgecls` console script: a lean path for `edgecls predict MODEL IMAGES...` and `--version`,
the full Typer app (edgecls.cli) for everything else.

Typer (with pydantic and rich) and the workstation-side modules that edgecls.cli imports cost
about 20 MiB and a third of a second before one image is classified; on a Pi Zero that is seconds.
So the common device-side calls are parsed here, by hand, and anything this parser is not sure of
— `--help`, an option it does not know, a bad or unusual value, a repeated option — goes to the
Typer app unchanged, which then answers (or errors) as it always has. The lean path must never
give an answer the Typer app would not: tests/test_entry.py runs argument vectors through both.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# `edgecls predict`'s options as edgecls.cli.device declares them: name -> (kind, the keyword it fills).
# An option missing here (a newer one) sends the whole command line to the Typer app.
_PREDICT_FLAGS = {"--json": "as_json", "--csv": "as_csv", "--no-unknown": "no_unknown"}
_PREDICT_VALUES = {"--top-k": ("count", "top_k"), "-k": ("count", "top_k"), "--threads": ("count", "threads"),
                   "--labels": ("path", "labels"), "--backend": ("text", "backend"),
                   "--input-range": ("text", "input_range"), "--collect": ("path", "collect"),
                   "--collect-when": ("list", "collect_when"), "--collect-max-mb": ("number", "collect_max_mb"),
                   "--collect-reserve-mb": ("number", "collect_reserve_mb"), "--shadow": ("path", "shadow"),
                   "--shadow-every": ("count", "shadow_every")}
_COUNT = re.compile(r"[0-9]+")  # click's int() takes more (+3, 1_0, ' 3'): those go to the Typer app
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")  # a plain decimal; click's float() takes more: the Typer app's


def predict_arguments(argv: Sequence[str]) -> dict[str, Any] | None:
    """The keyword arguments of `edgecls predict` for `argv` (after the program name), or None
    when the lean path does not handle this command line exactly as the Typer app would."""
    if len(argv) < 3 or argv[0] != "predict":
        return None
    given: dict[str, Any] = {}
    positional: list[str] = []
    rest = list(argv[1:])
    while rest:
        token = rest.pop(0)
        if token == "--":
            positional.extend(rest)
            break
        if not token.startswith("-") or token == "-":
            positional.append(token)
            continue
        name, equals, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if name in _PREDICT_FLAGS and not equals:
            key, parsed = _PREDICT_FLAGS[name], True
        elif name in _PREDICT_VALUES:
            if not equals:
                if not rest or rest[0].startswith("-"):  # click would take "-x" as the value: unusual, so not here
                    return None
                value = rest.pop(0)
            kind, key = _PREDICT_VALUES[name]
            parsed = _value(kind, value)
            if parsed is None:
                return None
        else:
            return None  # --help, an unknown or newer option, -k3, bundled short flags
        if key in given:
            return None  # a repeated option: click's last-one-wins is the Typer app's business
        given[key] = parsed
    model = _path(positional[0]) if len(positional) >= 2 else None
    if model is None:
        return None
    return {"model": model, "images": positional[1:], "top_k": given.get("top_k", 1),
            "as_json": given.get("as_json", False), "as_csv": given.get("as_csv", False),
            "threads": given.get("threads"), "labels": given.get("labels"), "backend": given.get("backend"),
            "input_range": given.get("input_range"), "unknown": not given.get("no_unknown", False),
            "collect": given.get("collect"), "collect_when": given.get("collect_when"),
            "collect_max_mb": given.get("collect_max_mb"), "collect_reserve_mb": given.get("collect_reserve_mb"),
            "shadow": given.get("shadow"), "shadow_every": given.get("shadow_every")}


def _value(kind: str, text: str) -> Any:
    if kind == "count":  # --top-k and --threads: min=1
        return int(text) if _COUNT.fullmatch(text) and int(text) >= 1 else None
    if kind == "path":
        return _path(text)
    if kind == "number":
        return float(text) if _NUMBER.fullmatch(text) else None
    if kind == "list":  # click gives a repeatable option as a list; repeated here: the Typer app's case
        return [text]
    return text


def _path(text: str) -> str | None:
    """A path argument as typer's Path gives it (pathlib-normalised), or None for what typer
    checks itself: an existing path that is not readable, an empty one, a NUL byte."""
    if not text or "\x00" in text:
        return None
    try:
        os.stat(text)
    except OSError:
        return str(Path(text))
    return str(Path(text)) if os.access(text, os.R_OK) else None


def main(argv: Sequence[str] | None = None) -> None:
    """The console script. `argv` defaults to sys.argv[1:]."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv == ["--version"]:
        from edgecls import __version__

        sys.stdout.write(f"edgecls {__version__}\n")
        raise SystemExit(0)
    arguments = predict_arguments(argv)
    if arguments is None:
        from edgecls.cli import main as full_main

        if argv != sys.argv[1:]:
            sys.argv = [sys.argv[0] if sys.argv else "edgecls", *argv]
        full_main()
        return
    from edgecls.console import run_predict
    from edgecls.exits import guarded, prepare_process

    prepare_process()
    guarded(lambda: run_predict(**arguments))


if __name__ == "__main__":
    main()
