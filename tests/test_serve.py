"""`edgecls serve` and `edgecls deploy`: the real server (uvicorn, in a subprocess on 127.0.0.1) talked to
with a real HTTP client (httpx) and raw sockets where a client misbehaves on purpose.

Servers are module-scoped and started as a user starts them (tests/serving.py); the tests that change
a server's model (uploads, rollback, SIGHUP, --watch, deploy) read its state first instead of
assuming an order.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import SHARED_DATA
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from serving import ROOT, ServeProcess, metric, png_chunk, slow_png, wait_for, write_token

DIGITS = ROOT / "models" / "digits-seed"
INT8, FLOAT = DIGITS / "model_int8.tflite", DIGITS / "model_float32.tflite"
SEVEN = sorted((DIGITS / "test-images" / "7").iterdir())[0]
PRETRAINED = SHARED_DATA / "pretrained"
CORAL, CAT, IMAGENET = (PRETRAINED / "mobilenet_v1_0.5_160_quant.tflite", PRETRAINED / "cat.bmp",
                        PRETRAINED / "imagenet_labels.txt")
TOKEN = "serve-test-token-0123456789abcdef"
SERVE_STACK = ("starlette", "uvicorn", "prometheus_client", "multipart", "python_multipart", "httpx", "h11",
               "httptools", "anyio")


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def replace_file(target: Path, source: Path | bytes) -> None:
    """Write a model over `target` as a careful user does: a temporary name, then a rename."""
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(source if isinstance(source, bytes) else source.read_bytes())
    os.replace(tmp, target)


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def bomb() -> bytes:
    """A tiny PNG whose header claims 20000 x 20000 pixels (400 MP): refused before decoding."""
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + \
        png_chunk(b"IDAT", zlib.compress(b"\x00" * 20001 * 4)) + png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def slow_image() -> bytes:
    return slow_png()


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> Path:
    return write_token(tmp_path_factory.mktemp("token"), TOKEN)


def _served_copy(tmp_path_factory, name: str, model: Path = INT8) -> Path:
    return _served_copy_to(tmp_path_factory.mktemp(name), model)


def _served_copy_to(folder: Path, model: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, folder / "model.tflite")
    return folder / "model.tflite"


@pytest.fixture(scope="module")
def digits(tmp_path_factory, token_file):
    """The tiny digits model behind a token, two interpreters, small caps and timeouts, --watch."""
    model = _served_copy(tmp_path_factory, "digits")
    server = ServeProcess(model, "--token-file", token_file, "--interpreters", 2, "--threads", 1, "--queue", 64,
                          "--max-body-mb", 1, "--header-timeout-s", 1, "--body-timeout-s", 2, "--watch",
                          log=model.with_name("serve.log"), token=TOKEN)
    server.model = model
    yield server
    assert server.stop() == 0, server.log


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """One interpreter and no queue (a second request at once is a 503), no token (loopback only), and
    --allow-input-change."""
    model = _served_copy(tmp_path_factory, "busy")
    server = ServeProcess(model, "--interpreters", 1, "--queue", 0, "--threads", 1, "--allow-input-change",
                          log=model.with_name("serve.log"))
    server.model = model
    yield server
    assert server.stop() == 0, server.log


@pytest.fixture(scope="module")
def coral(tmp_path_factory):
    model = _served_copy(tmp_path_factory, "coral", CORAL)
    server = ServeProcess(model, "--labels", IMAGENET, "--resize", "nearest", "--interpreters", 2, "--threads", 1,
                          log=model.with_name("serve.log"))
    yield server
    assert server.stop() == 0, server.log


def predict_json(cli, model: Path, image: Path, *options: str) -> list[dict]:
    result = cli("predict", model, image, "--json", *options)
    assert result.code == 0, result.err
    return json.loads(result.out)["classes"]


# ----------------------------------------------------------------------------- answers
def test_a_digit_is_classified_as_predict_classifies_it(digits, cli):
    with digits.client() as client:
        raw = client.post("/v1/classify", params={"top_k": 3}, content=SEVEN.read_bytes(),
                          headers={"Content-Type": "image/png"})
        form = client.post("/v1/classify", params={"top_k": 3}, files={"image": ("seven.png", SEVEN.read_bytes())})
    assert raw.status_code == 200 and form.status_code == 200, (raw.text, form.text)
    answer = raw.json()
    served = INT8 if answer["model"]["sha256"] == sha(INT8) else FLOAT
    assert answer["model"]["sha256"] == sha(served)
    assert answer["classes"] == form.json()["classes"] == predict_json(cli, served, SEVEN, "--top-k", "3")
    assert answer["classes"][0]["label"] == "7"
    assert set(answer["timings_ms"]) == {"queue", "decode", "invoke", "total"}
    assert all(v >= 0 for v in answer["timings_ms"].values())
    assert answer["timings_ms"]["total"] >= answer["timings_ms"]["decode"] + answer["timings_ms"]["invoke"]


@pytest.mark.shared_data
def test_the_coral_model_says_egyptian_cat_as_predict_does(coral, cli):
    response = httpx.post(f"{coral.url}/v1/classify?top_k=3", content=CAT.read_bytes(),
                          headers={"Content-Type": "image/bmp"})
    assert response.status_code == 200, response.text
    classes = response.json()["classes"]
    assert classes[0]["label"] == "Egyptian cat"
    assert classes == predict_json(cli, CORAL, CAT, "--labels", str(IMAGENET), "--resize", "nearest", "--top-k", "3")
    assert response.json()["model"]["sha256"] == sha(CORAL)


def test_get_model_describes_the_served_model(digits):
    with digits.client() as client:
        document = client.get("/v1/model").json()
    assert document["sha256"] in (sha(INT8), sha(FLOAT)) and document["name"] == "model.tflite"
    assert document["labels"] == [str(i) for i in range(10)] and document["num_classes"] == 10
    assert document["input"]["height"] == 28 and document["input"]["channels"] == 1
    assert document["preprocessing"] == {"resize": "bilinear", "fit": "stretch", "pixel_range": [0.0, 255.0]}
    assert document["metadata"]["format"] == "edgecls.model/1"
    assert document["loaded_at"].endswith("Z") and document["interpreters"] == 2 and document["threads"] == 1


# ----------------------------------------------------------------------------- errors
def _broken_png() -> bytes:
    return png(np.full((40, 40), 99, np.uint8))[:60]


def _multipart(field: str, content: bytes | str) -> dict:
    """A multipart body with `field` a file (bytes) or a text field (str; a small file beside it keeps httpx
    from sending the form URL-encoded)."""
    if isinstance(content, bytes):
        return {"files": {field: ("x.png", content)}}
    return {"data": {field: content}, "files": {"note": ("note.txt", b"a note")}}


AUTH = {"Authorization": f"Bearer {TOKEN}"}
PNG = {"Content-Type": "image/png"}
NO_TOKEN = {"Authorization": ""}  # httpx leaves an empty header out
# name -> (method, path, request keyword arguments (its headers over the token's), status, a fragment of the error)
ERRORS = {
    "no token": ("POST", "/v1/classify", {"headers": {**PNG, **NO_TOKEN}, "content": SEVEN.read_bytes()}, 401,
                 "missing or wrong token"),
    "a wrong token": ("POST", "/v1/classify", {"headers": {**PNG, "Authorization": f"Bearer {TOKEN[:-1]}x"},
                                               "content": SEVEN.read_bytes()}, 401, "missing or wrong token"),
    "the token as Basic auth": ("GET", "/v1/model", {"headers": {
        "Authorization": "Basic " + base64.b64encode(f"x:{TOKEN}".encode()).decode()}}, 401, "Bearer"),
    "metrics without the token": ("GET", "/metrics", {"headers": NO_TOKEN}, 401, "token"),
    "readyz without the token": ("GET", "/readyz", {"headers": NO_TOKEN}, 401, "token"),
    "not an image": ("POST", "/v1/classify", {"content": b"hello, I am text\n", "headers": PNG}, 400, "not an image"),
    "a broken PNG": ("POST", "/v1/classify", {"content": _broken_png(), "headers": PNG}, 400, "corrupt"),
    "an empty body": ("POST", "/v1/classify", {"content": b"", "headers": PNG}, 400, "empty body"),
    "an empty multipart image": ("POST", "/v1/classify", _multipart("image", b""), 400, "empty body"),
    "a decompression bomb": ("POST", "/v1/classify", {"content": bomb(), "headers": PNG}, 413, "(--max-megapixels)"),
    "text/plain": ("POST", "/v1/classify", {"content": b"x", "headers": {"Content-Type": "text/plain"}}, 415,
                   "unsupported content type 'text/plain'"),
    "no content type": ("POST", "/v1/classify", {"content": SEVEN.read_bytes()}, 415, "content type 'none'"),
    "SVG": ("POST", "/v1/classify", {"content": b"<svg/>", "headers": {"Content-Type": "image/svg+xml"}}, 415,
            "image/svg+xml"),
    "multipart without the image field": ("POST", "/v1/classify", _multipart("photo", SEVEN.read_bytes()), 400,
                                          "no field 'image'"),
    "multipart image as text": ("POST", "/v1/classify", _multipart("image", "seven"), 400, "is text, not a file"),
    "top_k 0": ("POST", "/v1/classify?top_k=0", {"content": SEVEN.read_bytes(), "headers": PNG}, 400, "top_k"),
    "top_k not a number": ("POST", "/v1/classify?top_k=two", {"content": SEVEN.read_bytes(), "headers": PNG}, 400,
                           "top_k"),
    "an unknown route": ("GET", "/v1/nothing", {}, 404, "no such route"),
    "a wrong method": ("GET", "/v1/classify", {}, 405, "GET is not allowed"),
    "a model as multipart": ("PUT", "/v1/model", _multipart("model", INT8.read_bytes()), 415, "raw request body"),
    "an empty model": ("PUT", "/v1/model", {"content": b""}, 400, "empty body"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_each_error_is_json_with_its_status(name, digits):
    method, path, kwargs, status, fragment = ERRORS[name]
    headers = {key: value for key, value in {**AUTH, **kwargs.get("headers", {})}.items() if value}
    response = httpx.request(method, f"{digits.url}{path}", timeout=30, **{**kwargs, "headers": headers})
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and fragment in body["error"] and "\n" not in body["error"], body
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_before_the_first_model_is_ready_classify_and_readyz_answer_503():
    """The moment between binding and the model's check, which a real start passes too fast to catch:
    the app itself (its routes, a Service whose model is not loaded yet) through httpx's ASGI transport,
    without uvicorn and without its lifespan (which would load the model)."""
    import asyncio

    from edgecls.serve.app import create_app
    from edgecls.serve.options import ServeOptions
    from edgecls.serve.service import Service

    service = Service(ServeOptions(model=INT8), token=None, log=lambda message: None)

    async def ask() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://edgecls") as client:
            answers = [await client.post("/v1/classify", content=SEVEN.read_bytes(), headers=PNG),
                       await client.get("/readyz"), await client.get("/v1/model"), await client.get("/healthz")]
            service.load_first_model()
            return [*answers, await client.get("/readyz")]

    *not_ready, alive, ready = asyncio.run(ask())
    for response in not_ready:
        assert response.status_code == 503 and response.headers["Retry-After"] == "1", response.text
        assert "no model is ready yet" in response.json()["error"]
    assert alive.status_code == 200 and ready.status_code == 200


def test_healthz_needs_no_token(digits):
    response = httpx.get(f"{digits.url}/healthz")
    assert response.status_code == 200 and response.json()["status"] == "alive"


def test_a_full_queue_is_answered_503_at_once(busy, slow_image):
    outcome: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: outcome.append(httpx.post(
        f"{busy.url}/v1/classify", content=slow_image, headers=PNG, timeout=30)))
    thread.start()
    wait_for(lambda: metric(busy, "edgecls_in_flight") == 1, what="the slow request to be running")
    refused = httpx.post(f"{busy.url}/v1/classify", content=SEVEN.read_bytes(), headers=PNG, timeout=30)
    still_running = metric(busy, "edgecls_in_flight")  # at once: the 503 did not wait for the interpreter
    thread.join(30)
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["Retry-After"]) >= 1 and "queue of 0 is full" in refused.json()["error"]
    assert still_running == 1
    assert outcome[0].status_code == 200


# ----------------------------------------------------------------------------- model updates
def _put(server: ServeProcess, model: Path | bytes) -> httpx.Response:
    content = model if isinstance(model, bytes) else model.read_bytes()
    return httpx.put(f"{server.url}/v1/model", content=content, headers={
        **server.headers, "Content-Type": "application/octet-stream"}, timeout=60)


def _serving(server: ServeProcess) -> str:
    return httpx.get(f"{server.url}/v1/model", headers=server.headers, timeout=30).json()["sha256"]


def test_a_hot_swap_under_concurrent_load_drops_no_request(digits):
    stop = threading.Event()
    answers: list[tuple[int, str | None, str | None]] = []

    def load() -> None:
        with digits.client() as client:
            while not stop.is_set():
                response = client.post("/v1/classify", content=SEVEN.read_bytes(), headers=PNG)
                body = response.json()
                answers.append((response.status_code, body.get("model", {}).get("sha256"),
                                body.get("classes", [{}])[0].get("label")))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    swaps = []
    try:
        wait_for(lambda: len(answers) > 20, what="the load to start")
        first = FLOAT if _serving(digits) == sha(INT8) else INT8
        for model in (first, INT8 if first == FLOAT else FLOAT) * 2:
            swaps.append(_put(digits, model))
            wait_for(lambda n=len(answers): len(answers) > n + 20, what="answers after the swap")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert [s.status_code for s in swaps] == [200] * 4 and [s.json()["outcome"] for s in swaps] == ["accepted"] * 4
    assert all(status == 200 for status, _, _ in answers), [a for a in answers if a[0] != 200][:3]
    assert {model for _, model, _ in answers} == {sha(INT8), sha(FLOAT)}  # each answer names its model: both
    assert {label for _, _, label in answers} == {"7"}


def test_a_broken_upload_is_refused_and_the_old_model_keeps_answering(digits):
    before = _serving(digits)
    on_disk = sha(digits.model)
    refused = {"truncated": _put(digits, INT8.read_bytes()[:5000]), "text": _put(digits, b"not a model\n" * 100)}
    for name, response in refused.items():
        assert response.status_code == 422, (name, response.text)
        assert response.json()["outcome"] == "refused" and response.json()["error"].startswith("model refused: ")
    for response in refused.values():  # named as the upload, not the served file
        assert response.json()["reason"].startswith("the uploaded model: "), response.json()["reason"]
    assert "not a .tflite model" in refused["text"].json()["reason"]
    answer = httpx.post(f"{digits.url}/v1/classify", content=SEVEN.read_bytes(), headers={**PNG, **AUTH})
    assert answer.status_code == 200 and answer.json()["model"]["sha256"] == before
    ready = httpx.get(f"{digits.url}/readyz", headers=AUTH).json()
    assert ready["ready"] and ready["last_reload"]["outcome"] == "refused" and ready["last_reload"]["reason"]
    assert metric(digits, "edgecls_model_last_reload_success") == 0
    assert metric(digits, "edgecls_model_reloads_total", trigger="upload", outcome="refused") >= 2
    assert sha(digits.model) == on_disk  # nothing was written


@pytest.mark.shared_data
def test_a_model_with_another_input_or_labels_that_do_not_fit_is_refused(digits, coral):
    other_input = _put(digits, CORAL)
    assert other_input.status_code == 422
    assert "its input is 160x160x3, the served model's is 28x28x1" in other_input.json()["reason"]
    labels_wrong = _put(coral, INT8)  # the Coral server has --labels with 1001 names; this model has 10 classes
    assert labels_wrong.status_code == 422
    assert labels_wrong.json()["reason"] == "imagenet_labels.txt: 1001 labels but the model has 10 classes"


@pytest.mark.shared_data
def test_a_file_refused_only_for_its_new_input_is_not_called_one_a_restart_would_refuse(digits):
    """A restart serves a model with another input (there is nothing to compare it with): the log's warning
    that a restart would refuse the file on disk is for the other refusals only."""
    served = digits.model.read_bytes()
    replace_file(digits.model, CORAL)
    wait_for(lambda: "watch: model refused" in digits.log and "its input is 160x160x3" in digits.log,
             what="--watch to refuse the new input")
    refusal = next(line for line in digits.log.splitlines() if "its input is 160x160x3" in line)
    assert "a restart would refuse" not in refusal, refusal
    replace_file(digits.model, served)


def test_rollback_swaps_back_the_model_the_last_swap_replaced(digits):
    assert _put(digits, INT8).status_code == 200
    assert _put(digits, FLOAT).json()["outcome"] == "accepted"
    back = httpx.post(f"{digits.url}/v1/model/rollback", headers=AUTH, timeout=60)
    assert back.status_code == 200, back.text
    assert back.json()["outcome"] == "accepted" and back.json()["sha256"] == sha(INT8)
    assert back.json()["previous_sha256"] == sha(FLOAT)
    assert _serving(digits) == sha(INT8)
    assert sha(digits.model) == sha(INT8) and sha(digits.model.with_name("model.previous.tflite")) == sha(FLOAT)
    again = httpx.post(f"{digits.url}/v1/model/rollback", headers=AUTH, timeout=60)  # undoes the rollback
    assert again.json()["sha256"] == sha(FLOAT) and _serving(digits) == sha(FLOAT)


def test_rollback_without_a_previous_model_is_409(busy):
    response = httpx.post(f"{busy.url}/v1/model/rollback", timeout=30)
    assert response.status_code == 409 and "no previous model" in response.json()["error"]


@pytest.mark.shared_data
def test_allow_input_change_takes_a_model_with_another_input(busy):
    accepted = _put(busy, CORAL)  # 160x160x3 where 28x28x1 was served; its labels are the class indices
    assert accepted.status_code == 200 and accepted.json()["outcome"] == "accepted", accepted.text
    described = httpx.get(f"{busy.url}/v1/model").json()
    assert described["input"]["height"] == 160 and described["num_classes"] == 1001
    assert _put(busy, INT8).json()["outcome"] == "accepted"  # back to what the later tests expect


def test_sighup_reloads_the_model_file(busy):
    assert _serving(busy) == sha(INT8)
    replace_file(busy.model, FLOAT)
    busy.send(signal.SIGHUP)
    wait_for(lambda: _serving(busy) == sha(FLOAT), what="the SIGHUP reload")
    last = httpx.get(f"{busy.url}/readyz").json()["last_reload"]
    assert last["trigger"] == "sighup" and last["outcome"] == "accepted" and last["previous_sha256"] == sha(INT8)
    replace_file(busy.model, b"TFL3 but no model at all" * 10)
    busy.send(signal.SIGHUP)
    wait_for(lambda: httpx.get(f"{busy.url}/readyz").json()["last_reload"]["outcome"] == "refused",
             what="the refusal")
    assert _serving(busy) == sha(FLOAT)
    assert f"a restart would refuse {busy.model} too: fix it, or copy the served model back there" in busy.log
    replace_file(busy.model, FLOAT)  # the served model's file again


def test_watch_reloads_a_model_file_that_changed(digits):
    other = INT8 if _serving(digits) == sha(FLOAT) else FLOAT
    replace_file(digits.model, other)
    wait_for(lambda: _serving(digits) == sha(other), what="--watch to reload")
    last = httpx.get(f"{digits.url}/readyz", headers=AUTH).json()["last_reload"]
    assert last["trigger"] == "watch" and last["outcome"] == "accepted"


def test_metrics_are_prometheus_text_with_requests_latency_queue_and_model(digits):
    # Each count this test reads, it makes itself (the test passes alone and in any order).
    assert httpx.post(f"{digits.url}/v1/classify", content=SEVEN.read_bytes(), headers=PNG).status_code == 401
    assert _put(digits, digits.model.read_bytes()).status_code == 200  # the served file again: a reload, unchanged
    with digits.client() as client:
        assert client.post("/v1/classify", content=SEVEN.read_bytes(), headers=PNG).status_code == 200
        text = client.get("/metrics").text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    served = _serving(digits)
    requests = {tuple(sorted(s.labels.items())): s.value for s in families["edgecls_http_requests"].samples
                if s.name.endswith("_total")}
    assert requests[(("method", "POST"), ("route", "/v1/classify"), ("status", "200"))] >= 1
    assert requests[(("method", "POST"), ("route", "/v1/classify"), ("status", "401"))] >= 1
    for histogram in ("edgecls_decode_seconds", "edgecls_invoke_seconds", "edgecls_classify_seconds",
                      "edgecls_queue_wait_seconds"):
        count = next(s.value for s in families[histogram].samples if s.name.endswith("_count"))
        assert count >= 1, histogram
    assert families["edgecls_queue_depth"].samples[0].value == 0
    assert families["edgecls_in_flight"].samples[0].value == 0
    assert families["edgecls_queue_capacity"].samples[0].value == 64
    assert families["edgecls_model_info"].samples[0].labels["sha256"] == served
    assert families["edgecls_ready"].samples[0].value == 1
    assert metric(digits, "edgecls_model_reloads_total", trigger="upload") >= 1


# ----------------------------------------------------------------------------- stopping
def test_sigterm_under_load_finishes_what_is_in_flight_and_exits_0(tmp_path, slow_image):
    model = tmp_path / "model.tflite"
    shutil.copy(INT8, model)
    server = ServeProcess(model, "--interpreters", 1, "--queue", 4, "--threads", 1, log=tmp_path / "serve.log")
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(httpx.post(
        f"{server.url}/v1/classify", content=slow_image, headers=PNG, timeout=30))) for _ in range(3)]
    for thread in threads:
        thread.start()
    wait_for(lambda: (metric(server, "edgecls_in_flight") or 0) + (metric(server, "edgecls_queue_depth") or 0) == 3,
             what="three requests in the server")
    server.send(signal.SIGTERM)
    time.sleep(0.2)
    with pytest.raises(httpx.ConnectError):  # no new connections while it drains
        httpx.get(f"{server.url}/healthz")
    for thread in threads:
        thread.join(30)
    code = server.stop(timeout=30)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert code == 0, server.log
    assert "SIGTERM: no new connections" in server.log and server.log.rstrip().endswith("edgecls: stopped")


# ----------------------------------------------------------------------------- deploy
def _dead_address():
    """A local port nothing listens on (bound, so no one else takes it meanwhile)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    return holder, f"http://127.0.0.1:{holder.getsockname()[1]}"


