"""The field loop in `edgecls serve`: `--collect` over HTTP as `predict --collect` keeps files, and the
drift figures at /metrics.

Real components: the reference digits model calibrated on its test images, a real `edgecls serve`
in a subprocess (tests/serving.py) talked to with httpx, SIGKILL mid-collection, and
prometheus_client's own parser for /metrics.
"""

from __future__ import annotations

import io
import json
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from serving import ServeProcess
from test_collect import IMAGES, REFERENCE, digit, kept, plain_reference, scene

from edgecls.calibrate.folder import calibrate_folder
from edgecls.calibrate.job import OpenSetOptions
from edgecls.calibrate.options import CalibrateOptions
from edgecls.runtime.collect import Collector, parse_when
from edgecls.runtime.drift import Drift, jensen_shannon, sampling_noise, training_distribution


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "digits_calibrated.tflite"
    calibrate_folder(CalibrateOptions(REFERENCE, IMAGES, out=out))
    return out


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def post(client: httpx.Client, content: bytes) -> dict:
    answer = client.post("/v1/classify", content=content, headers={"Content-Type": "image/png"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def metrics(server: ServeProcess) -> dict[tuple[str, tuple], float]:
    """Every sample of the server's /metrics, by name and labels."""
    text = httpx.get(f"{server.url}/metrics", headers=server.headers).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def settled(server: ServeProcess, ready) -> dict[tuple[str, tuple], float]:
    """/metrics once `ready(samples)` holds: the collect thread writes after the answers are sent."""
    deadline = time.monotonic() + 30
    while True:
        found = metrics(server)
        if ready(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


KEPT = ("edgecls_collect_kept_total", (("rule", "unknown"),))
SIMILAR = ("edgecls_collect_skipped_total", (("reason", "similar"),))
FULL = ("edgecls_collect_skipped_total", (("reason", "full"),))


def served(model: Path, tmp_path: Path, *args) -> ServeProcess:
    copy = tmp_path / "served" / "model.tflite"
    copy.parent.mkdir()
    copy.write_bytes(model.read_bytes())
    return ServeProcess(copy, "--interpreters", 2, "--threads", 1, "--queue", 8, *args, log=tmp_path / "serve.log")


# ---------------------------------------------------------------------- collect over HTTP
def test_serve_collect_keeps_unknown_uploads_as_sent_and_a_repeated_scene_once(model, tmp_path):
    """Digits and two scenes of no digit, the first sent five times: the server keeps each scene once,
    byte for byte as it was uploaded, under unknown/, with a sidecar naming the served model."""
    inbox = tmp_path / "inbox"
    server = served(model, tmp_path, "--collect", inbox)
    first, second = png(scene(1)), png(scene(2))
    try:
        with server.client() as client:
            answers = [post(client, content) for content in
                       [png(digit("7")), *[first] * 5, png(digit("3")), second, png(digit("4"))]]
            sha = client.get("/v1/model").json()["sha256"]
            found = settled(server, lambda m: m.get(KEPT, 0) + m.get(SIMILAR, 0) >= 6)
    finally:
        assert server.stop() == 0, server.log
    assert [a["unknown"] for a in answers] == [False] * 1 + [True] * 5 + [False, True, False]
    pictures = kept(inbox)
    assert [p.parent.name for p in pictures] == ["unknown", "unknown"]
    assert sorted(p.read_bytes() for p in pictures) == sorted([first, second])
    assert all(p.suffix == ".png" for p in pictures)
    side = json.loads(pictures[0].with_suffix(".json").read_text())
    assert side["rule"] == "unknown" and side["model"]["sha256"] == sha and side["answer"] == "unknown"
    assert side["source"].startswith("POST /v1/classify from 127.0.0.1") and side["typicality"] is not None
    assert found[KEPT] == 2 and found[SIMILAR] == 4
    assert "collect: kept 2 in" in server.log and "4 near-identical" in server.log


def test_serve_collect_stops_at_a_tiny_quota_and_says_so_once(model, tmp_path):
    inbox = tmp_path / "inbox"
    server = served(model, tmp_path, "--collect", inbox, "--collect-when", "sample=1", "--collect-max-mb", "0.02")
    try:
        with server.client() as client:
            for seed in range(40):
                post(client, png(scene(seed)))
            found = settled(server, lambda m: m.get(FULL, 0) > 0)
    finally:
        assert server.stop() == 0, server.log
    assert server.log.count("reached its 0.02 MB quota") == 1
    size = sum(p.stat().st_size for p in inbox.rglob("*") if p.is_file())
    assert 0 < size <= 20_000 and kept(inbox)
    assert found[FULL] > 0


def test_a_rule_the_served_model_cannot_follow_stops_the_start(tmp_path):
    """The uncalibrated reference has no unknown rule: serve --collect-when unknown ends at once, exit 2."""
    copy = plain_reference(tmp_path)
    server = ServeProcess(copy, "--collect", tmp_path / "inbox", "--collect-when", "unknown",
                          log=tmp_path / "serve.log", wait_ready=False)
    code = server.process.wait(60)
    assert code == 2 and "has no unknown rule" in server.log.splitlines()[-1]


def test_sigkill_of_a_collecting_server_leaves_no_half_written_picture(model, tmp_path):
    """Upload distinct pictures without pause to a server that keeps all of them and SIGKILL it mid-way:
    every picture left is byte for byte one that was uploaded, every sidecar there parses, and the hidden
    temporaries a kill may leave go with the next start."""
    inbox = tmp_path / "inbox"
    server = served(model, tmp_path, "--collect", inbox, "--collect-when", "sample=1")
    uploads = {png(scene(seed)) for seed in range(400)}
    stop = threading.Event()

    def upload() -> None:
        with server.client() as client:
            for content in uploads:
                if stop.is_set():
                    return
                try:
                    client.post("/v1/classify", content=content, headers={"Content-Type": "image/png"})
                except httpx.TransportError:
                    return

    senders = [threading.Thread(target=upload) for _ in range(2)]
    for sender in senders:
        sender.start()
    deadline = time.monotonic() + 60
    while len(kept(inbox)) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.send(signal.SIGKILL)
    stop.set()
    for sender in senders:
        sender.join(30)
    assert server.stop() == -signal.SIGKILL
    pictures = kept(inbox)
    assert len(pictures) >= 30
    for picture in pictures:
        assert picture.read_bytes() in uploads
        Image.open(picture).load()
        sidecar = picture.with_suffix(".json")
        if sidecar.exists():
            assert json.loads(sidecar.read_text())["rule"] == "sample=1"
    from edgecls.runtime import Classifier

    Collector(inbox, parse_when(["unknown"]), model, Classifier(model).labels)  # the next start tidies up
    assert not [p for p in inbox.rglob(".*") if p.is_file()]


# ---------------------------------------------------------------------- drift
def test_drift_of_the_training_mix_is_sampling_noise_and_a_shifted_mix_is_far_above_it():
    training = np.full(10, 0.1)
    rng = np.random.default_rng(0)
    same, shifted = Drift(10, training, window=500), Drift(10, training, window=500)
    for _ in range(2000):  # the window keeps the last 500
        same.add(int(rng.choice(10)), 0.9)
        shifted.add(int(rng.choice(10, p=[0.5] + [0.5 / 9] * 9)), 0.9)
    calm, moved = same.figures(), shifted.figures()
    assert calm.answers == moved.answers == 500
    assert calm.divergence < 3 * sampling_noise(500, 10) < 0.02 < moved.divergence
    unknowns = Drift(10, training, window=100)
    for i in range(100):
        unknowns.add(i % 10, 0.3, unknown=i % 4 == 0)
    figures = unknowns.figures()
    assert figures.unknown_rate == 0.25 and figures.mean_confidence == pytest.approx(0.3)
    assert sum(figures.shares) == pytest.approx(1.0)  # over the known answers only
    assert Drift(10, None).figures().divergence is None  # no training counts: no divergence
    assert jensen_shannon([1, 0], [0, 1]) == 1.0 and jensen_shannon([1, 2], [2, 4]) == 0.0


def test_the_training_distribution_comes_from_the_metadata(model):
    from edgecls.runtime.metadata import read_metadata

    found = training_distribution(read_metadata(model.read_bytes()), 10)
    assert found is not None and found.sum() == pytest.approx(1.0) and len(found) == 10
    assert training_distribution({"labels": list("0123456789")}, 10) is None  # a model without an unknown rule
    assert training_distribution({"openset": {"class_counts": {"fit": [1, 2]}}}, 10) is None  # wrong length


def test_metrics_show_the_class_mix_drifting_away_from_training(model, tmp_path):
    """A window of 60 answers: the training mix (every digit in turn) keeps the divergence low; a stream of
    ones moves it far up; the unknown rate and mean confidence follow a stream of scenes. All are gauges of
    the server's one registry (parsed by prometheus_client)."""
    server = served(model, tmp_path, "--drift-window", 60)
    pictures = {d: [png(digit(str(d), n)) for n in range(6)] for d in range(10)}
    try:
        with server.client() as client:
            assert np.isnan(metrics(server)[("edgecls_drift_divergence", ())])  # no answers yet
            for n in range(6):
                for d in range(10):
                    post(client, pictures[d][n])
            calm = metrics(server)
            for n in range(60):
                post(client, pictures[1][n % 6])
            shifted = metrics(server)
            for seed in range(30):
                post(client, png(scene(seed)))
            strange = metrics(server)
    finally:
        assert server.stop() == 0, server.log
    assert calm[("edgecls_drift_window_answers", ())] == 60 == calm[("edgecls_drift_window_size", ())]
    assert calm[("edgecls_drift_divergence", ())] < 0.1
    assert shifted[("edgecls_drift_divergence", ())] > 0.6
    assert shifted[("edgecls_class_share", (("class", "1"), ("of", "window")))] > 0.9
    assert shifted[("edgecls_class_share", (("class", "1"), ("of", "training")))] == pytest.approx(0.1, abs=0.01)
    assert strange[("edgecls_unknown_rate", ())] > shifted[("edgecls_unknown_rate", ())] + 0.3, (shifted, strange)
    assert strange[("edgecls_mean_confidence", ())] < shifted[("edgecls_mean_confidence", ())]


def test_a_live_source_of_one_class_drifts_and_its_unknown_frames_are_kept(model, tmp_path):
    """serve --source a video OpenCV wrote: 40 frames of a 1, then 20 of distinct scenes of no digit. Each
    live frame joins the drift window and is offered to --collect as an upload is: /v1/live's summary and
    /metrics show the class mix far from training (all 1s), the unknown rate at the scenes' share, and the
    scenes are kept as JPEG frames under unknown/ with the frame number in their sidecars."""
    pytest.importorskip("cv2")
    from livekit import digit_frame, no_digit, write_video

    pictures = [digit_frame("1")] * 40 + [no_digit(seed) for seed in range(20)]
    video = write_video(tmp_path / "ones.avi", pictures, len(pictures), fps=20)
    inbox = tmp_path / "inbox"
    server = served(model, tmp_path, "--source", video, "--drift-window", 100, "--collect", inbox)
    try:
        with server.client() as client:
            def summary() -> dict:
                return client.get("/v1/live").json()

            deadline = time.monotonic() + 60
            while (live := summary())["state"] not in ("ended", "down") and time.monotonic() < deadline:
                time.sleep(0.1)
            live = summary()
            found = settled(server, lambda m: m.get(KEPT, 0) + m.get(SIMILAR, 0) >= 20)
    finally:
        assert server.stop() == 0, server.log
    assert live["state"] == "ended" and live["frames"] == 60, live
    drift = live["drift"]
    assert drift["answers"] == 60 and drift["window"] == 100 and drift["divergence_kind"] == "jensen-shannon (bits)"
    assert drift["divergence"] > 0.6 and drift["noise"] < 0.05
    assert drift["unknown_rate"] == pytest.approx(20 / 60) and 0 < drift["mean_confidence"] <= 1
    assert drift["classes"]["1"]["window"] == 1.0 and drift["classes"]["1"]["training"] == pytest.approx(0.1, abs=0.01)
    assert found[("edgecls_drift_divergence", ())] == pytest.approx(drift["divergence"], abs=1e-6)
    assert found[("edgecls_unknown_rate", ())] == pytest.approx(20 / 60)
    pictures_kept = kept(inbox)
    assert live["collect"]["folder"] == str(inbox) and found[KEPT] == len(pictures_kept) >= 10
    assert {p.parent.name for p in pictures_kept} == {"unknown"} and {p.suffix for p in pictures_kept} == {".jpg"}
    sides = [json.loads(p.with_suffix(".json").read_text()) for p in pictures_kept]
    assert all(s["frame"] >= 40 and s["source"] == str(video) and s["rule"] == "unknown" for s in sides), sides[:2]


def test_export_records_the_whole_train_splits_class_counts_for_drift():
    """The calibration of a run's file (export, train --backbone) writes the train split's class counts
    into the metadata, which serve's drift reads as the training mix; a skewed train split shows in it."""
    from edgecls.calibrate.job import calibrate_split
    from edgecls.runtime.metadata import read_metadata

    files = sorted(IMAGES.glob("*/*.png"))
    images = np.stack([np.asarray(Image.open(p).convert("L"))[..., None] for p in files])
    labels = np.array([int(p.parent.name) for p in files])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(files))
    val, test, rest = order[:60], order[60:80], order[80:]
    train = np.concatenate([rest[labels[rest] < 5], rest[labels[rest] >= 5][:10]])  # mostly 0-4

    class Split:
        pass

    Split.train, Split.val, Split.test = train, val, test
    content, report = calibrate_split(REFERENCE.read_bytes(), images, labels, Split(), OpenSetOptions(), None,
                                      "m.tflite", lambda m: None)
    metadata = read_metadata(content)
    expected = np.bincount(labels[train], minlength=10)
    assert metadata["openset"]["class_counts"]["train"] == expected.tolist()
    assert training_distribution(metadata, 10) == pytest.approx(expected / expected.sum())


def test_a_live_margin_rule_reads_two_classes_while_the_documents_keep_top_k(model, tmp_path):
    """--collect-when margin<x reads the second class: live frames are classified for two even with
    --top-k 1, the kept frames' sidecars carry both, the live documents only the one asked for."""
    pytest.importorskip("cv2")
    from livekit import digit_frame, no_digit, write_video

    pictures = [digit_frame("4")] * 5 + [no_digit(seed) for seed in range(5)]
    video = write_video(tmp_path / "mixed.avi", pictures, len(pictures), fps=20)
    inbox = tmp_path / "inbox"
    server = served(model, tmp_path, "--source", video, "--top-k", 1, "--collect", inbox, "--collect-when",
                    "margin<1")
    try:
        with server.client() as client:
            deadline = time.monotonic() + 60
            while client.get("/v1/live").json()["state"] != "ended" and time.monotonic() < deadline:
                time.sleep(0.1)
            latest = client.get("/v1/latest").json()
            settled(server, lambda m: m.get(("edgecls_collect_kept_total", (("rule", "margin<1"),)), 0) >= 2)
    finally:
        assert server.stop() == 0, server.log
    assert len(latest["classes"]) == 1
    sides = [json.loads(p.with_suffix(".json").read_text()) for p in kept(inbox)]
    assert sides and all(len(s["classes"]) == 2 and s["rule"] == "margin<1" for s in sides), sides[:2]


def test_the_collect_counts_of_replaced_collectors_add_up_field_by_field():
    """A swap to a model with other labels starts a new collector: /metrics adds its counts to the earlier
    ones, each count to its own (a positional sum once put the bytes in a rule's place: /metrics answered 500)."""
    from edgecls.runtime.collect import Counts
    from edgecls.serve.field import _sum

    total = _sum(Counts(kept=1, similar=2, already=3, over_quota=4, shadow_runs=5, bytes=6, by_rule={"unknown": 1}),
                 Counts(kept=10, already=30, bytes=60, by_rule={"unknown": 2, "sample=0.1": 1}))
    assert total == Counts(kept=11, similar=2, already=33, over_quota=4, shadow_runs=5, bytes=66,
                           by_rule={"unknown": 3, "sample=0.1": 1})
