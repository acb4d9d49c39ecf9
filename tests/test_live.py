"""Live input (`predict --source`, `Classifier.classify_stream`) against real components: videos
written by OpenCV's VideoWriter, a real HTTP MJPEG server on 127.0.0.1, a socket that never
answers. The model is the reference digits model: frames alternate between a known 3 and a 7."""

from __future__ import annotations

import faulthandler
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from livekit import MODEL, ROOT, MjpegServer, digit_frame, write_video

from edgecls.runtime import Classifier
from edgecls.runtime.capture import SourceError, import_cv2, open_capture, parse_source
from edgecls.runtime.stream import LatencyHistogram

try:
    cv2 = import_cv2()  # as edgecls imports it: with OpenCV's and FFmpeg's own logging quiet
except SourceError:
    pytest.skip("OpenCV is not installed (pip install 'edgecls[camera]')", allow_module_level=True)

DIGITS = ("3", "7")  # frame i shows DIGITS[i % 2]
HANG_LIMIT = 40  # seconds: a test that hangs fails instead of holding the suite


@pytest.fixture(autouse=True)
def hang_guard():
    faulthandler.dump_traceback_later(HANG_LIMIT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [digit_frame(d) for d in DIGITS]


@pytest.fixture(scope="module")
def video(tmp_path_factory, frames) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "digits.avi", frames, 20)


def rows(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def labels_match_frames(found: list[dict]) -> bool:
    return all(row["classes"][0]["label"] == DIGITS[row["frame"] % 2] for row in found)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("edgecls: error:")]


# ---------------------------------------------------------------------- video files
def test_every_frame_of_a_video_gets_its_digit_and_the_summary_counts_them(cli, video):
    result = cli("predict", MODEL, "--source", video, "--json", "--top-k", "2")
    assert result.code == 0, result.err
    found = rows(result.out)
    assert [row["frame"] for row in found] == list(range(20))
    assert labels_match_frames(found) and all(row["classes"][0]["score"] > 0.9 for row in found)
    assert all(len(row["classes"]) == 2 and row["latency_ms"] > 0 and row["time"].endswith("Z") for row in found)
    assert [row["position_s"] for row in found] == [round(i / 10, 3) for i in range(20)]  # the video is 10 FPS
    assert found[0]["source"] == str(video)
    summary = result.err.strip().splitlines()[-1]
    assert summary.startswith("edgecls: 20 frames from") and "FPS" in summary and "p50" in summary
    assert "p90" in summary and "0 dropped" in summary and "the video ended" in summary


@pytest.mark.parametrize("options, expected", [
    (["--every", "3"], [0, 3, 6, 9, 12, 15, 18]),
    (["--fps", "4"], [0, 3, 5, 8, 10, 13, 15, 18]),  # by the video's own 10 FPS clock: every 0.25 s
    (["--duration", "0.5"], [0, 1, 2, 3, 4]),
    (["--every", "2", "--duration", "1"], [0, 2, 4, 6, 8]),
])
def test_sampling_picks_frames_by_number_or_by_the_videos_clock(cli, video, options, expected):
    result = cli("predict", MODEL, "--source", video, "--json", *options)
    assert result.code == 0, result.err
    found = rows(result.out)
    assert [row["frame"] for row in found] == expected and labels_match_frames(found)
    if "--duration" not in options:
        assert f"{20 - len(expected)} skipped" in result.err


def test_table_and_csv_rows_carry_frame_time_latency_and_classes(cli, video):
    table = cli("predict", MODEL, "--source", video, "--every", "10")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    # a video file's rows say where in the video the frame is (its 10 FPS clock), not the wall clock
    # the reference carries an unknown rule: the answer and how typical the frame is come first
    assert lines[0].split() == ["frame", "position", "ms", "answer", "typical", "score", "label"]
    assert [line.split()[0] for line in lines[1:]] == ["0", "10"]
    assert [line.split()[1] for line in lines[1:]] == ["0:00.000", "0:01.000"]
    assert [line.split()[-1] for line in lines[1:]] == ["3", "3"]
    result = cli("predict", MODEL, "--source", video, "--csv", "--top-k", "3", "--every", "10")
    lines = result.out.splitlines()
    assert lines[0] == "frame,time,position_s,latency_ms,rank,index,label,score,unknown,typicality"
    assert len(lines) == 1 + 2 * 3
    assert lines[1].startswith("0,") and lines[1].split(",")[4:7] == ["1", "3", "3"]
    assert [line.split(",")[2] for line in lines[1::3]] == ["0.000", "1.000"]  # the video's own clock, as the table


