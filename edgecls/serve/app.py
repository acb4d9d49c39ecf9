"""The Starlette app of `edgecls serve`: its routes, the token check, errors as JSON, request metrics.

    POST /v1/classify            an image (raw body with an image type, or multipart field `image`); ?top_k=
    GET  /v1/model               the served model: labels, input, preprocessing, metadata, SHA-256, loaded at
    PUT  /v1/model               a new model (the .tflite as the raw body): checked, then swapped in
    POST /v1/model/rollback      back to the model the last swap replaced
    GET  /healthz                alive (no token)
    GET  /readyz                 a checked model is being served (200), else 503
    GET  /metrics                Prometheus text (no token with --metrics-public)
    GET  /                       the web page (no token: it asks for it, and holds no data; see page.py)

create_app(service, routes=...) takes further routes (a live page, events), which get the same token
check, error format and metrics. Blocking work (decoding, invoking, loading a model) never runs on
the event loop: classifications go to the interpreter pool, model loads to a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Lifespan, Message, Receive, Scope, Send

from edgecls.console import json_ready
from edgecls.serve.auth import OPEN_ROUTES
from edgecls.serve.limits import DRAIN_LIMIT, IMAGE_FIELD, ApiError, body_kind, drain, error_body, read_body, top_k
from edgecls.serve.metrics import CONTENT_TYPE
from edgecls.serve.models import ModelUnavailable, Outcome
from edgecls.serve.page import page_route
from edgecls.serve.service import Service

CLASSIFY = "/v1/classify"
RESERVATION = "edgecls.reservation"  # the scope key of a classification's place in the queue (Guard takes it)
RESERVATION_S = 0.05  # how long that place waits for the task (then a request finding the queue full takes it)
MAX_FORM_FIELDS = 8  # a multipart upload is one file and perhaps a few small fields, never a thousand
OUTCOME_STATUS = {"accepted": 200, "unchanged": 200, "refused": 422, "failed": 500}
# A body up to this size is read by uvicorn with the request head and kept (its HIGH_WATER_LIMIT): an early
# answer leaves the connection usable without reading it. A larger one may still be on its way.
BUFFERED_BODY = 64 * 1024


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """Every error the service answers: {"error": "<one line>", "status": <code>} (limits.error_body)."""
    return Response(error_body(status, message), status_code=status, headers=headers, media_type="application/json")


class Guard:
    """Outermost ASGI layer: the token check (all routes but /healthz, and /metrics with --metrics-public),
    a classification's place in the queue, and the request counter by route, method and status. (The 503
    of a queue already full comes before it, on the request head: head_rule.)"""

    def __init__(self, app: ASGIApp, service: Service, routes: Sequence[BaseRoute]):
        self.app = app
        self.service = service
        self.open = set(OPEN_ROUTES) | ({"/metrics"} if service.options.metrics_public else set())
        self.known = {getattr(route, "path", None) for route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]
        unread = [_large_body(scope)]  # such a body, until it has been read to its end
        receive_and_note = receive
        if unread[0]:  # (a small body came with the head: uvicorn has it all, and nothing is wrapped per request)

            async def receive_and_note() -> Message:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    unread[0] = False
                return message

        async def send_and_count(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                if unread[0] and status[0] != 408:  # an answer before the whole body (not a body too slow to
                    unread[0] = False                  # come): read the rest first, or the client gets a reset
                    await drain(receive_and_note, DRAIN_LIMIT, self.service.options.body_timeout_s)
            await send(message)

        path = scope["path"]
        reservation = None
        try:
            if path not in self.open and not self.service.auth.allows(_header(scope, b"authorization")):
                response = error_response(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'",
                                          {"WWW-Authenticate": 'Bearer realm="edgecls"'})
                await response(scope, receive_and_note, send_and_count)
                return
            if path == CLASSIFY and scope["method"] == "POST" and not unread[0]:
                # its place in the queue, from now until its answer has gone (edgecls.serve.pool); a large
                # body, read in parts over time, holds none while it comes
                reservation = scope[RESERVATION] = self.service.pool.reserve(RESERVATION_S)
                if reservation is None:
                    busy = self.service.busy()
                    await error_response(busy.status, busy.message, busy.headers)(scope, receive_and_note,
                                                                                  send_and_count)
                    return
            await self.app(scope, receive_and_note, send_and_count)
        finally:  # a route label per known route (an unknown path is "other": no label per scanned URL)
            if reservation is not None:
                reservation.release()
            route = path if path in self.known else "other"
            self.service.metrics.requests.labels(route, scope["method"], str(status[0])).inc()


def head_rule(service: Service) -> Callable[[Scope], ApiError | None]:
    """The answer given on a request's head, before the app (edgecls.serve.protocol asks it on every
    request): a classification while every interpreter is busy and the queue is full is refused 503 at
    once, for the least a refusal can cost under overload (its request counted here: the app never sees
    it). A request without the token goes on to the app's 401. (One let through takes its place in the
    queue when the app starts, in Guard: a head read ahead on a pipelining connection may never start.)"""
    refused = service.metrics.requests.labels(CLASSIFY, "POST", "503")

    def refuse(scope: Scope) -> ApiError | None:
        if scope["path"] != CLASSIFY or scope["method"] != "POST" or not service.pool.full() \
                or not service.auth.allows(_header(scope, b"authorization")):
            return None
        refused.inc()
        return service.busy()

    return refuse


def _large_body(scope: Scope) -> bool:
    """The request has a body that an early answer must drain first: a Content-Length over what uvicorn
    buffers unasked (64 KiB; up to DRAIN_LIMIT: a larger one is not drained), or a chunked one."""
    length = _header(scope, b"content-length")
    if length is not None:
        return length.strip().isdigit() and BUFFERED_BODY < int(length) <= DRAIN_LIMIT
    return "chunked" in (_header(scope, b"transfer-encoding") or "").lower()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def create_app(service: Service, lifespan: Lifespan | None = None, routes: Sequence[BaseRoute] = ()) -> ASGIApp:
    """The service's ASGI app: the routes above plus `routes`, behind Guard."""
    options = service.options

    async def classify(request: Request) -> Response:
        started = time.perf_counter()
        service.require_ready()
        kind = body_kind(request.headers.get("content-type"))
        k = top_k(request.query_params.get("top_k"), service.models.current.classifiers[0].num_classes)
        reservation = request.scope.get(RESERVATION)
        service.check_capacity(reservation)
        body = await read_body(request.headers, request.stream(), options.max_body_bytes, options.body_timeout_s,
                               "--max-body-mb")
        data = await _multipart_image(request, body) if kind == "multipart" else body
        if not data:
            raise ApiError(400, f"empty body: send the image as the request body, or as a multipart field "
                                f"'{IMAGE_FIELD}'")
        client = request.client.host if request.client is not None else "a client"
        answer = await service.classify(data, k, f"POST {CLASSIFY} from {client}", reservation)
        total = time.perf_counter() - started
        service.metrics.total.observe(total)
        return JSONResponse(answer.document(total))

    async def get_model(request: Request) -> Response:
        service.require_ready()
        document = service.models.current.describe()
        document["previous_sha256"] = service.models.previous_sha256
        document["last_reload"] = _last_reload(service)
        document["live"] = options.live is not None  # the page asks GET /v1/live only then (no 404 in its console)
        return JSONResponse(json_ready(document))

    async def put_model(request: Request) -> Response:
        service.require_ready()
        if body_kind_of_model(request.headers.get("content-type")) != "raw":
            raise ApiError(415, "send the .tflite file as the raw request body "
                                "(Content-Type: application/octet-stream)")
        body = await read_body(request.headers, request.stream(), options.max_model_bytes, options.body_timeout_s,
                               "--max-model-mb")
        if not body:
            raise ApiError(400, "empty body: send the .tflite file as the request body")
        return _outcome_response(await run_in_threadpool(service.models.replace, body, "upload"))

    async def rollback(request: Request) -> Response:
        service.require_ready()
        try:
            outcome = await run_in_threadpool(service.models.rollback)
        except ModelUnavailable as exc:
            raise ApiError(409, str(exc)) from None
        return _outcome_response(outcome)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive", "uptime_s": round(time.time() - service.started_at, 3),
                             "token_required": service.auth.enabled})  # the page signs in first, without a 401

    async def readyz(request: Request) -> Response:
        current = service.models.current
        if not service.ready or current is None:
            return error_response(503, "no model is ready yet: the server is loading and checking it",
                                  {"Retry-After": "1"})
        return JSONResponse({"ready": True, "model": {"sha256": current.sha256, "name": current.name,
                                                      "loaded_at": current.describe()["loaded_at"]},
                             "last_reload": _last_reload(service)})

    async def metrics(request: Request) -> Response:
        return Response(service.metrics.text(), media_type=CONTENT_TYPE)

    core = [
        Route(CLASSIFY, classify, methods=["POST"]),
        Route("/v1/model", get_model, methods=["GET"]),
        Route("/v1/model", put_model, methods=["PUT"]),
        Route("/v1/model/rollback", rollback, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        page_route(),
    ]
    every = [*core, *routes]
    app = Starlette(routes=every, lifespan=lifespan, exception_handlers={
        ApiError: _api_error, HTTPException: _http_error, ClientDisconnect: _client_gone, Exception: _internal_error})
    return Guard(app, service, every)


def body_kind_of_model(content_type: str | None) -> str:
    """A model upload is a raw body of any type but multipart (a form would wrap the bytes)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return "multipart" if media.startswith("multipart/") else "raw"


async def _multipart_image(request: Request, body: bytes) -> bytes:
    """The bytes of the multipart field `image` of a body already read (and capped)."""

    async def once() -> Any:
        yield body

    parser = MultiPartParser(request.headers, once(), max_files=1, max_fields=MAX_FORM_FIELDS,
                             max_part_size=64 * 1024)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, f"malformed multipart body: {exc.message}") from None
    try:
        item = form.get(IMAGE_FIELD)
        if item is None:
            raise ApiError(400, f"the multipart body has no field '{IMAGE_FIELD}' (curl -F {IMAGE_FIELD}=@photo.jpg)")
        if isinstance(item, str):
            raise ApiError(400, f"the multipart field '{IMAGE_FIELD}' is text, not a file "
                                f"(curl -F {IMAGE_FIELD}=@photo.jpg)")
        return await item.read()
    finally:
        await form.close()


def _last_reload(service: Service) -> dict[str, Any] | None:
    last = service.models.last_reload
    return None if last is None else last.describe()


def _outcome_response(outcome: Outcome) -> JSONResponse:
    document = outcome.describe()
    if not outcome.ok:
        document["error"] = f"model {outcome.outcome}: {outcome.reason}"
    document["status"] = OUTCOME_STATUS[outcome.outcome]
    return JSONResponse(document, status_code=document["status"])


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: f"no such route: {request.url.path[:200]}",
                405: f"{request.method} is not allowed on {request.url.path[:200]}"}
    return error_response(exc.status_code, messages.get(exc.status_code, str(exc.detail)), exc.headers)


async def _client_gone(request: Request, exc: Exception) -> Response:
    return error_response(400, "the client closed the connection before its body arrived")


async def _internal_error(request: Request, exc: Exception) -> Response:
    return error_response(500, f"internal error: {type(exc).__name__}: {str(exc)[:200]} (see the server's log)")
