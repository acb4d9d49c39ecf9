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

import errno
import os
import re
import stat
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgecls.errors import EdgeclsError, Terminated

# `edgecls predict`'s options as edgecls.cli.device declares them: name -> (kind, the keyword it fills).
# An option missing here (a newer one) sends the whole command line to the Typer app.
_PREDICT_FLAGS = {"--json": "as_json", "--csv": "as_csv"}
_PREDICT_VALUES = {"--top-k": ("count", "top_k"), "-k": ("count", "top_k"), "--threads": ("count", "threads"),
                   "--labels": ("path", "labels"), "--backend": ("text", "backend"),
                   "--input-range": ("text", "input_range")}
_COUNT = re.compile(r"[0-9]+")  # click's int() takes more (+3, 1_0, ' 3'): those go to the Typer app


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
            "input_range": given.get("input_range")}


def _value(kind: str, text: str) -> Any:
    if kind == "count":  # --top-k and --threads: min=1
        return int(text) if _COUNT.fullmatch(text) and int(text) >= 1 else None
    if kind == "path":
        return _path(text)
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


def predict_options(as_json: bool, as_csv: bool, input_range: str | None, **arguments: Any) -> dict[str, Any]:
    """`edgecls predict`'s options as console.predict (and live.predict_stream) take them: the output
    format, the parsed input range and the rest as given."""
    if as_json and as_csv:
        raise EdgeclsError("choose one of --json and --csv")
    from edgecls.parsing import parse_range

    return {"fmt": "json" if as_json else "csv" if as_csv else "table", "input_range": parse_range(input_range),
            **arguments}


def run_predict(model: str, images: Sequence[str], **options: Any) -> int:
    """`edgecls predict MODEL IMAGES...`'s body (edgecls.cli.device.predict calls it too): the exit code."""
    from edgecls.console import predict

    return predict(model, images, **predict_options(**options))


# Signals treated like Ctrl-C (service managers, `kill`, a closed terminal), by number and name.
TERMINATING = ((15, "SIGTERM"), (1, "SIGHUP"))


_received: list[Terminated] = []  # what _terminated raised: Typer and click turn it into an Abort or a 130


def _terminated(signum: int, frame: Any) -> None:
    _received.append(Terminated(signum, dict(TERMINATING).get(signum, f"signal {signum}")))
    raise _received[-1]


def termination() -> Terminated | None:
    """The SIGTERM or SIGHUP this process received (as the Terminated it raised), if any."""
    return _received[-1] if _received else None


def treat_termination_like_ctrl_c() -> None:
    """SIGTERM and SIGHUP raise Terminated (a KeyboardInterrupt) instead of killing the process where
    it stands, which would leave a half-written run directory or temporary file behind. A signal
    already ignored (nohup) stays ignored. `_signal` is the C module Python loads at start-up (for
    SIGINT): `signal` itself would cost predict's cold start an import."""
    import _signal

    for signum, _ in TERMINATING:
        try:
            if _signal.getsignal(signum) == _signal.SIG_DFL:
                _signal.signal(signum, _terminated)
        except (ValueError, OSError):  # not the main thread, or a platform without the signal
            pass


def prepare_process() -> None:
    """What every edgecls process sets first, on either path."""
    treat_termination_like_ctrl_c()
    # Pillow warns (once, multi-line) between 1x and 2x its pixel limit; preprocess refuses such
    # images itself with a one-line reason.
    from PIL import Image

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter


MAX_ERROR_CHARS = 2000  # a value echoed back (a 10 MB config string) must not flood the terminal


def fail(message: str, code: int = 2) -> None:
    """Print `edgecls: error: MESSAGE` as one line on stderr and exit with `code`."""
    from edgecls.runtime.labels import clean_text

    # One line, whatever the message carries (file names with newlines or terminal escapes).
    text = " ".join(clean_text(part) for part in str(message).splitlines())
    if len(text) > MAX_ERROR_CHARS:
        text = f"{text[:MAX_ERROR_CHARS]}... ({len(text)} characters)"
    sys.stderr.write(f"edgecls: error: {text}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def _os_error_line(exc: OSError) -> str:
    """One line for an OSError no writer named (a full disk under a temporary file, standard output
    on /dev/full): the file if known, else standard output if that is what fails, and the reason."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        return f"{'cannot write' if exc.errno in _WRITE_FAILURES else 'cannot use'} {exc.filename}: {reason}"
    if _stdout_fails(exc):  # then give it /dev/null, so that Python's flush at exit stays quiet
        silence_stdout()
        return f"cannot write to standard output: {reason}"
    return f"cannot write: {reason}" if exc.errno in _WRITE_FAILURES else f"{type(exc).__name__}: {reason}"


def _stdout_fails(exc: OSError) -> bool:
    """Whether standard output is what refuses writes: a device that refuses even an empty write
    (/dev/full), or a file on a disk with no space left."""
    try:
        fd = sys.stdout.fileno()
        os.write(fd, b"")
        if exc.errno == errno.ENOSPC and stat.S_ISREG(os.fstat(fd).st_mode):
            return os.fstatvfs(fd).f_bavail == 0
    except (OSError, ValueError, AttributeError):
        return True
    return False


# errno values only a write gives (edgecls.atomic.WRITE_FAILURES, which predict's cold start does not import;
# errno itself is loaded at Python's start-up)
_WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def silence_stdout() -> None:
    try:  # Python's own flush at exit must not complain either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def guarded(call: Callable[[], int]) -> None:
    """Run a command, turning the errors both paths share into one line and an exit code."""
    try:
        code = call()
        sys.stdout.flush()  # here, not at exit: a full disk or /dev/full is then one line, not a traceback
    except EdgeclsError as exc:
        fail(str(exc), exc.exit_code)
    except Terminated as exc:
        fail(f"terminated by {exc.name}", exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:  # `edgecls info ... | head`: the reader has what it wanted
        silence_stdout()
        raise SystemExit(0) from None
    except MemoryError:
        fail("out of memory", 1)
    except OSError as exc:
        fail(_os_error_line(exc), 1)
    except Exception as exc:  # anything unforeseen: one line, traceback only on request
        if os.environ.get("EDGECLS_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
             "(set EDGECLS_DEBUG=1 for the traceback; please report it)", 1)
    raise SystemExit(code)


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
    prepare_process()
    guarded(lambda: run_predict(**arguments))


if __name__ == "__main__":
    main()
