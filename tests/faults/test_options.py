"""Option values and command lines that make no sense: one line that names the option and the reason
(the real cause, not a symptom), exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from faultkit import MODEL, POSTSCRIPT, edgecls, one_line_error, png, rows


@pytest.mark.parametrize("argv, needle", [
    (["predict"], "Missing argument 'MODEL'"),
    (["predict", "--top-k", "x", "m.tflite", "a.png"], "'--top-k'"),
    (["train", "--epochs"], "requires an argument"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["bench", "compare"], "Missing argument 'REPORTS'"),
])
def test_usage_errors_are_one_line_too(argv, needle, cli):
    result = cli(*argv)
    assert result.code == 2 and needle in result.err and "--help" in result.err
    assert result.err.startswith("edgecls: error: ") and len(result.err.strip().splitlines()) == 1


def test_absurd_option_values_are_one_line_errors(tmp_path):
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "shape.toml").write_text("train = 5\n")
    (tmp_path / "table.toml").write_text("[train]\nlr = [1, 2]\n")
    (tmp_path / "inf.toml").write_text("[train]\nlr = inf\n")
    (tmp_path / "huge.toml").write_text("[train]\narch = " + json.dumps("x" * (10 << 20)) + "\n")
    (tmp_path / "hugekey.toml").write_text("[train]\n" + "k" * (1 << 20) + " = 1\n")
    out = ["--out", tmp_path / "run"]
    cases = [
        (["predict", "--threads", "99999999999", MODEL, tmp_path / "a.png"], "--threads"),
        (["bench", "--threads", "99999999999", MODEL], "--threads"),
        (["train", "--seed", "-1", *out], "--seed"),
        (["train", "--seed", str(2**32), *out], "--seed"),
        (["train", "--lr", "inf", *out], "--lr"),
        (["train", "--lr", "nan", *out], "--lr"),
        (["train", "--config", tmp_path / "shape.toml", *out], "must be a table"),
        (["train", "--config", tmp_path / "table.toml", *out], "lr must be float"),
        (["train", "--config", tmp_path / "inf.toml", *out], "finite"),
        (["train", "--config", tmp_path / "huge.toml", *out], "arch"),
        (["train", "--config", tmp_path / "hugekey.toml", *out], "unknown key"),
        (["train", "--distill-alpha", "0.5", *out], "--distill-alpha needs --teacher"),
        (["train", "--teacher", tmp_path / "missing.tflite", *out], "--teacher"),
        (["train", "--teacher", MODEL, "--distill-temperature", "0", *out], "--distill-temperature"),
        (["train", "--unlabeled", tmp_path, *out], "--unlabeled needs --teacher"),
        (["train", "--teacher", MODEL, "--backbone", MODEL, *out], "does not apply with --backbone"),
        (["search", "--data", "digits", "--target", "host", "--max-latency-ms", "0"], "--max-latency-ms"),
        (["search", "--data", "digits", "--target", "host", "--max-latency-ms", "5", "--archs", "resnet"],
         "unknown architecture 'resnet' in --archs"),
        (["search", "--data", "digits", "--target", "nosuch", "--max-latency-ms", "5"], "unknown device profile"),
        (["search", "--data", tmp_path / "nothing", "--target", "host", "--max-latency-ms", "5"], "nothing"),
        (["search", "--data", "digits", "--target", "host", "--max-latency-ms", "5", "--backbones", tmp_path],
         "no .tflite files"),
    ]
    for argv, fragment in cases:
        done = edgecls(*argv, cwd=tmp_path)
        one_line_error(done, 2, fragment)
        assert len(done.stderr) < 3000, (argv[:3], len(done.stderr))


def test_reasons_name_the_real_cause(tmp_path):
    (tmp_path / "eps.jpg").write_bytes(POSTSCRIPT)
    done = edgecls("predict", "--json", MODEL, "/dev/urandom", "/dev/null", tmp_path / "eps.jpg", cwd=tmp_path)
    found = rows(done.stdout)
    assert "character device" in found["urandom"]["error"] and "empty" not in found["urandom"]["error"]
    assert "character device" in found["null"]["error"]
    assert "not a supported image format" in found["eps.jpg"]["error"]


def test_refusals_that_need_no_model_or_data_come_before_any_heavy_import(tmp_path):
    """Issue 22: a missing --data folder took 5.8 s and export of a backbone run 5.5 s (TensorFlow loaded
    first). scripts/refusal_times.py runs each refusal in a fresh process: exit 2, one line, and neither
    TensorFlow, Keras nor matplotlib imported. The time bound is loose (idle: under 1 s; TensorFlow
    alone takes about 5), so a loaded machine does not fail it."""
    import subprocess
    import sys

    record = tmp_path / "refusals.json"
    script = Path(__file__).resolve().parents[2] / "scripts" / "refusal_times.py"
    done = subprocess.run([sys.executable, str(script), "--repeats", "1", "--json", str(record)],
                          capture_output=True, text=True, timeout=600)
    rows = json.loads(record.read_text())["cases"]
    assert len(rows) >= 12, done.stdout
    for row in rows:
        assert row["code"] == 2 and row["error_lines"] == 1, row
        assert row["error"].startswith("edgecls: error: ") and "Traceback" not in row["error"], row
        assert row["heavy"] == [], row
        assert row["median_s"] < 4.0, row
    backbone = next(row for row in rows if row["case"] == "export: a backbone run")
    assert "already in export/" in backbone["error"]
    assert done.returncode == 0, done.stdout
