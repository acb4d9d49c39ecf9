"""Makers and runners the fault tests share: images (valid, odd, hostile), class folders, edgecls in a
fresh process with a hang guard, and the one-line-error check."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "digits-seed" / "model_int8.tflite"  # dynamic batch: takes 32 images an invoke
HANG = float(os.environ.get("EDGECLS_TEST_HANG", 60))  # seconds: every subprocess here finishes in a few


def png(seed: int = 0, size: int = 20) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def ztxt_bomb() -> bytes:
    """A valid small PNG with a zTXt chunk inflating to 80 MB: Pillow's Image.open raises ValueError."""
    good = png()
    return good[:33] + chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * (80 << 20), 9)) + good[33:]


@contextlib.contextmanager
def within(seconds: int = 10):
    """Fail (TimeoutError) instead of hanging when an in-process call blocks, e.g. opening a FIFO."""
    def expire(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def unprivileged() -> list[str]:
    """A command prefix under which mode-000 files are unreadable, or skip."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") and subprocess.run(
            ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", "true"]).returncode == 0:
        return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    pytest.skip("running as root without setpriv: mode-000 files stay readable, the case cannot be made")


def edgecls(*args, cwd: Path | None = None, prefix: list[str] = (), timeout: float = HANG,
            stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """`python -m edgecls ARGS` in a fresh process (this checkout's code), with a hang guard."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGECLS_CACHE": str(Path(cwd or ROOT) / ".cache-test")}
    return subprocess.run([*prefix, sys.executable, "-m", "edgecls", *map(str, args)], capture_output=True,
                          text=True, errors="replace", cwd=cwd or ROOT, env=env, timeout=timeout, stdin=stdin)


def python(code: str, cwd: Path, prefix: list[str] = (), timeout: float = HANG) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


def rows(out: str) -> dict[str, dict]:
    return {Path(r["file"]).name: r for r in map(json.loads, out.splitlines())}


def one_line_error(done: subprocess.CompletedProcess, code: int, fragment: str) -> None:
    assert done.returncode == code, (done.returncode, done.stderr[-500:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecls: error: ") and fragment in lines[0], done.stderr[-500:]
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


def class_folder(root: Path, classes=("a", "b"), per_class: int = 4, seed: int = 0, size: int = 20) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / name / f"{i}.png").write_bytes(png(seed * 1000 + c * 100 + i, size))
    return root


def photo(size=(48, 32), mode="RGB", seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)


def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def photos(root: Path, classes=("a", "b"), n=6) -> Path:
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / c / f"{i}.png").write_bytes(encoded(photo(seed=ord(c[0]) * 100 + i), "PNG"))
    return root


# a valid PostScript file: an image format Pillow could hand to Ghostscript, which edgecls never does
POSTSCRIPT = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke\nshowpage\n"
