"""`edgecls serve --source`: the live service against real components — a real server (uvicorn, in a
subprocess on 127.0.0.1) classifying a video OpenCV wrote and the real HTTP MJPEG server the live tests use
(tests/livekit.py), read over HTTP and Server-Sent Events with a real client, and MQTT through a real
mosquitto (tests/mqttkit.py). The page is in tests/test_serve_page.py.

The video: frame i shows PATTERN[i] at 10 FPS, sampled every 2nd frame; frame 8 is one odd 7 among 3s,
which --min-stable 2 must not take for a change.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import signal
import socket
import subprocess
import time
from importlib.resources import files
from pathlib import Path

import httpx
import pytest
from livekit import MODEL, REFERENCE, MjpegServer, digit_frame, no_digit, write_video
from PIL import Image
from serving import ServeProcess, metric, wait_for, write_token

from edgecls.runtime.capture import SourceError, import_cv2
from edgecls.serve.events import ChangeDetector, verdict
from edgecls.serve.options import parse_mqtt_url

try:
    import_cv2()
except SourceError:
    pytest.skip("OpenCV is not installed (pip install 'edgecls[camera]')", allow_module_level=True)

FLOAT = REFERENCE / "model_float32.tflite"
SEVEN = sorted((REFERENCE / "test-images" / "7").iterdir())[0]
TOKEN = "live-test-token-0123456789abcdef"
PATTERN = "3" * 8 + "7" + "3" * 7 + "7" * 8  # 24 frames, 2.4 s at 10 FPS
EVERY, MIN_STABLE, FPS = 2, 2, 10
SAMPLED = list(range(0, len(PATTERN), EVERY))
EVENT_TIMEOUT_S = 20.0


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def schema_validator():
    import jsonschema

    schema = json.loads(files("edgecls.serve").joinpath("prediction.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def latest(server: ServeProcess) -> dict:
    """GET /v1/latest once there is a prediction (it answers 503 until the first frame is classified)."""
    return wait_for(lambda: (r := httpx.get(f"{server.url}/v1/latest", headers=server.headers)).status_code == 200
                    and r.json(), what="a first prediction")


def read_events(server: ServeProcess, enough, timeout: float = EVENT_TIMEOUT_S) -> list[tuple[str, dict]]:
    """(name, data) of the events of GET /v1/events until `enough(events)` says so."""
    found: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", f"{server.url}/v1/events", headers=server.headers, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        buffer = ""
        for chunk in response.iter_text():
            buffer += chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line
                              and not line.startswith(":"))
                if "data" in fields:
                    found.append((fields.get("event", "message"), json.loads(fields["data"])))
            if enough(found) or time.monotonic() > deadline:
                break
    assert enough(found), f"not enough events in {timeout} s: {found[-5:]}"
    return found


def predictions(events: list[tuple[str, dict]]) -> list[dict]:
    return [data for name, data in events if name == "prediction"]


def one_pass(found: list[dict]) -> list[dict] | None:
    """The first run of predictions frame 0, 2, ..., 22 in a row (a whole pass of the video), or None."""
    frames = [p["frame"] for p in found]
    for start in (i for i, frame in enumerate(frames) if frame == 0):
        if frames[start:start + len(SAMPLED)] == SAMPLED:
            return found[start:start + len(SAMPLED)]
    return None


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    pictures = {digit: digit_frame(digit) for digit in "37"}
    return write_video(tmp_path_factory.mktemp("scenes") / "scenes.avi", [pictures[d] for d in PATTERN],
                       len(PATTERN), fps=FPS)


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> Path:
    return write_token(tmp_path_factory.mktemp("token"), TOKEN)


def served_copy(tmp_path_factory, name: str) -> Path:
    model = tmp_path_factory.mktemp(name) / "model.tflite"
    shutil.copy(MODEL, model)
    return model


@pytest.fixture(scope="module")
def live(tmp_path_factory, scenes, token_file):
    """Every sampled frame as an event; a token; /v1/frame.jpg capped at 64 px."""
    model = served_copy(tmp_path_factory, "live")
    server = ServeProcess(model, "--source", scenes, "--loop", "--every", EVERY, "--min-stable", MIN_STABLE,
                          "--frame-max-side", 64, "--token-file", token_file, "--threads", 1,
                          log=model.with_name("serve.log"), token=TOKEN)
    server.model = model
    yield server
    assert server.stop() == 0, server.log


@pytest.fixture(scope="module")
def changes(tmp_path_factory, scenes):
    """--on-change: events carry only changes of the stable class."""
    model = served_copy(tmp_path_factory, "changes")
    server = ServeProcess(model, "--source", scenes, "--loop", "--every", EVERY, "--min-stable", MIN_STABLE,
                          "--on-change", "--threads", 1, log=model.with_name("serve.log"))
    yield server
    assert server.stop() == 0, server.log


# ----------------------------------------------------------------------------- a video OpenCV wrote
def test_every_sampled_frame_is_an_event_with_its_class_and_the_model_that_gave_it(live):
    found = predictions(read_events(live, lambda events: one_pass(predictions(events)) is not None))
    whole = one_pass(found)
    assert [p["label"] for p in whole] == [PATTERN[frame] for frame in SAMPLED]
    served = httpx.get(f"{live.url}/v1/model", headers=live.headers).json()["sha256"]
    assert {p["model"]["sha256"] for p in whole} == {served} and whole[0]["model"]["name"] == "model.tflite"
    validator = schema_validator()
    for document in found:
        validator.validate(document)
    # Hysteresis: the odd 7 at frame 8 is a label but never the stable class; 7 becomes stable at frame 18.
    odd = next(p for p in whole if p["frame"] == 8)
    assert odd["label"] == "7" and odd["stable"] == "3" and not odd["changed"]
    changed = [p for p in whole if p["changed"]]
    assert [(p["frame"], p["stable"]) for p in changed] == [(2, "3"), (18, "7")]
    assert changed[0]["previous"] in (None, "7") and changed[1]["previous"] == "3"  # None: the very first pass
    assert all(p["classes"][0]["score"] > 0.9 and len(p["classes"]) == 3 and p["time"].endswith("Z") for p in whole)


def test_latest_shows_every_sampled_frame_in_turn(live):
    seen: dict[int, str] = {}
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    with live.client() as client:
        while set(seen) != set(SAMPLED) and time.monotonic() < deadline:
            response = client.get("/v1/latest")  # 503 until the first frame
            if response.status_code == 200:
                seen[response.json()["frame"]] = response.json()["label"]
            time.sleep(0.02)
    assert seen == {frame: PATTERN[frame] for frame in SAMPLED}


def test_on_change_sends_only_changes_of_the_stable_class(changes):
    found = predictions(read_events(changes, lambda events: len(predictions(events)) >= 4))
    # The first event is the current state (the last change), then each change: 3 at frame 2, 7 at frame 18
    # of every pass; the odd 7 at frame 8 never is one.
    assert all(p["changed"] and (p["frame"], p["stable"], p["label"]) in ((2, "3", "3"), (18, "7", "7"))
               for p in found), found
    assert all(b["stable"] != a["stable"] and b["previous"] == a["stable"] for a, b in zip(found, found[1:]))
    # GET /v1/latest still follows every frame.
    frames = set()
    wait_for(lambda: frames.add(latest(changes)["frame"]) or len(frames) >= 4,
             what="/v1/latest to move on")


def test_classify_still_answers_while_the_source_is_classified(live):
    with live.client() as client:
        answer = client.post("/v1/classify", content=SEVEN.read_bytes(), headers={"Content-Type": "image/png"})
    assert answer.status_code == 200 and answer.json()["classes"][0]["label"] == "7"


def test_the_frame_is_a_jpeg_within_the_size_cap(live):
    with live.client() as client:
        response = client.get("/v1/frame.jpg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG" and max(image.size) == 64  # the frames are 112 px: --frame-max-side 64


def test_live_routes_want_the_token_and_the_page_does_not(live):
    for path in ("/v1/latest", "/v1/events", "/v1/frame.jpg", "/v1/live"):
        assert httpx.get(f"{live.url}{path}").status_code == 401
    page = httpx.get(f"{live.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "http://" not in page.text and "https://" not in page.text  # no CDN


def test_live_metrics_count_frames_skipped_and_the_rate(live):
    wait_for(lambda: metric(live, "edgecls_live_frames_total") >= 6, what="frames")
    frames = metric(live, "edgecls_live_frames_total")
    assert metric(live, "edgecls_live_skipped_frames_total") >= frames - 2  # --every 2
    assert metric(live, "edgecls_live_dropped_frames_total") == 0  # a file: every sampled frame is classified
    assert 2 < metric(live, "edgecls_live_fps") < 8  # 10 FPS, every 2nd frame: 5 a second
    assert metric(live, "edgecls_live_up") == 1 and metric(live, "edgecls_live_frame_seconds_count") >= 6
    status = httpx.get(f"{live.url}/v1/live", headers=live.headers).json()
    assert status["state"] == "running" and status["min_stable"] == MIN_STABLE and status["mqtt"] is None


def test_a_hot_swap_applies_to_the_live_loop(live):
    with live.client() as client:
        before = client.get("/v1/model").json()["sha256"]
        other = FLOAT if before != sha(FLOAT) else MODEL
        assert client.put("/v1/model", content=other.read_bytes()).status_code == 200
        after = wait_for(lambda: (d := latest(live))["model"]["sha256"] == sha(other) and d,
                         what="a live prediction of the new model")
        assert after["label"] == PATTERN[after["frame"]]
        assert client.post("/v1/model/rollback").status_code == 200
        wait_for(lambda: latest(live)["model"]["sha256"] == before, what="the rollback")


def test_clients_that_disconnect_cost_nothing(live):
    for _ in range(12):
        with httpx.stream("GET", f"{live.url}/v1/events", headers=live.headers, timeout=10) as response:
            next(response.iter_text())
    wait_for(lambda: metric(live, "edgecls_events_clients") == 0, what="every client to be forgotten")
    assert metric(live, "edgecls_events_dropped_clients_total") == 0  # they left: nobody was dropped


def test_a_slow_events_client_is_dropped_not_buffered(tmp_path, scenes):
    fast = write_video(tmp_path / "fast.avi", [digit_frame("3"), digit_frame("7")], 40, fps=100)
    model = tmp_path / "model.tflite"
    shutil.copy(MODEL, model)
    server = ServeProcess(model, "--source", fast, "--loop", "--top-k", 10, "--threads", 1,
                          log=tmp_path / "serve.log")
    slow = socket.socket()
    try:
        # A client on a slow link: a tiny receive window and small segments, and it never reads.
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        slow.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        slow.connect(("127.0.0.1", server.port))
        slow.sendall(b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        wait_for(lambda: metric(server, "edgecls_events_dropped_clients_total") == 1, timeout=30,
                 what="the slow client to be dropped")
        assert metric(server, "edgecls_events_clients") == 0
        slow.settimeout(10)
        received = 0
        while chunk := slow.recv(65536):  # what was in the socket buffers, then the server's close
            received += len(chunk)
        assert 0 < received < 1 << 20
        with httpx.stream("GET", f"{server.url}/v1/events", timeout=10) as response:  # others still served
            assert "event: prediction" in "".join(text for _, text in zip(range(3), response.iter_text()))
        assert "fell 64 events behind and was dropped" in server.log
    finally:
        slow.close()
        assert server.stop() == 0, server.log
    assert "Traceback" not in server.log and "without completing response" not in server.log


def test_sigterm_ends_the_event_streams_at_once(tmp_path, scenes):
    model = tmp_path / "model.tflite"
    shutil.copy(MODEL, model)
    server = ServeProcess(model, "--source", scenes, "--loop", "--grace-s", 20, log=tmp_path / "serve.log")
    with httpx.stream("GET", f"{server.url}/v1/events", timeout=30) as response:
        chunks = response.iter_text()
        next(chunks)
        started = time.monotonic()
        server.send(signal.SIGTERM)
        for _ in chunks:  # the server ends the stream: the loop ends
            pass
    assert server.stop() == 0 and time.monotonic() - started < 10, server.log  # not the 20 s of --grace-s


def test_without_a_source_the_live_routes_say_how_to_get_one(tmp_path, cli):
    model = tmp_path / "model.tflite"
    shutil.copy(MODEL, model)
    server = ServeProcess(model, log=tmp_path / "serve.log")
    try:
        response = httpx.get(f"{server.url}/v1/latest")
        assert response.status_code == 404 and "--source" in response.json()["error"]
        assert httpx.get(f"{server.url}/").status_code == 200
    finally:
        assert server.stop() == 0


def test_an_unknown_scene_is_a_change_to_unknown(tmp_path):
    """A model with an unknown rule (the reference model calibrated on its test images): frames of no digit
    are answered `unknown` in the live documents, and that is a class change like any other."""
    from edgecls.calibrate.folder import calibrate_folder
    from edgecls.calibrate.options import CalibrateOptions

    model = tmp_path / "model.tflite"
    calibrate_folder(CalibrateOptions(MODEL, REFERENCE / "test-images", out=model))
    pictures = [digit_frame("3")] * 6 + [no_digit(1)] * 6
    video = write_video(tmp_path / "mixed.avi", pictures, len(pictures), fps=FPS)
    server = ServeProcess(model, "--source", video, "--loop", "--on-change", "--min-stable", MIN_STABLE, "--threads", 1,
                          log=tmp_path / "serve.log")
    try:
        found = predictions(read_events(server, lambda events: len(predictions(events)) >= 4))
    finally:
        assert server.stop() == 0, server.log
    validator = schema_validator()
    for document in found:
        validator.validate(document)
    assert {p["stable"] for p in found} == {"3", "unknown"} and all(p["changed"] for p in found)
    assert all(p["unknown"] == (p["label"] == "unknown") and 0 <= p["typicality"] <= 1 for p in found)
    assert all((p["frame"] < 6) == (p["label"] == "3") for p in found)


# ----------------------------------------------------------------------------- a network stream
@pytest.mark.parametrize("reconnect, plan", [("5", [20, None]), ("0", [12, None])],
                         ids=["the-stream-reconnects", "the-server-reopens-it"])
def test_an_mjpeg_stream_that_drops_is_classified_on_after_it_comes_back(tmp_path, reconnect, plan):
    """A drop within --reconnect is the stream's own reconnection; --reconnect 0 ends the stream, and the
    server opens it again (around the clock). Frame numbers go on counting either way."""
    frames = [digit_frame("3"), digit_frame("7")]
    source = MjpegServer(frames, plan, interval=0.02)
    model = tmp_path / "model.tflite"
    shutil.copy(MODEL, model)
    server = ServeProcess(model, "--source", source.url, "--reconnect", reconnect, "--timeout", 3, "--threads", 1,
                          log=tmp_path / "serve.log")
    try:
        with server.client() as client:
            after = wait_for(lambda: (d := latest(server))["frame"] >= plan[0] + 4 and d,
                             what="frames after the drop")
            assert after["label"] == "37"[after["frame"] % 2]  # both connections start at a 3: plan[0] is even
            assert metric(server, "edgecls_live_reconnects_total") >= 1 and metric(server, "edgecls_live_up") == 1
            assert metric(server, "edgecls_live_frames_total") + metric(server, "edgecls_live_dropped_frames_total") \
                >= plan[0]
            assert client.get("/v1/live").json()["state"] == "running"
    finally:
        assert server.stop() == 0, server.log
        source.close()
    assert source.connections >= 2
    if reconnect == "0":
        assert "opening it again in 1 s" in server.log
    else:
        assert "reconnected" in server.log


# ----------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("argv, message", [
    (["--mqtt", "mqtt://localhost/t"], "--mqtt publishes live predictions: give --source"),
    (["--source", "{video}", "--mqtt", "mqtt://user:secret@localhost/t"], "no user or password in the URL"),
    (["--source", "{video}", "--mqtt", "http://localhost/t"], "--mqtt wants mqtt://HOST[:PORT]/TOPIC"),
    (["--source", "{video}", "--mqtt", "mqtt://localhost"], "a broker and a topic"),
    (["--source", "{video}", "--mqtt", "mqtt://localhost/a/#"], "no wildcards"),
    (["--source", "{video}", "--mqtt", "mqtt://localhost/t", "--mqtt-ca", "{video}"], "--mqtt-ca is for TLS"),
    (["--source", "camera:x"], "bad camera source"),
    (["--source", "no-such.avi"], "no such video file"),
    (["--source", "{video}", "--every", "2", "--fps", "5"], "choose one of --every and --fps"),
    (["--source", "http://127.0.0.1:9/stream.mjpg", "--loop"], "--loop plays a video file again"),
    (["--source", "{model}"], "not a video OpenCV (FFmpeg) can decode"),
])
def test_bad_live_arguments_are_one_line_and_exit_2(cli, scenes, argv, message):
    result = cli("serve", MODEL, "--port", "0", *(a.format(video=scenes, model=MODEL) for a in argv))
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert message in result.err and "secret" not in result.err


def test_an_mqtt_url_is_parsed_with_default_ports():
    assert parse_mqtt_url("mqtt://broker/home/feeder") == ("mqtt", "broker", 1883, "home/feeder")
    assert parse_mqtt_url("mqtts://broker:9999/a%20b/") == ("mqtts", "broker", 9999, "a b")


def test_hysteresis_needs_min_stable_frames_in_a_row():
    detector = ChangeDetector(3)
    seen = [(label, detector.observe(label)) for label in "aaabaabbbaaa"]
    assert [(i, c.stable, c.previous) for i, (_, c) in enumerate(seen) if c.changed] == [(2, "a", None),
                                                                                         (8, "b", "a"), (11, "a", "b")]
    assert all(c.stable == "a" for _, c in seen[3:8])  # the odd b, then two: not enough
    one = ChangeDetector(1)
    assert [one.observe(label).changed for label in "aab"] == [True, False, True]


def test_an_unknown_prediction_has_the_label_unknown():
    from dataclasses import dataclass

    from edgecls.runtime.classify import Class

    @dataclass(frozen=True)
    class Flagged:  # a prediction type with an open-set flag (as edgecls' own grows one)
        frame: int
        timestamp: float
        classes: tuple
        latency: float
        unknown: bool = False

    guess = (Class(3, "3", 0.4),)
    assert verdict(Flagged(0, 0.0, guess, 0.001, unknown=True)) == "unknown"
    assert verdict(Flagged(0, 0.0, guess, 0.001)) == "3"


def test_the_systemd_unit_keeps_the_live_options_and_hands_over_the_mqtt_credentials(cli, scenes, tmp_path,
                                                                                    monkeypatch):
    credentials = tmp_path / "mqtt"
    credentials.write_text("edgecls:secret\n")
    monkeypatch.chdir(scenes.parent)  # --source as a user types it: a relative path
    result = cli("serve", MODEL, "--source", scenes.name, "--on-change", "--min-stable", "5", "--mqtt",
                 "mqtts://broker.lan/home/feeder", "--mqtt-credentials", credentials, "--systemd-unit")
    assert result.code == 0, result.err
    start = next(line for line in result.out.splitlines() if line.startswith("ExecStart="))
    assert f"--source {scenes}" in start and "--on-change" in start and "--min-stable 5" in start
    assert "will not see the --source video" in result.err  # the test's video is under /tmp
    assert "--mqtt mqtts://broker.lan/home/feeder" in start and "--mqtt-credentials %d/edgecls-mqtt" in start
    assert f"LoadCredential=edgecls-mqtt:{credentials}" in result.out and "secret" not in result.out


# ----------------------------------------------------------------------------- MQTT (a real mosquitto)
needs_mosquitto = pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                                     reason="mosquitto is not installed (Debian: apt install mosquitto)")
TOPIC = "edgecls/test"
STATUS = f"{TOPIC}/status"


def iso(seconds: float) -> str:
    from edgecls.provenance import iso_time

    return iso_time(seconds)


@needs_mosquitto
def test_mqtt_gets_every_prediction_and_outlives_a_broker_restart(tmp_path, scenes):
    from mqttkit import Mosquitto, Subscriber

    broker = Mosquitto(tmp_path)
    early = Subscriber(broker.port, f"{TOPIC}/#")
    model = tmp_path / "model.tflite"
    shutil.copy(MODEL, model)
    server = ServeProcess(model, "--source", scenes, "--loop", "--every", EVERY, "--min-stable", MIN_STABLE, "--mqtt",
                          f"mqtt://127.0.0.1:{broker.port}/{TOPIC}", "--threads", 1, log=tmp_path / "serve.log")
    late = None
    try:
        wait_for(lambda: [m.payload for m in early.on(STATUS)] == [b"online"], what="online")
        whole = wait_for(lambda: one_pass([m.json() for m in early.on(TOPIC)]), what="a whole pass over MQTT")
        assert [p["label"] for p in whole] == [PATTERN[frame] for frame in SAMPLED]
        validator = schema_validator()
        for message in early.on(TOPIC):
            validator.validate(message.json())
        late = Subscriber(broker.port, f"{TOPIC}/#")  # a client that comes later gets the state (retained)
        wait_for(lambda: late.on(STATUS) and late.on(TOPIC), what="the retained status and state")
        assert late.on(STATUS)[0].retain and late.on(STATUS)[0].payload == b"online" and late.on(TOPIC)[0].retain

        broker.stop()  # ... classification goes on without it, and nothing piles up
        down_at = time.time()
        with server.client() as client:
            first = latest(server)["frame"]
            wait_for(lambda: metric(server, "edgecls_mqtt_connected") == 0, what="the server to see it gone")
            wait_for(lambda: latest(server)["frame"] not in (first, first + EVERY), timeout=10,
                     what="frames classified while the broker is down")
            wait_for(lambda: metric(server, "edgecls_mqtt_messages_total", outcome="dropped") >= 5, timeout=10,
                     what="predictions dropped (not queued) while the broker is away")
            assert client.get("/v1/live").json()["mqtt"]["connected"] is False
        up_at = time.time()
        broker.start()
        restarted = time.monotonic()
        wait_for(lambda: len(early.on(TOPIC, since=restarted)) >= 5, timeout=30, what="messages after the restart")
        # the status comes back online (retained): with the predictions, or on subscribing again, whichever first
        wait_for(lambda: [m.payload for m in early.on(STATUS, since=restarted)][-1:] == [b"online"], timeout=30,
                 what="the status online again after the restart")
        assert metric(server, "edgecls_mqtt_connected") == 1
        # Not a backlog: of the frames captured while the broker was away, only the newest (republished on
        # connecting, retained) may arrive.
        during = [m.json() for m in early.on(TOPIC, since=restarted) if iso(down_at) < m.json()["time"] < iso(up_at)]
        assert len(during) <= 2, during
        assert "mqtt: lost" in server.log and "mqtt: reconnected" in server.log
    finally:
        assert server.stop() == 0, server.log
        for subscriber in (early, late):
            if subscriber is not None:
                subscriber.close()
        broker.stop()
    assert [m.payload for m in early.on(STATUS)][-1] == b"offline"  # said by the server as it stopped


@needs_mosquitto
def test_the_last_will_says_offline_when_the_server_vanishes(tmp_path, scenes):
    from mqttkit import Mosquitto, Subscriber

    broker = Mosquitto(tmp_path)
    subscriber = Subscriber(broker.port, STATUS)
    model = tmp_path / "model.tflite"
    shutil.copy(MODEL, model)
    server = ServeProcess(model, "--source", scenes, "--loop", "--mqtt", f"mqtt://127.0.0.1:{broker.port}/{TOPIC}",
                          log=tmp_path / "serve.log")
    try:
        wait_for(lambda: [m.payload for m in subscriber.on(STATUS)] == [b"online"], what="online")
        server.process.kill()  # no goodbye: the broker publishes the last will
        wait_for(lambda: [m.payload for m in subscriber.on(STATUS)] == [b"online", b"offline"], timeout=10,
                 what="the last will")
    finally:
        server.stop()
        subscriber.close()
        broker.stop()


@needs_mosquitto
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed (it makes the test certificate)")
def test_mqtts_with_credentials_from_a_file_and_a_refusal_that_stops_nothing(tmp_path, scenes):
    from mqttkit import Mosquitto, Subscriber

    cert, key, passwords = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "passwd"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    subprocess.run(["mosquitto_passwd", "-b", "-c", passwords, "edgecls", "s3cret:with:colons"], check=True,
                   capture_output=True)
    broker = Mosquitto(tmp_path, f"allow_anonymous false\npassword_file {passwords}\ncertfile {cert}\nkeyfile {key}\n")
    subscriber = Subscriber(broker.port, f"{TOPIC}/#", ca=cert, credentials=("edgecls", "s3cret:with:colons"))
    credentials = tmp_path / "mqtt-credentials"
    credentials.write_text("edgecls:s3cret:with:colons\n")
    credentials.chmod(0o600)
    model = tmp_path / "model.tflite"
    shutil.copy(MODEL, model)
    url = f"mqtts://127.0.0.1:{broker.port}/{TOPIC}"
    server = ServeProcess(model, "--source", scenes, "--loop", "--mqtt", url, "--mqtt-ca", cert, "--mqtt-credentials",
                          credentials, log=tmp_path / "serve.log")
    wrong = ServeProcess(model, "--source", scenes, "--loop", "--mqtt", url, "--mqtt-ca", cert,
                         log=tmp_path / "wrong.log", env={"EDGECLS_MQTT_USERNAME": "edgecls",
                                                          "EDGECLS_MQTT_PASSWORD": "wrong"})
    try:
        wait_for(lambda: len(subscriber.on(TOPIC)) >= 5, what="predictions over TLS")
        assert all(m.json()["label"] == PATTERN[m.json()["frame"]] for m in subscriber.on(TOPIC))
        wait_for(lambda: "refused the connection" in wrong.log, what="the refusal in the log")
        frame = latest(wrong)["frame"]
        wait_for(lambda: latest(wrong)["frame"] != frame, what="classification going on")
        assert "s3cret" not in server.log + wrong.log
    finally:
        assert server.stop() == 0, server.log
        assert wrong.stop() == 0, wrong.log
        subscriber.close()
        broker.stop()
