"""`edgecls train`: the run directory, options, determinism, bad input, distribution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_data import make_folder
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.errors import EdgeclsError
from edgecls.train.options import read_config, resolve_options

pytest.importorskip("tensorflow")
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result


def cli_subprocess(*args: str, env=None, cwd=None):
    """The real console entry point: what a user sees, exit code and all."""
    return subprocess.run([sys.executable, "-m", "edgecls", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    result = run_cli("train", "--out", str(out), "--epochs", "2", "--quiet", "--seed", "7")
    assert result.exit_code == 0, result.output
    return out, result.output


def test_run_directory_has_every_artifact(digits_run):
    out, output = digits_run
    for name in ("model.keras", "labels.txt", "config.toml", "split.json", "history.csv", "curves.png", "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.5 < metrics["test_accuracy"] <= 1.0  # two epochs on digits learn a lot; chance is 0.1
    assert np.array(metrics["confusion_matrix"]).sum() == metrics["counts"]["test"]
    assert len((out / "history.csv").read_text().strip().splitlines()) == 1 + metrics["epochs_run"]
    assert (out / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    assert f"Run directory: {out}" in output and "edgecls export" in output
    assert not list(out.parent.glob(".*partial*"))  # the staging folder was renamed away


def test_saved_model_takes_raw_pixels_and_has_no_augmentation(digits_run):
    import keras

    model = keras.saving.load_model(digits_run[0] / "model.keras", safe_mode=True)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[0] == "Rescaling" or kinds[1] == "Rescaling"
    assert not any(k.startswith("Random") or k == "Sequential" for k in kinds)
    names = [type(layer).__name__ for layer in model.layers]
    assert [n for n in names if "Conv" in n or "Dense" in n] == ["Conv2D", "Conv2D", "Dense", "Dense"]
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)


def test_resolved_config_reproduces_the_run(digits_run, tmp_path):
    out = digits_run[0]
    options = resolve_options({}, config_path=out / "config.toml")
    assert options.seed == 7 and options.epochs == 2 and options.augment == "rotate,zoom,translate"
    again = tmp_path / "again"
    assert run_cli("train", "--config", str(out / "config.toml"), "--out", str(again), "--quiet").exit_code == 0
    first, second = (json.loads((p / "metrics.json").read_text()) for p in (out, again))
    # same seed, same data, same options on CPU: the same model, hence the same confusion matrix
    assert first["confusion_matrix"] == second["confusion_matrix"]
    assert (
        json.loads((out / "split.json").read_text())["test"] == json.loads((again / "split.json").read_text())["test"]
    )


def test_existing_run_is_not_overwritten_without_force(digits_run):
    before = (digits_run[0] / "metrics.json").read_bytes()
    result = cli_subprocess("train", "--out", str(digits_run[0]), "--epochs", "1")
    assert result.returncode == 2 and "--force" in result.stderr
    assert (digits_run[0] / "metrics.json").read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["--data", "/no/such/folder"], "not found"),
    (["--data", "imagenet"], "not found"),
    (["--arch", "resnet"], "unknown architecture"),
    (["--augment", "flip,warp"], "unknown augmentation 'warp'"),
    (["--epochs", "0"], "--epochs must be between 1 and"),
    (["--img-size", "0"], "--img-size must be between"),
    (["--img-size", "100000"], "--img-size must be between"),
    (["--optimizer", "lbfgs"], "unknown optimizer"),
    (["--val-fraction", "0.7"], "--val-fraction must be strictly between"),
    (["--strategy", "multi-worker"], "TF_CONFIG"),
])
def test_bad_options_get_one_line_errors(tmp_path, args, message):
    env = {"TF_CONFIG": ""} if "multi-worker" in args else None
    if env:
        os.environ.pop("TF_CONFIG", None)
    result = run_cli_main(["train", "--out", str(tmp_path / "r"), "--quiet", *args])
    assert result[0] == 2, result
    assert message in result[1] and "Traceback" not in result[1]
    assert len(result[1].strip().splitlines()) == 1, result[1]
    assert not (tmp_path / "r").exists()


def run_cli_main(argv: list[str]) -> tuple[int, str]:
    """Call edgecls.cli.main() in-process (errors are formatted there), capturing stderr."""
    import contextlib
    import io

    from edgecls import cli

    err = io.StringIO()
    old = sys.argv
    sys.argv = ["edgecls", *argv]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                cli.main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
    return code, err.getvalue()


def test_bad_folder_datasets_fail_cleanly(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    make_folder(tmp_path / "one", classes=("only",))
    for folder, message in (("empty", "no class sub-folders"), ("one", "only one class")):
        code, err = run_cli_main(["train", "--data", str(tmp_path / folder), "--out", str(tmp_path / "r"), "--quiet"])
        assert code == 2 and message in err and "Traceback" not in err


def test_config_file_unknown_key_and_wrong_type(tmp_path):
    (tmp_path / "a.toml").write_text("epochs = 3\nlearning_rate = 0.1\n")
    with pytest.raises(EdgeclsError, match="unknown key 'learning_rate'"):
        read_config(tmp_path / "a.toml")
    (tmp_path / "b.toml").write_text("[train]\nepochs = 'many'\n")
    with pytest.raises(EdgeclsError, match="epochs must be int"):
        read_config(tmp_path / "b.toml")
    (tmp_path / "c.toml").write_text("epochs = [")
    with pytest.raises(EdgeclsError, match="not valid TOML"):
        read_config(tmp_path / "c.toml")


def test_command_line_wins_over_config(tmp_path):
    (tmp_path / "c.toml").write_text("[train]\nepochs = 3\nbatch-size = 8\naugment = ['flip', 'zoom']\n")
    options = resolve_options({"epochs": 5}, config_path=tmp_path / "c.toml")
    assert (options.epochs, options.batch_size, options.augment) == (5, 8, "flip,zoom")


def _parse_train(*args: str) -> dict:
    """The train command's parameters as Click resolves them (defaults, --config, command line)."""
    import typer

    command = typer.main.get_command(app).commands["train"]
    with command.make_context("train", list(args)) as ctx:
        return dict(ctx.params)


