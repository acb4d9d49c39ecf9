"""`edgecls train --from RUN --add DIR` (edgecls.retraining) and `edgecls bench compare RUN RUN2`.

Fast tests build run directories as train writes them (RunRecord, no training) on digits and on a small
generated folder of pictures; the slow ones train for real: the Keras route on digits through the CLI,
then export and compare, and the .tflite backbone route in a process where TensorFlow cannot be imported.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from edgecls.artifacts import RunConfig, RunRecord
from edgecls.data import load_dataset, make_split, part_digest
from edgecls.errors import EdgeclsError
from edgecls.retraining import retraining_data
from edgecls.rundir import open_run
from edgecls.train.options import read_config


def make_run(folder: Path, data: str, img_size: int, color: str, seed: int = 0) -> Path:
    """A run directory as `edgecls train` writes it (its model a placeholder)."""
    dataset = load_dataset(data, img_size, color)
    split = make_split(dataset, 0.2, 0.2, seed)
    config = RunConfig({"data": data, "img_size": img_size, "color": color, "seed": seed, "arch": "seed",
                        "val_fraction": 0.2, "test_fraction": 0.2})
    folder.mkdir(parents=True)
    RunRecord(list(dataset.class_names), config, split.to_json(dataset, seed, (0.2, 0.2))).write(folder)
    placeholder(folder / "model.keras")
    return folder


def placeholder(path: Path) -> None:
    """A .keras archive that passes the run's cheap checks (nothing here loads the model)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")


def save(pixels: np.ndarray, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path, **kwargs)
    return path


def digests(run: Path) -> dict[str, str]:
    """The content digests of a run's validation and test parts, computed here from its images."""
    opened = open_run(run)
    dataset, split = opened.data_and_split()
    return {part: part_digest(dataset.images, getattr(split, part)) for part in ("val", "test")}


# ---------------------------------------------------------------------- digits (identical pixels)
@pytest.fixture(scope="module")
def digits_fake(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("digits") / "run", "digits", 28, "grayscale")


def digits_inbox(run: Path, inbox: Path) -> dict[str, object]:
    """New pictures (train digits moved by a pixel), a copy of a test digit and of a train digit, and
    noise in unknown/: what a person's labelled collect folder could hold."""
    dataset, split = open_run(run).data_and_split()
    for k, i in enumerate(split.train[:20]):
        save(np.roll(dataset.images[i], 1, axis=1), inbox / dataset.class_names[dataset.labels[i]] / f"new{k}.png")
    test, train = int(split.test[3]), int(split.train[5])
    save(dataset.images[test], inbox / dataset.class_names[dataset.labels[test]] / "copy-of-test.png")
    save(dataset.images[train], inbox / dataset.class_names[dataset.labels[train]] / "copy-of-train.png")
    (inbox / dataset.class_names[dataset.labels[train]] / "copy-of-train.json").write_text("{}")  # a sidecar
    rng = np.random.default_rng(0)
    for k in range(4):
        save(rng.integers(0, 256, (28, 28, 1), dtype=np.uint8), inbox / "unknown" / f"noise{k}.png")
    return {"train": len(split.train), "test": test}


def retrained_run(run: Path, inbox: Path, run2: Path) -> tuple[object, Path]:
    """RUN2 as `train --from RUN --add inbox` writes it (its model a placeholder), the inbox made first."""
    digits_inbox(run, inbox)
    result = retraining_data(run, [inbox])
    config = RunConfig({**RunRecord.read(run).config.train, **result.options(), "out": str(run2)})
    run2.mkdir()
    RunRecord(list(result.dataset.class_names), config, result.split.to_json(result.dataset, 0, (0.2, 0.2))).write(run2)
    placeholder(run2 / "model.keras")
    return result, run2


def test_added_digits_join_train_only_and_copies_of_the_runs_images_are_left_out(digits_fake, tmp_path):
    inbox = tmp_path / "inbox"
    before = digits_inbox(digits_fake, inbox)
    lines: list[str] = []
    from edgecls.reporter import Reporter

    result = retraining_data(digits_fake, [inbox], reporter=Reporter(lines.append, bars=False))
    split, record = result.split, result.record
    assert len(split.train) == before["train"] + 20  # the 20 new ones; the two copies left out
    assert {part: part_digest(result.dataset.images, getattr(split, part)) for part in ("val", "test")} == \
        digests(digits_fake) == record["digests"]
    out = {Path(item["file"]).name: item for item in record["left_out"]}
    assert set(out) == {"copy-of-test.png", "copy-of-train.png"}
    assert out["copy-of-test.png"]["part"] == "test" and out["copy-of-test.png"]["like"] == before["test"]
    assert out["copy-of-train.png"]["part"] == "train"
    assert record["added"]["train"] == 20 and record["added"]["negatives"] == 4 and len(result.negatives) == 4
    assert set(split.train.tolist()).isdisjoint(np.concatenate([split.val, split.test]).tolist())
    assert any("Left out 2 added images:" in line and "a test image of the run" in line for line in lines)
    assert record["check"].startswith("exact")  # built-in digits: identical pixels only (glyphs hash alike)


