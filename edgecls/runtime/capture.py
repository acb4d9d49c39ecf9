"""Frame sources for live input: a camera, a video file or a network stream, read as RGB frames.

    camera[:N]                  the Nth camera (0 by default): picamera2 when installed, else OpenCV
    clip.avi                    a video file OpenCV (FFmpeg) can decode
    rtsp://...  http(s)://...   a network stream, e.g. an IP camera's RTSP or MJPEG URL (OpenCV's FFmpeg)

Neither backend is a dependency of the base install; each is imported only when a source needs it:
OpenCV comes with `pip install "edgecls[camera]"` (opencv-python-headless), picamera2 with
Raspberry Pi OS (`sudo apt install python3-picamera2`). Frames are always RGB uint8 arrays:
OpenCV's BGR is converted here, so callers never see the colour order of a backend.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from edgecls.errors import EdgeclsError, first_line

CAPTURE_BACKENDS = ("picamera2", "opencv")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
PICAMERA_SIZE = (640, 480)  # asked of the Pi camera; load_image resizes to the model's input as for files
_OPENCV_DISTRIBUTIONS = ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
                         "opencv-contrib-python")
_INSTALL_OPENCV = "pip install 'edgecls[camera]' (it adds opencv-python-headless)"


class SourceError(EdgeclsError):
    """A frame source that cannot be opened or read; exit code 2 before the first frame, 1 after."""


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source argument: what kind it is and what to open."""

    text: str  # as given
    kind: str  # "camera", "file", "stream", or "frames" (an iterable the caller gives)
    target: Any  # the camera index, the file path, the URL or the iterable

    @property
    def live(self) -> bool:
        """Cameras and streams run on their own clock (frames are dropped when the model is slower);
        a file, or frames from the caller's own iterable, are read at the model's pace, in order."""
        return self.kind in ("camera", "stream")

    @property
    def display(self) -> str:
        """The source for messages and output rows: a URL's password is never printed."""
        if self.kind != "stream":
            return self.text
        parts = urlsplit(self.text)
        if parts.password is None:
            return self.text
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()


def parse_source(text: str) -> SourceSpec:
    """'camera', 'camera:1', a video file or a stream URL -> SourceSpec; a one-line SourceError otherwise."""
    if not text.strip():  # Path("") is the working folder: "is a folder" would name the wrong cause
        raise SourceError(f"--source is empty ({text!r}): give camera, camera:N, a video file or a stream URL")
    if text == "camera" or text.startswith("camera:"):
        index = text.partition(":")[2] or "0"
        if not index.isdigit():
            raise SourceError(f"bad camera source {text!r}: use camera, camera:0, camera:1, ...")
        return SourceSpec(text, "camera", int(index))
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in STREAM_SCHEMES:
            raise SourceError(f"unsupported stream {scheme}://: use one of "
                              f"{', '.join(s + '://' for s in STREAM_SCHEMES)}")
        return SourceSpec(text, "stream", text)
    path = Path(text)
    if path.is_dir():
        raise SourceError(f"{text} is a folder: a live source is camera[:N], a video file or a stream URL "
                          "(classify a folder of images without --source)")
    if not path.exists():
        raise SourceError(f"no such video file: {text} (a live source is camera[:N], a video file, "
                          "rtsp://... or http(s)://...)")
    return SourceSpec(text, "file", str(path))


class Capture(Protocol):
    """An open frame source."""

    backend: str
    fps: float | None  # the nominal frame rate, when the source states one
    frame_count: int | None  # a file's frame count from its header, when known

    def read(self) -> np.ndarray | None:
        """The next frame as RGB (or grayscale) uint8 pixels; None when the source has ended or failed."""

    def close(self) -> None:
        """Release the device or connection."""


def open_capture(spec: SourceSpec, backend: str | None = None, timeout: float = 10.0) -> Capture:
    """Open `spec` with `backend` ("picamera2" or "opencv"; default: picamera2 for a camera when it is
    installed, else OpenCV). `timeout`: seconds to connect to a stream and to wait for a frame of it."""
    if backend not in (None, *CAPTURE_BACKENDS):
        raise SourceError(f"unknown capture backend {backend!r}: use {' or '.join(CAPTURE_BACKENDS)}")
    unusable = None  # why an installed picamera2 was passed over for OpenCV
    if backend is None:
        # picamera2 where it really imports (an apt build may not, beside a venv's numpy 2), else OpenCV.
        unusable = picamera2_problem() if spec.kind == "camera" and _importable("picamera2") else None
        backend = "picamera2" if spec.kind == "camera" and _importable("picamera2") and not unusable else "opencv"
    if spec.kind == "frames":
        return IterableCapture(spec.target)
    if backend == "picamera2":
        if spec.kind != "camera":
            raise SourceError(f"picamera2 reads the Pi's cameras only, not {spec.display}: use the opencv backend")
        return Picamera2Capture(spec.target)
    try:
        return OpenCVCapture(spec, timeout)
    except SourceError as exc:
        if unusable:
            raise SourceError(f"{exc}; picamera2 is installed but unusable: {unusable}") from None
        raise


# ----------------------------------------------------------------------------- OpenCV
def import_cv2() -> Any:
    """OpenCV, imported quietly, or a SourceError saying how to install it."""
    # Both are read when OpenCV starts: its own warnings ("can't open camera by index") and FFmpeg's
    # ("Stream ends prematurely") would otherwise be printed beside our one-line errors.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    try:
        import cv2
    except ImportError:
        raise SourceError(f"live input needs OpenCV, which is not installed here: {_INSTALL_OPENCV}") from None
    return cv2


