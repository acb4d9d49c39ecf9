#!/usr/bin/env python3
"""`edgecls serve` against in-process `classify_many` on the same images, and the server under overload.

    python scripts/bench_serve.py [--rounds 5] [--seconds 3] [--rss-requests 100000] [--json FILE] [--smoke]

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
S4  an open-loop load at 2x capacity on a server with the default queue (2 per interpreter):
    requests sent on schedule whatever the answers (latency counted from the scheduled time, so a
    slow server cannot slow the load down), the accepted requests' p99 against the unloaded p99
    (concurrency 1, the same server, just before): goal <= 3x; the rest answered 503; none lost
    (every request sent gets an answer: 200 or 503, no connection error or timeout).

The load generator is a client of our own (asyncio, raw HTTP/1.1 keep-alive connections, each
request pre-encoded), not Debian's wrk: wrk is closed-loop only (the open-loop S4 needs requests
sent on a schedule, which wrk cannot), and it counts non-2xx answers as one number, where S4 must
tell 503 from a lost request and check that every 200 names the model. Its own ceiling (requests/s
against GET /healthz at concurrency 4, on the same core) is measured and printed, so a result
limited by the client shows as such.

Prints a Markdown table and writes the JSON record (scripts/benchkit.py's): each figure carries the
load average at its start and end and is marked not valid when it started on a busy machine
(benchkit.QUIET_PER_CORE); scripts/perf-report waits for a quiet machine first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import ROOT, SHARED_DATA, Record, common_arguments, median, paired, ratio  # noqa: E402

CONCURRENCY = (1, 4, 16)
CLOSED_LOOP_QUEUE = 16  # the S1 server: the largest concurrency waits, never gets a 503
WARMUP_REQUESTS = 2000
OPEN_LOOP_FACTOR = 2.0
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
class Connection:
    """One HTTP/1.1 keep-alive connection: send a pre-encoded request, read the status and body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def ask(self, payload: bytes) -> tuple[int, bytes, bool]:
        """(status, body, whether the server keeps the connection)."""
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        length = int(re.search(rb"content-length: *(\d+)", lower).group(1))
        body = await self.reader.readexactly(length)
        return status, body, b"connection: close" not in lower

    def close(self) -> None:
        self.writer.close()