def test_a_retrained_run_reloads_its_data_and_trains_again_from_its_config(digits_fake, tmp_path):
    """RUN2 as train writes it: RunDir reloads RUN's data and the folder it added, and its split applies;
    the options its config.toml records (from_run, add) make the same split again."""
    inbox = tmp_path / "inbox"
    result, run2 = retrained_run(digits_fake, inbox, tmp_path / "run2")
    opened = open_run(run2)
    dataset, split = opened.data_and_split()
    assert len(dataset.labels) == len(result.dataset.labels) and np.array_equal(split.train, result.split.train)
    assert opened.negatives() is not None and len(opened.negatives()) == 4
    options = read_config(run2 / "config.toml")
    assert options["from_run"] == str(digits_fake.resolve()) and options["add"] == [str(inbox.resolve())]
    again = retraining_data(options["from_run"], options["add"])
    assert np.array_equal(again.split.train, result.split.train) and again.split.origin["left_out"] == \
        result.split.origin["left_out"]
    # and from RUN2 on: its own folder comes first, a new one after it
    more = tmp_path / "more"
    save(np.zeros((28, 28, 1), np.uint8) + 7, more / "3" / "flat.png")
    third = retraining_data(run2, [more])
    assert third.folders == [str(inbox.resolve()), str(more.resolve())]
    assert len(third.split.train) == len(result.split.train) + 1


@pytest.mark.parametrize("layout, message", [
    ({"cats/x.png": 0}, "cats/ is not one of the classes"),
    ({"x.png": 0}, "x.png is in no class folder"),
    ({"3/notes.txt": 0}, "no images in class folders"),
])
def test_an_inbox_that_is_not_labelled_is_a_one_line_error(digits_fake, tmp_path, layout, message):
    for name in layout:
        path = tmp_path / "inbox" / name
        if name.endswith(".png"):
            save(np.zeros((28, 28, 1), np.uint8), path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("not an image")
    with pytest.raises(EdgeclsError, match=message):
        retraining_data(digits_fake, [tmp_path / "inbox"])


def test_options_that_would_change_the_held_out_images_are_refused(digits_fake, tmp_path):
    save(np.zeros((28, 28, 1), np.uint8), tmp_path / "inbox" / "1" / "a.png")
    with pytest.raises(EdgeclsError, match="--img-size 32 would make others"):
        retraining_data(digits_fake, [tmp_path / "inbox"], img_size=32)
    with pytest.raises(EdgeclsError, match="--test-fraction"):
        retraining_data(digits_fake, [tmp_path / "inbox"], fractions=(0.2, 0.3))
    with pytest.raises(EdgeclsError, match="no such folder"):
        retraining_data(digits_fake, [tmp_path / "nowhere"])


def test_the_cli_refuses_add_without_from_and_from_with_config(cli, digits_fake, tmp_path):
    done = cli("train", "--add", tmp_path, "--out", tmp_path / "x")
    assert done.code == 2 and "--add needs --from RUN" in done.err
    done = cli("train", "--config", digits_fake / "config.toml", "--from", digits_fake, "--out", tmp_path / "x")
    assert done.code == 2 and "not both" in done.err
    done = cli("train", "--from", digits_fake, "--out", digits_fake)
    assert done.code == 2 and "is the run given to --from" in done.err


# ---------------------------------------------------------------------- a folder of photo-like pictures
def scene(seed: int, kind: str, side: int = 64) -> np.ndarray:
    """A generated picture: a gradient sky and a few shapes, discs for one class, boxes for the other."""
    rng = np.random.default_rng(seed)
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, side)[:, None, None]
    image = Image.fromarray(((1 - ramp) * top + ramp * bottom).repeat(side, axis=1).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y, r = rng.integers(8, side - 8), rng.integers(8, side - 8), rng.integers(5, 14)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if kind == "discs" else draw.rectangle)((x - r, y - r, x + r, y + r), fill=colour)
    return np.asarray(image)