def test_opencv_frames_reach_the_model_as_rgb(tmp_path):
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255  # RGB red; OpenCV itself would hand it over as BGR
    capture = open_capture(parse_source(str(write_video(tmp_path / "red.avi", [red], 3))))
    try:
        pixels = capture.read()
    finally:
        capture.close()
    assert pixels.shape == (32, 32, 3) and pixels[..., 0].mean() > 200 and pixels[..., 2].mean() < 50


def test_frames_go_through_the_same_preprocessing_as_files(video, frames):
    classifier = Classifier(MODEL, num_threads=1)
    with classifier.classify_stream(str(video), top_k=3, every=5) as stream:
        results = list(stream)
    # The same RGB picture given as an image: identical classes (only MJPG's loss differs, not the path).
    expected = [classifier.classify(frames[r.frame % 2], top_k=3) for r in results]
    assert [[c.index for c in r.classes] for r in results] == [[c.index for c in e] for e in expected]
    assert stream.summary()["frames"] == 4 and stream.summary()["end"] == "the video ended"


def test_a_truncated_video_keeps_its_frames_and_fails_with_one_line(cli, tmp_path, frames):
    whole = write_video(tmp_path / "whole.avi", frames, 20).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole[: len(whole) * 6 // 10])
    result = cli("predict", MODEL, "--source", cut, "--json")
    assert result.code == 1, result.err
    found = rows(result.out)
    assert 0 < len(found) < 20 and labels_match_frames(found[:-1])  # the last frame may be cut in half
    assert error_lines(result.err) == [f"edgecls: error: {cut} ends after {len(found)} of its 20 frames: "
                                       "truncated or corrupt"]
    assert f"edgecls: {len(found)} frames from" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(os.urandom(4000)), "not a video OpenCV (FFmpeg) can decode"),
    (lambda p: p.write_bytes(b""), "not a video OpenCV (FFmpeg) can decode"),
    (lambda p: None, "no such video file"),
])
def test_a_video_that_cannot_be_read_is_one_line_and_exit_2(cli, tmp_path, make, message):
    path = tmp_path / "clip.avi"
    make(path)
    result = cli("predict", MODEL, "--source", path)
    assert result.code == 2 and result.out == ""
    assert len(result.err.strip().splitlines()) == 1 and message in result.err, result.err


def test_a_camera_that_does_not_exist_is_one_line_and_exit_2(cli):
    if Path("/dev/video9").exists():
        pytest.skip("this machine has a /dev/video9")
    result = cli("predict", MODEL, "--source", "camera:9", "--capture", "opencv")
    assert result.code == 2 and result.out == "", result.err
    assert result.err.strip().splitlines() == [result.err.strip()]
    assert "cannot open camera 9 with OpenCV" in result.err


@pytest.mark.parametrize("argv, message", [
    (["--source", "camera:x"], "bad camera source"),
    (["--source", "ftp://host/a.mjpg"], "unsupported stream ftp://"),
    (["--source", "."], "is a folder"),
    (["--source", "camera", "a.png"], "not both"),
    ([], "or --source"),
    (["--source", "camera", "--every", "2", "--fps", "5"], "choose one of --every and --fps"),
    (["--source", "camera", "--capture", "gstreamer"], "unknown capture backend"),
    (["a.png", "--every", "5"], "--every: for --source"),  # a live option with image files: never ignored
    (["a.png", "--fps", "1", "--duration", "2", "--reconnect", "3"], "--fps, --duration, --reconnect: for --source"),
])
def test_bad_live_arguments_are_one_line_and_exit_2(cli, argv, message):
    result = cli("predict", MODEL, *argv)
    assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err


def test_picamera2_reads_cameras_only_and_says_how_to_get_it(cli, video):
    result = cli("predict", MODEL, "--source", video, "--capture", "picamera2")
    assert result.code == 2 and "picamera2 reads the Pi's cameras only" in result.err, result.err
    if importlib.util.find_spec("picamera2") is None:
        result = cli("predict", MODEL, "--source", "camera:0", "--capture", "picamera2")
        assert result.code == 2 and result.out == ""
        assert "picamera2 is not installed here: on Raspberry Pi OS, sudo apt install python3-picamera2" in result.err


