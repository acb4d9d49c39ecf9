"""`edgecls train --teacher`: the teacher's classes checked, the teacher labelling the very view the student
trains on (augmented, mixed), the loss, --unlabeled pictures (copies of held-out ones left out), and a
distilled run end to end (digits, one epoch; the reference digits model as the teacher)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgecls.errors import EdgeclsError

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "models" / "digits-seed" / "model_int8.tflite"
DIGITS = [str(i) for i in range(10)]


def _relabelled(tmp_path: Path, labels: list[str]) -> Path:
    """The reference digits model with other class names in its metadata."""
    from edgecls.runtime.metadata import ModelMetadata, embed_metadata, read_metadata

    content = TEACHER.read_bytes()
    metadata = ModelMetadata.from_json(read_metadata(content))
    path = tmp_path / "teacher.tflite"
    path.write_bytes(embed_metadata(content, replace(metadata, labels=labels)))
    return path


def test_a_teacher_must_know_the_data_classes(tmp_path):
    from edgecls.train.distill import open_teacher

    with pytest.raises(EdgeclsError) as caught:
        open_teacher(TEACHER, ["cat", "dog"])
    message = str(caught.value)
    assert "answers 10 classes (0, 1, 2, 3, 4, ... 5 more) but the data has 2 (cat, dog)" in message
    assert "\n" not in message
    with pytest.raises(EdgeclsError, match="answers 10 classes"):
        open_teacher(_relabelled(tmp_path, [*DIGITS[:9], "ten"]), DIGITS)


def test_a_teacher_with_the_classes_in_another_order_answers_in_the_data_order(tmp_path):
    from edgecls.runtime.classify import Classifier
    from edgecls.train.distill import open_teacher

    reversed_teacher = open_teacher(_relabelled(tmp_path, DIGITS[::-1]), DIGITS)
    assert reversed_teacher.order.tolist() == list(range(9, -1, -1))
    pixels = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
    plain = Classifier(TEACHER).probabilities(pixels)
    assert np.allclose(reversed_teacher(pixels), plain[:, ::-1])
    assert open_teacher(TEACHER, DIGITS).order.tolist() == list(range(10))


class RecordingTeacher:
    """A teacher (edgecls.train.distill.Teacher) that keeps every batch it is shown."""

    def __init__(self, teacher):
        self.inner, self.seen = teacher, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, pixels):
        self.seen.append(np.array(pixels))
        return self.inner(pixels)


@pytest.mark.parametrize("mixup", [0.0, 0.4])
def test_the_teacher_labels_the_very_view_the_student_trains_on(mixup):
    tf = pytest.importorskip("tensorflow")
    from edgecls.data import load_dataset
    from edgecls.train.distill import open_teacher, training_pipeline
    from edgecls.train.model import build_augmentation

    dataset = load_dataset("digits")
    teacher = RecordingTeacher(open_teacher(TEACHER, DIGITS, threads=1))
    augmentation = build_augmentation(["rotate", "zoom", "translate"], 0, fill_mode="constant")
    train = np.arange(64)
    data = training_pipeline(tf, dataset.images, dataset.labels, train, 16, 10, 0, augmentation, teacher, mixup)
    originals = np.asarray(dataset.images[train], np.float32)
    for x, y in data.take(3):
        x, y = np.asarray(x), np.asarray(y)
        # the pipeline maps batches in parallel and ahead: find the batch the teacher was shown by its content
        shown = next((s for s in teacher.seen if np.array_equal(s, x.astype(np.uint8))), None)
        assert shown is not None and shown.dtype == np.uint8  # exactly the student's view
        assert np.array_equal(x, np.round(x))  # whole pixel values
        assert np.allclose(y[:, 10:20], teacher.inner(shown)) and np.all(y[:, 20] == 1)
        # augmented (and mixed): no view is one of the original pictures
        assert not any(np.array_equal(view, original) for view in x for original in originals)
        labels = y[:, :10]
        assert np.allclose(labels.sum(1), 1)
        assert (np.sum(labels > 0, 1) > 1).any() == bool(mixup)  # mixup mixes the labels too


def test_the_loss_mixes_labels_and_the_teachers_softened_probabilities():
    pytest.importorskip("tensorflow")
    from keras import ops

    from edgecls.train.distill import distillation_loss

    alpha, t = 0.3, 2.0
    student = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]], np.float32)
    teacher = np.array([[0.8, 0.1, 0.1], [0.3, 0.4, 0.3], [0, 0, 0]], np.float32)
    labels = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 1]], np.float32)  # row 1 unlabeled; row 2 validation
    taught = np.array([[1], [1], [0]], np.float32)
    got = ops.convert_to_numpy(distillation_loss(3, alpha, t)(np.concatenate([labels, teacher, taught], 1), student))

    def soft(p):
        z = np.log(np.clip(p, 1e-4, 1)) / t
        return np.exp(z) / np.exp(z).sum()

    def kl(p, q):
        return t * t * np.sum(soft(p) * (np.log(soft(p)) - np.log(soft(q))))

    assert got[0] == pytest.approx(alpha * -np.log(0.7) + (1 - alpha) * kl(teacher[0], student[0]), rel=1e-4)
    assert got[1] == pytest.approx((1 - alpha) * kl(teacher[1], student[1]), rel=1e-4)  # the teacher's term alone
    assert got[2] == pytest.approx(-np.log(0.6), rel=1e-4)  # no teacher: plain cross-entropy


def test_unlabeled_copies_of_held_out_pictures_are_left_out(tmp_path):
    from PIL import Image

    from edgecls.train.distill import load_unlabeled

    rng = np.random.default_rng(0)
    pictures = [np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8) for _ in range(5)]
    held_out = np.stack(pictures[:2])
    folder = tmp_path / "unlabeled"
    (folder / "deep").mkdir(parents=True)
    Image.fromarray(pictures[0]).save(folder / "copy.png")
    Image.fromarray(pictures[1]).resize((90, 90)).save(folder / "deep" / "resized.jpg", quality=90)
    for i, picture in enumerate(pictures[2:]):
        Image.fromarray(picture).save(folder / f"new{i}.png")
    (folder / "broken.jpg").write_bytes(b"not a picture")
    found = load_unlabeled(folder, (32, 32), "rgb", held_out)
    assert sorted(found.copies_of_held_out) == ["copy.png", "deep/resized.jpg"]
    assert found.files == ["new0.png", "new1.png", "new2.png"] and found.images.shape == (3, 32, 32, 3)
    assert len(found.unreadable) == 1 and found.found == 6
    with pytest.raises(EdgeclsError, match="copy of a validation or test picture"):
        load_unlabeled(folder, (32, 32), "rgb", np.stack(pictures))


@pytest.mark.slow
def test_a_distilled_run_records_its_teacher_and_is_deterministic(tmp_path):
    pytest.importorskip("tensorflow")
    from PIL import Image

    from edgecls.data import load_dataset
    from edgecls.rundir import open_run
    from edgecls.train.job import train
    from edgecls.train.options import resolve_options

    unlabeled = tmp_path / "unlabeled"
    unlabeled.mkdir()
    digits = load_dataset("digits")
    for i in range(40):  # pictures the split does not hold: the digits flipped upside down
        Image.fromarray(np.asarray(digits.images[i])[::-1, :, 0]).save(unlabeled / f"{i}.png")
    runs = []
    for name in ("a", "b"):
        options = resolve_options({"out": str(tmp_path / name), "epochs": 1, "teacher": str(TEACHER), "mixup": 0.4,
                                   "distill_alpha": 0.2, "distill_temperature": 2.0, "unlabeled": str(unlabeled)})
        runs.append(train(options))
    record = runs[0].metrics["distillation"]
    assert record["teacher_val_accuracy"] > 0.9 and record["teacher_images"] >= 45 * 32
    assert record["teacher_images_per_s"] > 0 and 0 < record["teacher_share_of_training"] < 1
    assert record["unlabeled"]["used"] + record["unlabeled"]["copies_of_held_out_left_out"] == 40
    assert 0 <= record["val_agreement_with_teacher"] <= 1
    first, second = (open_run(r.run_dir).model() for r in runs)
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))
    assert not any("augmentation" in layer.name for layer in first.layers)  # the saved model has no pipeline
    config = (runs[0].run_dir / "config.toml").read_text()
    assert "teacher = " in config and "mixup = 0.4" in config
    assert json.loads((runs[0].run_dir / "metrics.json").read_text())["distillation"]["teacher_sha256"]


@pytest.mark.slow
def test_a_time_limit_stops_training_and_says_so(tmp_path):
    pytest.importorskip("tensorflow")
    from edgecls.train.job import train
    from edgecls.train.options import resolve_options

    result = train(resolve_options({"out": str(tmp_path / "run"), "epochs": 5}), time_limit_s=0.01,
                   score_test=False)
    assert result.epochs_run == 1 and result.metrics["stopped_for_time"]
    assert result.test_accuracy is None and "held back" in result.summary()


def test_the_time_limit_stops_before_an_epoch_that_would_not_end_in_time(monkeypatch):
    """The epoch just run estimates the next: with 10 s and 4 s epochs, two run (the third would end at 12 s)."""
    keras = pytest.importorskip("keras")
    import edgecls.train.job as job

    now = [100.0]
    monkeypatch.setattr(job.time, "perf_counter", lambda: now[0])
    clock = job._TimeLimit(keras, 10.0)
    model = SimpleNamespace(stop_training=False)
    clock._model = model
    ended = 0
    while not model.stop_training:
        clock.on_epoch_begin(ended)
        now[0] += 4.0
        clock.on_epoch_end(ended)
        ended += 1
    assert ended == 2 and clock.stopped and now[0] <= 110.0


def test_width_scales_the_from_scratch_cnns():
    pytest.importorskip("tensorflow")
    from edgecls.train.model import build_model, scaled

    assert [scaled(f, 0.5) for f in (16, 32, 64, 256)] == [8, 16, 32, 128]
    assert scaled(16, 0.25) == 8 and scaled(64, 0.75) == 48 and scaled(64, 1.0) == 64
    for arch in ("mobile", "seed"):
        full = build_model(arch, (64, 64, 3), 2).count_params()
        half = build_model(arch, (64, 64, 3), 2, alpha=0.5).count_params()
        assert half < full / 2.5, arch
