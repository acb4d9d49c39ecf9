"""uvicorn's HTTP/1.1 protocol with what uvicorn does not have, on either of its parsers.

The parser is httptools (llhttp, in C) when it is installed, as uvicorn's own `http="auto"` chooses, and
h11 (pure Python) otherwise: `edgecls[serve]` installs httptools where it has wheels (x86_64, aarch64),
and a machine without them still serves, only with a slower parser. What follows is one class,
`_Guards`, over either protocol; a parser's class adds only how it tells that a request head is awaited.

- A deadline for the request head: a client that opens a connection, or starts a request, and then
  sends its headers a byte at a time (slowloris) is answered 408 and dropped after `head_timeout`
  seconds. uvicorn's keep-alive timeout covers only an idle connection between requests; the body's
  read time is bounded by the app (edgecls.serve.limits.read_body).
- A cap on the request head: one over MAX_HEAD_BYTES is answered 431 and dropped, whether it is still
  incomplete after a read or came whole (llhttp has no cap of its own; h11's, a plain-text 400 at 16 KiB,
  is moved out of the way).
- A cap on open connections: one more is answered 503 and closed at once, so idle sockets cannot
  use up the process's file descriptors.
- A request the parser cannot read (a bad request line, header or chunk; Content-Length beside
  Transfer-Encoding, which h11 reads by the latter and then closes) is answered 400 in the service's JSON
  error form, naming the parser's reason, where uvicorn answers in plain text.
- The head rule (`head_rule`, given by the app: edgecls.serve.app.head_rule): asked on every request as
  soon as its head is read, it may answer at once instead of the app; under overload a refusal then costs
  the parse and a write, not the app's stack. uvicorn drops the body that follows such an answer and
  the connection goes on (or closes: `_close_after`).
"""

from __future__ import annotations

import asyncio
import http
import sys
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from edgecls.errors import first_line
from edgecls.serve.limits import DRAIN_LIMIT, ApiError, error_body

try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed (no wheel for this machine): h11 parses
    HttpToolsProtocol = None

MAX_HEAD_BYTES = 16 * 1024  # the request line and headers (h11's own default cap, and Node's)
# h11 caps an incomplete head too; ours is checked after each read (asyncio reads up to 256 KiB at once),
# so h11's is set a read above ours, for our 431 to answer first (uvicorn's h11_max_incomplete_event_size).
H11_BUFFER_BYTES = MAX_HEAD_BYTES + (1 << 20)
HEAD_TOO_LARGE = ApiError(431, f"the request head is over the {MAX_HEAD_BYTES // 1024} KiB cap")
# Given a request's scope as soon as its head has been read: an answer to give at once instead of the app's.
HeadRule = Callable[[dict[str, Any]], "ApiError | None"]
Headers = list[tuple[bytes, bytes]]


def _head(status: int, headers: Headers) -> bytes:
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    return b"".join(lines) + b"\r\n"


def _error_headers(error: ApiError, body: bytes, close: bool) -> Headers:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in error.headers.items()]
    return headers + [(b"connection", b"close")] if close else headers


def raw_response(error: ApiError) -> bytes:
    """A whole answer that closes the connection, in the service's JSON error form, as bytes for the
    transport: for answers given before a request exists (408, 431, a connection over the cap)."""
    body = error_body(error.status, error.message)
    return _head(error.status, _error_headers(error, body, close=True)) + body


class _Answer:
    """An answer given on a request's head instead of the app's. It is an ASGI app, which uvicorn runs as
    any other (h11); httptools' class writes it at once instead (`write`), without a task."""

    def __init__(self, error: ApiError, close: bool):
        self.status = error.status
        self.body = error_body(error.status, error.message)
        self.close = close
        self.headers = _error_headers(error, self.body, close)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})

    def write(self, cycle: Any) -> None:
        """Answer on a uvicorn (httptools) request cycle now, as its send() would: uvicorn's default headers
        (the date), the access log line, the connection closed or the next pipelined request begun."""
        close = self.close or not cycle.keep_alive
        headers = cycle.default_headers + self.headers
        if close and not self.close:
            headers = headers + [(b"connection", b"close")]
        cycle.response_started = cycle.response_complete = True  # the body that follows is dropped
        if cycle.access_log:
            scope = cycle.scope
            cycle.access_logger.info('%s - "%s %s HTTP/%s" %d', get_client_addr(scope), scope["method"],
                                     get_path_with_query_string(scope), scope["http_version"], self.status)
        cycle.transport.write(_head(self.status, headers) + self.body)
        if close:
            cycle.transport.close()
        cycle.on_response()


def _head_size(scope: dict[str, Any]) -> int:
    """The fewest bytes a parsed request head can have taken: its request line and header lines with no
    optional space ("Name:value"), so a head under the cap is never taken for one over it."""
    query = len(scope["query_string"])
    line = len(scope["method"]) + 1 + len(scope["raw_path"]) + (1 + query if query else 0) + 11  # " HTTP/1.1\r\n"
    return line + sum(len(name) + 1 + len(value) + 2 for name, value in scope["headers"]) + 2


def _close_after(headers: Headers) -> bool:
    """Whether an answer given before the body must close the connection: when the client waits for
    100 Continue (its body may follow or not: the answer tells it not to send it) or declares a body too
    large to read only to drop it (DRAIN_LIMIT). Otherwise uvicorn reads the body and drops it."""
    for name, value in headers:
        if name == b"expect" and value.lower() == b"100-continue":
            return True
        if name == b"content-length" and (not value.strip().isdigit() or int(value) > DRAIN_LIMIT):
            return True
    return False