# ---------------------------------------------------------------------- network streams
def test_a_stream_that_drops_mid_way_keeps_its_rows_and_ends_with_one_line(cli, frames):
    server = MjpegServer(frames, [12])
    try:
        result = cli("predict", MODEL, "--source", server.url, "--json", "--reconnect", "0", "--timeout", "3")
    finally:
        server.close()
    assert result.code == 1, result.err
    found = rows(result.out)
    dropped = int(result.err.split(" dropped")[0].rsplit(" ", 1)[-1]) if " dropped" in result.err else 0
    assert len(found) + dropped == 12 and len(found) >= 3 and labels_match_frames(found)
    assert error_lines(result.err) == [f"edgecls: error: {server.url} stopped after 12 frames "
                                       "(--reconnect 0: no reconnection)"]


def test_a_dropped_stream_is_reconnected_with_back_off_then_given_up(cli, frames):
    server = MjpegServer(frames, [6, 8])  # two connections, then 404 for every retry
    started = time.monotonic()
    try:
        result = cli("predict", MODEL, "--source", server.url, "--json", "--reconnect", "1.5", "--timeout", "3")
    finally:
        server.close()
    assert result.code == 1, result.err
    found = rows(result.out)
    assert labels_match_frames(found) and found[-1]["frame"] <= 13 and len(found) >= 4
    assert any(row["frame"] >= 6 for row in found)  # frames of the second connection: numbering goes on
    assert "reconnecting for up to 1.5 s" in result.err and "reconnected" in result.err
    assert "1 reconnect" in result.err  # in the summary
    assert error_lines(result.err) == [f"edgecls: error: {server.url} stopped after 14 frames and did not come "
                                       "back within 1.5 s (--reconnect)"]
    assert server.connections >= 4  # the first two and at least two retries during the 1.5 s
    assert time.monotonic() - started < 10


def test_a_stream_that_goes_silent_is_a_drop_after_the_timeout(cli, frames):
    server = MjpegServer(frames, [4], silent_after=True)
    started = time.monotonic()
    try:
        result = cli("predict", MODEL, "--source", server.url, "--json", "--reconnect", "0", "--timeout", "1")
    finally:
        server.close()
    assert result.code == 1 and time.monotonic() - started < 8, result.err
    assert labels_match_frames(rows(result.out)) and 1 <= len(rows(result.out)) <= 4
    assert error_lines(result.err) == [f"edgecls: error: {server.url} stopped after 4 frames "
                                       "(--reconnect 0: no reconnection)"]


def test_a_stream_that_never_answers_times_out_quickly(cli):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # connections are accepted by the kernel, and nothing is ever sent back
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/stream.mjpg"
    started = time.monotonic()
    try:
        result = cli("predict", MODEL, "--source", url, "--timeout", "1")
    finally:
        listener.close()
    assert time.monotonic() - started < 8
    assert result.code == 2 and result.out == ""
    assert result.err.strip() == f"edgecls: error: cannot connect to {url}: no answer within 1 s (--timeout)"


