"""Peak memory of a device-side process: a fresh Python that imports only edgecls.runtime and the
interpreter, loads one model and classifies one image; its peak resident set size is the figure.

On Linux that is VmHWM from /proc/self/status, not ru_maxrss: ru_maxrss survives fork and exec,
so a child of a big bench process would report the parent's size instead of its own. Elsewhere
ru_maxrss is the only measure (and says so in the report).

A baseline process imports the same and loads no model, so the model's own share shows. The
child inherits the bench's CPU affinity and the interpreter backend, and opens the model with the
bench's model settings (labels, input range, resize, fit: the Classifier the bench times); it reports
whether TensorFlow or Keras got imported (they must not be, with a standalone interpreter).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from edgecls.bench.results import BenchModel, Memory
from edgecls.reporter import Reporter
from edgecls.runtime.interpreter import ENV_VAR

if TYPE_CHECKING:
    from edgecls.runtime.settings import ModelSettings

TIMEOUT_SECONDS = 300  # generous: under emulation a cold Python start takes tens of seconds

_PROBE = r"""
import sys
sys.path.insert(0, sys.argv[5])  # isolated mode (-I): only edgecls' own location, never the working directory
import json
mode, model, image, threads = sys.argv[1:5]
settings = json.loads(sys.argv[6])  # the Classifier's keyword arguments (ModelSettings.classifier_args)
from edgecls.runtime.classify import Classifier
from edgecls.runtime.interpreter import find_backend
find_backend()
top = None
if mode == "model":
    top = Classifier(model, num_threads=int(threads), **settings).classify(image)[0].index

def peak():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024, "VmHWM"
    except OSError:
        pass
    import resource
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (rss if sys.platform == "darwin" else rss * 1024), "ru_maxrss"

peak_bytes, measure = peak()
print(json.dumps({"peak_bytes": peak_bytes, "measure": measure, "top1": top,
                  "heavy_modules": sorted(m for m in ("tensorflow", "keras") if m in sys.modules)}))
"""


def _package_parent() -> str:
    import edgecls

    return str(Path(edgecls.__file__).resolve().parents[1])


def supported() -> bool:
    """VmHWM (Linux) or ru_maxrss (POSIX) is there to read."""
    return importlib.util.find_spec("resource") is not None or Path("/proc/self/status").is_file()


def peak_memory(models: list[BenchModel], image: Path, threads: int, backend: str, settings: ModelSettings,
                reporter: Reporter) -> tuple[dict[str, Memory], Memory]:
    """(each model's peak memory, opened with `settings` as the bench opens it and classifying `image`,
    by name; the baseline's: runtime and interpreter, no model), each in a fresh process."""
    reporter("Measuring peak memory in fresh device-side processes")
    opened_as = {**settings.classifier_args(), "backend": backend}
    baseline = Memory.from_json(peak_rss(None, None, threads, backend))
    found = {}
    for model in models:
        measured = Memory.from_json(peak_rss(model.path, image, threads, backend, opened_as))
        found[model.name] = replace(measured, threads=threads) if measured.measured else measured
    return found, baseline


def peak_rss(model: Optional[Path], image: Optional[Path], threads: int, backend: str,
             settings: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """{"peak_rss_mb", "heavy_modules", "top1"} of the probe process, or {"error": reason}.

    `model` None measures the baseline (runtime and interpreter imported, no model); `settings` are the
    Classifier's keyword arguments the model is opened with (ModelSettings.classifier_args)."""
    args = ["model" if model else "baseline", str(model or ""), str(image or ""), str(threads), _package_parent(),
            json.dumps(dict(settings or {}))]
    env = {**os.environ, ENV_VAR: backend}
    try:
        # -I: a json.py (or any module) in the folder bench runs from must not be imported by the probe.
        done = subprocess.run([sys.executable, "-I", "-c", _PROBE, *args], capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return {"error": f"the probe process took more than {TIMEOUT_SECONDS} s"}
    except OSError as exc:  # e.g. under QEMU user mode, where this Python cannot be started directly
        return {"error": f"cannot start the probe process ({sys.executable}): {exc.strerror or exc}"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = [line for line in done.stderr.splitlines() if line.strip()]
        return {"error": f"the probe process failed (exit {done.returncode}): {tail[-1] if tail else 'no output'}"}
    found = json.loads(lines[-1])
    return {"peak_rss_mb": found["peak_bytes"] / 2**20, "measure": found["measure"],
            "heavy_modules": found["heavy_modules"], "top1": found["top1"]}
