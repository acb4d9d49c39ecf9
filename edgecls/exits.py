"""How every edgecls process starts and ends, on the lean predict path (edgecls.entry) and the Typer
app (edgecls.cli) alike: what it sets first, and errors as one line on stderr and an exit code."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable

from edgecls.errors import EdgeclsError
from edgecls.text import clean_text


def prepare_process() -> None:
    """What every edgecls process sets first, on either path."""
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


def guarded(call: Callable[[], int]) -> None:
    """Run a command, turning the errors both paths share into one line and an exit code."""
    try:
        code = call()
    except EdgeclsError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:  # `edgecls info ... | head`: the reader has what it wanted
        try:  # and Python's flush at exit must not complain either
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        raise SystemExit(0) from None
    except MemoryError:
        fail("out of memory", 1)
    except Exception as exc:  # anything unforeseen: one line, traceback only on request
        if os.environ.get("EDGECLS_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
             "(set EDGECLS_DEBUG=1 for the traceback; please report it)", 1)
    raise SystemExit(code)
