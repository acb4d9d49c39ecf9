"""Figures for distillation (issue 30): the same `mobile` CNN, on the same catsdogs split, trained from
scratch and taught by the 0.5_160 backbone model (`edgecls train --teacher`), paired seed by seed.

    python scripts/bench_distill.py --work /tmp/distill               # seeds 0-2: trains what --work lacks
    python scripts/bench_distill.py --work /tmp/distill --seeds 0,1,2,3 --mixup 0 --json distill.json
    python scripts/bench_distill.py --smoke                            # 20 photos a class, 48 px, 1 epoch: runs?

Per seed s, three runs with `--seed s` (one split): the teacher (edgecls train --backbone 0.5_160), the
CNN from scratch (edgecls train --arch mobile) and the student (the same and --teacher, the teacher's
model file); both CNNs with the same schedule (--epochs, --patience) and exported to int8. Printed and
recorded: each one's test accuracy (Keras float and int8), the paired difference student - scratch, the
top-1 agreement of each with the teacher on the test split, the int8 file sizes, and the p50 latency of
the three .tflite files on this host (edgecls.bench, interleaved, 1 thread and all). Accuracy is
deterministic with the seed (CPU); latency is not: a latency figure taken above the load limit is
recorded as not valid. The runs in --work are reused, so the same command on a quiet machine measures
only the latency again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit  # noqa: E402

ROOT = benchkit.ROOT
PRETRAINED = benchkit.SHARED_DATA / "pretrained"
TEACHER_BACKBONE = PRETRAINED / "mobilenet_v1_0.5_160_quant.tflite"
SMOKE_BACKBONE = PRETRAINED / "mobilenet_v1_0.25_128_quant.tflite"
GOAL_POINTS = 5.0  # issue 30: the mean of the per-seed differences in test accuracy


def edgecls(*args: str) -> None:
    benchkit.edgecls(*args, in_process=True)  # many runs: TensorFlow starts once


def recipe(args: argparse.Namespace) -> list[str]:
    """The student's options beyond the scratch run's."""
    found = ["--distill-alpha", str(args.alpha), "--distill-temperature", str(args.temperature),
             "--mixup", str(args.mixup)]
    return found + (["--unlabeled", str(args.unlabeled)] if args.unlabeled else [])


def recipe_name(args: argparse.Namespace) -> str:
    extra = "-unlabeled" if args.unlabeled else ""
    return f"a{args.alpha:g}-t{args.temperature:g}-m{args.mixup:g}-e{args.epochs}-p{args.patience}{extra}"


def trained(work: Path, data: Path, seed: int, args: argparse.Namespace, backbone: Path) -> dict[str, Path]:
    """The seed's three runs in `work` (made when missing; a run is complete when its metrics.json is there)."""
    runs = {"teacher": work / f"teacher-s{seed}", "scratch": work / f"scratch-s{seed}-e{args.epochs}-p{args.patience}",
            "student": work / f"student-s{seed}-{recipe_name(args)}"}
    common = ["--data", str(data), "--seed", str(seed), "--quiet", "--force"]
    schedule = ["--arch", "mobile", "--img-size", str(args.img_size), "--epochs", str(args.epochs),
                "--patience", str(args.patience)]
    if not (runs["teacher"] / "metrics.json").is_file():
        edgecls("train", *common, "--backbone", str(backbone), "--out", str(runs["teacher"]))
    teacher_file = next((runs["teacher"] / "export").glob("model_*.tflite"))
    for name, extra in (("scratch", []), ("student", ["--teacher", str(teacher_file), *recipe(args)])):
        if not (runs[name] / "metrics.json").is_file():
            edgecls("train", *common, *schedule, *extra, "--out", str(runs[name]))
        if not (runs[name] / "export" / "model_int8.tflite").is_file():
            edgecls("export", str(runs[name]), "--quant", "int8", "--force")
    return {**runs, "teacher_file": teacher_file}


def accuracy_figures(runs: dict[str, Path]) -> dict:
    """Test accuracy and agreement with the teacher of both CNNs (Keras and int8), on the seed's test split."""
    from edgecls.rundir import open_run
    from edgecls.runtime.classify import Classifier

    splits = {name: json.loads((runs[name] / "split.json").read_text())["test"] for name in ("teacher", "scratch",
                                                                                                "student")}
    if not splits["teacher"] == splits["scratch"] == splits["student"]:
        raise SystemExit(f"the runs of {runs['scratch'].name} do not share their test split")
    teacher_images, labels = open_run(runs["teacher"]).images("test")
    teacher = Classifier(runs["teacher_file"], num_threads=os.cpu_count()).probabilities(teacher_images).argmax(1)
    found = {"test_images": int(len(labels)), "teacher_test": float(np.mean(teacher == labels))}
    for name in ("scratch", "student"):
        metrics = json.loads((runs[name] / "metrics.json").read_text())
        images, _ = open_run(runs[name]).images("test")
        int8 = Classifier(runs[name] / "export" / "model_int8.tflite").probabilities(images).argmax(1)
        found[name] = {"keras_test": metrics["test_accuracy"], "val": metrics["val_accuracy"],
                       "int8_test": float(np.mean(int8 == labels)),
                       "int8_agreement_with_teacher": float(np.mean(int8 == teacher)),
                       "epochs_run": metrics["epochs_run"], "best_epoch": metrics["best_epoch"],
                       "train_seconds": metrics["train_seconds"],
                       "int8_kib": round((runs[name] / "export" / "model_int8.tflite").stat().st_size / 1024, 1)}
        if "distillation" in metrics:
            found[name]["distillation"] = metrics["distillation"]
    found["difference_points"] = round(100 * (found["student"]["keras_test"] - found["scratch"]["keras_test"]), 2)
    found["int8_difference_points"] = round(100 * (found["student"]["int8_test"] - found["scratch"]["int8_test"]), 2)
    return found