def test_deploy_to_two_servers_and_a_dead_address(digits, busy, token_file, cli):
    for server in (digits, busy):
        assert _put(server, INT8).status_code == 200
    holder, dead = _dead_address()
    with holder:
        result = cli("deploy", FLOAT, "--to", f"{digits.url},{busy.url},{dead}", "--token-file", token_file,
                     "--parallel", 2)
    assert result.code == 1, result.err
    lines = {line.split()[0]: line for line in result.out.splitlines()}
    assert set(lines) == {digits.url, busy.url, dead}
    for server in (digits, busy):
        assert lines[server.url].split()[1] == "accepted" and f"sha256 {sha(FLOAT)[:12]}" in lines[server.url]
        assert _serving(server) == sha(FLOAT)
    assert lines[dead].split()[1] == "unreachable" and "refused" in lines[dead].lower()
    assert "the model is served by 2 of 3 servers (1 unreachable)" in result.err
    again = cli("deploy", FLOAT, "--to", f"{digits.url},{busy.url}", "--token-file", token_file, "--json")
    assert again.code == 0, again.err
    assert {json.loads(line)["outcome"] for line in again.out.splitlines()} == {"unchanged"}


def test_deploy_reports_the_servers_refusal(digits, token_file, tmp_path, cli, monkeypatch):
    monkeypatch.delenv("EDGECLS_TOKEN", raising=False)
    no_token = cli("deploy", INT8, "--to", digits.url)
    assert no_token.code == 1 and no_token.out.split()[1] == "refused"
    assert "missing or wrong token: give this server's token (--token-file, or $EDGECLS_TOKEN) (HTTP 401)" in \
        no_token.out
    hosts = tmp_path / "hosts.txt"
    hosts.write_text(f"# the fleet\n{digits.url}\n")
    text = tmp_path / "model.tflite"
    text.write_bytes(b"not a model")
    local = cli("deploy", text, "--to", f"@{hosts}", "--token-file", token_file)
    assert local.code == 2 and "not a .tflite model" in local.err and local.out == ""  # nothing was sent


