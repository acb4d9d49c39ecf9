"""scripts/perf-report: run the benchmark scripts and write docs/performance.md (a table and a plot).

    scripts/perf-report                               # measure this checkout, write docs/performance.md
    scripts/perf-report --compare /tmp/perf-before    # also the edgecls of another checkout, side by side
    scripts/perf-report --arm64 cortex-a72            # also the cold start under the emulated aarch64 Python
    scripts/perf-report --render                      # re-render from the JSON records of the last run
    scripts/perf-report --smoke                       # tiny sizes, into a temporary folder: the scripts still run

Before each script it waits (up to 15 minutes) for a 1-minute load average below 0.75 per core; every
figure records the load at its start and end, and one that started above that limit is shown as not
valid instead of its value (scripts/benchkit.py). Measure with nothing else running: no training, no
test suite.

Figures (each a median of per-round ratios, rounds paired A B A B; see scripts/benchkit.py):
P3 int8/float32 invoke, P4 classify()/bare loop, P5 cold `edgecls predict` against a bare LiteRT
script and against TensorFlow, P6 classify_many/Pillow draft() loop, P9 ONNX Runtime/LiteRT on the
same weights, P7 edgecls train epoch/plain Keras epoch, S1-S4 `edgecls serve` against in-process
classify_many, its overhead, memory and overload behaviour (scripts/bench_serve.py). P7, P9 and S1-S4
are measured once, with this checkout. Needs the train extra (TensorFlow builds the models), for P9
the bench extra (tf2onnx, onnxruntime), for S1-S4 the serve extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import ROOT, wait_for_quiet  # noqa: E402

SCRIPTS = Path(__file__).resolve().parent
# (the record, the figure in it, the value, the row's label, the target)
ROWS = [
    ("runtime", "P3 seed", "ratio", "P3 int8 / float32 invoke, seed CNN, 1 thread", "< 1"),
    ("runtime", "P3 mobile", "ratio", "P3 int8 / float32 invoke, mobile CNN, 1 thread", "< 1"),
    ("runtime", "P4 seed-int8", "ratio", "P4 classify() / bare set-invoke-get, seed int8, 1 thread", "<= 1.10"),
    ("runtime", "P4 mobile-int8", "ratio", "P4 classify() / bare set-invoke-get, mobile int8", "<= 1.03"),
    ("runtime", "P5 seed-int8", "wall_vs_bare", "P5 cold `edgecls predict` / bare LiteRT script, wall, 1 thread",
     "<= 1.3"),
    ("runtime", "P5 seed-int8", "peak_mib_over_bare", "P5 cold predict peak RSS over bare LiteRT, MiB, 1 thread",
     "<= +8"),
    ("runtime", "P5 seed-int8 all CPUs", "wall_vs_bare", "P5 the same, wall, both at the CPU count", "<= 1.3"),
    ("runtime", "P5 seed-int8 all CPUs", "peak_mib_over_bare", "P5 the same, peak MiB over bare, at the CPU count",
     "<= +8"),
    ("runtime", "P5 seed-int8 all CPUs", "tensorflow_vs_edgecls",
     "P5 TensorFlow script / cold `edgecls predict`, wall, at the CPU count", "> 1"),
    ("runtime", "P5 seed-int8 arm64", "wall_vs_bare", "P5 the same, emulated aarch64 (qemu), wall", "<= 1.3"),
    ("runtime", "P5 seed-int8 arm64", "peak_mib_over_bare", "P5 the same, emulated aarch64, peak MiB over bare",
     "<= +8"),
    ("runtime", "P6 1 thread", "speedup", "P6 classify_many / Pillow draft() loop, 1 thread", ">= 1.0"),
    ("runtime", "P6 2 threads", "speedup", "P6 classify_many / Pillow draft() loop, 2 threads", ">= 1.2"),
    ("onnx", "P9 seed-int8", "onnxruntime_vs_litert", "P9 ONNX Runtime / LiteRT, int8, seed CNN, 1 thread", "> 1"),
    ("onnx", "P9 mobile-int8", "onnxruntime_vs_litert", "P9 ONNX Runtime / LiteRT, int8, mobile CNN", "> 1"),
    ("onnx", "P9 seed-float32", "onnxruntime_vs_litert", "P9 ONNX Runtime / LiteRT, float32, seed CNN", ""),
    ("onnx", "P9 mobile-float32", "onnxruntime_vs_litert", "P9 ONNX Runtime / LiteRT, float32, mobile CNN", ""),
    ("train", "P7", "steady_ratio", "P7 edgecls train epoch / plain Keras epoch (steady)", "~1"),
    ("serve", "S1 coral-0.5_160", "c4_vs_in_process", "S1 `edgecls serve` at concurrency 4 / in-process "
     "classify_many, Coral 0.5_160, 1 core", ">= 0.8"),
    ("serve", "S1 reference-int8", "c4_vs_in_process", "S1 the same, reference int8 (tiny: the HTTP cost shows)", ""),
    ("serve", "S1 reference-int8", "overhead_us", "S2 serve's per-request overhead, tiny model, µs", ""),
    ("serve", "S3 rss", "growth_mib", "S3 serve's RSS growth over one run of 100,000 requests, MiB", "<= 5"),
    ("serve", "S4 open loop coral-0.5_160", "p99_ratio", "S4 open loop at 2x capacity: accepted p99 / unloaded "
     "p99, Coral", "<= 3"),
    ("serve", "S4 open loop reference-int8", "p99_ratio", "S4 the same, reference int8 (2x capacity is 2x what "
     "one core's event loop answers)", "<= 3"),
]


def run(script: str, out: Path, *args: str) -> None:
    if "--smoke" not in args:  # a figure taken on a saturated machine is not a figure: wait for a quiet one
        wait_for_quiet()
    print(f"$ {script} {' '.join(args)}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, str(SCRIPTS / script), *args, "--json", str(out)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)


def measure(args: argparse.Namespace, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    common = ["--smoke"] if args.smoke else ["--rounds", str(args.rounds)]
    arm64 = ["--arm64", args.arm64] if args.arm64 else []
    sides = [("this", ROOT)] + ([("compare", args.compare)] if args.compare else [])
    for name, checkout in sides:  # the runtime figures of both checkouts, one after the other
        run("bench_runtime.py", folder / f"runtime-{name}.json", *common, *arm64, "--checkout", str(checkout))
    if not args.no_onnx and all(importlib.util.find_spec(m) for m in ("onnxruntime", "tf2onnx")):
        run("bench_onnx.py", folder / "onnx-this.json", *common)
    elif not args.no_onnx:  # a benchmark-only extra: P9 is left out of the page, said so
        print("P9 left out: pip install 'edgecls[bench]' (tf2onnx, onnxruntime)", file=sys.stderr)
    if not args.no_train:
        run("bench_train.py", folder / "train-this.json", *(["--smoke"] if args.smoke else []))
    if not args.no_serve:  # S1-S4 (measured once, with this checkout)
        run("bench_serve.py", folder / "serve-this.json", *common)


# ----------------------------------------------------------------------------- rendering
def load(folder: Path, kind: str, side: str) -> dict[str, Any] | None:
    path = folder / f"{kind}-{side}.json"
    return json.loads(path.read_text()) if path.exists() else None


def figure_of(record: dict[str, Any] | None, figure: str) -> dict[str, Any] | None:
    if record is None:
        return None
    found = [v for name, v in record["figures"].items() if name == figure or
             (figure.endswith("arm64") and name.startswith(figure))]
    return found[0] if found else None


def value(record: dict[str, Any] | None, figure: str, key: str) -> Any:
    found = figure_of(record, figure)
    return found.get(key) if found else None


def valid(found: dict[str, Any] | None) -> bool:
    """A figure is published only when its start load was below the quiet limit (benchkit.Record.figure);
    a record that did not say is not trusted either."""
    return bool(found) and found.get("valid") is True


SIGNED = ("peak_mib_over_bare", "growth_mib", "overhead_us")  # differences, shown with their sign


def cell(v: Any, found: dict[str, Any] | None = None, signed: bool = False) -> str:
    if v is None:
        return "—"
    if found is not None and not valid(found):
        if not found.get("load_start"):
            return "not valid: an older record without the load it was taken at"
        return f"not valid: load {found['load_start'][0]} at start (limit {found.get('load_limit', '?')})"
    if isinstance(v, dict):
        rounds = f"{v['rounds']} round{'s' if v['rounds'] != 1 else ''}"
        if signed:  # a paired difference (extra MiB, extra µs)
            return f"**{v['median']:+.1f}** ({v['min']:+.1f} to {v['max']:+.1f}, {rounds})"
        return f"**{v['median']:.3f}** ({v['min']:.2f}–{v['max']:.2f}, {rounds})"
    if isinstance(v, float):
        return f"**{v:+.1f}**" if signed else f"**{v:.2f}**"
    return str(v)


def p3_note(record: dict) -> list[str]:
    """A paragraph when int8 was not faster than float32 (P3 >= 1) in a valid figure: the table alone reads
    as a fault of the toolkit, and it is a property of the CPU's kernels."""
    slow = [(name.split()[-1], v) for name, v in record["figures"].items()
            if name.startswith("P3") and valid(v) and v["ratio"]["median"] >= 1]
    if not slow:
        return []
    found = "; ".join(f"{arch} CNN: int8 {v['int8_us']:.0f} µs against float32 {v['float32_us']:.0f} µs"
                      for arch, v in slow)
    return ["", f"P3 at or above 1: on this CPU an int8 invoke was not faster than the float32 one ({found}). "
            "How much int8 gains depends on the CPU's integer kernels (on the AMD EPYC of the record at 069159a, "
            "P3 was 0.45 for the seed CNN and 0.57 for the mobile one; for a Pi's cores see the published references "
            "under Real devices); the file's size (a quarter) does not. On a device, `edgecls bench` times both."]