def test_ctrl_c_ends_a_live_stream_with_a_summary(frames):
    server = MjpegServer(frames, [None], interval=0.02)
    process = subprocess.Popen([sys.executable, "-m", "edgecls", "predict", str(MODEL), "--source", server.url,
                                "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        found = [json.loads(process.stdout.readline()) for _ in range(5)]
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
        server.close()
    found += rows(out)
    assert process.returncode == 130, err
    assert labels_match_frames(found) and "Traceback" not in err
    *_, summary, last = err.strip().splitlines()  # the summary, then the one line every command ends a Ctrl-C with
    assert summary.startswith(f"edgecls: {len(found)} frames from {server.url}") and "stopped by Ctrl-C" in summary
    assert last == "edgecls: error: interrupted"


# ---------------------------------------------------------------------- the API
class SlowClassifier(Classifier):
    """The reference model taking 20 ms more per frame: slower than the source below."""

    def classify(self, image, top_k=1):
        time.sleep(0.02)
        return super().classify(image, top_k)


def paced(pictures: list[np.ndarray], count: int, interval: float):
    for i in range(count):
        time.sleep(interval)
        yield pictures[i % 2].copy()


def test_a_slow_model_drops_live_frames_instead_of_queueing_them(frames):
    classifier = SlowClassifier(MODEL, num_threads=1)
    stream = classifier.classify_stream(paced(frames, 60, 0.002), live=True)
    results = list(stream)
    summary = stream.summary()
    assert summary["frames"] == len(results) and summary["frames"] + summary["dropped"] == 60
    assert summary["dropped"] > 20 and all(r.classes[0].label == DIGITS[r.frame % 2] for r in results)
    assert results[-1].frame == 59  # the newest frame is the one classified
    # The same frames as a file-like (not live) source: every one classified, none dropped.
    stream = classifier.classify_stream(paced(frames, 20, 0.002))
    assert [r.frame for r in stream] == list(range(20)) and stream.summary()["dropped"] == 0


def test_breaking_out_of_the_loop_releases_the_source(video):
    classifier = Classifier(MODEL, num_threads=1)
    stream = classifier.classify_stream(str(video))
    for result in stream:  # noqa: B007  (the loop itself is what is tested: a `break` out of it)
        break
    stream.close()
    assert result.frame == 0 and not stream._reader.is_alive()
    with pytest.raises(Exception, match="iterated once"):
        list(stream)


def test_latency_percentiles_are_within_one_percent_in_constant_memory():
    rng = np.random.default_rng(0)
    samples = rng.lognormal(mean=-6, sigma=0.7, size=5000)  # around 2.5 ms
    histogram = LatencyHistogram()
    for s in samples:
        histogram.add(float(s))
    for q in (50, 90):
        assert histogram.percentile(q) == pytest.approx(np.percentile(samples, q), rel=0.011)
    assert LatencyHistogram().percentile(50) is None


def test_a_password_in_a_stream_url_is_never_printed():
    spec = parse_source("rtsp://admin:secret@10.0.0.5:554/live")
    assert spec.display == "rtsp://admin:***@10.0.0.5:554/live" and spec.live


def test_a_picamera2_that_does_not_import_falls_back_to_opencv_and_says_why(tmp_path):
    """Raspberry Pi OS's picamera2 (apt) fails to import beside a venv's numpy 2: a stand-in package
    that fails the same way, to check what edgecls does about it (not picamera2 itself)."""
    if Path("/dev/video9").exists():
        pytest.skip("this machine has a /dev/video9")
    package = tmp_path / "site" / "picamera2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('raise ValueError("numpy.dtype size changed, may indicate binary '
                                         'incompatibility. Expected 96 from C header, got 88 from PyObject")\n')
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    run = [sys.executable, "-m", "edgecls"]
    result = subprocess.run([*run, "predict", str(MODEL), "--source", "camera:9"], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=30)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "cannot open camera 9 with OpenCV" in result.stderr  # it fell back to OpenCV
    assert "picamera2 is installed but unusable" in result.stderr and "--force-reinstall simplejpeg" in result.stderr
    doctor = subprocess.run([*run, "doctor", "--json"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=30)
    assert any("simplejpeg" in warning for warning in json.loads(doctor.stdout)["warnings"])


# ---------------------------------------------------------------------- packaging and doctor
def test_the_base_install_does_not_require_opencv():
    try:
        import tomllib
    except ImportError:  # Python 3.10: the backport the project already depends on there
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any("opencv" in dep.lower() or "picamera" in dep.lower() for dep in project["dependencies"])
    extras = project["optional-dependencies"]
    assert any(dep.startswith("opencv-python-headless") for dep in extras["camera"])
    assert any(dep.startswith("opencv-python-headless") for dep in extras["dev"])
    # Importing the device side (and asking doctor) loads no OpenCV: only --source does.
    code = ("import sys, edgecls.cli, edgecls.console, edgecls.live, edgecls.runtime.stream; "
            "from edgecls.runtime.doctor import doctor_report; doctor_report(); print('cv2' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          check=True).stdout.strip() == "False"


def test_without_opencv_a_live_source_says_how_to_install_it(video):
    code = ("import sys; sys.modules['cv2'] = None; sys.argv = ['edgecls', 'predict', sys.argv[1], '--source', "
            "sys.argv[2]]; from edgecls.cli import main; main()")  # cv2 = None: `import cv2` fails as if absent
    result = subprocess.run([sys.executable, "-c", code, str(MODEL), str(video)], capture_output=True, text=True,
                            cwd=ROOT, timeout=30)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == ("edgecls: error: live input needs OpenCV, which is not installed here: "
                                     "pip install 'edgecls[camera]' (it adds opencv-python-headless)")


def test_doctor_reports_the_capture_backends(cli):
    report = json.loads(cli("doctor", "--json").out)
    assert report["capture_backends"]["opencv"] == cv2.__version__ or report["capture_backends"]["opencv"].startswith(
        cv2.__version__)
    assert "picamera2" in report["capture_backends"]
    assert "live input" in cli("doctor").out
