"""run(): `edgecls serve` as a process — the listening socket, uvicorn, the signals, --watch.

- The socket is bound here (a busy port is a one-line error, exit 2; --port 0 takes a free one and
  says which), before the model is loaded: /healthz answers at once and /readyz says 503 until the
  model has passed its check. A first model that fails it stops the server (exit 2) with the reason.
- SIGTERM (systemd's stop): stop accepting, let the requests in flight finish within --grace-s, exit 0.
  Ctrl-C does the same, then exits 130.
- SIGHUP (systemd's reload): reload the model file from disk, checked like an upload.
- --watch: the same when the model (or --labels) file changes.
- --source: the live mode (edgecls.serve.live) starts once the model is ready; SIGTERM first ends its
  event streams (they never end by themselves), then the drain, then the loop and MQTT stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn

from edgecls.errors import EdgeclsError, first_line
from edgecls.exits import INTERRUPTED
from edgecls.serve.app import create_app, head_rule
from edgecls.serve.auth import load_token
from edgecls.serve.events import QuietCutOff
from edgecls.serve.limits import set_pixel_limit
from edgecls.serve.live import LiveMode, live_routes
from edgecls.serve.options import ServeOptions
from edgecls.serve.protocol import H11_BUFFER_BYTES, PARSER, guarded_protocol
from edgecls.serve.service import Service
from edgecls.serve.watch import watch_files

LISTEN_BACKLOG = 128
KEEP_ALIVE_S = 5  # an idle kept-alive connection is closed after this (uvicorn's own default)
POOL_STOP_S = 2.0  # after the grace period, how long the interpreter threads get to finish an invoke


def say(message: str) -> None:
    """A line of the server's log on stderr (journald adds the time under systemd)."""
    print(f"edgecls: {message}", file=sys.stderr, flush=True)


