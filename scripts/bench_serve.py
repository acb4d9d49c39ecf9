#!/usr/bin/env python3
"""`edgecls serve` against in-process `classify_many` on the same images, and the server under overload.

    python scripts/bench_serve.py [--rounds 5] [--seconds 3] [--open-rounds 3] [--rss-requests 100000]
        [--json FILE] [--smoke]

For the reference int8 model (models/digits-seed) and the Coral MobileNet v1 0.5_160 (../shared/data,
with its labels and --resize nearest; left out, said so, without it):

S1  images/s and p50/p99 latency of the server at concurrency 1, 4 and 16, and of in-process
    classify_many on the same images, paired round by round (the order rotated every round). The
    server (`edgecls serve --interpreters 1 --threads 1 --queue 16`: no 503 up to 16 at once) and
    the in-process baseline (a fresh process, Classifier with 1 thread) run pinned to the same one
    core; the load generator runs pinned to another. Goal: the Coral model served at concurrency 4
    (its "capacity") >= 0.8x the in-process images/s.
S2  the per-request overhead of the server on the tiny model: the client's mean latency at
    concurrency 1 minus in-process classify() of the same encoded image (decode + invoke), in µs
    (recorded in the tiny model's S1 figure, `overhead_us`, with the load generator's own ceiling).
S3  the server's RSS (VmRSS) growth over --rss-requests requests (default 100,000) at concurrency 4,
    after a warm-up of 2,000: goal <= 5 MiB.
S4  an open-loop load at 2x capacity on a server with the default queue (1 per interpreter):
    requests sent on schedule whatever the answers (latency counted from the scheduled time, so a
    slow server cannot slow the load down), the accepted requests' p99 against the unloaded p99
    (concurrency 1, the same server, just before), --open-rounds times (default 3; the median and
    spread of the per-round ratios: a 10 s run swings with the machine): goal <= 3x; the rest
    answered 503; none lost (every request sent gets an answer: 200 or 503, no connection error or
    timeout).

The load generator is a client of our own (asyncio, raw HTTP/1.1 keep-alive connections, each
request pre-encoded), not Debian's wrk: wrk is closed-loop only (the open-loop S4 needs requests
sent on a schedule, which wrk cannot), and it counts non-2xx answers as one number, where S4 must
tell 503 from a lost request and check that every 200 names the model. It is callback-driven
(asyncio.Protocol, no coroutine a request) so that it stays well ahead of the server. In the open
loop its event loop spins on its own core (a callback that queues itself sends each request within one
pass of its due time; asyncio's timers wake in whole milliseconds, and a thread waking the loop fought
it for the GIL: either lag counted as the server's), with Python's garbage collector off for the run,
and the record says how late the client sent them (sent_late_p50_ms, sent_late_p99_ms). Its own
ceiling (requests/s at concurrency 4 against a canned answer on the server's core) is measured and
printed, so a result limited by the client shows as such.

Prints a Markdown table and writes the JSON record (scripts/benchkit.py's): each figure carries the
load average at its start and end and is marked not valid when it started on a busy machine
(benchkit.QUIET_PER_CORE); scripts/perf-report waits for a quiet machine first.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import ROOT, SHARED_DATA, Record, common_arguments, difference, median, paired, ratio  # noqa: E402

CONCURRENCY = (1, 4, 16)
CLOSED_LOOP_QUEUE = 16  # the S1 server: the largest concurrency waits, never gets a 503
WARMUP_REQUESTS = 2000
OPEN_LOOP_FACTOR = 2.0
S4_WARMUP_REQUESTS = 300  # before each unloaded run of S4
MAX_OPEN_CONNECTIONS = 48  # below serve's default --max-connections (64)
PRETRAINED = SHARED_DATA / "pretrained"


def model_table() -> dict[str, dict[str, Any]]:
    """name -> model path, serve/Classifier options, images (the same files for both sides)."""
    digits = ROOT / "models" / "digits-seed"
    table = {"reference-int8": {"model": digits / "model_int8.tflite", "options": {},
                                "images": sorted((digits / "test-images").glob("*/*.png"))}}
    coral = PRETRAINED / "mobilenet_v1_0.5_160_quant.tflite"
    if coral.is_file():
        photos = sorted((SHARED_DATA / "catsdogs").glob("*/*.jpg"))[:31] + [PRETRAINED / "cat.bmp"]
        table["coral-0.5_160"] = {"model": coral, "images": photos,
                                  "options": {"labels": str(PRETRAINED / "imagenet_labels.txt"), "resize": "nearest"}}
    return table


def content_type(path: Path) -> str:
    return {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".bmp": "image/bmp"}.get(
        path.suffix.lower(), "application/octet-stream")


# ============================================================================= the load generator (its own process)
_LENGTH = re.compile(rb"content-length: *(\d+)")
ANSWER_TIMEOUT_S = 60.0  # after the run, how long answers still in flight are waited for (then: lost)


class Wire(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection driven by callbacks (no coroutine a request: the client must
    be much faster than the server it measures): `ask` writes a pre-encoded request, and the answer's
    status and body go to `answered(wire, status, body, keep)` as soon as its last byte arrives."""

    def __init__(self, answered: Callable[..., None], gone: Callable[[Wire], None]):
        self.answered, self.gone = answered, gone
        self.buffer = bytearray()
        self.need: int | None = None  # the whole answer's length, once its head is read
        self.body_at = 0
        self.status, self.keep = 0, True
        self.begun = 0.0  # when the request in flight was due (its latency counts from there)
        self.busy = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def ask(self, payload: bytes, begun: float) -> None:
        self.begun, self.busy = begun, True
        self.transport.write(payload)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.need is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buffer[:end]).lower()
                self.status, self.body_at = int(head[9:12]), end + 4
                self.need = self.body_at + int(_LENGTH.search(head).group(1))
                self.keep = b"connection: close" not in head
            if len(self.buffer) < self.need:
                return
            body = bytes(self.buffer[self.body_at:self.need])
            del self.buffer[:self.need]
            asked, self.need, self.busy = self.busy, None, False
            self.answered(self, self.status, body, self.keep, asked)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone(self)


