"""ServeOptions: every setting of `edgecls serve` in one record, checked in one place.

Standard library only (the CLI builds it before it knows whether the serve extra is installed).
"""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from edgecls.bounds import check_bound
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
# Live mode (--source): what a live prediction carries and how a change of class is decided.
DEFAULT_LIVE_TOP_K = 3
DEFAULT_MIN_STABLE = 3  # frames a new class must hold before it is a change: one odd frame does not flap
DEFAULT_FRAME_MAX_SIDE = 640  # GET /v1/frame.jpg: the longest side in pixels (a 4K camera frame is not sent whole)
MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}
MQTT_USERNAME_ENV, MQTT_PASSWORD_ENV = "EDGECLS_MQTT_USERNAME", "EDGECLS_MQTT_PASSWORD"


@dataclass(frozen=True)
class LiveOptions:
    """`--source` and how it is classified: `predict --source`'s options, and what events and MQTT send."""

    source: str
    every: int = 1
    fps: float | None = None
    top_k: int = DEFAULT_LIVE_TOP_K
    on_change: bool = False
    min_stable: int = DEFAULT_MIN_STABLE
    loop: bool = False
    capture: str | None = None
    timeout: float = 10.0  # edgecls.runtime.stream.DEFAULT_TIMEOUT (not imported: this module is stdlib only)
    reconnect: float = 10.0  # edgecls.runtime.stream.DEFAULT_RECONNECT
    frame_max_side: int = DEFAULT_FRAME_MAX_SIDE

    def checked(self) -> LiveOptions:
        if self.every < 1:
            raise EdgeclsError(f"--every must be 1 or more, got {self.every}")
        if self.fps is not None and not (self.fps > 0 and math.isfinite(self.fps)):
            raise EdgeclsError(f"--fps must be a positive number, got {self.fps}")
        if self.every > 1 and self.fps is not None:
            raise EdgeclsError("choose one of --every and --fps")
        if self.top_k < 1:
            raise EdgeclsError(f"--top-k must be 1 or more, got {self.top_k}")
        for option, value in (("--min-stable", self.min_stable), ("--frame-max-side", self.frame_max_side),
                              ("--timeout", self.timeout), ("--reconnect", self.reconnect)):
            check_bound(option, value)
        return self


@dataclass(frozen=True)
class MqttOptions:
    """`--mqtt mqtt[s]://HOST[:PORT]/TOPIC`: where live predictions are published. Credentials never come
    from the URL (ps shows a command line to every user): `--mqtt-credentials FILE` or the environment."""

    url: str
    credentials_file: Path | None = None
    ca_file: Path | None = None

    @property
    def parts(self) -> tuple[str, str, int, str]:
        """(scheme, host, port, topic) of the URL; a one-line EdgeclsError for a URL that is not one."""
        return parse_mqtt_url(self.url)

    @property
    def tls(self) -> bool:
        return self.parts[0] == "mqtts"

    @property
    def status_topic(self) -> str:
        """Retained "online"/"offline" (the last will says offline when the server vanishes)."""
        return f"{self.parts[3]}/status"

    def checked(self) -> MqttOptions:
        self.parts  # noqa: B018  (parsing is the check)
        for path, option in ((self.credentials_file, "--mqtt-credentials"), (self.ca_file, "--mqtt-ca")):
            if path is not None:
                _check_file(Path(path), option)
        if self.ca_file is not None and not self.tls:
            raise EdgeclsError("--mqtt-ca is for TLS: use an mqtts:// URL")
        return replace(self, credentials_file=_absolute(self.credentials_file), ca_file=_absolute(self.ca_file))


def parse_mqtt_url(url: str) -> tuple[str, str, int, str]:
    """'mqtt://broker:1883/home/feeder' -> ('mqtt', 'broker', 1883, 'home/feeder'); refuses credentials
    in the URL, a missing topic, wildcards, other schemes."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EdgeclsError(f"--mqtt {url!r} is not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in MQTT_SCHEMES:
        raise EdgeclsError(f"--mqtt wants mqtt://HOST[:PORT]/TOPIC or mqtts://... (TLS), not {scheme or 'no'}://")
    if parts.username is not None or parts.password is not None:
        raise EdgeclsError("--mqtt: no user or password in the URL (ps shows it to every user): use "
                           f"--mqtt-credentials FILE or ${MQTT_USERNAME_ENV} and ${MQTT_PASSWORD_ENV}")
    topic = unquote(parts.path.lstrip("/")).rstrip("/")
    if not parts.hostname or not topic:
        raise EdgeclsError(f"--mqtt wants a broker and a topic: {scheme}://HOST[:PORT]/TOPIC, e.g. "
                           f"{scheme}://localhost/edgecls/camera")
    if any(c in topic for c in "+\0") or "#" in url or parts.query:  # (a '#' ends a URL's path: look at all of it)
        raise EdgeclsError(f"--mqtt topic {topic!r}: a topic to publish to has no wildcards (+, #), query or fragment")
    return scheme, parts.hostname, port or MQTT_SCHEMES[scheme], topic


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
    live: LiveOptions | None = None  # --source: classify a camera, file or stream continuously
    mqtt: MqttOptions | None = None  # --mqtt: publish the live predictions

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
        for option, value in (("--port", self.port), ("--interpreters", self.interpreters), ("--queue", self.queue),
                              ("--max-connections", self.max_connections), ("--grace-s", self.grace_s),
                              ("--max-body-mb", self.max_body_mb), ("--max-model-mb", self.max_model_mb),
                              ("--max-megapixels", self.max_megapixels),
                              ("--header-timeout-s", self.header_timeout_s),
                              ("--body-timeout-s", self.body_timeout_s)):
            if value is not None:  # --queue None: QUEUE_PER_INTERPRETER per interpreter
                check_bound(option, value)
        if self.insecure_no_auth and (self.token_file is not None or os.environ.get(TOKEN_ENV)):
            raise EdgeclsError(f"--insecure-no-auth and a token ({'--token-file' if self.token_file else TOKEN_ENV}) "
                               "contradict each other: choose one")
        if self.mqtt is not None and self.live is None:
            raise EdgeclsError("--mqtt publishes live predictions: give --source (a camera, video file or stream)")
        check_bound("--drift-window", self.drift_window)
        collect = self.collect
        if collect is not None:
            if collect.shadow is not None:
                _check_file(Path(collect.shadow), "--shadow")
            collect = replace(collect, folder=str(Path(collect.folder).absolute()),
                              shadow=None if collect.shadow is None else str(Path(collect.shadow).absolute()))
        settings = replace(self.settings, labels=_absolute(self.settings.labels))
        live = None if self.live is None else self.live.checked()
        mqtt = None if self.mqtt is None else self.mqtt.checked()
        return replace(self, model=model.absolute(), settings=settings, token_file=_absolute(self.token_file),
                       tls_cert=_absolute(self.tls_cert), tls_key=_absolute(self.tls_key), live=live, mqtt=mqtt,
                       collect=collect)


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
