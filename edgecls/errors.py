"""The one exception type the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's text, or its type's name: for one-line errors."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


class EdgeclsError(Exception):
    """A user-facing error: the message names the cause and, where possible, the fix.

    `exit_code` follows the CLI's documented codes: 1 for a failed job, 2 for bad input.
    """

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C's KeyboardInterrupt would be, so that everything that
    cleans up after Ctrl-C (a staged run directory, a temporary file) cleans up after them too."""

    def __init__(self, signum: int, name: str):
        super().__init__(name)
        self.signum, self.name = signum, name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 143 for SIGTERM, 129 for SIGHUP


class MissingExtraError(EdgeclsError):
    """A workstation-side command was run where TensorFlow is not installed."""

    def __init__(self, what: str):
        super().__init__(
            f"{what} needs TensorFlow, which is not installed here: "
            "pip install 'edgecls[train]'  (the device side needs only 'pip install edgecls')",
            exit_code=2,
        )


def require_tensorflow(what: str):
    """Import TensorFlow for `what`, or raise a MissingExtraError that says how to install it.

    TensorFlow's C++ side prints start-up chatter (oneDNN, CUDA probing) straight to file
    descriptor 2 before its logging is configured; TF_CPP_MIN_LOG_LEVEL cannot hide it, so
    the import and device initialisation run with fd 2 pointed at /dev/null
    (EDGECLS_DEBUG=1 shows it).
    """
    try:
        from edgecls.native_stderr import native_stderr_silenced

        with native_stderr_silenced():
            import tensorflow as tf

            tf.config.list_logical_devices()  # initialise devices now, quietly
    except ImportError:
        raise MissingExtraError(what) from None
    tf.get_logger().addFilter(_no_retracing_hint)
    return tf


def _no_retracing_hint(record: logging.LogRecord) -> bool:
    """False for TensorFlow's "N out of the last N calls ... triggered tf.function retracing" warning: a
    hint to TensorFlow's own callers (Keras' predict makes a function per model, and search and export
    predict with many models in one process), ten lines of noise to a user."""
    return "triggered tf.function retracing" not in record.getMessage()
