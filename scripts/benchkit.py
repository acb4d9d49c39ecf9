"""What the benchmark scripts in scripts/ share: paired rounds, whole-process timing, the models they
measure, a device venv, and the JSON record each one writes (machine, versions, figures, and the load
average at the start and end of every figure).

Pairing: the contenders run in turn within each round (A B, then B A, ...), and a comparison is the
median of the per-round ratios, with their min and max: this machine is shared and its speed drifts.

A quiet machine: a figure whose 1-minute load average at its start was above QUIET_PER_CORE per core
is recorded as not valid, and docs/performance.md does not publish it (`wait_for_quiet` waits for
such a moment first; scripts/perf-report does before each script).
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUIET_PER_CORE = 0.75  # the 1-minute load average per core below which a figure is valid
QUIET_WAIT_S = 900  # how long wait_for_quiet waits at most
SHARED_DATA = ROOT.parent / "shared" / "data"
CATSDOGS = SHARED_DATA / "catsdogs"


# ----------------------------------------------------------------------------- pairing
def paired(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each contender's figure per round, the order rotated every round (A B C, B C A, ...)."""
    names = list(contenders)
    values: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            values[name].append(contenders[name]())
    return values


def ratio(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """a/b round by round: the median of the per-round ratios, its spread, and the rounds."""
    return _per_round([x / y for x, y in zip(a, b)], 4)


def difference(a: Sequence[float], b: Sequence[float], digits: int = 2) -> dict[str, Any]:
    """a-b round by round (extra MiB, extra µs), summarised as `ratio` does."""
    return _per_round([x - y for x, y in zip(a, b)], digits)


def _per_round(values: Sequence[float], digits: int) -> dict[str, Any]:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "rounds": len(values), "per_round": [round(x, digits) for x in values]}


def median(values: Sequence[float], digits: int = 6) -> float:
    return round(statistics.median(values), digits)


