"""Where an artifact came from: library versions, a creation timestamp, file digests.

One policy for every file edgecls writes (metadata, export.json, the run's config, bench
reports): `created_timestamp` honours SOURCE_DATE_EPOCH, so the same job run twice can give
byte-identical files. No TensorFlow import unless the caller asks for its version.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
from pathlib import Path


def created_timestamp() -> str:
    """UTC now, or SOURCE_DATE_EPOCH when set (the reproducible-builds convention)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (_dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch and epoch.isdigit()
              else _dt.datetime.now(_dt.timezone.utc))
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_time(timestamp: float) -> str:
    """Seconds since the epoch as ISO 8601 UTC with milliseconds: 2026-12-01T09:30:00.123Z (live rows,
    collected pictures)."""
    moment = _dt.datetime.fromtimestamp(timestamp, _dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks (model files can be large)."""
    from edgecls.files import sha256_of

    return sha256_of(path)


def dist_version(name: str) -> str:
    """An installed distribution's version, or 'unknown'."""
    import importlib.metadata  # ~10 ms and 3 MiB of imports: only where a version is asked for

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def device_versions() -> dict[str, str]:
    """edgecls and the device side's libraries (the interpreter backend is reported separately)."""
    import numpy
    import PIL

    from edgecls import __version__

    return {"edgecls": __version__, "numpy": numpy.__version__, "pillow": PIL.__version__}


def training_versions(backend: str = "") -> dict[str, str]:
    """edgecls, TensorFlow and Keras (imports TensorFlow); ai-edge-quantizer's when it made the file."""
    import keras
    import tensorflow as tf

    from edgecls import __version__

    found = {"edgecls": __version__, "tensorflow": tf.__version__, "keras": keras.__version__}
    if backend == "ai-edge-quantizer":
        found["ai_edge_quantizer"] = dist_version("ai-edge-quantizer")
    return found


def run_versions() -> dict[str, str]:
    """What a run directory records: the training libraries plus numpy and Python."""
    import numpy

    return {**training_versions(), "numpy": numpy.__version__, "python": platform.python_version()}


def sha256_bytes(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
