"""Live sources for the tests (predict --source, serve --source), real components only: videos written by
OpenCV's VideoWriter, a real HTTP MJPEG server on 127.0.0.1, and the digit pictures they show (first test
images of the reference digits model, which it gets right)."""

from __future__ import annotations

import http.server
import io
import socketserver
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from edgecls.runtime.capture import import_cv2

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "models" / "digits-seed"
MODEL = REFERENCE / "model_int8.tflite"
SIZE = 112  # frames are larger than the model's 28x28: load_image resizes them as it does files


def digit_frame(digit: str, size: int = SIZE) -> np.ndarray:
    """An RGB size x size picture of the first test image of `digit` (one the model gets right)."""
    path = sorted((REFERENCE / "test-images" / digit).glob("*.png"))[0]
    return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.Resampling.NEAREST))


def no_digit(seed: int, size: int = SIZE) -> np.ndarray:
    """An RGB size x size picture of no digit: grey stripes of a seeded frequency and slant (the reference
    model calibrated on its test images answers it 'unknown')."""
    rng = np.random.default_rng(seed)
    x = np.arange(size)
    grey = ((np.sin(x[None, :] * rng.uniform(0.3, 1.5) + x[:, None] * rng.uniform(0, 1)) + 1) * 127).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def write_video(path: Path, pictures: list[np.ndarray], count: int, fps: float = 10.0) -> Path:
    """An MJPG AVI of `count` frames cycling through `pictures` (RGB), written by OpenCV."""
    cv2 = import_cv2()
    height, width = pictures[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for i in range(count):
        writer.write(cv2.cvtColor(pictures[i % len(pictures)], cv2.COLOR_RGB2BGR))
    writer.release()
    return path


class MjpegServer:
    """A real HTTP MJPEG server (multipart/x-mixed-replace) on 127.0.0.1, in a thread.

    `plan` gives the frames each connection gets, in order, before the server closes it (None:
    endless, until close()); connections beyond the plan get 404 Not Found. Each connection starts at
    frame 0; frames go out every `interval` seconds (on a schedule: a slow write is caught up), and
    `sent` counts them over all connections (scripts/live_memory_check.py uses it as a 30 FPS camera)."""

    def __init__(self, pictures: list[np.ndarray], plan: list[int | None], interval: float = 0.01,
                 silent_after: bool = False):
        jpegs = []
        for picture in pictures:
            buffer = io.BytesIO()
            Image.fromarray(picture).save(buffer, "JPEG", quality=95)
            jpegs.append(buffer.getvalue())
        self.connections = 0
        self.sent = 0
        self.closed = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                index, server.connections = server.connections, server.connections + 1
                if index >= len(plan):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                n, started = 0, time.monotonic()
                try:
                    while (plan[index] is None and not server.closed.is_set()) or n < (plan[index] or 0):
                        jpeg = jpegs[n % len(jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpeg) + jpeg + b"\r\n")
                        self.wfile.flush()
                        n += 1
                        server.sent += 1
                        time.sleep(max(0.0, started + n * interval - time.monotonic()))
                    while silent_after and not server.closed.is_set():  # connected, and nothing more comes
                        server.closed.wait(0.1)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away

            def log_message(self, *args) -> None:
                pass

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/stream.mjpg"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closed.set()
        self._server.shutdown()
        self._server.server_close()


