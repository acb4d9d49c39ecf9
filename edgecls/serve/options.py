"""ServeOptions: every setting of `edgecls serve` in one record (the single source of each option:
edgecls.options), checked in one place.

No web framework here (the CLI builds it before it knows whether the serve extra is installed).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from edgecls.errors import EdgeclsError
from edgecls.options import OUTPUT, argument, check, option
from edgecls.runtime.capture import CAPTURE_BACKENDS
from edgecls.runtime.settings import COLLECT, INTERPRETER, PREPROCESSING, CollectSettings, ModelSettings
from edgecls.transport.fleet import parallel_option

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
DEFAULT_DEPLOY_TIMEOUT_S = 60.0  # deploy, one host: upload, the device's check, the answer
DEFAULT_DRIFT_WINDOW = 500  # answers (edgecls.runtime.drift.DEFAULT_WINDOW; not imported: stdlib only here)
MB = 1 << 20
# Live mode (--source): what a live prediction carries and how a change of class is decided.
DEFAULT_LIVE_TOP_K = 3
DEFAULT_MIN_STABLE = 3  # frames a new class must hold before it is a change: one odd frame does not flap
DEFAULT_FRAME_MAX_SIDE = 640  # GET /v1/frame.jpg: the longest side in pixels (a 4K camera frame is not sent whole)
MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}
MQTT_USERNAME_ENV, MQTT_PASSWORD_ENV = "EDGECLS_MQTT_USERNAME", "EDGECLS_MQTT_PASSWORD"


# The help's panels of the live service (edgecls serve --source; predict --source shares LIVE_PANEL).
LIVE_PANEL, MQTT_PANEL = "Live input", "MQTT"


@dataclass(frozen=True)
class LiveOptions:
    """`--source` and how it is classified: `predict --source`'s options, and what events and MQTT send."""

    source: str = option(
        flags=("--source",), metavar="SOURCE", panel=LIVE_PANEL, show_default="none: classify what is POSTed",
        help="Also classify a live source around the clock: camera (camera:0), camera:N, a video file (played at its "
        "own frame rate) or rtsp://..., http(s)://.../stream.mjpg. Adds GET /v1/latest, /v1/events (SSE), "
        "/v1/frame.jpg, /v1/live and the live view of the page")
    every: int = option(1, low=1, range_in_help=True, metavar="N", panel=LIVE_PANEL, help="Classify every Nth frame")
    fps: float | None = option(
        None, low=0.001, range_in_help=True, metavar="F", panel=LIVE_PANEL, show_default="no limit",
        help="Classify at most F frames a second (of the video's own time for a file)")
    top_k: int = option(DEFAULT_LIVE_TOP_K, low=1, range_in_help=True, metavar="K", panel=LIVE_PANEL,
                        help="Classes in each live prediction")
    on_change: bool = option(
        False, panel=LIVE_PANEL,
        help="Events and MQTT carry only changes of the stable class (GET /v1/latest still has every frame)")
    min_stable: int = option(
        DEFAULT_MIN_STABLE, low=1, range_in_help=True, metavar="N", panel=LIVE_PANEL,
        help="Frames in a row a new class needs before it is the stable one (one odd frame does not flap)")
    loop: bool = option(False, panel=LIVE_PANEL, help="Play a video file --source again from the start when it ends")
    timeout: float = option(  # edgecls.runtime.stream.DEFAULT_TIMEOUT
        10.0, low=0.1, range_in_help=True, metavar="SECONDS", panel=LIVE_PANEL,
        help="How long to wait for a stream to connect, or for its next frame")
    reconnect: float = option(  # edgecls.runtime.stream.DEFAULT_RECONNECT
        10.0, low=0, range_in_help=True, metavar="SECONDS", panel=LIVE_PANEL,
        help="After a camera or stream drops, keep reopening it (with back-off) this long; 0: end at once")
    capture: str | None = option(
        None, choices=CAPTURE_BACKENDS, what="capture backend", panel=LIVE_PANEL,
        show_default="picamera2 for a camera when installed, else opencv", help="The capture backend")
    frame_max_side: int = option(
        DEFAULT_FRAME_MAX_SIDE, low=16, range_in_help=True, metavar="PX", panel=LIVE_PANEL,
        help="GET /v1/frame.jpg is scaled down to at most this many pixels on its longest side")

    def checked(self) -> LiveOptions:
        """Each option's bounds (edgecls.options.check: edgecls.bounds'), then what involves two."""
        check(self)
        if self.every > 1 and self.fps is not None:
            raise EdgeclsError("choose one of --every and --fps")
        return self


