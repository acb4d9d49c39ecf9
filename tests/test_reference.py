"""The README's figures are the shipped reference's, and the shipped reference is what the code makes.

models/digits-seed/ (scripts/make_reference_model.py) is the result of the README's first command.
Three ties keep README, reference and code from drifting apart again (issue 22: the reference
said 0.9944 for months after the training loop had changed to give 0.9721):
- every number the README quotes about the reference is read from the reference's own files
  (report/bench.json, report/bench.md, metrics.json, config.toml, test-images/);
- the reference's config.toml is what today's `edgecls train` writes for that job: the same
  keys, the same resolved defaults (the script's --smoke run is compared with it);
- heavy: the README's first command, run as written, gives the reference's figures exactly
  (on the machine and library versions the README names; elsewhere it skips and says why).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from edgecls.tomlio import read_toml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REFERENCE = ROOT / "models" / "digits-seed"
SCRIPT = ROOT / "scripts" / "make_reference_model.py"
SECTION = "### What it gives: the reference model"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def readme_section(title: str) -> str:
    """The README's text under `title` up to the next heading, whitespace collapsed to single spaces."""
    text = README.read_text(encoding="utf-8")
    assert title in text, f"README.md has no {title!r} section"
    body = text.split(title, 1)[1]
    body = re.split(r"\n#{1,3} ", body, maxsplit=1)[0]
    return " ".join(body.split())


def table_lines(title: str) -> list[str]:
    text = README.read_text(encoding="utf-8").split(title, 1)[1]
    lines = re.split(r"\n#{1,3} ", text, maxsplit=1)[0].splitlines()
    return [line for line in lines if line.startswith("|")]


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def shipped_bench() -> dict:
    return json.loads((REFERENCE / "report" / "bench.json").read_text(encoding="utf-8"))


def shipped_metrics() -> dict:
    return json.loads((REFERENCE / "metrics.json").read_text(encoding="utf-8"))


def shipped_config() -> dict:
    return read_toml(REFERENCE / "config.toml")


def readme_first_command() -> list[list[str]]:
    """The README's first command after its install step: [["edgecls", "train", ...], ...]."""
    text = README.read_text(encoding="utf-8")
    command = text.split("```bash\n", 1)[1].split("```", 1)[0].strip()
    steps = [shlex.split(step) for step in command.split("&&")]
    return [step for step in steps if step and step[0] == "edgecls"]


def kib(n: int) -> str:
    """A size cell as bench prints it (K KiB below 1 MiB)."""
    from edgecls.reports.report import size_text

    return size_text(n)


# ----------------------------------------------------------------------------- README <-> shipped files
def test_readme_reference_table_is_the_shipped_bench_md_one_thread_rows():
    """The README's table is copied from report/bench.md: header and every row, latency included."""
    readme = table_lines(SECTION)
    bench_md = (REFERENCE / "report" / "bench.md").read_text(encoding="utf-8").splitlines()
    assert len(readme) == 2 + len(shipped_bench()["models"])  # header, rule, one row a model
    for line in readme:
        assert line in bench_md, f"README row not in models/digits-seed/report/bench.md: {line}"


def test_readme_accuracy_and_size_cells_are_the_shipped_bench_json():
    header, _, *rows = map(cells, table_lines(SECTION))
    column = {name: i for i, name in enumerate(header)}
    bench, metrics = shipped_bench(), shipped_metrics()
    models = {model["name"]: model for model in bench["models"]}
    assert [row[0] for row in rows] == list(models)
    for row in rows:
        model = models[row[0]]
        assert row[column["size"]].split()[0] == kib(model["size_bytes"]), row
        assert row[column["top-1"]].startswith(f"{model['accuracy']['top1']:.4f}"), row
        paired = model.get("vs_reference")
        assert row[column["agree"]] == ("ref" if paired is None else f"{paired['agreement']:.4f}"), row
    # The Keras model's test accuracy in the bench is the one training measured on the same split.
    assert models["keras"]["accuracy"]["top1"] == pytest.approx(metrics["test_accuracy"], abs=1e-12)
    assert bench["data"]["images"] == metrics["counts"]["test"]