def render(folder: Path, out: Path, compare_label: str | None) -> Path:
    records = {(kind, side): load(folder, kind, side) for kind in ("runtime", "onnx", "train", "serve")
               for side in ("this", "compare")}
    this = records[("runtime", "this")]
    other = records[("runtime", "compare")]
    if this is None:
        raise SystemExit(f"no runtime record in {folder}: run without --render first")
    header = ["figure", "target", f"this checkout ({this['commit']})"]
    if other:
        header.append(f"{compare_label or 'compared'} ({other['commit']})")
    lines = ["# Performance", "",
             "Figures on record, made by `scripts/perf-report` (the scripts in `scripts/`, each pairing its "
             "contenders round by round: A B, B A, ...). Each ratio is the **median of the per-round ratios**, "
             "with its min–max and the number of rounds. The machine is shared: read the spread, and compare "
             "ratios rather than absolute times: its speed also drifts from one minute to the next, which the "
             "pairing cancels and absolute times do not. At a load average above the core count (see Conditions) the "
             "figures that need an idle core — P3's int8 kernels, P6 at 2 threads — are the least reliable.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    plotted = []
    for kind, figure, key, label, target in ROWS:
        here_figure = figure_of(records[(kind, "this")], figure)
        there_figure = figure_of(records[(kind, "compare")], figure) if kind == "runtime" else None
        here = here_figure.get(key) if here_figure else None
        there = there_figure.get(key) if there_figure else None
        if here is None and there is None:
            continue
        row = [label, target, cell(here, here_figure or {}, key in SIGNED)]
        if other:
            row.append(cell(there, there_figure or {}, key in SIGNED) if kind == "runtime"
                       else "(same: not checkout-dependent)")
        lines.append("| " + " | ".join(row) + " |")
        if not valid(here_figure):
            here = None
        if not valid(there_figure):
            there = None
        if isinstance(here, dict) and key not in SIGNED:  # the plot is of ratios
            plotted.append((label.replace(", 1 thread", "").replace("`", ""), here,
                            there if isinstance(there, dict) else None, target))
    lines += p3_note(this)
    lines += ["", "Absolute figures (medians; valid figures only):", ""]
    for side, record in (("this checkout", this), (compare_label or "compared", other)):
        if record is None:
            continue
        f = {name: v for name, v in record["figures"].items() if valid(v)}
        bits = [f"{name}: classify {v['classify_us']:.1f} µs, bare {v['bare_us']:.1f} µs"
                for name, v in f.items() if name.startswith("P4")]
        for name, cold in f.items():
            if name.startswith("P5"):
                bits.append(f"{name} cold predict at {cold.get('threads', '?')} thread(s), {cold.get('how', '')}: "
                            + ", ".join(f"{n} {v['wall_s']:.3f} s / {v['peak_rss_mib']:.1f} MiB"
                                        for n, v in cold.items() if isinstance(v, dict) and "wall_s" in v))
        bits += [f"{name}: {v['classify_many_images_per_s']:.0f} vs {v['draft_loop_images_per_s']:.0f} images/s"
                 for name, v in f.items() if name.startswith("P6")]
        lines.append(f"- {side}: " + ("; ".join(bits) or "no valid figure"))
    lines += ["", "Conditions: the 1-minute load average at the start and the end of every figure. A figure whose "
              "start load was above 0.75 per core is marked not valid and not published (scripts/benchkit.py; "
              "scripts/perf-report waits up to 15 minutes for a quiet machine before each script).", "",
              "| record | figure | commit | load at start | load at end | valid |", "|---|---|---|---|---|---|"]
    for (kind, side), record in records.items():
        if record is None:
            continue
        for name, found in record["figures"].items():
            lines.append(f"| {kind} ({'this' if side == 'this' else compare_label or 'compared'}) | {name} | "
                         f"{record['commit']} | {' '.join(map(str, found.get('load_start') or ['?']))} | "
                         f"{' '.join(map(str, found.get('load_end') or ['?']))} | "
                         f"{'yes' if valid(found) else 'no'} |")
    lines += ["", *devices_section(ROOT / "devices")]
    m, v = this["machine"], this["versions"]
    lines += ["", f"Machine: {m['cpu']}, {m['cpu_count']} cores, {m['arch']}, {m['platform']}. Versions: "
              + ", ".join(f"{k} {x}" for k, x in v.items() if x != "unknown") + ".", "",
              "What each figure is: `python scripts/bench_runtime.py --help` (P3-P6), `scripts/bench_onnx.py` (P9), "
              "`scripts/bench_train.py` (P7), `scripts/bench_serve.py` (S1-S4). Every round of every figure is in the "
              "JSON records in "
              f"`{folder.name}/`; `scripts/perf-report --render` re-renders this page from them.", ""]
    png = _plot(plotted, out.with_suffix(".png"), compare_label)
    if png is not None:
        lines[4:4] = [f"![median ratios with their min–max]({png.name})", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(out)
    return out


# Published figures for real boards, for a like-for-like row beside ours (each cited).
REFERENCES = [
    ("Raspberry Pi 4 (BCM2711, 64-bit)", "MobileNet v2 1.0 224, XNNPACK, randomized weights, multi-threaded",
     "int8 17 ms, float32 46 ms",
     "google/XNNPACK README, \"Raspberry Pi\" table (benchmarked Feb 8, 2022, end2end-bench): "
     "https://github.com/google/XNNPACK#raspberry-pi"),
    ("Raspberry Pi 5", "MobileNetV2, ExecuTorch with XNNPACK, 50 runs after 10 warm-ups",
     "int8 4.0 ms, float32 10.9 ms (mean)",
     "Arm Learning Paths, \"Optimize and deploy AI inference with ExecuTorch on Arm\", module 2, \"Compare "
     "MobileNetV2 deployment results\": https://learn.arm.com/courses/executorch-on-arm/optimize-image-"
     "classification/evaluate-int8-mobilenetv2/bring-the-runtime-paths-into-one-view/"),
]
DEVICE_RESULTS = "*.bench.json"  # devices/rpi4.bench.json beside devices/rpi4.toml: a device's bench.json
LIKE_FOR_LIKE = ("edgecls bench mobilenet_v2_1.0_224_quant.tflite models/digits-seed/model_int8.tflite "
                 "--latency-only --device rpi4 --remote pi@raspberrypi.local --report rpi4-bench/")


def devices_section(folder: Path) -> list[str]:
    """Rows recorded on real boards (devices/PROFILE.bench.json, each the device's own bench.json from
    `bench --remote`) beside the published references; says so plainly when there are none."""
    lines = ["## Real devices", "",
             "Every latency above is this x86 host's. Figures recorded on real boards live beside their profile "
             "in `devices/` (`devices/rpi4.bench.json` beside `devices/rpi4.toml`: the device's own "
             "`bench.json` from `edgecls bench --remote`, which records the command that made it).", ""]
    rows = []
    for path in sorted(folder.glob(DEVICE_RESULTS)):
        try:
            from edgecls.bench.schema import read_report_file

            report = read_report_file(path, path.name)
        except Exception as exc:  # a broken file is a line on the page, not a crash of the report
            rows.append(f"| {path.name} | — | — | — | unreadable: {exc} |")
            continue
        board = report.machine.board or report.machine.platform
        for model in report.tflite_models():
            for latency in model.latency or []:
                rows.append(f"| {path.name.split('.')[0]}: {board} | {model.name} ({model.mode}) | "
                            f"{latency.threads} | {latency.invoke_ms.p50:.2f} | `{report.command}` |")
    if rows:
        lines += ["| board | model | threads | invoke p50, ms | command |", "|---|---|---|---|---|", *rows, ""]
    else:
        lines += ["**No real-device rows yet.** None of `devices/*.bench.json` exists: nobody has recorded a real "
                  "board with this toolkit so far.", ""]
    lines += ["To add one (a Pi owner, from a workstation with this checkout): bench Google's MobileNet V2 1.0 224 "
              "quantised model (`mobilenet_v2_1.0_224_quant.tflite`, \"MobileNet V2 (ImageNet)\" on coral.ai/models, "
              "\"Image classification\", the CPU .tflite) — the network of the references below — and edgecls' own "
              "reference model, then copy the device's report beside its profile:", "",
              "```bash", LIKE_FOR_LIKE,
              "cp rpi4-bench/devices/pi@raspberrypi.local/bench.json devices/rpi4.bench.json", "```", "",
              "Coral's file is uint8 with per-tensor quantisation; the XNNPACK reference is per-channel int8 with "
              "random weights: close, not identical. Published references:", "",
              "| board | model and runtime | figures | source |", "|---|---|---|---|"]
    lines += [f"| {board} | {what} | {figures} | {source} |" for board, what, figures, source in REFERENCES]
    return lines + [""]


def _plot(rows: list, path: Path, compare_label: str | None) -> Path | None:
    from edgecls.plotting import pyplot, save_png

    plt = pyplot()
    if plt is None or not rows:
        return None
    figure, axis = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.2))
    ys = list(range(len(rows)))[::-1]
    for offset, index, name, colour in ((-0.18, 1, "this checkout", "tab:blue"),
                                        (0.18, 2, compare_label or "compared", "tab:gray")):
        points = [(y + offset, r[index]) for y, r in zip(ys, rows) if r[index] is not None]
        if not points:
            continue
        axis.barh([p[0] for p in points], [p[1]["median"] for p in points], height=0.34, color=colour, label=name,
                  xerr=[[p[1]["median"] - p[1]["min"] for p in points], [p[1]["max"] - p[1]["median"] for p in points]],
                  capsize=2)
    axis.axvline(1.0, color="black", linewidth=0.8)
    axis.set_yticks(ys)
    axis.set_yticklabels([r[0] for r in rows], fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("ratio (median of per-round ratios; bars: min–max)")
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return save_png(plt, figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/perf-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", type=Path, help="another checkout of edgecls to measure side by side")
    parser.add_argument("--compare-label", help="its name in the table [its commit]")
    parser.add_argument("--arm64", metavar="CORE", default="", help="also P5 emulated (scripts/arm64-check's Python)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--records", type=Path, default=ROOT / "docs" / "performance",
                        help="the scripts' JSON records, kept beside the page [docs/performance]")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md", help="[%(default)s]")
    parser.add_argument("--render", action="store_true", help="render from the records of the last run only")
    parser.add_argument("--no-onnx", action="store_true", help="leave out P9")
    parser.add_argument("--no-train", action="store_true", help="leave out P7")
    parser.add_argument("--no-serve", action="store_true", help="leave out S1-S4 (scripts/bench_serve.py)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes into a temporary folder, no P7")
    args = parser.parse_args(argv)
    if args.smoke:
        scratch = Path(tempfile.mkdtemp(prefix="edgecls-perf-smoke-"))
        args.records, args.out, args.no_train = scratch / "records", scratch / "performance.md", True
    if not args.render:
        measure(args, args.records)
    label = args.compare_label or (f"{args.compare}" if args.compare else None)
    print(f"wrote {render(args.records, args.out, label)}")
    return 0