@pytest.fixture(scope="module")
def scenes_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    for kind in ("boxes", "discs"):
        for k in range(15):
            save(scene(100 * (kind == "discs") + k, kind), root / "data" / kind / f"{k:02d}.png")
    return make_run(root / "run", str(root / "data"), 32, "rgb")


def test_a_near_duplicate_of_a_test_picture_is_left_out_and_counted(scenes_run, tmp_path):
    """A test picture resized, re-encoded as JPEG and brightened is the same picture: left out, named
    with the test file it copies; new pictures join train; RunDir of the new run reads them back."""
    opened = open_run(scenes_run)
    test_file = Path(opened.part("test").files[0])
    copy = Image.open(test_file).convert("RGB").resize((80, 80), Image.Resampling.BILINEAR)
    copy = Image.fromarray(np.clip(np.asarray(copy, np.float32) * 1.1, 0, 255).astype(np.uint8))
    inbox = tmp_path / "inbox"
    (inbox / test_file.parent.name).mkdir(parents=True)
    buffer = io.BytesIO()
    copy.save(buffer, "JPEG", quality=80)
    (inbox / test_file.parent.name / "photo-again.jpg").write_bytes(buffer.getvalue())
    for k in range(4):
        save(scene(500 + k, "discs"), inbox / "discs" / f"new{k}.png")
    result = retraining_data(scenes_run, [inbox])
    (left,) = result.record["left_out"]
    assert Path(left["file"]).name == "photo-again.jpg" and left["part"] == "test"
    assert left["like"] == str(test_file.relative_to(scenes_run.parent / "data")) and "near-duplicate" in left["why"]
    assert result.record["check"].startswith("near") and result.record["added"]["train"] == 4
    assert len(result.split.train) == len(opened.split().train) + 4
    assert {part: part_digest(result.dataset.images, getattr(result.split, part)) for part in ("val", "test")} == \
        digests(scenes_run)


# ---------------------------------------------------------------------- for real: train, export, compare
@pytest.mark.slow
def test_train_from_a_digits_run_then_compare_both_on_its_test_split(make_digits_run, cli, tmp_path):
    run = make_digits_run(3, 0, ("int8",))
    inbox = tmp_path / "inbox"
    before = digits_inbox(run, inbox)
    run2 = tmp_path / "digits-2"
    done = cli("train", "--from", run, "--add", inbox, "--epochs", "3", "--out", run2, "--quiet")
    assert done.code == 0, done.err
    metrics = json.loads((run2 / "metrics.json").read_text())
    assert metrics["counts"]["train"] == before["train"] + 20 == metrics["from"]["train"]
    assert metrics["from"]["left_out"] == 2 and metrics["from"]["negatives"] == 4
    assert digests(run2) == digests(run)
    assert f"edgecls bench compare {run} {run2}" in done.out
    config = read_config(run2 / "config.toml")  # RUN's options kept, the epochs given here
    assert config["epochs"] == 3 and config["seed"] == 0 and config["arch"] == "seed" and config["add"]
    exported = cli("export", run2, "--quant", "int8", "--calib-samples", "100")
    assert exported.code == 0 and f"Then: edgecls bench compare {run.resolve()} {run2}" in exported.out
    compared = cli("bench", "compare", run, run2, "--json", tmp_path / "compare.json", "--threads", "1")
    assert compared.code == 0, compared.err
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert [m["run"] for m in doc["models"]] == ["digits", "digits-2"]
    assert doc["test"]["images"] == metrics["counts"]["test"] and doc["runs"][1]["same_test"]
    assert doc["runs"][1]["test_images_in_train"] == 0
    (pair,) = doc["pairs"]
    assert pair["model"] == "model_int8.tflite" and 0 <= pair["p"] <= 1
    first, second = doc["models"]
    assert pair["delta"] == pytest.approx(second["top1"] - first["top1"])
    assert "digits-2" in compared.out and "ref" in compared.out


