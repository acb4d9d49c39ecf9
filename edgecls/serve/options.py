"""ServeOptions: every setting of `edgecls serve` in one record, checked in one place.

Standard library only (the CLI builds it before it knows whether the serve extra is installed).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgecls.errors import EdgeclsError

if TYPE_CHECKING:  # numpy's module: only its type here (this module is stdlib only)
    from edgecls.runtime.collect import CollectOptions

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_INTERPRETERS = 1
# Under overload an accepted request waits for about one other classification per interpreter: its
# latency stays within ~2x the unloaded one (the open-loop goal of scripts/bench_serve.py is 3x).
QUEUE_PER_INTERPRETER = 1
DEFAULT_MAX_BODY_MB = 20.0
DEFAULT_MAX_MODEL_MB = 100.0
DEFAULT_MAX_MEGAPIXELS = 50.0  # a 48 MP phone photo passes; a 20000x20000 PNG bomb does not
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 60.0  # 20 MB at ~3 Mbit/s
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_GRACE_S = 10.0
DEFAULT_DRIFT_WINDOW = 500  # answers (edgecls.runtime.drift.DEFAULT_WINDOW; not imported: stdlib only here)
MB = 1 << 20


@dataclass(frozen=True)
class ModelSettings:
    """How a model file becomes Classifiers: `edgecls predict`'s model options, applied to every model
    the server loads (the first, an upload, a reload, a rollback)."""

    labels: Path | None = None
    resize: str | None = None
    fit: str | None = None
    input_range: tuple[float, float] | None = None
    threads: int | None = None
    backend: str | None = None


@dataclass(frozen=True)
class ServeOptions:
    model: Path
    settings: ModelSettings = field(default_factory=ModelSettings)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    interpreters: int = DEFAULT_INTERPRETERS
    queue: int | None = None  # None: QUEUE_PER_INTERPRETER per interpreter
    token_file: Path | None = None
    insecure_no_auth: bool = False
    metrics_public: bool = False
    max_body_mb: float = DEFAULT_MAX_BODY_MB
    max_model_mb: float = DEFAULT_MAX_MODEL_MB
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    grace_s: float = DEFAULT_GRACE_S
    watch: bool = False
    allow_input_change: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    access_log: bool = False
    collect: CollectOptions | None = None  # --collect DIR and its rules (edgecls.serve.field)
    drift_window: int = DEFAULT_DRIFT_WINDOW  # answers in the rolling window /metrics compares with training

    @property
    def queue_size(self) -> int:
        return QUEUE_PER_INTERPRETER * self.interpreters if self.queue is None else self.queue

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MB)

    @property
    def max_model_bytes(self) -> int:
        return int(self.max_model_mb * MB)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)

    @property
    def previous_model(self) -> Path:
        """Where the model a swap replaced is kept, beside the model: NAME.previous.tflite."""
        return self.model.with_name(f"{self.model.stem}.previous{self.model.suffix}")

    def checked(self) -> ServeOptions:
        """These options with absolute paths, or a one-line EdgeclsError (exit 2) for the first problem."""
        model = Path(self.model)
        _check_file(model, "MODEL")
        if model.suffix.lower() in (".keras", ".h5"):
            raise EdgeclsError(f"{model} is a Keras model: serve its .tflite (edgecls export makes one)")
        for path, option in ((self.settings.labels, "--labels"), (self.token_file, "--token-file"),
                             (self.tls_cert, "--tls-cert"), (self.tls_key, "--tls-key")):
            if path is not None:
                _check_file(Path(path), option)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise EdgeclsError("TLS needs both --tls-cert and --tls-key")
        if not 0 <= self.port <= 65535:
            raise EdgeclsError(f"--port must be between 0 and 65535, got {self.port}")
        if self.insecure_no_auth and (self.token_file is not None or os.environ.get(TOKEN_ENV)):
            raise EdgeclsError(f"--insecure-no-auth and a token ({'--token-file' if self.token_file else TOKEN_ENV}) "
                               "contradict each other: choose one")
        for value, option in ((self.max_body_mb, "--max-body-mb"), (self.max_model_mb, "--max-model-mb"),
                              (self.max_megapixels, "--max-megapixels"), (self.header_timeout_s, "--header-timeout-s"),
                              (self.body_timeout_s, "--body-timeout-s")):
            if not value > 0:
                raise EdgeclsError(f"{option} must be more than 0, got {value}")
        if self.drift_window < 1:
            raise EdgeclsError(f"--drift-window must be 1 or more, got {self.drift_window}")
        collect = self.collect
        if collect is not None:
            if collect.shadow is not None:
                _check_file(Path(collect.shadow), "--shadow")
            collect = replace(collect, folder=str(Path(collect.folder).absolute()),
                              shadow=None if collect.shadow is None else str(Path(collect.shadow).absolute()))
        settings = replace(self.settings, labels=_absolute(self.settings.labels))
        return replace(self, model=model.absolute(), settings=settings, token_file=_absolute(self.token_file),
                       tls_cert=_absolute(self.tls_cert), tls_key=_absolute(self.tls_key), collect=collect)


TOKEN_ENV = "EDGECLS_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server to this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _check_file(path: Path, option: str) -> None:
    if not path.exists():
        raise EdgeclsError(f"{option}: no such file: {path}")
    if not path.is_file():
        raise EdgeclsError(f"{option}: {path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise EdgeclsError(f"{option}: {path}: permission denied")


def _absolute(path: Path | None) -> Path | None:
    return None if path is None else Path(path).absolute()
