"""edgecls.rundir: opening and checking run directories and bare .keras files, calibration sampling."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecls.data import stratified_sample
from edgecls.errors import EdgeclsError
from edgecls.rundir import open_run, open_source


# ---------------------------------------------------------------------- stratified sampling (no TF)
def test_stratified_sample_keeps_class_shares_and_is_seeded():
    labels = np.repeat(np.arange(4), [400, 300, 200, 100])
    chosen = stratified_sample(labels, 100, seed=5)
    assert len(chosen) == len(set(chosen.tolist())) == 100
    assert np.bincount(labels[chosen]).tolist() == [40, 30, 20, 10]
    assert np.array_equal(chosen, stratified_sample(labels, 100, seed=5))
    assert not np.array_equal(chosen, stratified_sample(labels, 100, seed=6))


def test_stratified_sample_gives_every_class_one_when_it_can():
    labels = np.array([0] * 995 + [1] * 5)
    counts = np.bincount(labels[stratified_sample(labels, 20, seed=0)], minlength=2)
    assert counts.tolist() == [19, 1]  # 20 * 5/1000 rounds to 0: the rare class still gets one
    assert len(stratified_sample(labels, 1, seed=0)) == 1
    assert sorted(stratified_sample(labels, 5000, seed=0).tolist()) == list(range(1000))  # more than there is: all


# ---------------------------------------------------------------------- run directories
@pytest.fixture(scope="session")
def fake_run(tmp_path_factory) -> Path:
    """A run directory as `edgecls train` writes it, with an untrained model (no training needed)."""
    pytest.importorskip("tensorflow")
    import keras

    from edgecls.artifacts import RunConfig
    from edgecls.data import load_dataset, make_split

    run = tmp_path_factory.mktemp("rundir") / "run"
    run.mkdir()
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x)).save(run / "model.keras")
    dataset = load_dataset("digits")
    split = make_split(dataset, 0.1, 0.1, 4)
    (run / "split.json").write_text(json.dumps(split.to_json(dataset, 4, (0.1, 0.1))))
    (run / "labels.txt").write_text("".join(f"{n}\n" for n in dataset.class_names))
    config = RunConfig({"data": "digits", "img_size": 28, "color": "grayscale", "seed": 4})
    (run / "config.toml").write_text(config.text())
    return run


def broken_copy(run: Path, tmp_path: Path, name: str, content: str | None) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    if content is None:
        (copy / name).unlink()
    else:
        (copy / name).write_text(content)
    return copy


def test_open_run_reads_labels_split_and_images(fake_run):
    source = open_run(fake_run)
    assert source.labels == [str(i) for i in range(10)] and source.seed == 4
    assert (source.img_size, source.color, source.data) == (28, "grayscale", "digits")
    images, labels = source.images("test")
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28, 1) and len(images) == len(labels)
    assert len(images) == len(json.loads((fake_run / "split.json").read_text())["test"])
    assert source.model().output_shape == (None, 10)
    assert source.calibration().seed == 4


@pytest.mark.parametrize("name, content, message", [
    ("split.json", "{not json", "split.json is not valid JSON"),
    ("split.json", '{"train": [1]}', "split.json is malformed"),
    ("config.toml", "[train\n", "config.toml is not valid TOML"),
    ("config.toml", "[train]\nimg_size = 28\n", "no [train] table naming the data"),
    ("labels.txt", "", "labels file is empty"),
    ("labels.txt", None, "labels.txt missing"),
    ("config.toml", None, "config.toml missing"),
])
def test_broken_run_directories_are_named(fake_run, tmp_path, name, content, message):
    with pytest.raises(EdgeclsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        open_run(broken_copy(fake_run, tmp_path, name, content))


def test_labels_that_do_not_match_the_model_are_refused(fake_run, tmp_path):
    source = open_run(broken_copy(fake_run, tmp_path, "labels.txt", "a\nb\nc\n"))
    with pytest.raises(EdgeclsError, match="10 outputs but there are 3 classes"):
        source.model()


def test_bare_keras_file_takes_its_spec_from_the_model_and_labels_from_the_data_when_opened(fake_run):
    with pytest.raises(EdgeclsError, match="--data"):
        open_source(fake_run / "model.keras")
    source = open_source(fake_run / "model.keras", data="digits")
    # settled when opened, before any image or model is asked for: nothing fills itself in later
    assert source.run_dir is None and source.labels == [str(i) for i in range(10)]
    assert (source.img_size, source.color) == (28, "grayscale")
    assert len(source.images("val")[0]) > 0  # a seeded split of the data is made


def test_bare_keras_file_with_data_of_another_class_count(fake_run, tmp_path, monkeypatch):
    from test_data import make_folder

    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    folder = make_folder(tmp_path / "photos", classes=("a", "b", "c"), per_class=6)
    with pytest.raises(EdgeclsError, match="10 outputs but there are 3 classes"):
        open_source(fake_run / "model.keras", data=str(folder))


def test_unsafe_keras_file_is_refused_without_enabling_unsafe_loading(tmp_path):
    pytest.importorskip("tensorflow")
    import keras
    from keras.src.saving import serialization_lib

    from edgecls.rundir import load_keras_model

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t + 1.0)(inputs))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(EdgeclsError, match="needs unsafe deserialisation"):
        load_keras_model(tmp_path / "lambda.keras")
    assert serialization_lib.in_safe_mode() is not False  # unsafe loading was not switched on globally
    with pytest.raises(ValueError, match="safe_mode"):  # and Keras itself still refuses the file
        keras.saving.load_model(tmp_path / "lambda.keras")