@pytest.mark.slow
def test_the_backbone_route_retrains_on_a_device_install_without_tensorflow(models, tmp_path):
    """train --backbone, then train --from it --add an inbox, in a process where TensorFlow cannot be
    imported: the inbox's unknown/ images choose the unknown rule with the run's own validation images."""
    from conftest import colour_folder

    data = colour_folder(tmp_path / "data", per_class=40)  # 24 validation images: enough for an unknown rule
    inbox = tmp_path / "inbox"
    rng = np.random.default_rng(9)
    for name, channel in (("blue", 2), ("red", 0)):
        for k in range(5):
            pixels = rng.integers(0, 90, (16, 16, 3), dtype=np.uint8)
            pixels[..., channel] = rng.integers(150, 256, (16, 16), dtype=np.uint8)
            save(pixels, inbox / name / f"new{k}.png")
    for k in range(6):
        save(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) // 4 + 60, inbox / "unknown" / f"grey{k}.png")
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
            "from edgecls.cli import main\n"
            "first = ['train', '--data', sys.argv[1], '--backbone', sys.argv[2], '--out', sys.argv[3], '--quiet', "
            "'--epochs', '5', '--threads', '1', '--val-fraction', '0.3']\n"
            "for argv in (first, ['train', '--from', sys.argv[3], '--add', sys.argv[4], '--quiet']):\n"
            "    sys.argv = ['edgecls', *argv]\n"
            "    try:\n        main()\n    except SystemExit as e:\n        assert not e.code, e.code\n")
    done = subprocess.run([sys.executable, "-c", code, str(data), str(models.rgb_int8), str(tmp_path / "r"),
                           str(inbox)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "EDGECLS_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-2000:]
    run2 = tmp_path / "r-2"  # beside RUN, the first free number
    metrics = json.loads((run2 / "metrics.json").read_text())
    assert metrics["from"]["added"] == 10 and metrics["counts"]["train"] == metrics["from"]["train_before"] + 10
    assert digests(run2) == digests(tmp_path / "r")
    assert metrics["openset"]["candidates"][0]["rejected_unknown"] is not None  # the negatives were scored
    assert "edgecls bench compare" in done.stdout


def test_one_file_under_two_labels_is_refused(digits_fake, tmp_path):
    """A picture collected twice and sorted once sits in a class folder and in unknown/ (or in two class
    folders): trained as both, it would teach the model nothing right. Refused, naming both files."""
    picture = save(np.full((28, 28, 1), 90, np.uint8), tmp_path / "inbox" / "3" / "a.png")
    (tmp_path / "inbox" / "unknown").mkdir()
    (tmp_path / "inbox" / "unknown" / "a-2.png").write_bytes(picture.read_bytes())
    with pytest.raises(EdgeclsError, match=r"a\.png \(3\) and .*a-2\.png \(unknown/\) are the same file under two"):
        retraining_data(digits_fake, [tmp_path / "inbox"])
    (tmp_path / "inbox" / "unknown" / "a-2.png").unlink()
    (tmp_path / "inbox" / "5").mkdir()
    (tmp_path / "inbox" / "5" / "b.png").write_bytes(picture.read_bytes())
    with pytest.raises(EdgeclsError, match=r"\(3\) and .*b\.png \(5\) are the same file"):
        retraining_data(digits_fake, [tmp_path / "inbox"])


def test_an_inbox_with_nothing_new_is_refused_before_a_training(digits_fake, tmp_path):
    """Every image a copy of the run's own (or undecodable): a new run would train on the same images."""
    dataset, split = open_run(digits_fake).data_and_split()
    i = int(split.train[0])
    save(dataset.images[i], tmp_path / "inbox" / dataset.class_names[dataset.labels[i]] / "again.png")
    (tmp_path / "inbox" / "4").mkdir()
    (tmp_path / "inbox" / "4" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(EdgeclsError, match=r"no new image to train on \(1 left out: again\.png identical to image "
                                           r"\d+ of digits, a train image of the run; 1 could not be decoded\)"):
        retraining_data(digits_fake, [tmp_path / "inbox"])


def test_a_new_picture_in_an_added_folder_is_named_as_what_changed(digits_fake, tmp_path):
    """The next round collected into the folder a run added: the run's split no longer applies, and the error
    says it is the added folder, not the built-in data, and what to do."""
    inbox = tmp_path / "inbox"
    result, run2 = retrained_run(digits_fake, inbox, tmp_path / "run2")
    save(np.full((28, 28, 1), 200, np.uint8), inbox / "3" / "next-round.png")
    with pytest.raises(EdgeclsError, match=r"the data at digits, or the images added to it from .*inbox, changed since "
                                           r"the run was trained .*collect the next round into a new folder"):
        open_run(run2).data_and_split()


def test_from_without_add_trains_again_and_a_folder_the_run_added_is_refused(digits_fake, tmp_path):
    """`train --from RUN` alone trains RUN's split again (other options: --epochs ...); --add of a folder RUN
    already added would add nothing."""
    again = retraining_data(digits_fake, [])
    assert np.array_equal(again.split.train, open_run(digits_fake).data_and_split()[1].train)
    inbox = tmp_path / "inbox"
    _, run2 = retrained_run(digits_fake, inbox, tmp_path / "run2")
    with pytest.raises(EdgeclsError, match=r"--add .*inbox: already added by .*run2"):
        retraining_data(run2, [inbox])