# ----------------------------------------------------------------------------- whole processes
def run_process(command: Sequence[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, the kernel's own accounting) of one child process; its
    output is read and dropped. A failure stops the benchmark with the child's stderr."""
    started = time.perf_counter()
    child = subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd,
                             env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    stderr = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{stderr}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def checkout_env(checkout: Path | None) -> dict[str, str]:
    """The environment that makes a child import edgecls from `checkout` (None: this one)."""
    source = Path(checkout or ROOT).resolve()
    return {"PYTHONPATH": os.pathsep.join([str(source), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "TF_CPP_MIN_LOG_LEVEL": "3"}


def device_venv(checkout: Path, folder: Path) -> Path:
    """A new venv in `folder` holding `pip install CHECKOUT` — the device install, no extras — as a user
    makes it; returns its bin folder (python, edgecls)."""
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    str(Path(checkout).resolve())], check=True, stdout=subprocess.DEVNULL)
    return folder / "bin"


def git_commit(checkout: Path | None = None) -> str:
    done = subprocess.run(["git", "-C", str(checkout or ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    # the records themselves are outputs, not code: one script's fresh record must not mark the next one's
    dirty = subprocess.run(["git", "-C", str(checkout or ROOT), "status", "--porcelain", "--untracked-files=no",
                            "--", ".", ":(exclude)docs/performance"], capture_output=True, text=True).stdout.strip()
    return (done.stdout.strip() or "unknown") + ("+changes" if dirty else "")


# ----------------------------------------------------------------------------- the record
def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def quiet_limit() -> float:
    """The 1-minute load average above which a figure is not valid on this machine."""
    return QUIET_PER_CORE * (os.cpu_count() or 1)


def is_quiet(load: Sequence[float]) -> bool:
    return bool(load) and load[0] <= quiet_limit()


def wait_for_quiet(max_wait_s: float = QUIET_WAIT_S, poll_s: float = 10.0) -> list[float]:
    """Wait (up to `max_wait_s`) until the 1-minute load average is below quiet_limit(); the load
    then. When it never is, the caller goes on and its figures are recorded as not valid."""
    deadline = time.monotonic() + max_wait_s
    load = load_average()
    if not is_quiet(load):
        print(f"waiting for a quiet machine: load {load[0] if load else '?'} > {quiet_limit():.2f} "
              f"({QUIET_PER_CORE} per core), up to {max_wait_s / 60:.0f} min ...", file=sys.stderr, flush=True)
    while not is_quiet(load) and time.monotonic() < deadline:
        time.sleep(poll_s)
        load = load_average()
    return load


class Record:
    """The JSON a script writes: start it first (machine, load), add figures, then write()."""

    def __init__(self, script: str, args: Any, checkout: Path | None = None):
        self.data: dict[str, Any] = {
            "script": Path(script).name, "arguments": {k: str(v) for k, v in vars(args).items()},
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
            "load_average_start": load_average(), "versions": versions(),
            "checkout": str(Path(checkout or ROOT).resolve()), "commit": git_commit(checkout), "figures": {},
        }
        # Each figure waits for a quiet machine first (not in a smoke run): a script whose figures load
        # both cores (bench_serve's server and client) would otherwise start the next one on its own load.
        self.wait_for_quiet = not getattr(args, "smoke", False)

    def figure(self, name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Measure one figure, recording the load average at its start and end and whether it is valid
        (the start load at most quiet_limit(): a figure taken on a saturated machine is not a figure)."""
        start = wait_for_quiet() if self.wait_for_quiet else load_average()
        found = dict(measure())
        found.update(load_start=start, load_end=load_average(), load_limit=round(quiet_limit(), 2),
                     valid=is_quiet(start))
        self.data["figures"][name] = found
        return found

    def write(self, path: Path | None) -> dict[str, Any]:
        self.data["load_average_end"] = load_average()
        text = json.dumps(self.data, indent=1, default=str)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text + "\n")
            tmp.replace(path)
        print(text)
        return self.data


def machine() -> dict[str, Any]:
    from edgecls.runtime.doctor import machine_info

    return machine_info()


def versions() -> dict[str, str]:
    from edgecls.provenance import device_versions, dist_version

    found = {**device_versions(), "python": platform.python_version()}
    for name in ("ai-edge-litert", "tensorflow", "keras", "onnxruntime", "tf2onnx"):
        found[name] = dist_version(name)
    return found


def common_arguments(parser: Any, json_default: str) -> None:
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the script still runs")
    parser.add_argument("--json", type=Path, default=Path(json_default),
                        help="write the record here [%(default)s]")


# ----------------------------------------------------------------------------- models (workstation side)
ARCHS = {"seed": ((28, 28, 1), [str(i) for i in range(10)]), "mobile": ((96, 96, 3), ["cat", "dog"])}


def build_models(folder: Path, archs: Sequence[str] = ("seed", "mobile"), keep_keras: bool = False) -> dict[str, Path]:
    """float32 and int8 .tflite files (edgecls metadata embedded) of the seed CNN (28x28x1) and the
    mobile CNN (96x96x3), untrained: latency does not depend on the weights. Built once per folder."""
    made = {f"{arch}-{mode}": folder / f"{arch}-{mode}.tflite" for arch in archs for mode in ("float32", "int8")}
    if keep_keras:
        made.update({f"{arch}-keras": folder / f"{arch}.keras" for arch in archs})
    if all(path.exists() for path in made.values()):
        return {**made, **{f"{arch}-int8-openset": calibrated_copy(made[f"{arch}-int8"]) for arch in archs}}
    import keras
    import numpy as np

    from edgecls.export.convert import convert, saved_model
    from edgecls.runtime.metadata import METADATA_FORMAT, embed_metadata
    from edgecls.train.model import build_model

    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    for arch in archs:
        shape, labels = ARCHS[arch]
        model = build_model(arch, shape, len(labels))
        if keep_keras:
            model.save(folder / f"{arch}.keras")
        calibration = np.random.default_rng(0).integers(0, 256, (64, *shape), dtype=np.uint8)
        with saved_model(model) as exported:
            for mode in ("float32", "int8"):
                converted = convert(exported, mode, calibration=calibration)
                meta = {"format": METADATA_FORMAT, "labels": labels, "output": "probabilities",
                        "input": {"height": shape[0], "width": shape[1],
                                  "color": "grayscale" if shape[2] == 1 else "rgb", "pixel_range": [0, 255]},
                        "quantization": {"mode": mode},
                        "source": {"run": None, "model": f"{arch} CNN, untrained (scripts/benchkit.py)"}}
                made[f"{arch}-{mode}"].write_bytes(embed_metadata(converted.content, meta))
    for arch in archs:  # the int8 model with the unknown rule edgecls export gives (P4, P5)
        made[f"{arch}-int8-openset"] = calibrated_copy(made[f"{arch}-int8"])
    return made


def openset_model(model: str | Path) -> Path:
    """The model beside `model` with an unknown rule (build_models makes it: <name>-openset.tflite)."""
    path = Path(model)
    return path.with_name(f"{path.stem}-openset{path.suffix}")


def calibrated_copy(model: Path, seed: int = 0) -> Path:
    """`model` calibrated by edgecls (temperature and the `both` rule) on seeded random images with random
    labels, beside it: latency does not depend on what the rule learned, only on the graph it adds."""
    import numpy as np

    from edgecls.calibrate.job import FitData, OpenSetOptions, calibrate
    from edgecls.runtime import Classifier

    out = openset_model(model)
    if out.exists():
        return out
    spec, classes = Classifier(model).input_spec, len(Classifier(model).labels)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (240, *spec.shape), dtype=np.uint8)
    labels = np.arange(240) % classes
    data = FitData(images[:120], labels[:120], images[120:], labels[120:], source={"fit": "random", "val": "random"})
    out.write_bytes(calibrate(model.read_bytes(), data, OpenSetOptions(rule="both"), name=model.name).content)
    return out


def edgecls(*args: str, env: dict[str, str] | None = None, in_process: bool = False, timeout: float = 3600) -> str:
    """Run `edgecls ARGS...` from the repository root and return what it printed on stdout; a failure ends the
    script with the end of its stderr.

    `in_process`: through the console script's entry point in this process, for scripts that train or export
    several runs (each `train` seeds itself; TensorFlow then starts once, not once a command: ~6 s each here).
    The call gets `env`, and the process gets back its environment, working folder, sys.argv, signal handlers
    and log handlers after it; Keras' session is cleared. Not as in a child: no `timeout`, and what native code
    writes to file descriptor 2 (LiteRT's delegate line) reaches the terminal rather than the message."""
    if not in_process:
        done = subprocess.run([sys.executable, "-m", "edgecls", *args], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, **(env or {})}, timeout=timeout)
        code, out, err = done.returncode, done.stdout, done.stderr
    else:
        code, out, err = _in_process(list(args), env or {})
    if code != 0:
        raise SystemExit(f"edgecls {' '.join(args)} failed ({code}):\n{err[-3000:]}")
    return out


def _in_process(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    from edgecls.entry import main

    environment, folder, saved_argv = dict(os.environ), os.getcwd(), list(sys.argv)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    out_buffer, err_buffer = io.StringIO(), io.StringIO()
    os.environ.update(env)
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out_buffer), contextlib.redirect_stderr(err_buffer):
            main(argv)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, (int, type(None))):
            err_buffer.write(str(stop.code))
    except BaseException:  # a traceback (EDGECLS_DEBUG=1, Ctrl-C): what the command said first
        sys.stderr.write(err_buffer.getvalue()[-3000:])
        raise
    finally:
        os.environ.clear()
        os.environ.update(environment)
        os.chdir(folder)
        sys.argv = saved_argv
        for number, handler in handlers.items():
            signal.signal(number, handler)
        # TensorFlow's and absl's log handlers are made at their first use, bound to the sys.stderr of then:
        # this call's buffer. Give them the real one back, or every later warning of theirs is lost.
        loggers = [logging.getLogger(), *(found for found in logging.Logger.manager.loggerDict.values()
                                          if isinstance(found, logging.Logger))]
        for handler in (h for logger in loggers for h in logger.handlers):
            for inner in (handler, getattr(handler, "_current_handler", None)):
                if isinstance(inner, logging.StreamHandler) and inner.stream in (out_buffer, err_buffer):
                    inner.setStream(sys.stderr)
        if "keras" in sys.modules:
            sys.modules["keras"].backend.clear_session()
        gc.collect()
    return code, out_buffer.getvalue(), err_buffer.getvalue()


def in_worker(script: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run `script --worker ARGS...` in a fresh process (device-like: no TensorFlow loaded unless
    the worker loads it) and return the JSON it prints last."""
    done = subprocess.run([sys.executable, script, "--worker", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])
