"""Live predictions as events: the JSON document, the change rule (hysteresis), and GET /v1/events (SSE).

One document for every consumer (GET /v1/latest, each Server-Sent Event, each MQTT message), encoded
once; its JSON Schema is prediction.schema.json beside this module:

    {"source": "camera:0", "frame": 1234, "time": "2026-12-01T09:30:00.123Z", "latency_ms": 3.1,
     "label": "robin", "score": 0.93, "classes": [{"index": 2, "label": "robin", "score": 0.93}, ...],
     "stable": "robin", "changed": true, "previous": "empty",
     "model": {"sha256": "...", "name": "model.tflite"}}

`label` is the top class, or "unknown" when the prediction says so (a model with an open-set rule);
`stable` is the label that has held for --min-stable frames in a row, `changed` marks the frame where it
changed (from `previous`). Fields the prediction type gains later reach the document as they are.

The clients of GET /v1/events each have a buffer of EVENT_BUFFER events. A client that disconnects is
forgotten at once; one that reads slower than events come (its socket buffers full, then its buffer) is
dropped: its connection is closed, never buffered without bound.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from edgecls.console import class_rows, json_ready
from edgecls.provenance import iso_time
from edgecls.runtime.stream import FramePrediction

UNKNOWN = "unknown"  # the label of a prediction the model's open-set rule rejects
EVENT_BUFFER = 64  # events a client may lag behind (beyond its socket's buffers): about 2 s at 30 FPS
KEEPALIVE_S = 15.0  # a comment line when nothing else was sent: proxies keep the connection, dead clients show
RETRY_MS = 2000  # the reconnection delay a browser's EventSource is told to use
_SHOWN = {"frame", "timestamp", "classes", "latency"}  # FramePrediction fields the document renames or reshapes


def verdict(prediction: FramePrediction) -> str:
    """The prediction's label: its top class, or UNKNOWN when it carries an `unknown` flag that is set."""
    if getattr(prediction, "unknown", False) or not prediction.classes:
        return UNKNOWN
    return prediction.classes[0].label


@dataclass(frozen=True)
class Change:
    """What one frame did to the stable label."""

    stable: str | None  # the label held for min_stable frames in a row (None before any has)
    changed: bool  # this frame made a new stable label
    previous: str | None  # the stable label before the change


class ChangeDetector:
    """Hysteresis: a label becomes the stable one only after `min_stable` frames in a row say it, so one odd
    frame (or a few, below min_stable) never flaps the state."""

    def __init__(self, min_stable: int):
        self.min_stable = min_stable
        self.stable: str | None = None
        self._candidate: str | None = None
        self._run = 0

    def observe(self, label: str) -> Change:
        if label == self.stable:
            self._candidate, self._run = None, 0
            return Change(self.stable, False, None)
        self._run = self._run + 1 if label == self._candidate else 1
        self._candidate = label
        if self._run < self.min_stable:
            return Change(self.stable, False, None)
        previous, self.stable = self.stable, label
        self._candidate, self._run = None, 0
        return Change(label, True, previous)


