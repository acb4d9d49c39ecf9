"""The data layer: datasets as uint8 arrays, the folder cache, IDX files, the saved split."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from PIL import Image

from edgecls import data as data_module
from edgecls.data import load_dataset, load_split, make_split, read_idx
from edgecls.errors import EdgeclsError
from edgecls.runtime.preprocess import load_image

SHARED = SHARED_DATA


def make_folder(
    root: Path, classes=("cats", "dogs"), per_class=6, size=(40, 30), formats=("png", "jpg", "bmp", "gif", "webp")
):
    """Class folders of generated images, each class a distinct colour, in several formats."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
            pixels[..., c % 3] += 150
            ext = formats[i % len(formats)]
            target = folder / ("nested" if i == 0 else "") / f"img{i}.{ext}"
            target.parent.mkdir(exist_ok=True)
            Image.fromarray(pixels).save(target)
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_digits_is_28x28_grayscale_uint8_with_ten_classes():
    ds = load_dataset("digits")
    assert ds.images.shape == (1797, 28, 28, 1) and ds.images.dtype == np.uint8
    assert sorted(set(ds.labels.tolist())) == list(range(10)) and len(ds.class_names) == 10
    assert ds.images.max() == 255 and ds.images.min() == 0  # raw pixels, not scaled


def test_split_is_stratified_disjoint_complete_and_seeded():
    ds = load_dataset("digits")
    split = make_split(ds, 0.1, 0.1, seed=3)
    parts = [set(split.train.tolist()), set(split.val.tolist()), set(split.test.tolist())]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(parts[0] | parts[1] | parts[2]) == len(ds.labels)
    for label in range(10):  # every class is in every part, in proportion
        n = np.sum(ds.labels == label)
        assert abs(np.sum(ds.labels[split.test] == label) - 0.1 * n) <= 1
    again = make_split(ds, 0.1, 0.1, seed=3)
    other = make_split(ds, 0.1, 0.1, seed=4)
    assert np.array_equal(split.test, again.test) and not np.array_equal(split.test, other.test)


def test_split_round_trips_through_json_and_detects_changed_data():
    ds = load_dataset("digits")
    split = make_split(ds, 0.1, 0.1, seed=0)
    doc = split.to_json(ds, 0, (0.1, 0.1))
    back = load_split(doc, ds)
    assert np.array_equal(back.train, split.train) and np.array_equal(back.test, split.test)
    doc["fingerprint"] = "something-else"
    with pytest.raises(EdgeclsError, match="is not the data the run was trained on .it changed since"):
        load_split(doc, ds)


def test_folder_dataset_decodes_all_formats_recursively_and_ignores_hidden(tmp_path, cache):
    root = make_folder(tmp_path / "photos")
    (root / "cats" / ".hidden.png").write_bytes(b"junk")
    (root / ".git").mkdir()
    (root / "cats" / "notes.txt").write_text("not an image")
    ds = load_dataset(str(root), img_size=24, color="rgb")
    assert ds.class_names == ["cats", "dogs"]
    assert ds.images.shape == (12, 24, 24, 3) and ds.images.dtype == np.uint8
    assert any(p.startswith("cats/nested/") for p in ds.paths)
    # class colour survives decoding: cats are red-dominant, dogs green-dominant
    means = ds.images.reshape(12, -1, 3).mean(1)
    assert all(means[i].argmax() == ds.labels[i] for i in range(12))


def test_training_path_and_runtime_path_give_the_same_tensor(tmp_path, cache):
    root = make_folder(tmp_path / "photos")
    ds = load_dataset(str(root), img_size=20, color="grayscale")
    for i, rel in enumerate(ds.paths):
        assert np.array_equal(ds.images[i], load_image(root / rel, (20, 20), "grayscale")), rel


def test_folder_cache_is_reused_then_invalidated_when_a_file_changes(tmp_path, cache, monkeypatch):
    root = make_folder(tmp_path / "photos")
    first = load_dataset(str(root), img_size=16)
    assert isinstance(first.images, np.memmap)  # large folders are memory-mapped, not loaded twice

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(data_module, "load_image", no_decoding)
    second = load_dataset(str(root), img_size=16)
    assert np.array_equal(first.images, second.images)
    monkeypatch.undo()
    monkeypatch.setenv("EDGECLS_CACHE", str(cache))
    Image.new("RGB", (10, 10), (0, 0, 255)).save(root / "dogs" / "new.png")
    third = load_dataset(str(root), img_size=16)
    assert len(third.labels) == len(first.labels) + 1