# ----------------------------------------------------------------------------- starting
def test_bad_arguments_stop_serve_with_one_line(tmp_path, cli, monkeypatch):
    monkeypatch.delenv("EDGECLS_TOKEN", raising=False)
    short = tmp_path / "short"
    short.write_text("abc\n")
    cases = {
        ("--host", "0.0.0.0"): "lets other machines in: give a token",
        ("--token-file", short): "at least 16 characters",
        ("--tls-cert", INT8): "TLS needs both --tls-cert and --tls-key",
        ("--insecure-no-auth", "--token-file", short): "contradict each other",
        ("--collect", short): "is a file, not a folder",  # refused before the server listens
        ("--collect", short / "inbox"): f"{short} is a file, not a folder",
    }
    for args, fragment in cases.items():
        result = cli("serve", INT8, *args)
        assert result.code == 2 and fragment in result.err and result.err.count("\n") == 1, (args, result.err)
    missing = cli("serve", tmp_path / "nothing.tflite")
    assert missing.code == 2 and "no such model file" in missing.err
    text = tmp_path / "photo.jpg"
    text.write_text("not a model\n")
    for model, fragment in ((text, "not a .tflite model"), (tmp_path, "is a folder, not a .tflite model")):
        refused = cli("serve", model)  # refused as predict refuses it, before it says it listens
        assert refused.code == 2 and fragment in refused.err and "listening" not in refused.err, refused.err