@dataclass(frozen=True)
class MqttOptions:
    """`--mqtt mqtt[s]://HOST[:PORT]/TOPIC`: where live predictions are published. Credentials never come
    from the URL (ps shows a command line to every user): `--mqtt-credentials FILE` or the environment."""

    url: str = option(
        flags=("--mqtt",), metavar="URL", panel=MQTT_PANEL, show_default="none",
        help="Publish live predictions as JSON to mqtt://BROKER[:PORT]/TOPIC (mqtts:// for TLS), retained; "
        "TOPIC/status says online/offline. Never put a password in the URL")
    credentials_file: Path | None = option(
        None, flags=("--mqtt-credentials",), metavar="FILE", panel=MQTT_PANEL,
        show_default=f"${MQTT_USERNAME_ENV} and ${MQTT_PASSWORD_ENV}, else none",
        help="File holding USER:PASSWORD (one line) for the broker")
    ca_file: Path | None = option(None, flags=("--mqtt-ca",), metavar="PEM", panel=MQTT_PANEL,
                                  show_default="the system's CAs", help="CA certificate that signed the broker's "
                                  "(mqtts://)")

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
        for path, flag in ((self.credentials_file, "--mqtt-credentials"), (self.ca_file, "--mqtt-ca")):
            if path is not None:
                _check_file(Path(path), flag)
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


# The help's panels (edgecls serve --help shows them in this order).
NET, LOAD, LIMITS, UPDATES = "Network and security", "Under load", "Limits", "Model updates"
PANELS = (NET, OUTPUT, PREPROCESSING, INTERPRETER, LOAD, LIMITS, UPDATES, LIVE_PANEL, MQTT_PANEL, COLLECT)


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
    live: LiveOptions | None = None  # --source: classify a camera, file or stream continuously
    mqtt: MqttOptions | None = None  # --mqtt: publish the live predictions
    collecting: CollectSettings = field(default_factory=CollectSettings)  # --collect DIR and its rules, as given
    drift_window: int = option(  # answers in the rolling window /metrics compares with training
        DEFAULT_DRIFT_WINDOW, low=1, range_in_help=True, metavar="N", panel=COLLECT,
        help="The last N answers (uploads and live frames) /metrics and /v1/live compare with the training split: "
        "class mix (Jensen-Shannon divergence), mean calibrated confidence, unknown rate")
    # the checked --collect options (edgecls.runtime.collect.CollectOptions; edgecls.serve.field), made by
    # checked() from `collecting`, or handed in by a library caller
    collect: Any = None
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
        from edgecls.atomic import check_no_file_in_the_way
        from edgecls.runtime.model import read_model_bytes  # numpy and the model readers: not for --help

        model = Path(self.model)
        read_model_bytes(model)  # predict's check and its messages (a folder names the .tflite in it), before listening
        for path, flag in ((self.settings.labels, "--labels"), (self.token_file, "--token-file"),
                           (self.tls_cert, "--tls-cert"), (self.tls_key, "--tls-key")):
            if path is not None:
                _check_file(Path(path), flag)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise EdgeclsError("TLS needs both --tls-cert and --tls-key")
        if self.insecure_no_auth and (self.token_file is not None or os.environ.get(TOKEN_ENV)):
            raise EdgeclsError(f"--insecure-no-auth and a token ({'--token-file' if self.token_file else TOKEN_ENV}) "
                               "contradict each other: choose one")
        if self.mqtt is not None and self.live is None:
            raise EdgeclsError("--mqtt publishes live predictions: give --source (a camera, video file or stream)")
        collect = self.collect if self.collect is not None else self.collecting.options()
        if collect is not None:
            if collect.shadow is not None:
                _check_file(Path(collect.shadow), "--shadow")
            check_no_file_in_the_way("--collect", collect.folder)  # the folder is made at the first picture kept
            collect = replace(collect, folder=str(Path(collect.folder).absolute()),
                              shadow=None if collect.shadow is None else str(Path(collect.shadow).absolute()))
        # the unit's command line gives the folders as the service must find them (absolute)
        collecting = self.collecting if collect is None else replace(
            self.collecting, collect=collect.folder, shadow=collect.shadow)
        settings = replace(self.settings, labels=_absolute(self.settings.labels))
        live = None if self.live is None else self.live.checked()
        mqtt = None if self.mqtt is None else self.mqtt.checked()
        return replace(self, model=model.absolute(), settings=settings, token_file=_absolute(self.token_file),
                       tls_cert=_absolute(self.tls_cert), tls_key=_absolute(self.tls_key), live=live, mqtt=mqtt,
                       collect=collect, collecting=collecting)


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


@dataclass(frozen=True)
class DeployOptions:
    """Every option of `edgecls deploy` (edgecls.options: the single source of each)."""

    model: Path = argument(help="The .tflite to push")
    to: str = option(required=True, flags=("--to",), metavar="URLS",
                     help="Running `edgecls serve` servers: http://pi:8080 (a bare HOST or HOST:PORT means "
                     "http://HOST:8080), comma separated, or @hosts.txt (one or more a line, # comments)")
    token_file: Path | None = option(None, metavar="FILE", help="File holding the servers' token",
                                     show_default="$EDGECLS_TOKEN, else none")
    parallel: int = parallel_option(metavar="N", help="Servers reached at once")  # bench --remote's, in these words
    timeout: float = option(DEFAULT_DEPLOY_TIMEOUT_S, low=0.1, range_in_help=True, metavar="S",
                            help="Per server: upload, check and answer")
    as_json: bool = option(False, flags=("--json",), help="One JSON object per server instead of a line")
