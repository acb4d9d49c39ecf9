"""ServeOptions: every setting of `edgecls serve` in one record (the single source of each option:
edgecls.options), checked in one place.

No web framework here (the CLI builds it before it knows whether the serve extra is installed).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgecls.errors import EdgeclsError
from edgecls.options import OUTPUT, argument, check, option
from edgecls.runtime.settings import INTERPRETER, PREPROCESSING, ModelSettings

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
MB = 1 << 20


# The help's panels (edgecls serve --help shows them in this order).
NET, LOAD, LIMITS, UPDATES = "Network and security", "Under load", "Limits", "Model updates"
PANELS = (NET, OUTPUT, PREPROCESSING, INTERPRETER, LOAD, LIMITS, UPDATES)


@dataclass(frozen=True)
class ServeOptions:
    """Every option of `edgecls serve` (edgecls.options: the single source of each)."""

    model: Path = argument(help="The .tflite image classifier to serve; models deployed to the server are written "
                                "over it (the one replaced beside it, as NAME.previous.tflite)")
    settings: ModelSettings = field(default_factory=ModelSettings)  # predict's model options, every model loaded
    host: str = option(DEFAULT_HOST, metavar="ADDRESS", panel=NET,
                       help="Address to listen on: 127.0.0.1 keeps the service to this machine; any other (0.0.0.0: "
                       "every interface) needs a token")
    port: int = option(DEFAULT_PORT, low=0, high=65535, range_in_help=True, metavar="PORT", panel=NET,
                       help="TCP port; 0 picks a free one (the log says which)")
    interpreters: int = option(DEFAULT_INTERPRETERS, low=1, range_in_help=True, metavar="N", panel=LOAD,
                               help="Interpreters classifying at once, one thread each (each with --threads; not "
                               "processes)")
    queue: int | None = option(  # None: QUEUE_PER_INTERPRETER per interpreter
        None, low=0, range_in_help=True, metavar="N", panel=LOAD,
        show_default=f"{QUEUE_PER_INTERPRETER} per interpreter",
        help="Requests waiting for an interpreter; one more is answered 503 with Retry-After at once. Under overload "
        "an answer waits for at most about QUEUE/INTERPRETERS others")
    token_file: Path | None = option(
        None, metavar="FILE", panel=NET, show_default="$EDGECLS_TOKEN, else none (allowed on 127.0.0.1 only)",
        help="File holding the API token (one word, 16+ characters); clients send 'Authorization: Bearer TOKEN'. "
        "Never on the command line")
    insecure_no_auth: bool = option(False, panel=NET,
                                    help="Serve a non-loopback --host without a token (warns at every start)")
    metrics_public: bool = option(False, panel=NET, help="Answer GET /metrics without the token")
    max_body_mb: float = option(DEFAULT_MAX_BODY_MB, low=0.001, range_in_help=True, metavar="MB", panel=LIMITS,
                                help="Largest image request body; more is answered 413")
    max_model_mb: float = option(DEFAULT_MAX_MODEL_MB, low=0.001, range_in_help=True, metavar="MB", panel=LIMITS,
                                 help="Largest model upload (PUT /v1/model)")
    max_megapixels: float = option(
        DEFAULT_MAX_MEGAPIXELS, low=0.001, range_in_help=True, metavar="MP", panel=LIMITS,
        help="Largest image in megapixels, read from its header before decoding (decompression bombs): more is "
        "answered 413")
    header_timeout_s: float = option(DEFAULT_HEADER_TIMEOUT_S, low=0.1, range_in_help=True, metavar="S", panel=LIMITS,
                                     help="Time a client has to send its request head (408 after)")
    body_timeout_s: float = option(DEFAULT_BODY_TIMEOUT_S, low=0.1, range_in_help=True, metavar="S", panel=LIMITS,
                                   help="Time a client has to send its body (408 after)")
    max_connections: int = option(DEFAULT_MAX_CONNECTIONS, low=1, range_in_help=True, metavar="N", panel=LIMITS,
                                  help="Open connections at once; one more is answered 503")
    grace_s: float = option(DEFAULT_GRACE_S, low=0, range_in_help=True, metavar="S", panel=LOAD,
                            help="On SIGTERM, time to finish the requests in flight before exiting")
    watch: bool = option(False, panel=UPDATES,
                         help="Reload MODEL (and --labels) when the file changes on disk (SIGHUP does it on demand)")
    allow_input_change: bool = option(False, panel=UPDATES,
                                      help="Accept a new model whose input size or colour differs from the served "
                                      "one's")
    tls_cert: Path | None = option(None, metavar="PEM", panel=NET, show_default="none: plain HTTP",
                                   help="TLS certificate (PEM), with --tls-key: serve HTTPS")
    tls_key: Path | None = option(None, metavar="PEM", panel=NET, show_default="none",
                                  help="TLS private key (PEM) of --tls-cert")
    access_log: bool = option(False, help="Log one line per request")
    systemd_unit: bool = option(False, toml=False,
                                help="Print a systemd unit that runs this command as a service, and exit")

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
        """These options with absolute paths, or a one-line EdgeclsError (exit 2) for the first problem: each
        option's bounds (edgecls.options.check), the files named, what involves several options."""
        check(self)
        model = Path(self.model)
        _check_file(model, "MODEL")
        if model.suffix.lower() in (".keras", ".h5"):
            raise EdgeclsError(f"{model} is a Keras model: serve its .tflite (edgecls export makes one)")
        for path, flag in ((self.settings.labels, "--labels"), (self.token_file, "--token-file"),
                           (self.tls_cert, "--tls-cert"), (self.tls_key, "--tls-key")):
            if path is not None:
                _check_file(Path(path), flag)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise EdgeclsError("TLS needs both --tls-cert and --tls-key")
        if self.insecure_no_auth and (self.token_file is not None or os.environ.get(TOKEN_ENV)):
            raise EdgeclsError(f"--insecure-no-auth and a token ({'--token-file' if self.token_file else TOKEN_ENV}) "
                               "contradict each other: choose one")
        settings = replace(self.settings, labels=_absolute(self.settings.labels))
        return replace(self, model=model.absolute(), settings=settings, token_file=_absolute(self.token_file),
                       tls_cert=_absolute(self.tls_cert), tls_key=_absolute(self.tls_key))


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
