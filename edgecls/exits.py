"""How every edgecls process starts and ends, on the lean predict path (edgecls.entry) and the Typer
app (edgecls.cli) alike: what it sets first, and errors as one line on stderr and an exit code."""

from __future__ import annotations

import errno
import os
import stat
import sys
import warnings
from collections.abc import Callable
from typing import Any

from edgecls.errors import EdgeclsError, Terminated
from edgecls.text import clean_text

# Signals treated like Ctrl-C (service managers, `kill`, a closed terminal), by number and name.
TERMINATING = ((15, "SIGTERM"), (1, "SIGHUP"))
INTERRUPTED = 130  # the exit code of a Ctrl-C
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
    # One line, whatever the message carries (file names with newlines or terminal escapes).
    text = " ".join(clean_text(part) for part in str(message).splitlines())
    if len(text) > MAX_ERROR_CHARS:
        text = f"{text[:MAX_ERROR_CHARS]}... ({len(text)} characters)"
    sys.stderr.write(f"edgecls: error: {text}\n")
    sys.stderr.flush()
    raise SystemExit(code)


# errno values only a write gives (edgecls.atomic.WRITE_FAILURES, which predict's cold start does not import;
# errno itself is loaded at Python's start-up)
_WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


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
        fail("interrupted", INTERRUPTED)
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