def test_train_cli_options_mirror_train_options_field_for_field():
    from dataclasses import fields

    from edgecls.cli.common import plain as _plain
    from edgecls.train.options import DEFAULTS, TrainOptions

    params = _parse_train()
    assert set(params) == {f.name for f in fields(TrainOptions)}
    for f in fields(TrainOptions):
        value = None if params[f.name] == () else params[f.name]  # a repeatable option not given: Typer passes None
        assert _plain(value) == getattr(DEFAULTS, f.name), f.name


def test_train_config_file_feeds_the_cli_defaults_and_the_command_line_wins(tmp_path):
    (tmp_path / "c.toml").write_text("[train]\nepochs = 3\nbatch-size = 8\ncolor = 'rgb'\naugment = ['flip', 'zoom']\n")
    from edgecls.train.options import TrainOptions, with_config

    params = _parse_train("--config", str(tmp_path / "c.toml"), "--epochs", "5", "--color", "RGB")
    assert params["color"].value == "rgb"  # case-insensitive choice
    given = {"config", "epochs", "color"}
    options = TrainOptions(config=tmp_path / "c.toml", epochs=5, batch_size=16, color="grayscale")
    options, from_config = with_config(options, given)
    # the file's values fill what the command line left out; what it gave wins
    assert (options.epochs, options.batch_size, options.augment, options.color) == (5, 8, "flip,zoom", "grayscale")
    assert from_config == {"batch_size", "augment"}
    (tmp_path / "bad.toml").write_text("learning_rate = 0.1\n")
    code, err = run_cli_main(["train", "--config", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "r")])
    assert code == 2 and "unknown key 'learning_rate'" in err


@pytest.mark.parametrize("broken_link", [False, True])
def test_train_refuses_an_existing_out_before_importing_tensorflow(tmp_path, broken_link):
    """An --out that is there is refused at once; a broken link too (it used to train in full, then fail)."""
    out = tmp_path
    if broken_link:
        out = tmp_path / "link"
        out.symlink_to(tmp_path / "gone")
    code = ("import sys, time; start = time.perf_counter(); from edgecls.cli import main\n"
            f"sys.argv = ['edgecls', 'train', '--out', {str(out)!r}]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
            "print(code, 'tensorflow' in sys.modules, round(time.perf_counter() - start, 2))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    exit_code, imported, seconds = done.stdout.split()
    assert exit_code == "2" and "already exists" in done.stderr and "--force" in done.stderr
    assert imported == "False", f"TensorFlow was imported before the --out check ({seconds} s)"


@pytest.mark.slow
def test_mobile_architecture_trains_on_an_rgb_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "photos", per_class=10, size=(50, 40))
    out = tmp_path / "run"
    result = run_cli("train", "--data", str(root), "--arch", "mobile", "--img-size", "32", "--epochs", "1",
                     "--out", str(out), "--quiet", "--batch-size", "8")
    assert result.exit_code == 0, result.output
    import keras

    model = keras.saving.load_model(out / "model.keras")
    assert model.input_shape == (None, 32, 32, 3)
    assert any(type(layer).__name__ == "DepthwiseConv2D" for layer in model.layers)
    # no --lr: the mobile CNN's own learning rate, recorded so --config reproduces the run
    assert read_config(out / "config.toml")["lr"] == 3e-3
    assert read_config(out / "config.toml")["patience"] == 12
    assert json.loads((out / "metrics.json").read_text())["phases"][0]["lr"] == 3e-3


