"""Find a TFLite interpreter: LiteRT, then tflite_runtime, then TensorFlow (last resort).

Only the chosen backend is imported, so on a device with LiteRT neither TensorFlow nor
Keras is ever loaded. `backend=` or the EDGECLS_BACKEND environment variable forces one.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgecls.errors import EdgeclsError, first_line
from edgecls.native_stderr import quiet_native_stderr
from edgecls.runtime.metadata import ModelFileError

ENV_VAR = "EDGECLS_BACKEND"
BACKENDS: tuple[str, ...] = ("ai_edge_litert", "tflite_runtime", "tensorflow")
# Spellings users type, mapped to the module name.
ALIASES = {
    "litert": "ai_edge_litert", "ai-edge-litert": "ai_edge_litert", "ai_edge_litert": "ai_edge_litert",
    "tflite_runtime": "tflite_runtime", "tflite-runtime": "tflite_runtime",
    "tensorflow": "tensorflow", "tf": "tensorflow",
}
DISTRIBUTIONS = {
    "ai_edge_litert": ("ai-edge-litert",),
    "tflite_runtime": ("tflite-runtime",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-aarch64", "tf-nightly"),
}


@dataclass(frozen=True)
class Backend:
    name: str  # one of BACKENDS
    version: str
    interpreter_class: type


def _load_litert() -> tuple[type, str]:
    from ai_edge_litert import interpreter

    return interpreter.Interpreter, _version("ai_edge_litert")


def _load_tflite_runtime() -> tuple[type, str]:
    from tflite_runtime import interpreter

    return interpreter.Interpreter, _version("tflite_runtime")


def _load_tensorflow() -> tuple[type, str]:
    from edgecls.native_stderr import native_stderr_silenced

    with native_stderr_silenced():  # TensorFlow's start-up chatter (oneDNN, CUDA probing)
        import tensorflow as tf

    return tf.lite.Interpreter, tf.__version__


# name -> loader; a dict so that tests can stand in for missing packages.
LOADERS: dict[str, Callable[[], tuple[type, str]]] = {
    "ai_edge_litert": _load_litert,
    "tflite_runtime": _load_tflite_runtime,
    "tensorflow": _load_tensorflow,
}


@functools.cache  # each Classifier asks; importlib.metadata scans site-packages
def _version(module: str) -> str:
    loaded = getattr(sys.modules.get(module), "__version__", None)
    if isinstance(loaded, str) and loaded:  # an imported backend says it: no metadata scan (cold start)
        return loaded
    import importlib.metadata  # about 10 ms and 3 MiB of imports (email, zipfile, csv)

    for distribution in DISTRIBUTIONS[module]:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return str(getattr(sys.modules.get(module), "__version__", "unknown"))


def normalize_backend(name: str, source: str = "--backend") -> str:
    key = name.strip().lower()
    if key not in ALIASES:
        raise EdgeclsError(
            f"unknown interpreter backend {name!r} ({source}): use one of litert, tflite_runtime, tensorflow"
        )
    return ALIASES[key]


def find_backend(backend: str | None = None) -> Backend:
    """The forced backend (argument, else $EDGECLS_BACKEND), or the first importable one."""
    forced = backend or os.environ.get(ENV_VAR) or None
    source = "--backend" if backend else f"${ENV_VAR}"
    names = [normalize_backend(forced, source)] if forced else list(BACKENDS)
    reasons = []
    for name in names:
        try:
            # tflite_runtime built for numpy 1 prints a page about numpy 2 before failing; the
            # reason is kept, the page is not. tf.lite.Interpreter warns about its deprecation.
            with quiet_native_stderr([]), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cls, version = LOADERS[name]()
        except Exception as exc:  # that failure is more than an ImportError
            reasons.append(f"{name}: {first_line(exc)}")
            continue
        return Backend(name, version, cls)
    if forced:
        raise EdgeclsError(f"interpreter backend {names[0]} ({source}) cannot be loaded: {reasons[0]}")
    raise EdgeclsError(
        "no TFLite interpreter found: pip install ai-edge-litert  (32-bit ARM has none: use a 64-bit OS)"
    )


def default_threads() -> int:
    return os.cpu_count() or 1


MAX_THREADS = 256  # more interpreter threads than any CPU has cores; 10**11 would overflow the C int


def create_interpreter(model_content: bytes, backend: Backend, num_threads: int | None = None,
                       name: str = "model", allocate: Callable[[Any], None] | None = None) -> Any:
    """A ready (allocated) interpreter for `model_content`, or a one-line ModelFileError.

    `allocate(interpreter)` allocates instead of allocate_tensors() (subgraph 0): a calibrated model
    runs its subgraph 1 alone (edgecls.runtime.openset)."""
    threads = default_threads() if num_threads is None else int(num_threads)
    if not 1 <= threads <= MAX_THREADS:
        raise EdgeclsError(f"--threads must be between 1 and {MAX_THREADS}, got {threads}")
    native: list[str] = []
    try:
        with quiet_native_stderr(native), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interpreter = backend.interpreter_class(model_content=model_content, num_threads=threads)
            (allocate or _allocate_primary)(interpreter)
    except (ValueError, RuntimeError) as exc:  # the interpreter verifies the flatbuffer first
        detail = next((line.strip() for line in native if line.strip() and not line.startswith("INFO: ")), "")
        reason = first_line(exc) + (f" ({detail})" if detail and detail not in str(exc) else "")
        raise ModelFileError(f"{name}: {backend.name} cannot load it: {reason}") from None
    return interpreter


def _allocate_primary(interpreter: Any) -> None:
    interpreter.allocate_tensors()


def installed_backends() -> dict[str, str | None]:
    """Version of each backend's package, or None; found without importing any of them."""
    found = {}
    for name in BACKENDS:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        found[name] = _version(name) if spec is not None else None
    return found