def test_every_interface_is_shown_as_this_machines_name_not_0_0_0_0(tmp_path, token_file):
    server = ServeProcess(INT8, "--host", "0.0.0.0", "--token-file", token_file, log=tmp_path / "serve.log",
                          token=TOKEN)
    try:
        assert server.url.startswith(f"http://{socket.gethostname()}:"), server.log  # an address others can open
        assert "(every interface)" in server.log and "0.0.0.0" not in server.log
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        assert server.stop() == 0, server.log


def test_insecure_no_auth_warns_at_every_start():
    from edgecls.serve.auth import load_token
    from edgecls.serve.options import ServeOptions

    token, warnings = load_token(ServeOptions(model=INT8, host="0.0.0.0", insecure_no_auth=True))
    assert token is None and warnings and "--insecure-no-auth: anyone who can reach 0.0.0.0:8080" in warnings[0]


def test_a_taken_port_or_a_model_that_fails_its_check_ends_the_start_with_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "edgecls", "serve", INT8, "--port", str(port)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr, done.stderr
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x00" * 4 + b"TFL3" + b"\x00" * 100)
    done = subprocess.run([sys.executable, "-m", "edgecls", "serve", bad, "--port", "0"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith("edgecls: error: cannot serve model.tflite: ")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed (it makes the test certificate)")
def test_tls_with_a_certificate_and_key_metrics_public_and_deploy_over_it(tmp_path, cli, monkeypatch):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    model = tmp_path / "model.tflite"
    shutil.copy(INT8, model)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    server = ServeProcess(model, "--tls-cert", cert, "--tls-key", key, "--token-file", token, "--metrics-public",
                          log=tmp_path / "serve.log", token=TOKEN)
    try:
        assert server.url.startswith("https://")
        trust = ssl.create_default_context(cafile=str(cert))
        response = httpx.post(f"{server.url}/v1/classify", content=SEVEN.read_bytes(), headers={**PNG, **AUTH},
                              verify=trust)
        assert response.status_code == 200 and response.json()["classes"][0]["label"] == "7"
        # --metrics-public: /metrics answers without the token, the rest still wants it
        assert httpx.get(f"{server.url}/metrics", verify=trust).status_code == 200
        assert httpx.get(f"{server.url}/v1/model", verify=trust).status_code == 401
        monkeypatch.setenv("EDGECLS_TOKEN", TOKEN)
        untrusted = cli("deploy", FLOAT, "--to", server.url)
        assert untrusted.code == 1 and "unreachable  TLS certificate verify failed: self-signed" in untrusted.out
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # your own CA, as any Python client takes it
        trusted = cli("deploy", FLOAT, "--to", server.url)
        assert trusted.code == 0 and "accepted" in trusted.out, trusted.out + trusted.err
    finally:
        assert server.stop() == 0
    done = subprocess.run([sys.executable, "-m", "edgecls", "serve", INT8, "--port", "0", "--tls-cert", key,
                           "--tls-key", cert], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2 and "cannot use --tls-cert/--tls-key" in done.stderr


# ----------------------------------------------------------------------------- the unit, the extra
def test_the_systemd_unit_runs_this_command_hardened_and_passes_systemd_analyze(tmp_path, token_file, cli):
    model = tmp_path / "models" / "model.tflite"
    model.parent.mkdir()
    shutil.copy(INT8, model)
    result = cli("serve", model, "--host", "0.0.0.0", "--port", "80", "--token-file", token_file, "--watch",
                 "--interpreters", "2", "--systemd-unit")
    assert result.code == 0, result.err
    unit = result.out
    lines = unit.splitlines()
    exec_start = next(line for line in lines if line.startswith("ExecStart="))
    assert exec_start == (f"ExecStart={Path(sys.executable).parent / 'edgecls'} serve {model} --host 0.0.0.0 --port 80 "
                          "--interpreters 2 --watch --token-file %d/edgecls-token")
    for expected in ("Restart=on-failure", "User=edgecls", "NoNewPrivileges=yes", "ProtectSystem=strict",
                     f"ReadWritePaths={model.parent}", "PrivateTmp=yes", "SupplementaryGroups=video",
                     f"LoadCredential=edgecls-token:{token_file}", "ExecReload=/bin/kill -HUP $MAINPID",
                     "AmbientCapabilities=CAP_NET_BIND_SERVICE", "WantedBy=multi-user.target"):
        assert expected in lines, expected
    assert TOKEN not in unit
    assert "private /tmp (PrivateTmp=yes) and will not see" in result.err  # this test's model is under /tmp
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt install systemd): the unit was not verified")
    path = tmp_path / "edgecls.service"
    path.write_text(unit)
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    ours = [line for line in (done.stdout + done.stderr).splitlines() if path.name in line]
    if done.returncode != 0 and not ours:
        pytest.skip(f"systemd-analyze cannot run here: {done.stderr.strip()[:300]}")
    assert done.returncode == 0 and ours == [], done.stdout + done.stderr


def test_the_unit_is_refused_without_a_token_file_for_another_host(cli, monkeypatch):
    monkeypatch.setenv("EDGECLS_TOKEN", TOKEN)
    result = cli("serve", INT8, "--host", "0.0.0.0", "--systemd-unit")
    assert result.code == 2 and "needs --token-file FILE" in result.err and TOKEN not in result.out


def test_the_base_install_imports_none_of_the_serve_stack():
    code = ("import sys, typer, edgecls.cli, edgecls.entry\n"
            "from edgecls.cli import app\n"
            "typer.main.get_command(app)\n"  # every command built, serve and deploy included
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {SERVE_STACK!r}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("extra", [[], ["--systemd-unit"]])  # a unit of this environment could never start
def test_serve_without_the_extra_says_the_pip_command(tmp_path, extra):
    code = ("import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
            "sys.argv = ['edgecls', 'serve', *sys.argv[1:], '--port', '0']\n"
            "from edgecls.entry import main; main()")
    done = subprocess.run([sys.executable, "-c", code, str(INT8), *extra], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("edgecls: error: edgecls serve needs the serve extra, which is not installed here: "
                           "pip install 'edgecls[serve]' (missing: starlette, uvicorn)\n")


def test_the_unit_warns_of_a_home_folder_given_away_and_a_venv_the_private_tmp_hides(monkeypatch):
    from edgecls.serve import unit
    from edgecls.serve.options import ServeOptions

    monkeypatch.setattr(unit, "edgecls_command", lambda: ["/tmp/venv/bin/edgecls"])
    warnings = unit.unit_warnings(ServeOptions(model=Path("/home/pi/model_int8.tflite")))
    assert any("give /home/pi (all of it) to user edgecls" in w for w in warnings), warnings
    assert any("will not see /tmp/venv/bin/edgecls in its private /tmp" in w for w in warnings), warnings
    monkeypatch.setattr(unit, "edgecls_command", lambda: ["/opt/edgecls/venv/bin/edgecls"])
    assert unit.unit_warnings(ServeOptions(model=Path("/var/lib/edgecls/model_int8.tflite"))) == []


def test_a_calibrated_model_answers_unknown_over_http_as_predict_does(tmp_path, cli):
    """The unknown rule reaches the service through Classifier.classify: `unknown` and `typicality`
    beside the classes, equal to predict's row for the same picture."""
    from edgecls.calibrate.folder import calibrate_folder
    from edgecls.calibrate.options import CalibrateOptions

    model = tmp_path / "model.tflite"
    calibrate_folder(CalibrateOptions(INT8, DIGITS / "test-images", out=model))
    stripes = tmp_path / "stripes.png"
    rng, x = np.random.default_rng(0), np.arange(56)  # grey stripes (tests/test_collect.py's scene 0)
    slant = x[None, :] * rng.uniform(0.3, 1.5) + x[:, None] * rng.uniform(0, 1)
    stripes.write_bytes(png(((np.sin(slant) + 1) * 127).astype(np.uint8)))
    server = ServeProcess(model, "--interpreters", 1, "--threads", 1, log=tmp_path / "serve.log")
    try:
        with server.client() as client:
            answers = [client.post("/v1/classify", content=p.read_bytes(), headers={"Content-Type": "image/png"})
                       .json() for p in (SEVEN, stripes)]
    finally:
        assert server.stop() == 0, server.log
    assert [a["unknown"] for a in answers] == [False, True]
    for answer, picture in zip(answers, (SEVEN, stripes)):
        row = json.loads(cli("predict", model, picture, "--json").out)
        assert (answer["classes"], answer["unknown"], answer["typicality"]) == \
            (row["classes"], row["unknown"], row["typicality"])
