"""What a request may cost the server: its body (bytes and read time), its decoded pixels, its content type.

Every error here is an ApiError: an HTTP status and a one-line message, which the app answers as JSON.
The request head's own deadline lives in edgecls.serve.protocol (it is over before the app sees a request).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from PIL import Image

MB = 1 << 20
# An early answer first reads the rest of a body up to this size (drain); a larger one is cut off. It covers
# a model file pushed with a wrong token or over --max-model-mb, and any image.
DRAIN_LIMIT = 32 * MB
# Content types of a raw image body. Anything Pillow can then not decode is a 400, not a 415.
IMAGE_TYPES = frozenset({
    "image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/bmp", "image/x-bmp", "image/x-ms-bmp",
    "image/gif", "image/webp", "image/tiff", "application/octet-stream",
})
MULTIPART = "multipart/form-data"
IMAGE_FIELD = "image"
ACCEPTED_TEXT = "an image type (image/jpeg, image/png, ...), application/octet-stream, or multipart/form-data " \
                f"with a field '{IMAGE_FIELD}'"


class ApiError(Exception):
    """An answer other than 200: its status, a one-line message, and extra headers (Retry-After, ...)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_body(status: int, message: str) -> bytes:
    """The body of every error the service answers: {"error": "<one line>", "status": <code>}."""
    return json.dumps({"error": " ".join(str(message).split()), "status": status}, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")


def set_pixel_limit(max_pixels: int) -> None:
    """The decoded-pixel cap of this process: the one `edgecls predict` enforces (Pillow's
    MAX_IMAGE_PIXELS, checked from the image header before anything is decoded)."""
    Image.MAX_IMAGE_PIXELS = max_pixels


def body_kind(content_type: str | None) -> str:
    """'raw' (the body is the image) or 'multipart'; ApiError 415 for anything else."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in IMAGE_TYPES:
        return "raw"
    if media == MULTIPART:
        return "multipart"
    shown = media[:80] or "none"
    raise ApiError(415, f"unsupported content type {shown!r}: send {ACCEPTED_TEXT}")


def megabytes(limit: int) -> str:
    return f"{limit / MB:g} MB"


async def read_body(headers: Any, stream: AsyncIterator[bytes], limit: int, timeout: float, option: str) -> bytes:
    """The whole request body, at most `limit` bytes and within `timeout` seconds; ApiError 413 (over the
    cap, refused from Content-Length before a byte is read when the client declares it), 408 (too slow)
    or 400 (a malformed Content-Length). `option` names the cap's command-line option in the message."""
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, f"malformed Content-Length {declared[:40]!r}")
        if int(declared) > limit:
            raise ApiError(413, f"body of {int(declared)} bytes is over the {megabytes(limit)} cap ({option})",
                           {"Connection": "close"})

    async def collect() -> bytes:
        chunks, size = [], 0
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"body is over the {megabytes(limit)} cap ({option})", {"Connection": "close"})
            if chunk:
                chunks.append(chunk)
        return b"".join(chunks)

    try:  # one deadline for the whole body: a client trickling it byte by byte gains nothing
        return await _within(timeout, collect())
    except asyncio.TimeoutError:
        raise ApiError(408, f"the body did not arrive within {timeout:g} s (--body-timeout-s)",
                       {"Connection": "close"}) from None


async def drain(receive: Any, limit: int, timeout: float) -> bool:
    """Read and drop the rest of a request body (at most `limit` bytes, within `timeout` seconds) before an
    early answer (a wrong token, a body over its cap, a full queue): a client still sending its body then
    reads that answer, where a server that answered and closed gave it a broken pipe (nginx's lingering
    close). False when it gave up (a larger or slower body, a client gone): the connection then closes."""

    async def read_to_end() -> bool:
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return False
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
            if size > limit:
                return False

    try:
        return await _within(timeout, read_to_end())
    except asyncio.TimeoutError:
        return False


async def _within(timeout: float, work: Any) -> Any:
    if hasattr(asyncio, "timeout"):  # Python 3.11+: no task of its own (wait_for's made every request
        async with asyncio.timeout(timeout):  # wait one more turn of a busy event loop)
            return await work
    return await asyncio.wait_for(work, timeout)


def top_k(text: str | None, classes: int) -> int:
    """?top_k=: a whole number from 1 (the default); more than the model's classes gives them all."""
    if text is None:
        return 1
    if not text.strip().isdigit() or int(text) < 1:
        raise ApiError(400, f"top_k must be a whole number of at least 1, got {text[:20]!r}")
    return min(int(text), classes)