class OpenCVCapture:
    """cv2.VideoCapture: V4L2 cameras, video files, and network streams through FFmpeg with timeouts."""

    backend = "opencv"

    def __init__(self, spec: SourceSpec, timeout: float):
        cv2 = import_cv2()
        self._cv2 = cv2
        started = time.monotonic()
        if spec.kind == "camera":
            self._capture = cv2.VideoCapture(spec.target)
        elif spec.kind == "stream":
            ms = max(1, int(timeout * 1000))
            self._capture = cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        else:
            self._capture = cv2.VideoCapture(spec.target)
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceError(_open_failure(spec, time.monotonic() - started, timeout))
        fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        count = float(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.fps = fps if 0 < fps < 1000 else None  # streams report 0, 25 or nonsense
        # A stream reports -2**63 or 0; only a file's header count means something.
        self.frame_count = int(count) if spec.kind == "file" and 0 < count < 2**31 else None

    def read(self) -> np.ndarray | None:
        ok, frame = self._capture.read()
        if not ok or frame is None:
            return None
        if frame.ndim == 3 and frame.shape[2] == 3:
            return self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)  # OpenCV delivers BGR
        if frame.ndim == 3 and frame.shape[2] == 4:
            return self._cv2.cvtColor(frame, self._cv2.COLOR_BGRA2RGB)
        return frame  # grayscale: no colour order

    def close(self) -> None:
        self._capture.release()


def _open_failure(spec: SourceSpec, seconds: float, timeout: float) -> str:
    if spec.kind == "camera":
        devices = sorted(str(p) for p in Path("/dev").glob("video*")) if os.name == "posix" else []
        found = f"devices here: {', '.join(devices)}" if devices else "no /dev/video* device here"
        return f"cannot open camera {spec.target} with OpenCV: no such camera, or it is busy ({found})"
    if spec.kind == "stream":
        if seconds >= 0.9 * timeout:
            return f"cannot connect to {spec.display}: no answer within {timeout:g} s (--timeout)"
        return f"cannot connect to {spec.display}: refused, not found, or not a video stream OpenCV can read"
    return f"cannot read video file {spec.text}: not a video OpenCV (FFmpeg) can decode, or corrupt"


class IterableCapture:
    """The caller's own frames (any iterable of RGB or grayscale arrays or PIL images) as a source."""

    backend = "iterable"
    fps = None
    frame_count = None

    def __init__(self, frames: Any):
        self._frames = iter(frames)

    def read(self) -> Any:
        return next(self._frames, None)

    def close(self) -> None:
        close = getattr(self._frames, "close", None)  # a generator's finally blocks run now
        if close is not None:
            close()


# ----------------------------------------------------------------------------- picamera2
class Picamera2Capture:
    """The Raspberry Pi's cameras through picamera2 (libcamera)."""

    backend = "picamera2"
    frame_count = None

    def __init__(self, index: int):
        problem = picamera2_problem()
        if problem is not None:
            raise SourceError(problem)
        from picamera2 import Picamera2

        try:
            cameras = Picamera2.global_camera_info()
        except Exception as exc:  # libcamera not running, permissions...
            raise SourceError(f"picamera2 cannot list the cameras: {first_line(exc)}") from None
        if index >= len(cameras):
            raise SourceError(f"no camera {index}: picamera2 sees {len(cameras)} camera(s)")
        try:
            self._camera = Picamera2(camera_num=index)
            # libcamera names formats by their 32-bit word: "BGR888" is stored R, G, B in memory,
            # which is the RGB array we want (picamera2's own make_image reads it as "RGB").
            self._camera.configure(self._camera.create_video_configuration(
                main={"size": PICAMERA_SIZE, "format": "BGR888"}))
            self._camera.start()
        except Exception as exc:
            raise SourceError(f"cannot open camera {index} with picamera2: {first_line(exc)}") from None
        self.fps = None

    def read(self) -> np.ndarray | None:
        try:
            return self._camera.capture_array("main")
        except Exception:  # the camera went away: the stream's reconnect policy decides what next
            return None

    def close(self) -> None:
        try:
            self._camera.stop()
            self._camera.close()
        except Exception:
            pass


def picamera2_problem() -> str | None:
    """Why picamera2 cannot be used here, or None when it imports."""
    if not _importable("picamera2"):
        return ("picamera2 is not installed here: on Raspberry Pi OS, sudo apt install python3-picamera2 "
                "(and make the venv with --system-site-packages)")
    try:
        import picamera2  # noqa: F401
    except Exception as exc:  # ImportError, or ValueError from a C extension built for another numpy
        text = first_line(exc)
        if "size changed" in text:  # Raspberry Pi OS builds simplejpeg against its numpy 1; a venv may hold numpy 2
            return (f"picamera2 does not import ({text}): its apt build needs numpy 1 and this environment has "
                    f"numpy {np.__version__}; pip install --force-reinstall simplejpeg (a build for this numpy, "
                    "picamera2 issue #1211), or use --capture opencv")
        return f"picamera2 does not import: {text}"
    return None


# ----------------------------------------------------------------------------- doctor
def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def capture_backends() -> dict[str, str | None]:
    """The version of each capture backend installed here (None when absent), found without importing it."""
    import importlib.metadata  # here, not at import: a predict of files never asks (cold start)

    found: dict[str, str | None] = {}
    for name, module, distributions in (("picamera2", "picamera2", ("picamera2",)),
                                        ("opencv", "cv2", _OPENCV_DISTRIBUTIONS)):
        if not _importable(module):
            found[name] = None
            continue
        found[name] = "installed"  # e.g. Debian's python3-opencv carries no pip metadata
        for distribution in distributions:
            try:
                found[name] = importlib.metadata.version(distribution)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return found