def latency_figures(runs: dict[str, Path], runs_per_model: int) -> dict:
    """p50 invoke latency of the student, the scratch CNN (int8 both) and the teacher, interleaved, on this host."""
    from edgecls.bench import BenchOptions, Where, measure

    files = {"student": runs["student"] / "export" / "model_int8.tflite",
             "scratch": runs["scratch"] / "export" / "model_int8.tflite", "teacher": runs["teacher_file"]}
    with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp:
        staged = {}
        for name, path in files.items():  # one folder, the names the report keys them by
            staged[name] = Path(tmp) / f"{name}.tflite"
            shutil.copyfile(path, staged[name])
        report = measure(BenchOptions(paths=list(staged.values()), latency_only=True, keras=False, memory=False,
                                      threads=sorted({1, os.cpu_count() or 1}), runs=runs_per_model, warmup=10),
                         Where())
    found: dict = {}
    for model in report.models:
        name = Path(model.path).stem
        found[name] = {f"p50_ms_{t.threads}t": round(t.invoke_ms.p50, 4) for t in model.latency}
    return found


def smoke_data(folder: Path, per_class: int) -> Path:
    for name in ("cats", "dogs"):
        (folder / name).mkdir(parents=True)
        for path in sorted((benchkit.CATSDOGS / name).iterdir())[:per_class]:
            shutil.copy(path, folder / name / path.name)
    return folder


def table(seeds: dict[int, dict]) -> str:
    lines = ["| seed | teacher | scratch | student | Δ pt | int8: scratch | student | Δ pt | agree w/ teacher: "
             "scratch | student | epochs (best) scratch | student |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for seed, f in seeds.items():
        s, t = f["scratch"], f["student"]
        lines.append(f"| {seed} | {f['teacher_test']:.4f} | {s['keras_test']:.4f} | {t['keras_test']:.4f} | "
                     f"{f['difference_points']:+.2f} | {s['int8_test']:.4f} | {t['int8_test']:.4f} | "
                     f"{f['int8_difference_points']:+.2f} | {s['int8_agreement_with_teacher']:.4f} | "
                     f"{t['int8_agreement_with_teacher']:.4f} | {s['epochs_run']} ({s['best_epoch']}) | "
                     f"{t['epochs_run']} ({t['best_epoch']}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchkit.common_arguments(parser, "/tmp/bench-distill.json")
    parser.add_argument("--work", type=Path, help="where the runs are kept (and reused) [a temporary folder]")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=120, help="both CNNs' epochs")
    parser.add_argument("--patience", type=int, default=30, help="both CNNs' early-stopping patience")
    parser.add_argument("--img-size", type=int, help="[96; --smoke: 48]")
    parser.add_argument("--alpha", type=float, default=0.0, help="the student's --distill-alpha")
    parser.add_argument("--temperature", type=float, default=1.0, help="the student's --distill-temperature")
    parser.add_argument("--mixup", type=float, default=0.4, help="the student's --mixup")
    parser.add_argument("--unlabeled", type=Path, help="the student's --unlabeled folder")
    parser.add_argument("--timing-runs", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before the runs start TensorFlow in this process
    backbone = SMOKE_BACKBONE if args.smoke else TEACHER_BACKBONE
    if not backbone.is_file() or not benchkit.CATSDOGS.is_dir():
        raise SystemExit(f"needs {benchkit.SHARED_DATA} (catsdogs and the Coral models)")
    if args.smoke:
        args.seeds, args.epochs, args.patience, args.timing_runs = "0", 1, 1, 10
    args.img_size = args.img_size or (48 if args.smoke else 96)
    record = benchkit.Record(__file__, args)
    with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp:
        work = args.work or Path(tmp)
        data = benchkit.CATSDOGS
        if args.smoke:
            data = work / "photos" if (work / "photos").is_dir() else smoke_data(work / "photos", 20)
        seeds = {}
        for seed in [int(s) for s in args.seeds.split(",")]:
            runs = trained(work, data, seed, args, backbone)
            seeds[seed] = record.figure(f"accuracy seed {seed}", lambda runs=runs: accuracy_figures(runs))
            record.figure(f"latency seed {seed}", lambda runs=runs: latency_figures(runs, args.timing_runs))
    differences = [f["difference_points"] for f in seeds.values()]
    mean = float(np.mean(differences))
    record.data["summary"] = {"differences_points": differences, "mean_points": round(mean, 2),
                              "int8_differences_points": [f["int8_difference_points"] for f in seeds.values()],
                              "goal_points": GOAL_POINTS, "recipe": recipe_name(args)}
    record.write(args.json)
    print(f"\nmobile CNN on {'20 photos a class' if args.smoke else 'catsdogs'}, {args.img_size} px: from scratch "
          f"against taught by {backbone.stem} ({recipe_name(args)}); test accuracy, paired by seed\n")
    print(table(seeds))
    print(f"\nper-seed differences (student - scratch, Keras, points): {', '.join(f'{d:+.2f}' for d in differences)}; "
          f"mean {mean:+.2f} (goal >= +{GOAL_POINTS:g}: {'met' if mean >= GOAL_POINTS else 'NOT met'})")
    for seed in seeds:
        latency = record.data["figures"][f"latency seed {seed}"]
        valid = "valid" if latency["valid"] else f"NOT valid: load {latency['load_start'][0]} at start"
        print(f"seed {seed} latency (ms p50; {valid}): " + "; ".join(
            f"{name} " + ", ".join(f"{k.split('_')[-1]} {v}" for k, v in figures.items())
            for name, figures in latency.items() if isinstance(figures, dict)))


if __name__ == "__main__":
    main()
