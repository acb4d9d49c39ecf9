#!/usr/bin/env python3
"""How fast `edgecls` refuses what it cannot do, when the refusal needs no model and no data (issue 22:
each under 1 s on an idle machine; a missing --data folder took 5.8 s, export of a backbone run 5.5 s).

    python scripts/refusal_times.py [--repeats 5] [--json out.json] [--smoke]

Each case is a fresh `python -c` process running the console script's main with the case's
arguments (what a user's shell starts), timed whole; the child also says whether TensorFlow,
Keras or matplotlib were imported before it refused (they cost seconds: a refusal must come first).
Prints a Markdown table (median and max of the repeats) and the load average before and after: a
figure taken above load 2.0 is not a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 1.0  # the goal on an idle machine
HEAVY = ("tensorflow", "keras", "matplotlib")
CHILD = ("import json, sys\n"
         "from edgecls.entry import main\n"
         "sys.argv = ['edgecls'] + json.loads(sys.argv[1])\n"
         "try:\n    main()\n    code = 0\n"
         "except SystemExit as exc:\n    code = exc.code or 0\n"
         f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
         "print('\\nREFUSAL ' + json.dumps({'code': code, 'heavy': heavy}))\n")


def scratch(folder: Path) -> dict[str, str]:
    """Things for the cases to name: an existing folder, a run trained on a .tflite backbone (its files
    only: refused before anything is read), a file that is not a model."""
    (folder / "exists").mkdir()
    run = folder / "backbone-run"
    (run / "export").mkdir(parents=True)
    (run / "labels.txt").write_text("cat\ndog\n")
    (run / "config.toml").write_text('[train]\ndata = "photos"\nimg_size = 128\ncolor = "rgb"\nseed = 0\n')
    (run / "split.json").write_text(json.dumps({"train": [0], "val": [1], "test": [2]}))
    (run / "transfer.json").write_text("{}")
    (run / "export" / "model_uint8.tflite").write_bytes(b"TFL3 stand-in")
    (folder / "notes.txt").write_text("not a model\n")
    return {"exists": str(folder / "exists"), "run": str(run), "missing": str(folder / "missing"),
            "text": str(folder / "notes.txt")}


def cases(p: dict[str, str]) -> list[tuple[str, list[str]]]:
    return [
        ("train: --data names nothing", ["train", "--data", p["missing"], "--out", p["missing"] + "-run"]),
        ("train: --out exists", ["train", "--out", p["exists"]]),
        ("train: --epochs 0", ["train", "--epochs", "0", "--out", p["missing"] + "-run"]),
        ("train: unknown --arch", ["train", "--arch", "bogus", "--out", p["missing"] + "-run"]),
        ("train: --val-fraction 0.9", ["train", "--val-fraction", "0.9", "--out", p["missing"] + "-run"]),
        ("train --backbone: no such file", ["train", "--backbone", p["missing"] + ".tflite", "--data", p["exists"],
                                            "--out", p["missing"] + "-run"]),
        ("export: no such run", ["export", p["missing"]]),
        ("export: a backbone run", ["export", p["run"]]),
        ("export --target: a backbone run", ["export", p["run"], "--target", "rpi5"]),
        ("bench: no such path", ["bench", p["missing"]]),
        ("bench compare: no such report", ["bench", "compare", p["missing"] + ".json"]),
        ("bench: --sustain xyz", ["bench", p["exists"], "--sustain", "xyz"]),
        ("predict: no such model", ["predict", p["missing"] + ".tflite", "a.png"]),
        ("info: not a model", ["info", p["text"]]),
        ("explain: no such image", ["explain", p["text"], p["missing"] + ".png"]),
        ("explain --dataset: no such run", ["explain", "--dataset", p["missing"]]),
    ]


SMOKE_CASES = ("train: --data names nothing", "export: a backbone run", "explain: no such image")


def run_case(args: list[str]) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    seconds = time.perf_counter() - started
    report = next((json.loads(line[len("REFUSAL "):]) for line in done.stdout.splitlines()
                   if line.startswith("REFUSAL ")), {"code": done.returncode, "heavy": ["?"]})
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    report["error"] = errors[-1] if errors else ""
    report["error_lines"] = len(errors)
    return seconds, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each case (median and max reported)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--smoke", action="store_true", help=f"one run of {len(SMOKE_CASES)} cases (the test suite)")
    options = parser.parse_args()
    repeats = 1 if options.smoke else max(1, options.repeats)
    load_start = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecls-refusals-") as tmp:
        for name, args in cases(scratch(Path(tmp))):
            if options.smoke and name not in SMOKE_CASES:
                continue
            times, report = [], {}
            for _ in range(repeats):
                seconds, report = run_case(args)
                times.append(seconds)
            rows.append({"case": name, "args": args, "median_s": round(statistics.median(times), 3),
                         "max_s": round(max(times), 3), "runs": repeats, **report})
    load_end = os.getloadavg()
    print(f"Refusals, {repeats} run(s) each; load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at "
          f"the end{' (above 2.0: not a figure)' if max(load_start[0], load_end[0]) > 2.0 else ''}.\n")
    print("| case | exit | median s | max s | heavy imports | error |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['case']} | {row['code']} | {row['median_s']:.2f} | {row['max_s']:.2f} | "
              f"{', '.join(row['heavy']) or 'none'} | {row['error'][:90]} |")
    if options.json:
        options.json.write_text(json.dumps({"limit_s": LIMIT_S, "load_average_start": list(load_start),
                                            "load_average_end": list(load_end), "cases": rows}, indent=1) + "\n")
    slow = [row["case"] for row in rows if row["median_s"] > LIMIT_S]
    heavy = [row["case"] for row in rows if row["heavy"]]
    if heavy:
        print(f"\nimported TensorFlow/Keras/matplotlib before refusing: {', '.join(heavy)}")
    if slow:
        print(f"\nover {LIMIT_S:g} s here: {', '.join(slow)}")
    return 1 if heavy or any(row["code"] != 2 for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
