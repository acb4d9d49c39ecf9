"""`edgecls serve` (the model as a local HTTP service) and `edgecls deploy` (push a model to running servers).

Importing this module imports no web framework: serve needs the `serve` extra (Starlette, uvicorn,
prometheus_client), loaded only when it runs; deploy needs nothing beyond the base install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgecls import jsonio
from edgecls.cli.common import (
    LIVE_PANEL,
    Backend,
    CollectDir,
    CollectMaxMb,
    CollectReserveMb,
    CollectWhen,
    FitOption,
    InputRange,
    Labels,
    LiveCapture,
    LiveEvery,
    LiveFps,
    LiveReconnect,
    LiveTimeout,
    ResizeOption,
    Shadow,
    ShadowEvery,
    Threads,
    Typer,
    plain,
)
from edgecls.runtime.stream import DEFAULT_RECONNECT, DEFAULT_TIMEOUT
from edgecls.serve.options import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_DRIFT_WINDOW,
    DEFAULT_FRAME_MAX_SIDE,
    DEFAULT_GRACE_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_HOST,
    DEFAULT_INTERPRETERS,
    DEFAULT_LIVE_TOP_K,
    DEFAULT_MAX_BODY_MB,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MEGAPIXELS,
    DEFAULT_MAX_MODEL_MB,
    DEFAULT_MIN_STABLE,
    DEFAULT_PORT,
    MQTT_PASSWORD_ENV,
    MQTT_USERNAME_ENV,
    QUEUE_PER_INTERPRETER,
    LiveOptions,
    ModelSettings,
    MqttOptions,
    ServeOptions,
)

app = Typer()

_NET, _LIMITS, _LOAD, _UPDATES = "Network and security", "Limits", "Under load", "Model updates"
_Host = Annotated[str, typer.Option(
    metavar="ADDRESS", rich_help_panel=_NET,
    help="Address to listen on: 127.0.0.1 keeps the service to this machine; any other (0.0.0.0: every interface) "
         "needs a token")]
_Port = Annotated[int, typer.Option(
    min=0, max=65535, metavar="PORT", rich_help_panel=_NET, help="TCP port; 0 picks a free one (the log says which)")]
_TokenFile = Annotated[Optional[Path], typer.Option(
    metavar="FILE", rich_help_panel=_NET, show_default="$EDGECLS_TOKEN, else none (allowed on 127.0.0.1 only)",
    help="File holding the API token (one word, 16+ characters); clients send 'Authorization: Bearer TOKEN'. "
         "Never on the command line")]
_Insecure = Annotated[bool, typer.Option(
    "--insecure-no-auth", rich_help_panel=_NET, help="Serve a non-loopback --host without a token (warns at every "
    "start)")]
_MetricsPublic = Annotated[bool, typer.Option(
    "--metrics-public", rich_help_panel=_NET, help="Answer GET /metrics without the token")]
_TlsCert = Annotated[Optional[Path], typer.Option(
    metavar="PEM", rich_help_panel=_NET, show_default="none: plain HTTP",
    help="TLS certificate (PEM), with --tls-key: serve HTTPS")]
_TlsKey = Annotated[Optional[Path], typer.Option(
    metavar="PEM", rich_help_panel=_NET, show_default="none", help="TLS private key (PEM) of --tls-cert")]
_MaxBody = Annotated[float, typer.Option(
    min=0.001, metavar="MB", rich_help_panel=_LIMITS, help="Largest image request body; more is answered 413")]
_MaxModel = Annotated[float, typer.Option(
    min=0.001, metavar="MB", rich_help_panel=_LIMITS, help="Largest model upload (PUT /v1/model)")]
_MaxPixels = Annotated[float, typer.Option(
    min=0.001, metavar="MP", rich_help_panel=_LIMITS,
    help="Largest image in megapixels, read from its header before decoding (decompression bombs): more is "
         "answered 413")]
_HeaderTimeout = Annotated[float, typer.Option(
    min=0.1, metavar="S", rich_help_panel=_LIMITS, help="Time a client has to send its request head (408 after)")]
_BodyTimeout = Annotated[float, typer.Option(
    min=0.1, metavar="S", rich_help_panel=_LIMITS, help="Time a client has to send its body (408 after)")]
_MaxConnections = Annotated[int, typer.Option(
    min=1, metavar="N", rich_help_panel=_LIMITS, help="Open connections at once; one more is answered 503")]
_Interpreters = Annotated[int, typer.Option(
    min=1, metavar="N", rich_help_panel=_LOAD,
    help="Interpreters classifying at once, one thread each (each with --threads; not processes)")]
_Queue = Annotated[Optional[int], typer.Option(
    min=0, metavar="N", rich_help_panel=_LOAD, show_default=f"{QUEUE_PER_INTERPRETER} per interpreter",
    help="Requests waiting for an interpreter; one more is answered 503 with Retry-After at once. Under overload "
         "an answer waits for at most about QUEUE/INTERPRETERS others")]
_Grace = Annotated[float, typer.Option(
    min=0, metavar="S", rich_help_panel=_LOAD,
    help="On SIGTERM, time to finish the requests in flight before exiting")]
_Watch = Annotated[bool, typer.Option(
    "--watch", rich_help_panel=_UPDATES,
    help="Reload MODEL (and --labels) when the file changes on disk (SIGHUP does it on demand)")]
_AllowInputChange = Annotated[bool, typer.Option(
    "--allow-input-change", rich_help_panel=_UPDATES,
    help="Accept a new model whose input size or colour differs from the served one's")]
_DriftWindow = Annotated[int, typer.Option(
    "--drift-window", min=1, metavar="N", rich_help_panel="Collect for the next training",
    help="The last N answers (uploads and live frames) /metrics and /v1/live compare with the training split: "
         "class mix (Jensen-Shannon divergence), mean calibrated confidence, unknown rate")]
_Source = Annotated[Optional[str], typer.Option(
    "--source", metavar="SOURCE", rich_help_panel=LIVE_PANEL, show_default="none: classify what is POSTed",
    help="Also classify a live source around the clock: camera (camera:0), camera:N, a video file (played at its "
         "own frame rate) or rtsp://..., http(s)://.../stream.mjpg. Adds GET /v1/latest, /v1/events (SSE), "
         "/v1/frame.jpg, /v1/live and the live view of the page")]
_LiveTopK = Annotated[int, typer.Option(
    "--top-k", min=1, metavar="K", rich_help_panel=LIVE_PANEL, help="Classes in each live prediction")]
_OnChange = Annotated[bool, typer.Option(
    "--on-change", rich_help_panel=LIVE_PANEL,
    help="Events and MQTT carry only changes of the stable class (GET /v1/latest still has every frame)")]
_MinStable = Annotated[int, typer.Option(
    "--min-stable", min=1, metavar="N", rich_help_panel=LIVE_PANEL,
    help="Frames in a row a new class needs before it is the stable one (one odd frame does not flap)")]
_Loop = Annotated[bool, typer.Option("--loop", rich_help_panel=LIVE_PANEL,
                                     help="Play a video file --source again from the start when it ends")]
_FrameMaxSide = Annotated[int, typer.Option(
    "--frame-max-side", min=16, metavar="PX", rich_help_panel=LIVE_PANEL,
    help="GET /v1/frame.jpg is scaled down to at most this many pixels on its longest side")]
_MQTT = "MQTT"
_Mqtt = Annotated[Optional[str], typer.Option(
    "--mqtt", metavar="URL", rich_help_panel=_MQTT, show_default="none",
    help="Publish live predictions as JSON to mqtt://BROKER[:PORT]/TOPIC (mqtts:// for TLS), retained; "
         "TOPIC/status says online/offline. Never put a password in the URL")]
_MqttCredentials = Annotated[Optional[Path], typer.Option(
    "--mqtt-credentials", metavar="FILE", rich_help_panel=_MQTT,
    show_default=f"${MQTT_USERNAME_ENV} and ${MQTT_PASSWORD_ENV}, else none",
    help="File holding USER:PASSWORD (one line) for the broker")]
_MqttCa = Annotated[Optional[Path], typer.Option(
    "--mqtt-ca", metavar="PEM", rich_help_panel=_MQTT, show_default="the system's CAs",
    help="CA certificate that signed the broker's (mqtts://)")]
_AccessLog = Annotated[bool, typer.Option("--access-log", help="Log one line per request")]
_SystemdUnit = Annotated[bool, typer.Option(
    "--systemd-unit", help="Print a systemd unit that runs this command as a service, and exit")]

SERVE_EXAMPLES = (
    "Examples:\n\n"
    "edgecls serve models/digits-seed/model_int8.tflite\n\n"
    "curl --data-binary @seven.png -H 'Content-Type: image/png' 'localhost:8080/v1/classify?top_k=3'\n\n"
    "edgecls serve model.tflite --host 0.0.0.0 --token-file /etc/edgecls/token --interpreters 2 --threads 2\n\n"
    "edgecls serve mobilenet_v1_0.5_160_quant.tflite --labels imagenet_labels.txt --resize nearest --watch\n\n"
    "edgecls serve model.tflite --source camera:0 --fps 5 --on-change --mqtt mqtt://localhost/edgecls/feeder\n\n"
    "edgecls serve model.tflite --host 0.0.0.0 --token-file token --systemd-unit > edgecls.service\n\n"
    "edgecls serve model_int8.tflite --collect /var/lib/edgecls/inbox --collect-when unknown,uncertain<0.6 "
    "--collect-max-mb 500"
)


@app.command(epilog=SERVE_EXAMPLES)
def serve(
    model: Annotated[Path, typer.Argument(help="The .tflite image classifier to serve; models deployed to the "
                                               "server are written over it (the one replaced beside it, as "
                                               "NAME.previous.tflite)")],
    host: _Host = DEFAULT_HOST,
    port: _Port = DEFAULT_PORT,
    token_file: _TokenFile = None,
    insecure_no_auth: _Insecure = False,
    metrics_public: _MetricsPublic = False,
    tls_cert: _TlsCert = None,
    tls_key: _TlsKey = None,
    labels: Labels = None,
    resize: ResizeOption = None,
    fit: FitOption = None,
    input_range: InputRange = None,
    threads: Threads = None,
    backend: Backend = None,
    interpreters: _Interpreters = DEFAULT_INTERPRETERS,
    queue: _Queue = None,
    grace_s: _Grace = DEFAULT_GRACE_S,
    max_body_mb: _MaxBody = DEFAULT_MAX_BODY_MB,
    max_model_mb: _MaxModel = DEFAULT_MAX_MODEL_MB,
    max_megapixels: _MaxPixels = DEFAULT_MAX_MEGAPIXELS,
    header_timeout_s: _HeaderTimeout = DEFAULT_HEADER_TIMEOUT_S,
    body_timeout_s: _BodyTimeout = DEFAULT_BODY_TIMEOUT_S,
    max_connections: _MaxConnections = DEFAULT_MAX_CONNECTIONS,
    watch: _Watch = False,
    allow_input_change: _AllowInputChange = False,
    collect: CollectDir = None,
    collect_when: CollectWhen = None,
    collect_max_mb: CollectMaxMb = None,
    collect_reserve_mb: CollectReserveMb = None,
    shadow: Shadow = None,
    shadow_every: ShadowEvery = None,
    drift_window: _DriftWindow = DEFAULT_DRIFT_WINDOW,
    source: _Source = None,
    every: LiveEvery = 1,
    fps: LiveFps = None,
    live_top_k: _LiveTopK = DEFAULT_LIVE_TOP_K,
    on_change: _OnChange = False,
    min_stable: _MinStable = DEFAULT_MIN_STABLE,
    loop: _Loop = False,
    timeout: LiveTimeout = DEFAULT_TIMEOUT,
    reconnect: LiveReconnect = DEFAULT_RECONNECT,
    capture: LiveCapture = None,
    frame_max_side: _FrameMaxSide = DEFAULT_FRAME_MAX_SIDE,
    mqtt: _Mqtt = None,
    mqtt_credentials: _MqttCredentials = None,
    mqtt_ca: _MqttCa = None,
    access_log: _AccessLog = False,
    systemd_unit: _SystemdUnit = False,
) -> None:
    """Serve a .tflite classifier over HTTP: POST an image, get its classes as JSON.

    Routes: POST /v1/classify (an image as the body, or a multipart field 'image'; ?top_k=), GET and PUT /v1/model (the model, or a new one: checked, then swapped in without dropping a request), POST /v1/model/rollback, GET /healthz, /readyz, /metrics (Prometheus). Answers are predict's, with the SHA-256 of the model that gave them.

    Live mode (--source): a camera, video file or stream is classified continuously as well; each prediction goes to GET /v1/latest, the events (GET /v1/events, Server-Sent Events) and MQTT (--mqtt), with --on-change only the changes. A web page at / shows the model, classifies an uploaded image, and follows the live source.

    With --collect DIR, the answers a --collect-when rule picks are kept as predict --collect keeps them (uploads as they came). /metrics (and /v1/live) also track drift: the class mix of the last --drift-window answers against the training split's, the mean calibrated confidence and the unknown rate.

    Safe by default: 127.0.0.1 only unless --host; any other address needs a token. Bodies, pixels, read times, connections and the queue are capped (413, 408, 503 with Retry-After). SIGTERM drains, SIGHUP reloads the model. Needs pip install 'edgecls\\[serve]'.

    Exit codes: 0 stopped by SIGTERM after draining (or --systemd-unit printed); 2 it cannot start (a bad model, token, certificate or option, the port is taken, the serve extra is missing); 130 Ctrl-C.
    """  # noqa: E501  (one line a paragraph: Typer keeps a docstring's line breaks in --help)
    from edgecls.parsing import parse_range
    from edgecls.runtime.collect import collect_options

    settings = ModelSettings(labels=labels, resize=plain(resize), fit=plain(fit), input_range=parse_range(input_range),
                             threads=threads, backend=backend)
    live = None if source is None else LiveOptions(
        source=source, every=every, fps=fps, top_k=live_top_k, on_change=on_change, min_stable=min_stable, loop=loop,
        capture=plain(capture), timeout=timeout, reconnect=reconnect, frame_max_side=frame_max_side)
    published = None if mqtt is None else MqttOptions(url=mqtt, credentials_file=mqtt_credentials, ca_file=mqtt_ca)
    options = ServeOptions(
        model=model, settings=settings, host=host, port=port, interpreters=interpreters, queue=queue,
        token_file=token_file, insecure_no_auth=insecure_no_auth, metrics_public=metrics_public,
        max_body_mb=max_body_mb, max_model_mb=max_model_mb, max_megapixels=max_megapixels,
        header_timeout_s=header_timeout_s, body_timeout_s=body_timeout_s, max_connections=max_connections,
        grace_s=grace_s, watch=watch, allow_input_change=allow_input_change, tls_cert=tls_cert, tls_key=tls_key,
        access_log=access_log, live=live, mqtt=published, drift_window=drift_window,
        collect=collect_options(collect, collect_when, collect_max_mb, collect_reserve_mb, shadow, shadow_every),
    ).checked()
    if systemd_unit:
        from edgecls.serve.unit import systemd_unit as unit_text
        from edgecls.serve.unit import unit_warnings

        typer.echo(unit_text(options), nl=False)
        for warning in unit_warnings(options):
            typer.echo(f"edgecls: warning: {warning}", err=True)
        return
    from edgecls.serve import require_stack

    require_stack()
    from edgecls.serve.server import run

    raise typer.Exit(run(options))


DEPLOY_EXAMPLES = (
    "Examples:\n\n"
    "edgecls deploy runs/digits/export/model_int8.tflite --to http://pi:8080 --token-file token\n\n"
    "edgecls deploy model_int8.tflite --to pi-1,pi-2:9000,https://gate.local --parallel 8\n\n"
    "edgecls deploy model_int8.tflite --to @hosts.txt --json > deployed.jsonl"
)


@app.command(epilog=DEPLOY_EXAMPLES)
def deploy(
    model: Annotated[Path, typer.Argument(help="The .tflite to push")],
    to: Annotated[str, typer.Option(
        "--to", metavar="URLS", help="Running `edgecls serve` servers: http://pi:8080 (a bare HOST or HOST:PORT means "
        "http://HOST:8080), comma separated, or @hosts.txt (one or more a line, # comments)")],
    token_file: Annotated[Optional[Path], typer.Option(
        metavar="FILE", help="File holding the servers' token", show_default="$EDGECLS_TOKEN, else none")] = None,
    parallel: Annotated[int, typer.Option(min=1, metavar="N", help="Servers reached at once")] = 4,
    timeout: Annotated[float, typer.Option(min=0.1, metavar="S", help="Per server: upload, check and answer")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per server instead of a line")] = False,
) -> None:
    """Push a model to running `edgecls serve` servers; report each one's answer.

    Each server checks the model as it checks any new one (it loads, a test inference gives valid scores, its labels fit, its input is the served one's) and swaps it in without dropping a request, or refuses it with its reason and keeps serving the old one. One line per server as it answers: accepted, unchanged (already serving it), refused (the server's reason), unreachable, or failed.

    Exit codes: 0 every server took the model (or already had it); 1 any refused it, was unreachable or failed; 2 bad arguments (no such model, not a .tflite, a bad --to).
    """  # noqa: E501
    from edgecls.serve.deploy import deploy as push_all
    from edgecls.serve.deploy import deploy_token, parse_targets, report_line, summary_line

    urls = parse_targets(to)
    results = []
    for result in push_all(model, urls, deploy_token(token_file), parallel=parallel, timeout=timeout):
        results.append(result)
        if as_json:

            typer.echo(jsonio.dumps(result.document(), ensure_ascii=False))
        else:
            typer.echo(report_line(result, width=max(len(url) for url in urls)))
    typer.echo(summary_line(results), err=True)
    raise typer.Exit(0 if all(result.ok for result in results) else 1)
