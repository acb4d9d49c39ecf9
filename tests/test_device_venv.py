"""The device side as a user installs it: a fresh venv with only `pip install .` (no extras).

It must classify with the committed reference model, describe it, and refuse to train with
a message that says how to install the `train` extra. Packages come from pip's cache or the
package registry; without either the test skips, saying so.
"""

from __future__ import annotations

import json
import subprocess
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from PIL import Image

pytestmark = pytest.mark.slow  # installs a fresh venv with pip (a minute or more)
ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "models" / "digits-seed"
NETWORK_TROUBLE = ("Could not find a version", "No matching distribution", "Failed to establish", "Temporary failure",
                   "Network is unreachable", "ConnectionError", "Read timed out")


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("device-venv")
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", str(ROOT)], capture_output=True, text=True,
                            timeout=900)
    if result.returncode != 0:
        if any(s in result.stderr for s in NETWORK_TROUBLE):
            pytest.skip(f"packages cannot be downloaded here: {result.stderr.strip().splitlines()[-1]}")
        raise AssertionError(f"pip install . failed:\n{result.stderr[-3000:]}")
    return home


def run(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(home / "bin" / "edgecls"), *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def test_device_venv_has_no_tensorflow(device_venv):
    result = subprocess.run([str(device_venv / "bin" / "python"), "-c", "import tensorflow"], capture_output=True)
    assert result.returncode != 0


def test_info_reads_labels_and_exact_input_spec_from_the_int8_file_alone(device_venv, tmp_path):
    alone = tmp_path / "copied.tflite"  # one file copied to the device: no labels.txt beside it
    alone.write_bytes((REFERENCE / "model_int8.tflite").read_bytes())
    result = run(device_venv, "info", "--json", str(alone))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    text = json.dumps(info)
    assert info["metadata"]["labels"] == [str(i) for i in range(10)]
    (tensor,) = info["inputs"]
    assert tensor["dtype"] == "int8" and tensor["scale"] == 1.0 and tensor["zero_point"] == -128
    assert "ai_edge_litert" in text or "litert" in text


def test_predict_in_the_device_venv_matches_the_workstation(device_venv, tmp_path):
    from edgecls.data import load_dataset
    from edgecls.runtime import Classifier

    digits = load_dataset("digits")
    paths = []
    for i in (0, 1, 2, 3, 4):
        path = tmp_path / f"digit{i}_label{digits.labels[i]}.png"
        Image.fromarray(digits.images[i][:, :, 0]).save(path)
        paths.append(path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    for model in ("model_int8.tflite", "model_float32.tflite"):
        result = run(device_venv, "predict", "--json", "--top-k", "3", str(REFERENCE / model), str(tmp_path))
        assert result.returncode == 1  # one bad file in the batch: an error row, the rest goes on, exit 1
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(rows) == 6 and sum(1 for r in rows if r.get("error")) == 1
        host = Classifier(REFERENCE / model, num_threads=1)
        for row in rows:
            if row.get("error"):
                continue
            expected = host.classify(row["file"], top_k=3)
            assert [c["label"] for c in row["classes"]] == [c.label for c in expected]
            assert np.allclose([c["score"] for c in row["classes"]], [c.score for c in expected], atol=1e-6)


def test_train_in_the_device_venv_says_how_to_install_the_extra(device_venv):
    result = run(device_venv, "train")
    assert result.returncode == 2
    assert "pip install 'edgecls[train]'" in result.stderr and "Traceback" not in result.stderr


def test_bench_on_the_device_with_a_profile_and_the_shipped_test_images(device_venv, tmp_path):
    """No TensorFlow, no scikit-learn, no matplotlib: the profiles ship in the package, the
    reference model's held-out test images are beside it, and accuracy matches the workstation's."""
    out = tmp_path / "device.json"
    result = run(device_venv, "bench", str(REFERENCE / "model_float32.tflite"), str(REFERENCE / "model_int8.tflite"),
                 "--data", str(REFERENCE / "test-images"), "--device", "rpi4", "--runs", "10", "--warmup", "2",
                 "--no-memory", "--json", str(out), cwd=tmp_path)  # away from the checkout's devices/
    assert result.returncode == 0, result.stderr
    device = json.loads(out.read_text())
    workstation = json.loads((REFERENCE / "report" / "bench.json").read_text())
    accuracy = {m["name"]: m["accuracy"]["top1"] for m in workstation["models"]}
    assert {m["name"]: m["accuracy"]["top1"] for m in device["models"]} == \
        {k: v for k, v in accuracy.items() if k.endswith(".tflite")}
    profile = device["device"]["profile"]
    assert profile["name"] == "Raspberry Pi 4" and str(device_venv) in profile["path"]  # the packaged profile
    assert device["device"]["is_device"] is False and "not on a Raspberry Pi 4" in " ".join(device["device"]["notes"])


def test_usage_errors_in_the_device_venv_are_one_line(device_venv):
    """The device install has Typer without the separate click package: errors must still be one line."""
    result = run(device_venv, "predict")
    assert result.returncode == 2 and result.stderr.startswith("edgecls: error: Missing argument")
    assert len(result.stderr.strip().splitlines()) == 1
    assert run(device_venv, "--help").returncode == 0


def test_train_on_a_tflite_backbone_in_the_device_venv_gives_the_workstations_predictions(device_venv, models,
                                                                                          tmp_path):
    """`edgecls train --backbone` with no TensorFlow installed: the same run as on the workstation."""
    from conftest import colour_folder

    from edgecls.transfer.job import TransferOptions, train_with_backbone

    data = colour_folder(tmp_path / "photos")
    here = train_with_backbone(TransferOptions(data=str(data), backbone=str(models.rgb_int8), out=str(tmp_path / "ws"),
                                               threads=1))
    result = run(device_venv, "train", "--data", str(data), "--backbone", str(models.rgb_int8), "--out",
                 str(tmp_path / "device"), "--threads", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "matplotlib is not installed" in result.stderr  # curves.png is skipped, and said so
    device_model = tmp_path / "device" / "export" / "model_int8.tflite"
    rows = [json.loads(line) for line in run(device_venv, "predict", "--json", "--threads", "1", str(device_model),
                                             str(data)).stdout.splitlines()]
    from edgecls.runtime import Classifier

    host = Classifier(here.model_file, num_threads=1)
    assert len(rows) == 24
    for row in rows:
        expected = host.classify(row["file"])[0]
        assert row["classes"][0]["label"] == expected.label
        assert abs(row["classes"][0]["score"] - expected.score) < 1e-6


@pytest.mark.shared_data
def test_explain_in_the_device_venv_maps_a_third_party_uint8_model(device_venv, tmp_path):
    """edgecls explain on Google's Coral uint8 MobileNet with no TensorFlow and no matplotlib: the map
    is made through the runtime and drawn with Pillow."""
    pretrained = SHARED_DATA / "pretrained"
    model = pretrained / "mobilenet_v1_0.25_128_quant.tflite"
    if not model.is_file():
        pytest.skip("../shared/data/pretrained is absent")
    result = run(device_venv, "explain", str(model), str(pretrained / "cat.bmp"), "--labels",
                 str(pretrained / "imagenet_labels.txt"), "--out", str(tmp_path / "maps"), "--json", "--threads", "1")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)["images"][0]
    assert "cat" in row["label"] and row["evaluations"] == 225
    assert Path(row["png"]).is_file() and (tmp_path / "maps" / "explain.json").is_file()


def test_an_installed_edgecls_packs_itself_as_a_wheel_for_a_remote_device(device_venv, tmp_path):
    """`pip install .` leaves no checkout to build a wheel from: bench --remote and export --target took the
    README's own install for a dead end. The installed files, packed again, install and import elsewhere."""
    code = ("import sys; from pathlib import Path; from edgecls.transport.device import edgecls_wheel\n"
            "print(edgecls_wheel(Path(sys.argv[1]), None))")
    done = subprocess.run([str(device_venv / "bin" / "python"), "-c", code, str(tmp_path / "kit")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    wheel = Path(done.stdout.strip())
    assert wheel.name.startswith("edgecls-") and wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as packed:
        names = packed.namelist()
        assert packed.read("edgecls/runtime/classify.py") == (ROOT / "edgecls" / "runtime" / "classify.py").read_bytes()
        assert packed.read("edgecls/devices/rpi4.toml") == (ROOT / "devices" / "rpi4.toml").read_bytes()
    assert not any(name.endswith(".pyc") or "direct_url.json" in name for name in names)
    target = tmp_path / "elsewhere"
    installed = subprocess.run([str(device_venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                                "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr  # pip checks every file against the RECORD
    probe = subprocess.run([str(device_venv / "bin" / "python"), "-c",
                            "import edgecls.runtime.classify as c; print(c.__file__)"],
                           capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(target)}, cwd=tmp_path)
    assert probe.returncode == 0 and probe.stdout.startswith(str(target)), probe.stdout + probe.stderr