def test_corrupt_files_and_duplicates_are_skipped_with_reasons(tmp_path, cache):
    root = make_folder(tmp_path / "photos")
    (root / "cats" / "broken.jpg").write_bytes(b"this is text, not a jpeg")
    (root / "cats" / "empty.png").write_bytes(b"")
    (root / "dogs" / "copy.png").write_bytes((root / "dogs" / "img1.jpg").read_bytes())
    ds = load_dataset(str(root), img_size=16)
    reasons = dict(ds.skipped)
    assert len(ds.labels) == 12
    assert "not an image" in reasons["cats/broken.jpg"]
    assert "empty file" in reasons["cats/empty.png"]
    assert any("duplicate" in r for r in reasons.values())
    # Every kept image is its own file's pixels, after the skipped ones too (the labels say which file).
    for path, pixels, label in zip(ds.paths, ds.images, ds.labels):
        assert np.array_equal(pixels, load_image(root / path, (16, 16), "rgb")), path
        assert ds.class_names[label] == Path(path).parts[0]


@pytest.mark.parametrize("setup, message", [
    (lambda root: None, "not found"),
    (lambda root: root.mkdir(), "no class sub-folders"),
    (lambda root: make_folder(root, classes=("only",)), "only one class"),
    (lambda root: (make_folder(root), (root / "empty").mkdir()), "has no images"),
])
def test_bad_folders_get_one_line_errors(tmp_path, cache, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(EdgeclsError, match=message) as info:
        load_dataset(str(root), img_size=16)
    assert "\n" not in str(info.value)


def test_folder_where_no_file_decodes_fails(tmp_path, cache):
    for name in ("a", "b"):
        (tmp_path / "d" / name).mkdir(parents=True)
        (tmp_path / "d" / name / "x.jpg").write_bytes(b"nope")
    with pytest.raises(EdgeclsError, match="none of the 2 image files"):
        load_dataset(str(tmp_path / "d"), img_size=16)


def test_class_too_small_for_the_split(tmp_path, cache):
    make_folder(tmp_path / "d", per_class=3)
    ds = load_dataset(str(tmp_path / "d"), img_size=16)
    with pytest.raises(EdgeclsError, match="needs at least 4 per class"):
        make_split(ds, 0.1, 0.1, seed=0)


def test_existing_train_val_folders_keep_their_split(tmp_path, cache):
    make_folder(tmp_path / "d" / "train", per_class=8)
    make_folder(tmp_path / "d" / "val", per_class=3)
    ds = load_dataset(str(tmp_path / "d"), img_size=16)
    split = make_split(ds, 0.1, 0.2, seed=0)
    val_files = {ds.paths[i] for i in split.val}
    assert val_files == {p for p in ds.paths if p.startswith("val/")}
    assert all(ds.paths[i].startswith("train/") for i in np.concatenate([split.train, split.test]))


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_folder_reads_gz_and_raw(tmp_path, compress):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    labels = np.arange(30) % 3
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images, compress)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels, compress)
    ds = load_dataset(str(tmp_path))
    assert np.array_equal(ds.images[..., 0], images) and np.array_equal(ds.labels, labels)
    assert ds.class_names == ["0", "1", "2"]


def test_truncated_idx_file_is_reported(tmp_path):
    write_idx(tmp_path / "x-images-idx3-ubyte", np.zeros((4, 28, 28)), False)
    data = (tmp_path / "x-images-idx3-ubyte").read_bytes()
    (tmp_path / "x-images-idx3-ubyte").write_bytes(data[:-100])
    with pytest.raises(EdgeclsError, match="truncated"):
        read_idx(tmp_path / "x-images-idx3-ubyte")


def test_offline_keras_dataset_names_the_cache_file(monkeypatch):
    keras = pytest.importorskip("keras")

    def offline():
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(EdgeclsError, match=r"put mnist.npz in .*datasets") as info:
        load_dataset("mnist")
    assert "\n" not in str(info.value) and "(URL fetch failure: no network; offline?)" in str(info.value)


@pytest.mark.shared_data
def test_real_mnist_idx_test_set():
    ds = load_dataset(str(SHARED / "mnist"))
    assert ds.images.shape == (10000, 28, 28, 1)
    assert np.bincount(ds.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(float(ds.images.mean()) - 33.79) < 0.01


@pytest.mark.shared_data
def test_real_catsdogs_photos_decode_and_duplicates_are_dropped(cache):
    ds = load_dataset(str(SHARED / "catsdogs"), img_size=64, color="rgb")
    assert ds.class_names == ["cats", "dogs"]
    assert len(ds.labels) + len(ds.skipped) == 1802
    assert sum("duplicate" in reason for _, reason in ds.skipped) == 18