class _Guards:
    """The guards and the head rule, over H11Protocol or HttpToolsProtocol (the next class in the MRO).
    `guarded_protocol` sets the class attributes; a parser's class says whether a request head is awaited."""

    head_timeout: float
    max_connections: int
    head_rule: HeadRule
    too_slow: bytes
    too_large: bytes
    too_many: bytes
    _head_timer: asyncio.TimerHandle | None = None  # set while a head is awaited
    _head_bytes = 0  # read of the head being awaited

    # Both uvicorn protocols read `self.app` once a request, when its head has been parsed and its scope
    # made, to pick the ASGI app that answers it: there the head rule may answer instead.
    @property
    def app(self) -> Any:
        if _head_size(self.scope) > MAX_HEAD_BYTES:  # a head that came whole, in one read or its last
            return _Answer(HEAD_TOO_LARGE, close=True)
        error = self.head_rule(self.scope)
        if error is not None:
            return _Answer(error, _close_after(self.scope["headers"]))
        return self._app

    @app.setter
    def app(self, app: Any) -> None:
        self._app = app

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        if len(self.connections) > self.max_connections:
            transport.write(self.too_many)
            transport.close()
            return
        self._arm()  # a connection that never sends a byte is a head that never arrives

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self._awaiting_head():
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)  # type: ignore[misc]
        if self._head_timer is not None and not self._awaiting_head():
            self._head_arrived()
        if self._head_timer is not None:  # the head is still incomplete
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self._refuse(self.too_large)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request its parser rejects (called where it catches the parser's error),
        in the JSON form and naming the parser's reason; nothing more once an answer has begun."""
        if self.cycle is None or not self.cycle.response_started:
            error = sys.exc_info()[1]
            reason = self._parse_error(error) if error is not None else msg
            self.transport.write(raw_response(ApiError(400, f"malformed HTTP request: {reason}")))
        self.transport.close()

    def _parse_error(self, error: BaseException) -> str:
        return first_line(error)

    def _awaiting_head(self) -> bool:
        """No request head is complete since the connection opened or the last request ended."""
        raise NotImplementedError

    def _head_arrived(self) -> None:
        self._disarm()
        self._head_bytes = 0

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._awaiting_head():
            return
        if self.cycle is not None and not self.cycle.response_complete:  # a pipelined head behind an answer
            self._arm()                                                     # still being written: wait for it
            return
        self._refuse(self.too_slow)

    def _refuse(self, answer: bytes) -> None:
        self._disarm()
        self.transport.write(answer)
        self.transport.close()


class _GuardedH11(_Guards, H11Protocol):
    def _awaiting_head(self) -> bool:
        return self.conn.their_state is h11.IDLE  # (DONE from its request's end until the answer's)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle and _framed_twice(self.headers):
            # h11 reads such a body by its Transfer-Encoding (llhttp refuses it, 400); either way the
            # connection must close after the answer (RFC 9112, 6.3: a request smuggling attempt)
            self.cycle.keep_alive = False

    def _parse_error(self, error: BaseException) -> str:
        return first_line(error).split(": bytearray(")[0]  # h11 quotes the client's bytes: the reason is enough


def _framed_twice(headers: Headers) -> bool:
    names = {name for name, _ in headers}
    return b"content-length" in names and b"transfer-encoding" in names


_Guarded: type = _GuardedH11  # the parser's class the guards go over: httptools' where it is installed

if HttpToolsProtocol is not None:

    class _GuardedHttpTools(_Guards, HttpToolsProtocol):
        # llhttp parses what it is given at once, a pipelined request's head too: the head is over at
        # its callback (a request that came whole in one read has ended too by the time the read returns)
        _reading_head = True

        def _awaiting_head(self) -> bool:
            return self._reading_head

        def on_headers_complete(self) -> None:
            self._reading_head = False
            self._head_arrived()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._reading_head = True

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            if isinstance(app, _Answer):  # the head rule's answer: written now, no task to run it
                app.write(cycle)
            else:
                super()._start_asgi_task(cycle, app)

        def _parse_error(self, error: BaseException) -> str:
            # an error raised in uvicorn's own callback (a CONNECT's target read as a URL) is the reason,
            # not llhttp's "User callback error"
            if isinstance(error, httptools.HttpParserCallbackError) and error.__context__ is not None:
                error = error.__context__
            return first_line(error)

    _Guarded = _GuardedHttpTools

PARSER = "httptools" if HttpToolsProtocol is not None else "h11"  # what `guarded_protocol()` parses with


def guarded_protocol(head_timeout: float, max_connections: int, head_rule: HeadRule) -> type:
    """The protocol class for uvicorn's `http=`: httptools' when it is installed, else h11's, with the
    guards, and `head_rule` asked on every request's head."""
    return type(f"Guarded{PARSER.capitalize()}Protocol", (_Guarded,), {
        "head_timeout": head_timeout,
        "max_connections": max_connections,
        "head_rule": staticmethod(head_rule),
        "too_slow": raw_response(ApiError(408, f"the request head did not arrive within {head_timeout:g} s "
                                               "(--header-timeout-s)")),
        "too_large": raw_response(HEAD_TOO_LARGE),
        "too_many": raw_response(ApiError(503, f"too many open connections (--max-connections {max_connections})",
                                          {"Retry-After": "1"})),
    })
