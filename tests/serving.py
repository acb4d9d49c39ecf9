"""A real `edgecls serve` in a subprocess on 127.0.0.1, as a user starts it, for the serve tests."""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0
_LISTENING = re.compile(r"listening on (https?://\S+) ")


class ServeProcess:
    """`python -m edgecls serve MODEL --port 0 ARGS...`; its URL is read from its log. `launch` replaces
    `-m edgecls` (e.g. `-c CODE` that changes something first, then runs edgecls' main)."""

    def __init__(self, model: Path, *args: str, log: Path, token: str | None = None, env: dict | None = None,
                 wait_ready: bool = True, launch: tuple[str, ...] = ("-m", "edgecls")):
        self.token = token
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 (open while the process runs)
        command = [sys.executable, *launch, "serve", str(model), "--port", "0", *map(str, args)]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=self._log, cwd=ROOT, env={**os.environ, **(env or {})})
        self.url = self._wait_url()
        if wait_ready:
            self.wait_ready()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30, **kwargs)

    def _wait_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            found = _LISTENING.search(self.log)
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}: {self.log}")
            time.sleep(0.05)
        raise RuntimeError(f"serve did not start: {self.log}")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with self.client(verify=False) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"serve exited with {self.process.returncode}: {self.log}")
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"serve never became ready: {self.log}")

    def send(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send `sig` and wait: the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code


def wait_for(condition, timeout: float = 20.0, what: str = "the condition"):
    """The first true value of `condition()`, polled every 0.1 s; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def metric(server: ServeProcess, name: str, **labels: str) -> float | None:
    """The value of one sample of the server's /metrics (parsed by prometheus_client's own parser)."""
    text = httpx.get(f"{server.url}/metrics", headers=server.headers).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def write_token(folder: Path, token: str) -> Path:
    """A token file as a careful user keeps one: FOLDER/token, readable by its owner only."""
    path = folder / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def slow_png() -> bytes:
    """A 7000 x 7000 RGB PNG of one gradient row repeated: 0.7 MB to send, ~0.7 s to decode (it keeps
    an interpreter busy). Written by hand: each row after the first is PNG's Paeth filter of zeros."""
    side, channels = 7000, 3
    first = b"\x00" + (np.arange(side * channels) % 256).astype(np.uint8).tobytes()
    rows = first + (b"\x04" + bytes(side * channels)) * (side - 1)
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows, 1)) + \
        png_chunk(b"IEND", b"")
