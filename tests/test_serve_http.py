"""The HTTP layer of `edgecls serve` (edgecls.serve.protocol, and the early answers of edgecls.serve.app)
on both of uvicorn's parsers: httptools (llhttp, installed with edgecls[serve] where it has wheels) and
h11 (pure Python: the server started with httptools hidden from it, as on a machine without its wheel).

Each test runs against a real server of each parser on 127.0.0.1, talked to with raw sockets where the
client misbehaves on purpose (slow heads, huge heads, bad framing, pipelining) and with `deploy`.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from serving import ServeProcess, metric, slow_png, wait_for, write_token
from test_serve import FLOAT, INT8, SEVEN, TOKEN

T = TypeVar("T")

PARSERS = ("httptools", "h11")
# `python -c` in place of `-m edgecls`: httptools cannot be imported, so uvicorn's h11 parses
WITHOUT_HTTPTOOLS = ("-c", "import sys; sys.modules['httptools'] = None; from edgecls.entry import main; main()")


def start(parser: str, folder: Path, *args: str, token: str | None = None) -> ServeProcess:
    """`edgecls serve` of the reference int8 model with `parser` parsing HTTP (its start line says which)."""
    if parser == "httptools":
        pytest.importorskip("httptools", reason="httptools has no wheel for this machine: h11 only")
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "model.tflite"
    shutil.copy(INT8, model)
    server = ServeProcess(model, *args, log=folder / "serve.log", token=token,
                          launch=("-m", "edgecls") if parser == "httptools" else WITHOUT_HTTPTOOLS)
    assert f"HTTP parser {parser})" in server.log, server.log
    return server


@pytest.fixture(scope="module", params=PARSERS)
def guarded(request, tmp_path_factory):
    """A token, one interpreter and no queue (one slow request fills it), a 1 MB body cap, a 1 s head and a
    2 s body deadline, and a log line for every answer (--access-log)."""
    folder = tmp_path_factory.mktemp(f"guarded-{request.param}")
    server = start(request.param, folder, "--token-file", str(write_token(folder, TOKEN)), "--interpreters", "1",
                   "--queue", "0", "--threads", "1", "--max-body-mb", "1", "--header-timeout-s", "1",
                   "--body-timeout-s", "2", "--access-log", token=TOKEN)
    server.parser = request.param
    yield server
    assert server.stop() == 0, server.log


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        assert self.headers["content-type"] == "application/json", self.headers
        return json.loads(self.body)


class Wire:
    """A raw HTTP/1.1 client connection: send any bytes, read the answers one by one."""

    def __init__(self, server: ServeProcess, timeout: float = 10):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _more(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        self.buffer += chunk
        return bool(chunk)

    def answer(self) -> Answer:
        """The next answer (a 100 Continue is one too); AssertionError when the connection ends first."""
        while b"\r\n\r\n" not in self.buffer:
            assert self._more(), f"the connection ended before an answer: {self.buffer[:200]!r}"
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", 0))
        while len(self.buffer) < length:
            assert self._more(), "the connection ended inside an answer's body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Answer(int(status_line.split()[1]), headers, body)

    def closed(self) -> bool:
        """Whether the server closes the connection (within the socket's timeout) with nothing more said."""
        try:
            return not self._more() and not self.buffer
        except TimeoutError:
            return False


def post_head(length: int, *extra: str, token: str = TOKEN, version: str = "1.1") -> str:
    lines = [f"POST /v1/classify HTTP/{version}", "Host: x", f"Authorization: Bearer {token}",
             "Content-Type: image/png", f"Content-Length: {length}", *extra]
    return "\r\n".join(lines) + "\r\n\r\n"


def read_all(sock: socket.socket) -> bytes:
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        received += chunk
    return received


def exchange(server: ServeProcess, data: str | bytes, timeout: float = 10) -> bytes:
    """Send `data` on a new connection; everything the server says until it closes (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data.encode() if isinstance(data, str) else data)
        return read_all(sock)


# ----------------------------------------------------------------------------- caps and deadlines
def test_a_body_over_the_cap_is_refused_before_it_is_read(guarded):
    head = (f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {5 << 20}\r\n\r\n")
    started = time.monotonic()
    answer = exchange(guarded, head)  # no body is sent: the answer comes from the declared length
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"over the 1 MB cap (--max-body-mb)" in answer and time.monotonic() - started < 5
    model_head = (f"PUT /v1/model HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                  f"Content-Length: {200 << 20}\r\n\r\n")
    answer = exchange(guarded, model_head)  # a model upload has its own cap
    assert answer.startswith(b"HTTP/1.1 413 ") and b"over the 100 MB cap (--max-model-mb)" in answer, answer[:300]


def test_a_streamed_body_over_the_cap_is_cut_off(guarded):
    """No Content-Length (chunked): the server counts what arrives and answers 413 past the cap."""
    head = (f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: image/png\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (64 << 10, b"\x00" * (64 << 10))
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
        answer: list[bytes] = []
        reader = threading.Thread(target=lambda: answer.append(read_all(sock)))
        reader.start()
        sock.sendall(head.encode())
        try:
            for _ in range(20):  # 1.25 MB, past the 1 MB cap
                sock.sendall(chunk)
        except OSError:  # the server stopped reading
            pass
        reader.join(10)
    assert answer and answer[0].startswith(b"HTTP/1.1 413 "), answer
    assert b"over the 1 MB cap" in answer[0]


def test_a_slow_client_cannot_hold_the_server(guarded):
    """Headers sent a byte at a time, a connection that says nothing, a body that stalls: each is cut
    off at its deadline (408), and meanwhile the server answers everyone else."""
    results: dict[str, tuple[bytes, float]] = {}

    def slow_head() -> None:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n")
            try:
                for byte in b"X-Slow: " + b"a" * 40:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.2)
            except OSError:
                pass
            results["head"] = (read_all(sock), time.monotonic() - started)

    def silent() -> None:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
            results["silent"] = (read_all(sock), time.monotonic() - started)

    def slow_body() -> None:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
            sock.sendall(post_head(1000).encode() + b"\x89PNG")
            results["body"] = (read_all(sock), time.monotonic() - started)

    threads = [threading.Thread(target=f) for f in (slow_head, silent, slow_body)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    with guarded.client() as client:  # served while the three hang on
        assert client.get("/healthz").status_code == 200
        assert client.post("/v1/classify", content=SEVEN.read_bytes(), headers={"Content-Type": "image/png"}) \
            .status_code == 200
    for thread in threads:
        thread.join(15)
    for name in ("head", "silent"):
        answer, seconds = results[name]
        assert answer.startswith(b"HTTP/1.1 408 ") and b"--header-timeout-s" in answer, (name, answer)
        assert 0.9 < seconds < 5, (name, seconds)
    answer, seconds = results["body"]
    assert answer.startswith(b"HTTP/1.1 408 ") and b"did not arrive within 2 s" in answer, answer
    assert 1.9 < seconds < 6, seconds


def test_the_head_deadline_starts_at_the_next_requests_first_byte(guarded):
    """A kept-alive connection idle for longer than the head deadline (but not the keep-alive timeout)
    is not cut off: the deadline starts with the next request's first byte."""
    with Wire(guarded) as wire:
        for _ in range(2):
            wire.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert wire.answer().status == 200
            time.sleep(1.5)  # --header-timeout-s 1; uvicorn's keep-alive 5 s
        wire.send("GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and then a head that stalls: 408
        answer = wire.answer()
    assert answer.status == 408 and "--header-timeout-s" in answer.json()["error"]


def test_a_request_head_over_16_kib_is_answered_431(guarded):
    """llhttp has no cap of its own on a head; h11's (a plain-text 400) is moved above ours: the same JSON
    431 from both, and a head just under the cap is served."""
    with Wire(guarded) as wire:
        wire.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + "a" * 10_000)
        time.sleep(0.1)  # a second read, the head still incomplete past 16 KiB
        wire.send("a" * 10_000)
        answer = wire.answer()
        assert answer.status == 431 and answer.json() == {"error": "the request head is over the 16 KiB cap",
                                                          "status": 431}
        assert answer.headers["connection"] == "close" and wire.closed()
    for size in (17_000, 100_000):  # a head that comes whole, in one read: the same 431
        with Wire(guarded) as wire:
            wire.send(f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * size}\r\n\r\n")
            answer = wire.answer()
            assert answer.status == 431 and "16 KiB cap" in answer.json()["error"], size
            assert wire.closed()
    lines = "".join(f"X-{n:04}:{'v' * 20}\r\n" for n in range(560))  # "Name:value", no space: 16,146 bytes
    head = f"GET /healthz HTTP/1.1\r\nHost:x\r\n{lines}\r\n"
    assert len(head) <= 16 * 1024
    with Wire(guarded) as wire:  # under the cap, however tightly written: served
        wire.send(head)
        assert wire.answer().status == 200
    with Wire(guarded) as wire:  # an Upgrade asks for no other protocol past the cap (no WebSocket here)
        wire.send(f"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                  f"X-Big: {'a' * 100_000}\r\n\r\n")
        assert wire.answer().status == 431
    with Wire(guarded) as wire:  # 15 KiB of headers in one read: served
        wire.send(f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 15_000}\r\n\r\n")
        assert wire.answer().status == 200
    with Wire(guarded) as wire:  # 15 KiB of headers, sent in three reads: served
        wire.send("GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for n in range(3):
            time.sleep(0.05)
            wire.send(f"X-Part-{n}: {'a' * 5000}\r\n")
        wire.send("\r\n")
        assert wire.answer().status == 200


def test_a_connection_over_the_cap_is_answered_503(guarded):
    """64 connections that have not sent a byte yet (--max-connections' default), then one more."""
    held = [socket.create_connection(("127.0.0.1", guarded.port), timeout=5) for _ in range(64)]
    try:
        answer = exchange(guarded, "", timeout=5)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"--max-connections 64" in answer, answer
    finally:
        for sock in held:
            sock.close()
    # and served again once the server has seen them go
    wait_for(lambda: httpx.get(f"{guarded.url}/healthz").status_code == 200, timeout=10, what="a free connection")


# ----------------------------------------------------------------------------- what the parser refuses
BODY = "hello"
MALFORMED = {  # requests both parsers refuse
    "a request line that is not one": "GARBAGE\r\n\r\n",
    "a method with a stray character": "G@T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "a space in a header name": "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
    "a NUL in a header value": "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\x002\r\n\r\n",
    "two different Content-Lengths": post_head(5, "Content-Length: 6") + BODY,
    "a negative Content-Length": post_head(-5),
    "a chunk size that is not hex": post_head(0).replace("Content-Length: 0", "Transfer-Encoding: chunked")
    + "ZZ\r\nhello\r\n0\r\n\r\n",
    "a raw UTF-8 target": "GET /h\u00e9llo HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_request_the_parser_refuses_is_answered_400_as_json(guarded, case):
    with Wire(guarded) as wire:
        wire.send(MALFORMED[case].encode("utf-8"))
        answer = wire.answer()
        body = answer.json()
        assert answer.status == 400 and body["status"] == 400, answer
        assert body["error"].startswith("malformed HTTP request: ") and "\n" not in body["error"], body
        assert "bytearray" not in body["error"] and len(body["error"]) < 120, body  # the reason, not the bytes
        assert wire.closed()


def test_content_length_beside_transfer_encoding_ends_the_connection(guarded):
    """A request smuggling attempt: llhttp refuses it (400), h11 reads the body by its Transfer-Encoding;
    either way the connection closes after the one answer (RFC 9112, 6.3), so nothing after it is read
    as a request."""
    smuggled = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with Wire(guarded) as wire:
        wire.send(post_head(5, "Transfer-Encoding: chunked") + "0\r\n\r\n" + smuggled)
        answer = wire.answer()
        assert answer.status == 400 and answer.json()["status"] == 400, answer
        assert wire.closed()


# ----------------------------------------------------------------------------- what is served
def test_pipelined_requests_are_answered_in_order_on_one_connection(guarded):
    seven = SEVEN.read_bytes()
    with Wire(guarded) as wire:
        wire.send(post_head(len(seven)).encode() + seven + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                  + f"GET /v1/model HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        classified, alive, model = wire.answer(), wire.answer(), wire.answer()
    assert classified.status == 200 and classified.json()["classes"][0]["label"] == "7"
    assert alive.status == 200 and alive.json()["status"] == "alive"
    assert model.status == 200 and model.json()["name"] == "model.tflite"


def test_expect_100_continue_is_answered_100_then_classified(guarded):
    seven = SEVEN.read_bytes()
    with Wire(guarded) as wire:
        wire.send(post_head(len(seven), "Expect: 100-continue"))
        assert wire.answer().status == 100  # before any of the body is sent
        wire.send(seven)
        answer = wire.answer()
    assert answer.status == 200 and answer.json()["classes"][0]["label"] == "7"


def test_a_chunked_body_is_classified(guarded):
    seven = SEVEN.read_bytes()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (seven[:100], seven[100:]))
    with Wire(guarded) as wire:
        wire.send(post_head(0).replace("Content-Length: 0", "Transfer-Encoding: chunked").encode() + chunks
                  + b"0\r\n\r\n")
        answer = wire.answer()
    assert answer.status == 200 and answer.json()["classes"][0]["label"] == "7"


def test_the_connection_is_kept_after_an_answer_that_came_before_the_body(guarded):
    """A wrong token on a 100 KB upload (more than uvicorn reads unasked) is answered 401; the rest of the
    body is read and dropped, and the next request on the same connection is served."""
    seven = SEVEN.read_bytes()
    with Wire(guarded) as wire:
        wire.send(post_head(100_000, token="wrong-token-0123456789abcdef").encode() + bytes(100_000))
        refused = wire.answer()
        wire.send(post_head(len(seven)).encode() + seven)
        served = wire.answer()
    assert refused.status == 401 and "missing or wrong token" in refused.json()["error"]
    assert served.status == 200 and served.json()["classes"][0]["label"] == "7"


def test_a_large_model_refused_before_it_is_all_sent_is_refused_not_unreachable(guarded, tmp_path, cli):
    """The server answers a wrong token (or a body over its cap) before it has read the body: it reads the
    rest first, so the client, still sending, gets that answer rather than a broken pipe (which deploy
    took for an unreachable host, 7 times in 20 with a 0.5 MB model)."""
    large = tmp_path / "large.tflite"  # a .tflite to the client's check, 8 MB: far more than a socket buffer
    large.write_bytes(FLOAT.read_bytes() + bytes(8 << 20))
    (tmp_path / "wrong").mkdir()
    wrong = write_token(tmp_path / "wrong", "not-the-servers-token-0123456789")
    for _ in range(3):
        result = cli("deploy", large, "--to", guarded.url, "--token-file", wrong)
        assert result.code == 1 and result.out.split()[1] == "refused", result.out
        assert "missing or wrong token" in result.out and "(HTTP 401)" in result.out
    capped = start(guarded.parser, tmp_path / "capped", "--max-model-mb", "1")
    try:
        assert metric(capped, "edgecls_model_last_reload_success") == 1  # the first load passed its check
        for _ in range(3):
            result = cli("deploy", large, "--to", capped.url)
            assert result.code == 1 and result.out.split()[1] == "refused", result.out
            assert "over the 1 MB cap (--max-model-mb) (HTTP 413)" in result.out
        assert httpx.get(f"{capped.url}/readyz").status_code == 200  # and it goes on serving
    finally:
        assert capped.stop(signal.SIGINT) == 130, capped.log  # Ctrl-C drains as SIGTERM does: 130, no error line
    assert capped.log.rstrip().endswith("edgecls: stopped (Ctrl-C)") and "error" not in capped.log, capped.log


# ----------------------------------------------------------------------------- a full queue, refused on the head
@pytest.fixture(scope="module")
def slow_image() -> bytes:
    return slow_png()


def while_full(server: ServeProcess, slow_image: bytes, probe: Callable[[], T]) -> T:
    """`probe()` run while the server's one interpreter decodes a slow image (its queue of 0 then full),
    and its result, once the slow classification has been answered. Tried again (3 times at most) when
    that classification ended before the probe did: then the queue was not full all along."""
    for _ in range(3):
        answered: list[httpx.Response] = []
        slow = threading.Thread(target=lambda into=answered: into.append(httpx.post(
            f"{server.url}/v1/classify", content=slow_image, headers={**server.headers, "Content-Type": "image/png"},
            timeout=60)))
        slow.start()
        try:
            wait_for(lambda: metric(server, "edgecls_in_flight") == 1, what="the slow classification to run")
            result = probe()
            held = metric(server, "edgecls_in_flight") == 1
        finally:
            slow.join(60)
        assert answered and answered[0].status_code == 200, answered
        if held:
            return result
    raise AssertionError(f"the slow image was classified before the probe ended, 3 times (no full queue all "
                         f"along; a probe that waits on the server?): the last probe gave {result!r}")


def refusals(server: ServeProcess) -> float:
    return metric(server, "edgecls_http_requests_total", route="/v1/classify", method="POST", status="503") or 0


def test_a_classification_on_a_full_queue_is_refused_on_its_head_and_the_connection_goes_on(guarded,
                                                                                               slow_image):
    """The 503 comes as soon as the head is read, before any of the 200 KB body is sent (the app would
    read that body first, up to --body-timeout-s: 2 s here); the body that follows is read and dropped,
    and the next request on the same connection is served."""
    before = refusals(guarded)

    def probe() -> tuple[Wire, Answer, float]:
        wire = Wire(guarded)
        started = time.monotonic()
        wire.send(post_head(200_000))
        refused = wire.answer()
        seconds = time.monotonic() - started
        wire.send(bytes(200_000))  # the body after all: dropped, not read as the next request
        return wire, refused, seconds

    wire, refused, seconds = while_full(guarded, slow_image, probe)
    seven = SEVEN.read_bytes()
    with wire:
        wire.send(post_head(len(seven)).encode() + seven)
        served = wire.answer()
    assert refused.status == 503 and seconds < 1, (refused, seconds)
    assert refused.json() == {"status": 503, "error": refused.json()["error"]}
    assert refused.json()["error"].startswith("busy: all 1 interpreter is working and the queue of 0 is full")
    assert int(refused.headers["retry-after"]) >= 1 and "connection" not in refused.headers
    assert served.status == 200 and served.json()["classes"][0]["label"] == "7"
    assert refusals(guarded) >= before + 1  # counted as the app counts its answers
    assert '"POST /v1/classify HTTP/1.1" 503' in guarded.log  # and logged as uvicorn logs them


def test_a_full_queue_refuses_each_pipelined_classification_in_order(guarded, slow_image):
    seven = SEVEN.read_bytes()
    request = post_head(len(seven)).encode() + seven

    def probe() -> list[Answer]:
        with Wire(guarded) as wire:
            wire.send(request * 3 + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return [wire.answer() for _ in range(4)]

    answers = while_full(guarded, slow_image, probe)
    assert [a.status for a in answers] == [503, 503, 503, 200], answers
    assert all(a.json()["error"].startswith("busy: ") for a in answers[:3])
    assert answers[3].json()["status"] == "alive"


def test_a_full_queue_refuses_a_client_that_waits_for_100_continue_and_closes(guarded, slow_image):
    """No 100 Continue for a body that would be dropped: the 503 at once, and the connection closed (the
    client may send its body or not). An HTTP/1.0 request is refused and closed too."""
    seven = SEVEN.read_bytes()

    def probe() -> list[tuple[Answer, bool]]:
        seen = []
        for head in (post_head(len(seven), "Expect: 100-continue").encode(),
                     post_head(len(seven), version="1.0").encode() + seven):
            with Wire(guarded) as wire:
                wire.send(head)
                seen.append((wire.answer(), wire.closed()))
        return seen

    for answer, closed in while_full(guarded, slow_image, probe):
        assert answer.status == 503 and answer.json()["error"].startswith("busy: "), answer
        assert answer.headers["connection"] == "close" and closed


def test_a_full_queue_still_answers_a_wrong_token_401(guarded, slow_image):
    """The head rule refuses only a request the app would have let through: no token, no hint of the load."""
    seven = SEVEN.read_bytes()

    def probe() -> Answer:
        with Wire(guarded) as wire:
            wire.send(post_head(len(seven), token="wrong-token-0123456789abcdef").encode() + seven)
            return wire.answer()

    answer = while_full(guarded, slow_image, probe)
    assert answer.status == 401 and "missing or wrong token" in answer.json()["error"]