def payloads(host: str, paths: list[Path], route: str = "/v1/classify") -> list[bytes]:
    if route != "/v1/classify":
        return [f"GET {route} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()]
    return [(f"POST {route} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type(p)}\r\n"
             f"Content-Length: {p.stat().st_size}\r\n\r\n").encode() + p.read_bytes() for p in paths]


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []  # of 200s
        self.refused = 0  # 503
        self.unasked = 0  # answers to no request: serve's 503 to a connection over --max-connections
        self.other: dict[int, int] = {}
        self.lost = 0  # connection errors, timeouts: no answer
        self.shas: set[str] = set()
        self.late: list[float] = []  # seconds each request went out after it was due (open loop: the client's lag)

    def add(self, status: int, body: bytes, seconds: float) -> None:
        if status == 200:
            self.latencies.append(seconds)
            found = re.search(rb'"sha256":"([0-9a-f]{64})"', body)
            if found:
                self.shas.add(found.group(1).decode())
        elif status == 503:
            self.refused += 1
        else:
            self.other[status] = self.other.get(status, 0) + 1

    def summary(self, seconds: float) -> dict[str, Any]:
        ok = self.latencies
        return {"ok": len(ok), "refused_503": self.refused, "other": self.other, "lost": self.lost,
                "connections_refused": self.unasked,
                "seconds": round(seconds, 3), "images_per_s": round(len(ok) / seconds, 2) if seconds else 0,
                "p50_ms": _quantile_ms(ok, 0.5), "p99_ms": _quantile_ms(ok, 0.99),
                "sent_late_p50_ms": _quantile_ms(self.late, 0.5), "sent_late_p99_ms": _quantile_ms(self.late, 0.99),
                "mean_us": round(statistics.fmean(ok) * 1e6, 1) if ok else None, "sha256": sorted(self.shas)}


def _quantile_ms(seconds: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of `seconds`, in ms; None for none."""
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else None


class Load:
    """The requests of one run over a set of Wires: what is sent, what came back, what is still due."""

    def __init__(self, url: str, bodies: list[bytes], replace_closed: bool):
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        self.replace_closed = replace_closed  # a closed connection is reopened (closed loop: the concurrency stays)
        self.host, self.port, self.bodies = host, int(port), bodies
        self.loop = asyncio.get_running_loop()
        self.tally, self.sent, self.in_flight = Tally(), 0, 0
        self.wires: set[Wire] = set()
        self.quiet = self.loop.create_future()  # set when nothing is in flight and nothing more will be sent
        self.more = True
        self.next_for: Callable[[Wire], None] = lambda wire: None  # what a wire does once answered

    async def open(self) -> Wire:
        _, wire = await self.loop.create_connection(lambda: Wire(self.answered, self.gone), self.host, self.port)
        self.wires.add(wire)
        return wire

    def send(self, wire: Wire, begun: float) -> None:
        self.tally.late.append(self.loop.time() - begun)  # how long after its due time a request went out
        self.sent += 1
        self.in_flight += 1
        wire.ask(self.bodies[self.sent % len(self.bodies)], begun)

    def answered(self, wire: Wire, status: int, body: bytes, keep: bool, asked: bool) -> None:
        if not asked:  # the server turned the connection away before a request was sent on it
            self.tally.unasked += 1
        else:
            self.in_flight -= 1
            self.tally.add(status, body, self.loop.time() - wire.begun)
        if not keep:
            wire.transport.close()
            return
        self.next_for(wire)
        self._check_quiet()

    def gone(self, wire: Wire) -> None:
        self.wires.discard(wire)
        if wire.busy:  # closed with a request in flight: it never gets an answer
            self.tally.lost += 1
            self.in_flight -= 1
        if self.more and self.replace_closed:
            self.loop.create_task(self._replace())
        self._check_quiet()

    async def _replace(self) -> None:
        self.next_for(await self.open())

    def _check_quiet(self) -> None:
        if not self.more and not self.in_flight and not self.quiet.done():
            self.quiet.set_result(None)

    async def finish(self) -> float:
        """Stop sending, wait for the answers in flight (those that never come are lost); the end time."""
        self.more = False
        self._check_quiet()
        try:
            await asyncio.wait_for(asyncio.shield(self.quiet), ANSWER_TIMEOUT_S)
        except asyncio.TimeoutError:
            self.tally.lost += self.in_flight
        end = self.loop.time()
        for wire in list(self.wires):
            wire.transport.close()
        return end


async def closed_loop(url: str, paths: list[Path], concurrency: int, seconds: float, requests: int | None,
                      route: str) -> dict[str, Any]:
    """`concurrency` connections, each sending its next request as soon as the last is answered, for
    `seconds` (or `requests` requests in all)."""
    load = Load(url, payloads(url.split("://", 1)[1].rsplit(":", 1)[0], paths, route), replace_closed=True)
    started = load.loop.time()
    deadline = started + seconds

    def next_for(wire: Wire) -> None:
        if (load.sent < requests) if requests else (load.loop.time() < deadline):
            load.send(wire, load.loop.time())
        elif load.more:
            load.more = False
            load.loop.call_soon(load._check_quiet)

    load.next_for = next_for
    for wire in await asyncio.gather(*(load.open() for _ in range(concurrency))):
        next_for(wire)
    while load.more:
        await asyncio.sleep(0.05)
    end = await load.finish()
    return load.tally.summary(end - started)


async def open_loop(url: str, paths: list[Path], rate: float, seconds: float) -> dict[str, Any]:
    """Requests due at `rate` a second, sent on schedule on an idle connection, else a new one (up to
    MAX_OPEN_CONNECTIONS), else as soon as one is free; each latency counted from when it was due."""
    load = Load(url, payloads(url.split("://", 1)[1].rsplit(":", 1)[0], paths), replace_closed=False)
    idle: list[Wire] = []
    due: deque[float] = deque()  # requests due and not sent yet (no connection free)
    opening = [0]

    def next_for(wire: Wire) -> None:
        if due:
            load.send(wire, due.popleft())
        else:
            idle.append(wire)

    async def open_one() -> None:
        opening[0] += 1
        try:
            next_for(await load.open())
        finally:
            opening[0] -= 1

    def fire(scheduled: float) -> None:
        while idle and idle[-1].transport.is_closing():  # closed by the server while it waited
            idle.pop()
        if idle:
            load.send(idle.pop(), scheduled)
        else:
            due.append(scheduled)
            if len(load.wires) + opening[0] < MAX_OPEN_CONNECTIONS:
                load.loop.create_task(open_one())

    load.next_for = next_for
    count = max(1, int(rate * seconds))
    started = load.loop.time() + 0.05
    fired = load.loop.create_future()

    sent = [0]

    def metronome() -> None:
        """Each request sent at its due time, by the loop itself: this callback queues itself again until
        the last request is out, so the loop polls its sockets without waiting (a core of its own spins)
        and sends each request within one pass of its due time. The loop's own timers wake in whole
        milliseconds (epoll): at 1,400 requests/s they sent in clumps, up to a millisecond late, and that
        lag was counted as the server's latency. A thread that slept to each due time and woke the loop
        (call_soon_threadsafe) fought the loop for the GIL: answers were read late, and at 9,000
        requests/s against a canned answer the client alone added 0.2-0.5 ms to the p99."""
        now = time.monotonic()  # the loop's clock (asyncio: time.monotonic)
        try:
            while sent[0] < count and started + sent[0] / rate <= now:
                fire(started + sent[0] / rate)
                sent[0] += 1
        except Exception as exc:  # the run ends with it, not waiting for what is never sent
            fired.set_exception(exc)
            return
        if sent[0] < count:
            load.loop.call_soon(metronome)
        else:
            fired.set_result(None)

    gc.disable()  # a collection's pause in the client would count as the server's latency
    try:
        load.loop.call_soon(metronome)
        await fired
        sending = load.loop.time() - started  # longer than planned when the client lags
        while due:  # the requests that found no free connection go out as connections free up
            if not load.wires and not opening[0]:  # every connection was closed: open one for the rest
                await open_one()
            else:
                await asyncio.sleep(0.01)
        end = await load.finish()
    finally:
        gc.enable()
    summary = load.tally.summary(end - started)
    summary.update(sent=count, rate_asked=round(rate, 1), rate_sent=round(count / max(sending, 1e-9), 1))
    return summary


class Echo(asyncio.Protocol):
    """A canned `200 {}` for every request head received: the fastest server there is, to measure the
    load generator's own ceiling (GET requests only: a head is all there is)."""

    ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport, self.pending = transport, b""

    def data_received(self, data: bytes) -> None:
        heads = (self.pending + data).split(b"\r\n\r\n")
        self.pending = heads.pop()
        self.transport.write(self.ANSWER * len(heads))  # type: ignore[attr-defined]


async def echo_server() -> None:
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


# ============================================================================= the in-process baseline (a process)
def in_process(model: Path, options: dict[str, Any], paths: list[Path], seconds: float) -> dict[str, Any]:
    """classify_many over the images (repeated for `seconds`), and classify() of each encoded image."""
    from edgecls.runtime.classify import Classifier

    clf = Classifier(model, num_threads=1, **options)
    started = time.perf_counter()
    done = 0
    while time.perf_counter() - started < seconds or done == 0:
        for prediction in clf.classify_many(paths):
            assert prediction.ok, prediction
            done += 1
    many_s = time.perf_counter() - started
    encoded = [p.read_bytes() for p in paths]
    singles = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds / 2 or not singles:
        for data in encoded:
            begun = time.perf_counter()
            clf.classify(data)
            singles.append(time.perf_counter() - begun)
    return {"images_per_s": round(done / many_s, 2), "images": done,
            "classify_mean_us": round(statistics.fmean(singles) * 1e6, 1)}


# ============================================================================= orchestration
def pinned(core: int) -> Callable[[], None]:
    return lambda: os.sched_setaffinity(0, {core})


def run_worker(core: int, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT,
                          preexec_fn=pinned(core), env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode != 0:
        raise SystemExit(f"worker {' '.join(args[:2])} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class Server:
    """`edgecls serve` pinned to one core, on a free port."""

    def __init__(self, model: Path, options: dict[str, Any], core: int, *extra: str):
        flags = [x for k, v in options.items() for x in (f"--{k}", str(v))]
        command = [sys.executable, "-m", "edgecls", "serve", str(model), "--port", "0", "--interpreters", "1",
                   "--threads", "1", *flags, *extra]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        cwd=ROOT, preexec_fn=pinned(core))
        self.url, self.parser = "", "?"
        for line in self.process.stderr:  # "edgecls: listening on http://127.0.0.1:PORT (...", then "ready"
            found = re.search(r"listening on (http://\S+) ", line)
            self.url = found.group(1) if found else self.url
            parser = re.search(r"HTTP parser (\w+)", line)  # httptools, or h11 where it is not installed
            self.parser = parser.group(1) if parser else self.parser
            if "ready:" in line or "error:" in line:
                break
        if not self.url or self.process.poll() is not None:
            raise SystemExit(f"serve did not start: {line}")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise SystemExit("no VmRSS")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        self.process.stderr.close()
        return code


def images_file(folder: Path, name: str, paths: list[Path]) -> str:
    path = folder / f"{name}-images.json"
    path.write_text(json.dumps([str(p) for p in paths]))
    return str(path)


class Bench:
    """One model's runs: the workers pinned to their cores, the image list they share."""

    def __init__(self, spec: dict[str, Any], args: argparse.Namespace, cores: tuple[int, int], images: str):
        self.spec, self.args, self.images = spec, args, images
        self.server_core, self.client_core = cores

    def client(self, url: str, *args: str) -> dict[str, Any]:
        return run_worker(self.client_core, "--client", url, "--images", self.images, *args)

    def server(self, *extra: str) -> Server:
        return Server(self.spec["model"], self.spec["options"], self.server_core, *extra)

    def closed_loop(self, server: Server, tiny: bool) -> dict[str, Any]:
        """S1: in-process classify_many and the server at each concurrency, paired round by round; for the
        tiny model also S2, the per-request overhead, and the load generator's own ceiling."""
        args = self.args
        self.client(server.url, "--requests", "200", "--concurrency", "4")  # warm-up
        runs: dict[str, list[dict[str, Any]]] = {"in-process": []} | {f"c{c}": [] for c in CONCURRENCY}

        def contender(key: str) -> Callable[[], float]:
            def measure() -> float:
                if key == "in-process":
                    result = run_worker(self.server_core, "--in-process", str(self.spec["model"]), "--options",
                                        json.dumps(self.spec["options"]), "--images", self.images, "--seconds",
                                        str(args.seconds))
                else:
                    result = self.client(server.url, "--concurrency", key[1:], "--seconds", str(args.seconds))
                runs[key].append(result)
                return result["images_per_s"]
            return measure

        values = paired({key: contender(key) for key in runs}, args.rounds)
        figure: dict[str, Any] = {"in_process_images_per_s": median(values["in-process"], 2),
                                  "classify_mean_us": median([r["classify_mean_us"] for r in runs["in-process"]], 1)}
        for c in CONCURRENCY:
            key = f"c{c}"
            figure[key] = {"images_per_s": median(values[key], 2),
                           "p50_ms": median([r["p50_ms"] for r in runs[key]], 3),
                           "p99_ms": median([r["p99_ms"] for r in runs[key]], 3),
                           "refused_503": sum(r["refused_503"] for r in runs[key]),
                           "lost": sum(r["lost"] for r in runs[key])}
            figure[f"{key}_vs_in_process"] = ratio(values[key], values["in-process"])
        # S2: what a request costs beyond decoding and classifying the same bytes in-process
        figure["overhead_us"] = difference([r["mean_us"] for r in runs["c1"]],
                                           [p["classify_mean_us"] for p in runs["in-process"]], 1)
        if tiny:  # the load generator's own ceiling: against a canned answer, and against serve's cheapest route
            figure["client_ceiling_per_s"] = self.client_ceiling()
            figure["healthz_per_s"] = self.client(server.url, "--route", "/healthz", "--concurrency", "4",
                                                  "--seconds", str(args.seconds))["images_per_s"]
        return figure

    def client_ceiling(self) -> float:
        echo = subprocess.Popen([sys.executable, __file__, "--echo"], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                                preexec_fn=pinned(self.server_core))
        try:
            port = int(echo.stdout.readline())
            return self.client(f"http://127.0.0.1:{port}", "--route", "/healthz", "--concurrency", "4",
                               "--seconds", str(self.args.seconds))["images_per_s"]
        finally:
            echo.kill()
            echo.wait()
            echo.stdout.close()

    def rss(self, server: Server) -> dict[str, Any]:
        """S3: the server's RSS before and after --rss-requests requests at concurrency 4 (after a warm-up)."""
        self.client(server.url, "--requests", str(WARMUP_REQUESTS), "--concurrency", "4")
        before = server.rss_mib()
        long_run = self.client(server.url, "--requests", str(self.args.rss_requests), "--concurrency", "4")
        after = server.rss_mib()
        return {"requests": self.args.rss_requests, "start_mib": round(before, 2), "end_mib": round(after, 2),
                "growth_mib": round(after - before, 2), "ok": long_run["ok"], "lost": long_run["lost"]}

    def open_loop(self, capacity: float) -> dict[str, Any]:
        """S4: a server with the default queue; each round, unloaded (concurrency 1), then an open loop at
        2x capacity; the ratio of their p99s round by round (one 10 s run swings with the machine)."""
        server = self.server()
        rounds: list[dict[str, Any]] = []
        try:
            for _ in range(self.args.open_rounds):
                # warm (a new server's first requests, or the one after an overload's backlog, are slow): else
                # the unloaded p99 is the warm-up's and flatters the ratio (1.28 ms against 0.4 warm, tiny model)
                self.client(server.url, "--requests", str(S4_WARMUP_REQUESTS), "--concurrency", "1")
                unloaded = self.client(server.url, "--concurrency", "1", "--seconds", str(self.args.seconds))
                loaded = run_worker(self.client_core, "--open", server.url, "--images", self.images, "--rate",
                                    str(OPEN_LOOP_FACTOR * capacity), "--seconds", str(self.args.open_seconds))
                rounds.append({**loaded, "unloaded_p99_ms": unloaded["p99_ms"]})
        finally:
            code = server.stop()
        middle = sorted(rounds, key=lambda r: r["p99_ms"] / r["unloaded_p99_ms"])[len(rounds) // 2]
        return {**middle, "capacity_images_per_s": capacity,
                "p99_ratio": ratio([r["p99_ms"] for r in rounds], [r["unloaded_p99_ms"] for r in rounds]),
                "ok": sum(r["ok"] for r in rounds), "refused_503": sum(r["refused_503"] for r in rounds),
                "lost": sum(r["lost"] for r in rounds), "sent": sum(r["sent"] for r in rounds),
                "other": dict(sum((Counter(r["other"]) for r in rounds), Counter())), "exit_code": code}


def measure_model(record: Record, name: str, spec: dict[str, Any], args: argparse.Namespace,
                  cores: tuple[int, int], folder: Path) -> None:
    """S1 (with S2 for the tiny model), S3 (the tiny model), S4 of one model, each a figure of `record`
    (with the load at its start: benchkit.Record.figure)."""
    bench = Bench(spec, args, cores, images_file(folder, name, spec["images"]))
    tiny = name == "reference-int8"
    server = bench.server("--queue", str(CLOSED_LOOP_QUEUE))
    record.data["http_parser"] = server.parser
    try:
        s1 = record.figure(f"S1 {name}", lambda: bench.closed_loop(server, tiny))
        if tiny:
            record.figure("S3 rss", lambda: bench.rss(server))
    finally:
        s1_exit = server.stop()
    record.data["figures"][f"S1 {name}"]["exit_code"] = s1_exit
    record.figure(f"S4 open loop {name}", lambda: bench.open_loop(s1["c4"]["images_per_s"]))


def _validity(figure: dict[str, Any]) -> str:
    return "" if figure.get("valid") else f" (NOT VALID: load {figure.get('load_start', ['?'])[0]} at its start)"


def markdown(record: dict[str, Any]) -> str:
    lines = ["| model | run | images/s | p50 ms | p99 ms | vs in-process (median of rounds) | 503 | lost |",
             "|---|---|---|---|---|---|---|---|"]
    figures = record["figures"]
    for name, f in figures.items():
        if not name.startswith("S1 "):
            continue
        model = name[3:] + _validity(f)
        lines.append(f"| {model} | in-process classify_many | {f['in_process_images_per_s']:.0f} | | | | | |")
        for c in CONCURRENCY:
            run, r = f[f"c{c}"], f[f"c{c}_vs_in_process"]
            lines.append(f"| {model} | serve, concurrency {c} | {run['images_per_s']:.0f} | {run['p50_ms']:.2f} | "
                         f"{run['p99_ms']:.2f} | {r['median']:.3f} ({r['min']:.2f}–{r['max']:.2f}, {r['rounds']}) | "
                         f"{run['refused_503']} | {run['lost']} |")
    lines += ["", f"- serve's HTTP parser: {record.get('http_parser', '?')}"]
    tiny = figures.get("S1 reference-int8")
    if tiny:
        overhead = tiny["overhead_us"]
        if not isinstance(overhead, dict):  # a record made before S2 was paired per round
            overhead = {"median": overhead, "min": overhead, "max": overhead, "rounds": 1}
        lines += [f"- S2 per-request overhead, tiny model: **{overhead['median']:.0f} µs** ({overhead['min']:.0f}–"
                  f"{overhead['max']:.0f}, {overhead['rounds']} rounds; the client's mean at concurrency 1 minus "
                  f"in-process classify() of the same bytes, {tiny['classify_mean_us']:.0f} µs); "
                  f"the load generator's own ceiling (concurrency 4, a canned answer): "
                  f"{tiny['client_ceiling_per_s']:.0f} requests/s; serve's GET /healthz: {tiny['healthz_per_s']:.0f} "
                  f"requests/s{_validity(tiny)}"]
    if "S3 rss" in figures:
        s3 = figures["S3 rss"]
        lines.append(f"- S3 RSS over {s3['requests']:,} requests: {s3['start_mib']:.1f} → {s3['end_mib']:.1f} MiB, "
                     f"**{s3['growth_mib']:+.2f} MiB** (goal <= 5); {s3['ok']:,} answered, {s3['lost']} lost"
                     f"{_validity(s3)}")
    for name, f in figures.items():
        if name.startswith("S4 "):
            r = f["p99_ratio"]
            rounds = f"{r['rounds']} round{'s' if r['rounds'] != 1 else ''}"
            lines.append(
                f"- {name}: {rounds} of {f['sent'] // r['rounds']:,} requests at {f['rate_asked']:.0f}/s "
                f"(2x the capacity {f['capacity_images_per_s']:.0f}/s); accepted p99 / unloaded p99 round by round "
                f"{', '.join(f'{x:.2f}' for x in r['per_round'])}: **{r['median']:.2f}x** (goal <= 3; the middle "
                f"round: p99 {f['p99_ms'] or 0:.2f} ms vs unloaded {f['unloaded_p99_ms']:.2f} ms); {f['ok']:,} "
                f"accepted, {f['refused_503']:,} answered 503, {f['lost']} lost, other {f['other'] or 'none'}; the "
                f"client sent its requests {f.get('sent_late_p99_ms') or 0:.2f} ms after they were due at p99"
                f"{_validity(f)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="each paired run [%(default)s]")
    parser.add_argument("--open-seconds", type=float, default=10.0, help="each open-loop run [%(default)s]")
    parser.add_argument("--open-rounds", type=int, default=3, help="S4's rounds [%(default)s]")
    parser.add_argument("--rss-requests", type=int, default=100_000)
    common_arguments(parser, "runs/perf/serve.json")
    # the workers (this script in a pinned process)
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--open", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--in-process", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--images", help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--route", default="/v1/classify", help=argparse.SUPPRESS)
    args = parser.parse_args()
    paths = [Path(p) for p in json.loads(Path(args.images).read_text())] if args.images else []
    if args.client:
        print(json.dumps(asyncio.run(closed_loop(args.client, paths, args.concurrency, args.seconds, args.requests,
                                                 args.route))))
        return
    if args.open:
        print(json.dumps(asyncio.run(open_loop(args.open, paths, args.rate, args.seconds))))
        return
    if args.echo:
        asyncio.run(echo_server())
        return
    if args.in_process:
        print(json.dumps(in_process(Path(args.in_process), json.loads(args.options), paths, args.seconds)))
        return

    if args.smoke:
        args.rounds, args.seconds, args.open_seconds, args.open_rounds, args.rss_requests = 1, 0.3, 0.5, 1, 1000
    cores = sorted(os.sched_getaffinity(0))
    pinning = (cores[0], cores[1]) if len(cores) > 1 else (cores[0], cores[0])
    record = Record(__file__, args)
    record.data["cores"] = {"server_and_in_process": pinning[0], "load_generator": pinning[1],
                            "note": "" if len(cores) > 1 else "one core only: server and client share it"}
    record.data["load_generator"] = "scripts/bench_serve.py's own asyncio HTTP/1.1 client (see the docstring)"
    table = model_table()
    if "coral-0.5_160" not in table:
        record.data["left_out"] = f"coral-0.5_160: {PRETRAINED} is not here"
    for name, spec in table.items():
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-serve-") as work:  # the workers' image lists
            measure_model(record, name, spec, args, pinning, Path(work))
    data = record.write(args.json)
    print(markdown(data))


if __name__ == "__main__":
    main()