def payloads(host: str, paths: list[Path], route: str = "/v1/classify") -> list[bytes]:
    if route != "/v1/classify":
        return [f"GET {route} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()]
    return [(f"POST {route} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type(p)}\r\n"
             f"Content-Length: {p.stat().st_size}\r\n\r\n").encode() + p.read_bytes() for p in paths]


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []  # of 200s
        self.refused = 0  # 503
        self.other: dict[int, int] = {}
        self.lost = 0  # connection errors, timeouts: no answer
        self.shas: set[str] = set()

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
        ok = sorted(self.latencies)
        pick = (lambda q: ok[min(len(ok) - 1, int(q * len(ok)))] * 1000) if ok else (lambda q: None)
        return {"ok": len(ok), "refused_503": self.refused, "other": self.other, "lost": self.lost,
                "seconds": round(seconds, 3), "images_per_s": round(len(ok) / seconds, 2) if seconds else 0,
                "p50_ms": pick(0.5), "p99_ms": pick(0.99),
                "mean_us": round(statistics.fmean(ok) * 1e6, 1) if ok else None, "sha256": sorted(self.shas)}


async def closed_loop(url: str, paths: list[Path], concurrency: int, seconds: float, requests: int | None,
                      route: str) -> dict[str, Any]:
    """`concurrency` connections, each sending its next request when the last is answered."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    bodies = payloads(host, paths, route)
    tally, sent = Tally(), [0]
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + seconds

    async def worker(offset: int) -> None:
        connection = await Connection.open(host, int(port))
        i = offset
        while (sent[0] < requests) if requests else (loop.time() < deadline):
            sent[0] += 1
            begun = loop.time()
            try:
                status, body, keep = await asyncio.wait_for(connection.ask(bodies[i % len(bodies)]), 60)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                tally.lost += 1
                connection.close()
                connection = await Connection.open(host, int(port))
                continue
            tally.add(status, body, loop.time() - begun)
            if not keep:
                connection.close()
                connection = await Connection.open(host, int(port))
            i += concurrency
        connection.close()

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return tally.summary(loop.time() - started)


async def open_loop(url: str, paths: list[Path], rate: float, seconds: float) -> dict[str, Any]:
    """Requests sent at `rate` a second on schedule (a free connection, else a new one up to
    MAX_OPEN_CONNECTIONS); each latency counted from its scheduled time."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    bodies = payloads(host, paths)
    tally = Tally()
    idle: list[Connection] = []
    opened = [0]
    free = asyncio.Condition()
    loop = asyncio.get_running_loop()

    async def take() -> Connection:
        async with free:
            while not idle and opened[0] >= MAX_OPEN_CONNECTIONS:
                await free.wait()
            if idle:
                return idle.pop()
            opened[0] += 1
        return await Connection.open(host, int(port))

    async def give(connection: Connection | None) -> None:
        async with free:
            if connection is None:
                opened[0] -= 1
            else:
                idle.append(connection)
            free.notify()

    async def one(i: int, scheduled: float) -> None:
        connection = await take()
        try:
            status, body, keep = await asyncio.wait_for(connection.ask(bodies[i % len(bodies)]), 60)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            tally.lost += 1
            connection.close()
            await give(None)
            return
        tally.add(status, body, loop.time() - scheduled)
        if keep:
            await give(connection)
        else:
            connection.close()
            await give(None)

    count = max(1, int(rate * seconds))
    started = loop.time() + 0.05
    tasks = []
    for i in range(count):
        scheduled = started + i / rate
        if scheduled > loop.time():
            await asyncio.sleep(scheduled - loop.time())
        tasks.append(asyncio.create_task(one(i, scheduled)))
    sending = loop.time() - started  # how long sending took: longer than planned when the client lags
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.close()
    summary = tally.summary(loop.time() - started)
    summary.update(sent=count, rate_asked=round(rate, 1), rate_sent=round(count / max(sending, 1e-9), 1))
    return summary


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
        self.url = ""
        for line in self.process.stderr:  # "edgecls: listening on http://127.0.0.1:PORT (...", then "ready"
            found = re.search(r"listening on (http://\S+) ", line)
            self.url = found.group(1) if found else self.url
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
        figure["overhead_us"] = median([r["mean_us"] - p["classify_mean_us"]
                                        for r, p in zip(runs["c1"], runs["in-process"])], 1)
        if tiny:
            figure["client_ceiling_healthz_per_s"] = self.client(
                server.url, "--route", "/healthz", "--concurrency", "4", "--seconds", str(args.seconds))["images_per_s"]
        return figure

    def rss(self, server: Server) -> dict[str, Any]:
        """S3: the server's RSS before and after --rss-requests requests at concurrency 4 (after a warm-up)."""
        self.client(server.url, "--requests", str(WARMUP_REQUESTS), "--concurrency", "4")
        before = server.rss_mib()
        long_run = self.client(server.url, "--requests", str(self.args.rss_requests), "--concurrency", "4")
        after = server.rss_mib()
        return {"requests": self.args.rss_requests, "start_mib": round(before, 2), "end_mib": round(after, 2),
                "growth_mib": round(after - before, 2), "ok": long_run["ok"], "lost": long_run["lost"]}

    def open_loop(self, capacity: float) -> dict[str, Any]:
        """S4: a server with the default queue; unloaded (concurrency 1), then an open loop at 2x capacity."""
        server = self.server()
        try:
            unloaded = self.client(server.url, "--concurrency", "1", "--seconds", str(self.args.seconds))
            loaded = run_worker(self.client_core, "--open", server.url, "--images", self.images, "--rate",
                                str(OPEN_LOOP_FACTOR * capacity), "--seconds", str(self.args.open_seconds))
        finally:
            code = server.stop()
        return {**loaded, "capacity_images_per_s": capacity, "unloaded_p99_ms": unloaded["p99_ms"],
                "p99_ratio": round(loaded["p99_ms"] / unloaded["p99_ms"], 3) if loaded["p99_ms"] else None,
                "exit_code": code}


def measure_model(record: Record, name: str, spec: dict[str, Any], args: argparse.Namespace,
                  cores: tuple[int, int], folder: Path) -> None:
    """S1 (with S2 for the tiny model), S3 (the tiny model), S4 of one model, each a figure of `record`
    (with the load at its start: benchkit.Record.figure)."""
    bench = Bench(spec, args, cores, images_file(folder, name, spec["images"]))
    tiny = name == "reference-int8"
    server = bench.server("--queue", str(CLOSED_LOOP_QUEUE))
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
    tiny = figures.get("S1 reference-int8")
    if tiny:
        lines += ["", f"- S2 per-request overhead, tiny model: **{tiny['overhead_us']:.0f} µs** (the client's mean at "
                  f"concurrency 1 minus in-process classify() of the same bytes, {tiny['classify_mean_us']:.0f} µs); "
                  f"the load generator's own ceiling (GET /healthz, concurrency 4): "
                  f"{tiny['client_ceiling_healthz_per_s']:.0f} requests/s{_validity(tiny)}"]
    if "S3 rss" in figures:
        s3 = figures["S3 rss"]
        lines.append(f"- S3 RSS over {s3['requests']:,} requests: {s3['start_mib']:.1f} → {s3['end_mib']:.1f} MiB, "
                     f"**{s3['growth_mib']:+.2f} MiB** (goal <= 5); {s3['ok']:,} answered, {s3['lost']} lost"
                     f"{_validity(s3)}")
    for name, f in figures.items():
        if name.startswith("S4 "):
            lines.append(
                f"- {name}: {f['sent']:,} requests at {f['rate_asked']:.0f}/s (sent at {f['rate_sent']:.0f}/s; 2x the "
                f"capacity {f['capacity_images_per_s']:.0f}/s): {f['ok']:,} accepted, p99 {f['p99_ms'] or 0:.2f} ms "
                f"vs unloaded {f['unloaded_p99_ms']:.2f} ms = **{f['p99_ratio'] or 0:.2f}x** (goal <= 3); "
                f"{f['refused_503']:,} answered 503; {f['lost']} lost; other {f['other'] or 'none'}{_validity(f)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="each paired run [%(default)s]")
    parser.add_argument("--open-seconds", type=float, default=10.0, help="the open-loop run [%(default)s]")
    parser.add_argument("--rss-requests", type=int, default=100_000)
    common_arguments(parser, "runs/perf/serve.json")
    # the workers (this script in a pinned process)
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--open", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--in-process", metavar="MODEL", help=argparse.SUPPRESS)
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
    if args.in_process:
        print(json.dumps(in_process(Path(args.in_process), json.loads(args.options), paths, args.seconds)))
        return

    if args.smoke:
        args.rounds, args.seconds, args.open_seconds, args.rss_requests = 1, 0.3, 0.5, 1000
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
