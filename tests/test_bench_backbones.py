"""scripts/bench_backbones.py --smoke: a route trains, exports and benches, another says why not, in one table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.heavy
def test_bench_backbones_smoke_reports_its_routes_side_by_side(tmp_path):
    dead = "http://127.0.0.1:9"  # the ImageNet route must fail as offline, never download
    env = {**os.environ, "EDGECLS_CACHE": str(tmp_path / "cache"), "KERAS_HOME": str(tmp_path / "kh"),
           "HTTPS_PROXY": dead, "https_proxy": dead, "HTTP_PROXY": dead, "http_proxy": dead}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_backbones.py"), "--smoke",
                           "--out", str(tmp_path / "runs"), "--json", str(tmp_path / "rows.json")],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {row["route"]: row for row in json.loads((tmp_path / "rows.json").read_text())["rows"]}
    row = rows["seed"]  # the smoke trains one route; the Keras backbones' routes are tests/test_backbones.py's
    assert row.get("int8_bytes", 0) > 0 and row.get("p50_ms_1thread", 0) > 0, row
    assert 0 <= row["int8_test_accuracy"] <= 1
    assert "cannot download the ImageNet weights" in rows["mobilenet_v2 (--weights imagenet)"]["note"]
    assert "| route | int8 test acc |" in done.stdout and "load average" in done.stdout
