"""Determinism, interrupted writes and untrusted-file rules, across train and export."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow  # every test here trains (in a subprocess)
ROOT = Path(__file__).resolve().parents[1]


def edgecls(*args, env=None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgecls", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, **kw)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out + err


def test_same_seed_gives_identical_weights_and_identical_int8_bytes(tmp_path):
    """Same seed, data and options on CPU: bit-identical weights, and int8 files that are the same
    bytes. The one field that differs between two trainings is the SHA-256 of model.keras, whose zip
    records when it was saved: with that metadata made equal, train + export gave the same bytes
    twice, so the export of one model.keras is deterministic too."""
    import keras

    from edgecls.runtime.metadata import embed_metadata, read_metadata

    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    run = tmp_path / "run"
    trainings = []
    for _ in range(2):
        code, text = finish(
            edgecls("train", "--epochs", "1", "--seed", "3", "--out", run, "--force", "--quiet", env=env)
        )
        assert code == 0, text
        code, text = finish(edgecls("export", run, "--quant", "int8", "--calib-samples", "100", env=env))
        assert code == 0, text
        weights = keras.saving.load_model(run / "model.keras").get_weights()
        trainings.append((weights, (run / "export" / "model_int8.tflite").read_bytes()))
    (w1, first), (w2, retrained) = trainings
    assert len(w1) == len(w2) and all((a == b).all() for a, b in zip(w1, w2))
    assert read_metadata(first) != read_metadata(retrained)  # the model.keras digests differ ...
    same = read_metadata(first)
    assert embed_metadata(retrained, same) == embed_metadata(first, same)  # ... and all else is the same bytes


def _kill_when(process: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, "finished before it could be interrupted"
        assert time.monotonic() < deadline, "never reached the point to interrupt"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_train_killed_midway_leaves_no_run_and_the_next_run_succeeds(tmp_path):
    run = tmp_path / "run"
    process = edgecls("train", "--epochs", "30", "--patience", "0", "--out", run, "--quiet")
    # kill once the staging folder holds a partly written history: deep inside the run
    _kill_when(process, lambda: any((p / "history.csv").exists() for p in tmp_path.glob(".run.partial-*")))
    assert not run.exists()
    code, text = finish(edgecls("train", "--epochs", "1", "--out", run, "--quiet"))
    assert code == 0, text
    assert (run / "model.keras").is_file() and (run / "metrics.json").is_file()
    assert not list(tmp_path.glob(".run.partial-*"))  # the next run cleared the leftover


def test_export_killed_midway_leaves_no_broken_file_and_the_next_export_succeeds(tmp_path):
    run = tmp_path / "run"
    assert finish(edgecls("train", "--epochs", "1", "--out", run, "--quiet"))[0] == 0
    out = run / "export"
    scratch = tmp_path / "scratch"  # the export's private temporary folder: it shows when converting began
    scratch.mkdir()
    process = edgecls("export", run, "--quant", "all", "--calib-samples", "200", env={"TMPDIR": str(scratch)})
    _kill_when(process, lambda: any(scratch.iterdir()), timeout=120)  # killed while converting
    # Nothing reaches OUT before every file converted and passed its check: killed while
    # converting, the export folder holds no file at all (it need not even exist).
    assert (sorted(p.name for p in out.iterdir()) if out.exists() else []) == []
    code, text = finish(edgecls("export", run, "--quant", "int8"))
    assert code == 0, text
    assert _is_complete_tflite(out / "model_int8.tflite")


def _is_complete_tflite(path: Path) -> bool:
    from edgecls.runtime import Classifier

    try:
        Classifier(path, num_threads=1)
        return True
    except Exception:
        return False


def test_no_pickle_no_unsafe_loading_anywhere_in_the_package():
    source = "\n".join(p.read_text() for p in (ROOT / "edgecls").rglob("*.py"))
    assert not re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", source, re.M)
    assert "allow_pickle=True" not in source
    assert "safe_mode=False" not in source and "enable_unsafe_deserialization" not in source
    assert not re.search(r"\beval\(|\bexec\(", source)
