"""Keeping native libraries' chatter (TensorFlow's and LiteRT's C++ side, which write straight to
file descriptor 2) off the terminal: one fd-2 redirect, two policies.

- `native_stderr_silenced()`: drop everything (TensorFlow's start-up and converter noise).
- `quiet_native_stderr(captured)`: drop the INFO lines and pass the rest through; on an
  exception, hand every line to `captured` for the one-line error message (LiteRT's loader).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import IO


@contextlib.contextmanager
def _fd_redirected(target: int, fd: int = 2) -> Iterator[None]:
    """Point file descriptor `fd` at `target` for the block, then restore it."""
    sys.stderr.flush()
    saved = os.dup(fd)
    os.dup2(target, fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Everything written to fd 2 in the block is dropped (EDGECLS_DEBUG=1 keeps it)."""
    if os.environ.get("EDGECLS_DEBUG"):
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with _fd_redirected(devnull):
            yield
    finally:
        os.close(devnull)


@contextlib.contextmanager
def quiet_native_stderr(captured: list[str] | None = None) -> Iterator[None]:
    """Keep the native runtime's chatter off the terminal.

    C++ prints straight to file descriptor 2 ("INFO: Created TensorFlow Lite XNNPACK delegate",
    or the real reason a model failed to load). On success the INFO lines are dropped and the
    rest passed through; on an exception every line goes to `captured` for the error message.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured by a test runner)
        yield
        return
    failed = False
    with _scratch_file() as sink:
        try:
            with _fd_redirected(sink.fileno(), fd):
                yield
        except BaseException:
            failed = True
            raise
        finally:
            sink.seek(0)
            lines = sink.read().decode("utf-8", "replace").splitlines(True)
            if failed and captured is not None:
                captured.extend(lines)
            elif not failed:
                kept = "".join(line for line in lines if not line.startswith("INFO: "))
                if kept:
                    sys.stderr.write(kept)


def _scratch_file() -> IO[bytes]:
    """An anonymous file: in memory on Linux (memfd: no tempfile, shutil, bz2, lzma imports on the
    predict path's cold start), else tempfile's."""
    if hasattr(os, "memfd_create"):
        try:
            return open(os.memfd_create("edgecls-native-stderr"), "w+b")  # the caller closes it
        except OSError:
            pass
    import tempfile

    return tempfile.TemporaryFile()