def test_readme_numbers_about_the_reference_are_the_shipped_files():
    text = readme_section(SECTION)
    bench, metrics, config = shipped_bench(), shipped_metrics(), shipped_config()
    test_images = [p for p in (REFERENCE / "test-images").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    held_out = re.search(r"the ([\d,]+) held-out test images", text)
    assert held_out, "the README no longer says how many held-out test images ship"
    assert int(held_out[1].replace(",", "")) == metrics["counts"]["test"] == len(test_images) == bench["data"]["images"]
    assert f"seed {config['train']['seed']})" in text and config["train"]["arch"] == "seed"  # "(seed CNN, seed 0)"
    machine = bench["machine"]
    where = (f"{machine['cpu']}, {machine['arch']}, {machine['usable_cpus']} CPUs, {machine['system']}, "
             f"Python {machine['python']}, {machine['backend']['name']} {machine['backend']['version']}")
    assert where in text, f"the README should say where the bench ran: {where}"
    assert f"measured {bench['created'][:10]}" in text
    versions = config["versions"]
    assert f"TensorFlow {versions['tensorflow']}" in text and f"Keras {versions['keras']}" in text, \
        "the README should name the TensorFlow and Keras versions its figures are exact for"
    assert machine["arch"] in text
    # The dataset the first command trains on: "1,797 real handwritten digits".
    counts = sum(metrics["counts"].values())
    assert f"{counts:,} real handwritten digits" in readme_section("## Two commands")


def test_readme_first_command_is_the_job_the_reference_records():
    """The reference's config.toml is the README's run (its --out, all else the defaults)."""
    train = next(step for step in readme_first_command() if step[1] == "train")
    out = train[train.index("--out") + 1]
    assert shipped_config()["train"]["out"] == out
    assert [step[1:] for step in readme_first_command()[1:]] == [["export", out], ["bench", out]]


# ----------------------------------------------------------------------------- shipped config <-> the code
@pytest.mark.slow
def test_reference_config_is_what_todays_train_writes_for_that_job(tmp_path):
    """The script's --smoke (the same job, 1 epoch, in a temporary folder) writes the same config.toml
    keys in the same order and the same resolved values, but for the epochs it cuts and its folder,
    and a metrics.json with the same keys."""
    from edgecls.train.options import TrainOptions

    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, cwd=ROOT,
                          timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    target = Path(re.search(r"^wrote (.+)$", done.stdout, re.MULTILINE)[1])
    smoke = read_toml(target / "config.toml")
    shipped = shipped_config()
    assert list(smoke) == list(shipped) == ["train", "versions"]
    assert list(smoke["train"]) == list(shipped["train"]), "run scripts/make_reference_model.py"
    assert list(smoke["versions"]) == list(shipped["versions"])
    differ = {key for key in shipped["train"] if smoke["train"][key] != shipped["train"][key]}
    assert differ == {"epochs", "out"}, {key: (shipped["train"][key], smoke["train"][key]) for key in differ}
    assert smoke["train"]["epochs"] == 1 and shipped["train"]["epochs"] == TrainOptions().epochs
    # metrics.json too: what today's run records (e.g. the split's dedupe report) the reference has.
    smoke_metrics = json.loads((target / "metrics.json").read_text(encoding="utf-8"))
    assert list(smoke_metrics) == list(shipped_metrics()), "run scripts/make_reference_model.py"
    for name in ("labels.txt", "model_float32.tflite", "model_int8.tflite", "export.json"):
        assert (target / name).is_file() and (REFERENCE / name).is_file(), name


# ----------------------------------------------------------------------------- the README's command, run
def _not_the_recorded_machine() -> str | None:
    """Why the reference's figures need not be exact here, or None on the machine they were made on."""
    import keras
    import tensorflow as tf

    recorded = shipped_config()["versions"]
    here = {"tensorflow": tf.__version__, "keras": keras.__version__}
    if platform.machine() != shipped_bench()["machine"]["arch"]:
        return f"the figures are exact on {shipped_bench()['machine']['arch']}, this is {platform.machine()}"
    if any(recorded[k] != v for k, v in here.items()):
        return f"the figures are exact with {recorded}, this has {here}"
    return None


@pytest.mark.heavy  # train 30 epochs, export, bench: minutes on 2 cores (.ci/run's heavy group runs it)
def test_the_readme_first_command_gives_the_reference_figures(tmp_path):
    pytest.importorskip("tensorflow")
    if (why := _not_the_recorded_machine()) is not None:
        pytest.skip(why)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"}
    steps = readme_first_command()
    for step in steps:  # run as written, from a fresh folder
        done = subprocess.run([sys.executable, "-m", "edgecls", *step[1:]], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=1200)
        assert done.returncode == 0, f"{' '.join(step)}: {done.stderr[-3000:]}"
    printed = done.stdout  # the bench's table, the command's last step
    run = tmp_path / steps[0][steps[0].index("--out") + 1]

    metrics, shipped = json.loads((run / "metrics.json").read_text(encoding="utf-8")), shipped_metrics()
    for key in ("test_accuracy", "val_accuracy", "epochs_run", "best_epoch", "counts", "confusion_matrix"):
        assert metrics[key] == shipped[key], f"{key}: this run {metrics[key]}, models/digits-seed {shipped[key]}"

    bench = json.loads((run / "bench" / "bench.json").read_text(encoding="utf-8"))
    reference = shipped_bench()
    assert bench["data"]["content_sha256"] == reference["data"]["content_sha256"]  # the same test images
    mine = {model["name"]: model for model in bench["models"]}
    for model in reference["models"]:  # the README's accuracy and size cells are these figures
        got = mine[model["name"]]
        assert got["accuracy"]["top1"] == model["accuracy"]["top1"], model["name"]
        assert got["accuracy"]["confusion"] == model["accuracy"]["confusion"], model["name"]
        assert kib(got["size_bytes"]) == kib(model["size_bytes"]), model["name"]
        assert (got.get("vs_reference") or {}).get("agreement") == (model.get("vs_reference") or {}).get("agreement")
    header, _, *rows = map(cells, table_lines(SECTION))
    for row in rows:  # and the command printed them
        line = next(line for line in printed.splitlines() if line.strip().startswith(row[0]))
        for name in ("size", "top-1", "agree"):
            assert row[header.index(name)].split()[0] in line, (name, row, line)

    config = read_toml(run / "config.toml")
    assert config["train"] == shipped_config()["train"]
