"""uvicorn's HTTP/1.1 protocol (h11) with two guards uvicorn does not have.

- A deadline for the request head: a client that opens a connection, or starts a request, and then
  sends its headers a byte at a time (slowloris) is answered 408 and dropped after `head_timeout`
  seconds. uvicorn's keep-alive timeout covers only an idle connection between requests; the body's
  read time is bounded by the app (edgecls.serve.limits.read_body).
- A cap on open connections: one more is answered 503 and closed at once, so idle sockets cannot
  use up the process's file descriptors.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def _raw_response(status: int, reason: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": message, "status": status}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{extra}connection: close\r\n\r\n").encode() + body


def guarded_protocol(head_timeout: float, max_connections: int) -> type[H11Protocol]:
    """An H11Protocol class with the head deadline and the connection cap (uvicorn's `http=`)."""
    too_slow = _raw_response(408, "Request Timeout", f"the request head did not arrive within {head_timeout:g} s "
                             "(--header-timeout-s)")
    too_many = _raw_response(503, "Service Unavailable", f"too many open connections (--max-connections "
                             f"{max_connections})", "retry-after: 1\r\n")

    class GuardedH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(too_many)
                transport.close()
                return
            self._arm()  # a connection that never sends a byte is a head that never arrives

        def data_received(self, data: bytes) -> None:
            if self._head_timer is None and self.conn.their_state is h11.IDLE:
                self._arm()  # the first bytes of the next request on a kept-alive connection
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the head is complete (or the request failed)
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(head_timeout, self._head_too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.write(too_slow)
                self.transport.close()

    return GuardedH11Protocol