def prediction_document(prediction: FramePrediction, change: Change, source: str, sha256: str,
                        model_name: str) -> dict[str, Any]:
    """The document of one live prediction (see the module docstring)."""
    classes = class_rows(prediction.classes)
    document: dict[str, Any] = {
        "source": source, "frame": prediction.frame, "time": iso_time(prediction.timestamp),
        "latency_ms": round(prediction.latency * 1000, 3), "label": verdict(prediction),
        "score": classes[0]["score"] if classes else None, "classes": classes,
        "stable": change.stable, "changed": change.changed, "previous": change.previous,
        "model": {"sha256": sha256, "name": model_name},
    }
    for item in dataclasses.fields(prediction):  # e.g. an open-set flag and score: as they come
        if item.name not in _SHOWN:
            value = getattr(prediction, item.name)
            value = value.item() if hasattr(value, "item") else value  # numpy scalars
            document[item.name] = json_ready(round(value, 4) if isinstance(value, float) else value)  # as classify's
    return document


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event: its id (a sequence number of this server's run), its name and JSON text."""

    id: int
    name: str  # "prediction" or "status"
    data: str

    def encoded(self) -> bytes:
        return f"id: {self.id}\nevent: {self.name}\ndata: {self.data}\n\n".encode()


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class _Client:
    def __init__(self) -> None:
        self.events: deque[Event] = deque()
        self.wake = asyncio.Event()
        self.dropped = False  # fell EVENT_BUFFER events behind
        self.closing = False  # the server is stopping
        self.sender: asyncio.Task | None = None


# Set in the request's own task when a slow client is cut off mid-response: uvicorn then closes the
# connection (as wanted) and logs "returned without completing response", which QuietCutOff hides.
_CUT_OFF: contextvars.ContextVar[bool] = contextvars.ContextVar("edgecls_events_cut_off", default=False)


class QuietCutOff(logging.Filter):
    """Hides uvicorn's error line for a response the events route ended on purpose (a dropped slow client)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_CUT_OFF.get() and "without completing response" in record.getMessage())


class Hub:
    """The newest prediction and status events, and the clients of GET /v1/events. Lives on the event
    loop: `publish` is called there (the live loop hands events over with call_soon_threadsafe)."""

    def __init__(self, on_clients: Callable[[int], None] = lambda n: None,
                 on_dropped: Callable[[], None] = lambda: None, buffer: int = EVENT_BUFFER,
                 log: Callable[[str], None] = lambda message: None):
        self.buffer = buffer
        self.latest: Event | None = None  # the newest event a new client is given first
        self.status: Event | None = None
        self.closed = False
        self._clients: set[_Client] = set()
        self._on_clients, self._on_dropped, self.log = on_clients, on_dropped, log

    @property
    def clients(self) -> int:
        return len(self._clients)

    def publish(self, event: Event) -> None:
        if event.name == "status":
            self.status = event
        else:
            self.latest = event
        for client in list(self._clients):
            if len(client.events) >= self.buffer:
                self._drop(client)
            else:
                client.events.append(event)
                client.wake.set()

    def close(self) -> None:
        """The server is stopping: every stream ends cleanly (so the drain does not wait for them)."""
        self.closed = True
        for client in self._clients:
            client.closing = True
            client.wake.set()

    def _drop(self, client: _Client) -> None:
        client.dropped = True
        client.events.clear()
        self._forget(client)
        self._on_dropped()
        self.log(f"events: a client fell {self.buffer} events behind and was dropped")
        if client.sender is not None:
            client.sender.cancel()  # it may be stuck waiting for the socket to drain

    def _forget(self, client: _Client) -> None:
        if client in self._clients:
            self._clients.discard(client)
            self._on_clients(len(self._clients))

    async def stream(self, scope: Scope, receive: Receive, send: Send, first: list[Event]) -> None:
        """Answer one GET /v1/events: `first` (the current state), then every event until the client
        leaves, falls behind, or the server stops."""
        client = _Client()
        client.events.extend(first)
        self._clients.add(client)
        self._on_clients(len(self._clients))
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-store"),
                   (b"x-accel-buffering", b"no")]  # a reverse proxy (nginx) must not buffer the stream
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": f"retry: {RETRY_MS}\n\n".encode(), "more_body": True})
            client.sender = asyncio.create_task(self._send_events(client, send))
            listener = asyncio.create_task(_wait_disconnect(receive))
            await asyncio.wait({client.sender, listener}, return_when=asyncio.FIRST_COMPLETED)
            for task in (client.sender, listener):
                task.cancel()
            await asyncio.gather(client.sender, listener, return_exceptions=True)
            if client.dropped:
                _CUT_OFF.set(True)
            elif client.closing:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self._forget(client)

    async def _send_events(self, client: _Client, send: Send) -> None:
        while not client.closing and not client.dropped:
            if not client.events:
                client.wake.clear()
                try:
                    await asyncio.wait_for(client.wake.wait(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                    continue
            if client.events:
                await send({"type": "http.response.body", "body": client.events.popleft().encoded(),
                            "more_body": True})


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