def run(options: ServeOptions, log: Callable[[str], None] = say) -> int:
    """Serve until SIGTERM (exit code 0) or Ctrl-C (KeyboardInterrupt); EdgeclsError when it cannot start."""
    token, warnings = load_token(options)
    for warning in warnings:
        log(f"warning: {warning}")
    set_pixel_limit(options.max_pixels)  # this process's decoded-pixel cap (Pillow's, as predict's)
    service = Service(options, token, log)
    server: Any = None  # the uvicorn server, made below (the lifespan asks it to stop)
    # Here, so that a bad --source or --mqtt is a one-line error before the port is taken.
    live = LiveMode(service, options) if options.live is not None else None

    async def load_first_model() -> None:
        if await asyncio.to_thread(service.load_first_model):
            log(f"ready: POST {url}/v1/classify, the page at {url}/")
            if live is not None:
                live.start(asyncio.get_running_loop())
        else:  # run() ends with the reason as its error line
            server.should_exit = True

    async def reload(trigger: str) -> None:
        if not service.ready:
            log(f"{trigger}: ignored, the first model is still loading")
            return
        await asyncio.to_thread(service.models.reload, trigger)

    early_stop: list[int] = []  # a SIGTERM before uvicorn took the signal over (see below)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        if early_stop:
            server.should_exit = True
        service.start()
        tasks = [asyncio.create_task(load_first_model())]
        loop.add_signal_handler(signal.SIGHUP, lambda: tasks.append(asyncio.create_task(reload("sighup"))))
        if options.watch:
            watched = [options.model] + ([options.settings.labels] if options.settings.labels else [])
            tasks.append(asyncio.create_task(watch_files(watched, lambda: reload("watch"))))
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            for task in tasks:
                task.cancel()
            if live is not None:
                await asyncio.to_thread(live.stop)
            cancelled = await asyncio.to_thread(service.stop, POOL_STOP_S)
            if cancelled:
                log(f"{cancelled} queued classification{'s' if cancelled != 1 else ''} cancelled at shutdown")

    listener = bind(options.host, options.port)
    host, port = listener.getsockname()[:2]
    # 0.0.0.0 or :: is every interface, not an address to open: show this machine's name in its place
    everywhere = host in ("0.0.0.0", "::")
    url = f"{options.scheme}://{_url_host(socket.gethostname() if everywhere else host)}:{port}"
    routes = live.routes() if live is not None else live_routes(None, None)
    protocol = guarded_protocol(options.header_timeout_s, options.max_connections, head_rule(service))
    config = uvicorn.Config(
        create_app(service, lifespan, routes), interface="asgi3", lifespan="on", log_config=None,
        http=protocol, h11_max_incomplete_event_size=H11_BUFFER_BYTES,  # type: ignore[arg-type]
        ws="none",  # no WebSocket route: an Upgrade request must not go past the guards to a ws protocol
        access_log=options.access_log, timeout_keep_alive=KEEP_ALIVE_S, server_header=False,
        timeout_graceful_shutdown=options.grace_s,  # type: ignore[arg-type]  (a float works: asyncio.timeout)
        ssl_certfile=options.tls_cert, ssl_keyfile=options.tls_key, backlog=LISTEN_BACKLOG)
    try:
        config.load()  # here, so a bad certificate or key is a one-line error
    except (OSError, ValueError) as exc:
        listener.close()
        raise EdgeclsError(f"cannot use --tls-cert/--tls-key: {first_line(exc)}") from None
    _route_uvicorn_logs(options.access_log)
    server = _Server(config, options.grace_s, log, on_exit=live.closing if live is not None else None)
    auth = "a token required on every route but /healthz" + ("" if not options.metrics_public else " and /metrics") \
        if service.auth.enabled else "no token"
    interpreters = f"{options.interpreters} interpreter{'s' if options.interpreters != 1 else ''}"
    log(f"listening on {url}{' (every interface)' if everywhere else ''} ({auth}; {interpreters}, "
        f"queue {options.queue_size}; HTTP parser {PARSER}); loading {options.model.name}")
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    # uvicorn raises the signal it stopped on once more after shutdown; SIGTERM then lands here, not in
    # the default handler, which would end the process with 143 instead of 0 (and one that comes
    # before uvicorn's own handler is noted, and stops the server as it starts). SIGHUP before the
    # lifespan has its handler must not kill the server either.
    signal.signal(signal.SIGTERM, lambda sig, frame: early_stop.append(sig))
    signal.signal(signal.SIGINT, lambda sig, frame: early_stop.append(sig))  # Ctrl-C: drain and stop too, no traceback
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        server.run(sockets=[listener])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        listener.close()
    if service.load_error is not None:
        raise EdgeclsError(f"cannot serve {options.model.name}: {service.load_error}")
    if server.stopped_by == signal.SIGINT or signal.SIGINT in early_stop:
        log("stopped (Ctrl-C)")
        return INTERRUPTED
    log("stopped")
    return 0


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or a one-line EdgeclsError (a busy port, an unknown host)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise EdgeclsError(f"cannot listen on {host}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host.strip("[]") == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # "::" takes IPv4 too
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise EdgeclsError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _route_uvicorn_logs(access_log: bool) -> None:
    """uvicorn's warnings and errors (and, with --access-log, one line per request) as edgecls log lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("edgecls: %(message)s"))
    handler.addFilter(QuietCutOff())
    for name, level in (("uvicorn.error", logging.WARNING), ("uvicorn.access", logging.INFO)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level if name != "uvicorn.access" or access_log else logging.CRITICAL)
        logger.propagate = False


class _Server(uvicorn.Server):
    """uvicorn's server, saying when and why it stops."""

    def __init__(self, config: uvicorn.Config, grace_s: float, log: Callable[[str], None],
                 on_exit: Callable[[], None] | None = None):
        super().__init__(config)
        self.grace_s = grace_s
        self.log = log
        self.on_exit = on_exit  # the live mode's: end the event streams, which never finish by themselves
        self.stopped_by: int | None = None  # the signal that stopped it

    def handle_exit(self, sig: int, frame: Any) -> None:
        if not self.should_exit:
            self.stopped_by = sig
            self.log(f"{signal.Signals(sig).name}: no new connections; finishing the requests in flight (up to "
                     f"{self.grace_s:g} s, --grace-s)")
            if self.on_exit is not None:
                self.on_exit()
        super().handle_exit(sig, frame)