def test_learning_rate_and_patience_are_the_architectures_unless_given():
    from edgecls.train.job import training_phases
    from edgecls.train.options import TrainOptions, with_arch_defaults

    assert [p.lr for p in training_phases(TrainOptions(arch="mobile"))] == [3e-3]
    assert [p.lr for p in training_phases(TrainOptions(arch="seed"))] == [1e-3]
    assert [p.lr for p in training_phases(TrainOptions(arch="mobile", lr=0.02))] == [0.02]
    assert [p.lr for p in training_phases(TrainOptions(arch="mobilenet_v2", weights="imagenet"))] == [1e-3, 1e-4]
    assert with_arch_defaults(TrainOptions(arch="mobile")).patience == 12
    assert with_arch_defaults(TrainOptions(arch="seed")).patience == 6
    assert with_arch_defaults(TrainOptions(arch="mobile", patience=0)).patience == 0  # 0 (off) is given, not unset


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    # A fresh process: logical devices must be configured before TensorFlow initialises.
    result = cli_subprocess("train", "--strategy", "mirrored", "--epochs", "1", "--quiet", "--out", str(tmp_path / "m"),
                            env={"EDGECLS_CPU_DEVICES": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["test_accuracy"] > 0.3


def test_without_tensorflow_train_says_how_to_install(tmp_path):
    out = str(tmp_path / "r")
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None; "
            f"sys.argv = ['edgecls', 'train', '--out', {out!r}]; from edgecls.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "pip install 'edgecls[train]'" in result.stderr and "Traceback" not in result.stderr


def _start(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgecls", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out + err


@pytest.mark.slow  # trains twice (in subprocesses)
def test_same_seed_gives_identical_weights_and_identical_int8_bytes(tmp_path, monkeypatch):
    """Same seed, data and options on CPU: bit-identical weights, and int8 files that are the same
    bytes. The one field that differs between two trainings is the SHA-256 of model.keras, whose zip
    records when it was saved: with that metadata made equal, train + export gave the same bytes
    twice. Each training is a process of its own, as a user runs it again; the two exports run in this
    process (the command's own function, with its quality check: no --force), which spares two
    TensorFlow start-ups but leaves the export's determinism across processes untested."""
    keras = pytest.importorskip("keras")

    from edgecls.export.job import ExportOptions, export
    from edgecls.rundir import open_run
    from edgecls.runtime.metadata import embed_metadata, read_metadata

    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", env["SOURCE_DATE_EPOCH"])
    run = tmp_path / "run"
    trainings = []
    for _ in range(2):
        code, text = _finish(
            _start("train", "--epochs", "1", "--seed", "3", "--out", run, "--force", "--quiet", env=env)
        )
        assert code == 0, text
        export(open_run(run), ExportOptions(["int8"], calib_samples=100))
        weights = keras.saving.load_model(run / "model.keras").get_weights()
        trainings.append((weights, (run / "export" / "model_int8.tflite").read_bytes()))
    (w1, first), (w2, retrained) = trainings
    assert len(w1) == len(w2) and all((a == b).all() for a, b in zip(w1, w2))
    assert read_metadata(first) != read_metadata(retrained)  # the model.keras digests differ ...
    same = read_metadata(first)
    assert embed_metadata(retrained, same) == embed_metadata(first, same)  # ... and all else is the same bytes


def test_tensorflows_retracing_hint_is_not_shown_and_its_other_warnings_are(capsys):
    """Keras' predict makes a tf.function per model: search and export, predicting with many models in
    one process, made TensorFlow print its retracing hint (ten lines a time); other warnings still show."""
    from edgecls.errors import require_tensorflow

    tf = require_tensorflow("this test")
    import logging

    shown: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: shown.append(record.getMessage())
    tf.get_logger().addHandler(handler)
    try:
        tf.get_logger().warning("5 out of the last 5 calls to <function f> triggered tf.function retracing. ...")
        tf.get_logger().warning("a warning a user should read")
    finally:
        tf.get_logger().removeHandler(handler)
    assert shown == ["a warning a user should read"]
