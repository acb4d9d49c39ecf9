"""Datasets that are broken, odd or changed, and the decoded cache on disk: one-line errors for train,
a cache keyed by content and checked on read, leftovers of killed builds removed."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from faultkit import class_folder, encoded, photo, photos, python

DATASET_CASES = [
    ("folder with an empty class", lambda r: (photos(r), (r / "c").mkdir()), "has no images"),
    ("folder with one class", lambda r: photos(r, classes=("only",)), "only one class"),
    ("empty folder", lambda r: r.mkdir(), "no class sub-folders"),
    ("class with too few images", lambda r: photos(r, n=2), "usable images"),
    ("only undecodable files", lambda r: [((r / c).mkdir(parents=True), (r / c / "x.jpg").write_bytes(b"no"))
                                          for c in "ab"], "none of the 2 image files"),
]


@pytest.mark.parametrize("name, make, needle", DATASET_CASES, ids=[c[0] for c in DATASET_CASES])
def test_bad_datasets_for_train(name, make, needle, tmp_path, cli, monkeypatch):
    pytest.importorskip("tensorflow")
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    make(tmp_path / "data")
    result = cli("train", "--data", tmp_path / "data", "--out", tmp_path / "run", "--quiet", "--img-size", "16")
    assert result.code == 2 and needle in result.err and "Traceback" not in result.err, result.err
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run.partial*"))


def test_truncated_idx_header_is_an_input_error(tmp_path, cli):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    result = cli("train", "--data", tmp_path, "--out", tmp_path / "run")
    assert result.code == 2 and "truncated" in result.err and "Traceback" not in result.err


def test_a_copied_dataset_folder_is_the_same_data(tmp_path, monkeypatch):

    from edgecls.data import load_dataset, load_split, make_split

    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    original = photos(tmp_path / "a")
    dataset = load_dataset(str(original), img_size=16)
    doc = make_split(dataset, 0.2, 0.2, seed=0).to_json(dataset, 0, (0.2, 0.2))
    copy = tmp_path / "b"
    shutil.copytree(original, copy)  # new modification times: a new cache, the same content
    load_split(doc, load_dataset(str(copy), img_size=16))  # must not say "changed"
    (copy / "a" / "0.png").write_bytes(encoded(photo(seed=999), "PNG"))
    with pytest.raises(Exception, match="is not the data the run was trained on .it changed since"):
        load_split(doc, load_dataset(str(copy), img_size=16))


def test_the_dataset_cache_is_keyed_by_content_and_checked_on_read(tmp_path):
    from edgecls.data import load_dataset

    cache = tmp_path / "cache"
    first, second = class_folder(tmp_path / "one", seed=1), class_folder(tmp_path / "two", seed=2)
    for a, b in zip(sorted(first.rglob("*.png")), sorted(second.rglob("*.png"))):  # what unzip/tar give
        assert a.stat().st_size == b.stat().st_size
        os.utime(b, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns))
    one = load_dataset(str(first), 16, "rgb", cache_dir=cache)
    two = load_dataset(str(second), 16, "rgb", cache_dir=cache)
    assert not np.array_equal(np.asarray(one.images), np.asarray(two.images))  # never the other folder's pixels
    truth = np.asarray(load_dataset(str(first), 16, "rgb", cache_dir=tmp_path / "fresh").images)

    entry = next(p for p in cache.iterdir() if p.is_dir() and np.array_equal(
        np.load(p / "images.npy"), np.asarray(one.images)))
    labels = np.load(entry / "labels.npy")
    tamperings = [
        ("flipped labels", lambda: np.save(entry / "labels.npy", 1 - labels)),
        ("images of another size", lambda: np.save(entry / "images.npy", np.zeros((8, 8, 8, 3), np.uint8))),
        ("truncated images", lambda: (entry / "images.npy").write_bytes((entry / "images.npy").read_bytes()[:300])),
        ("changed pixels", lambda: (lambda a: (a.__setitem__((0, 0, 0, 0), a[0, 0, 0, 0] ^ 1),
                                                np.save(entry / "images.npy", a)))(np.load(entry / "images.npy"))),
        ("index not JSON", lambda: (entry / "index.json").write_text("{")),
        ("index of another shape", lambda: (entry / "index.json").write_text('{"paths": 3}')),
    ]
    for name, tamper in tamperings:
        tamper()
        again = load_dataset(str(first), 16, "rgb", cache_dir=cache)
        assert np.array_equal(np.asarray(again.labels), labels), name
        assert np.array_equal(np.asarray(again.images), truth), name


def test_dataset_cache_leftovers_are_removed_and_a_full_disk_is_one_line(tmp_path):
    from edgecls.data import load_dataset

    cache = tmp_path / "cache"
    dead = subprocess.Popen(["true"])
    dead.wait()
    for name in (f".abc.partial-{dead.pid}-x1", f".def.partial-{dead.pid}-x2"):
        (cache / name).mkdir(parents=True)
    alive = cache / ".ghi.partial-1-x3"  # pid 1 is always alive
    alive.mkdir()
    load_dataset(str(class_folder(tmp_path / "data")), 16, "rgb", cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == [alive.name]

    tiny = tmp_path / "tiny"
    tiny.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(tiny)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs (needs root): the full-disk case cannot be made")
    try:
        data = class_folder(tmp_path / "big", per_class=20, size=40)
        done = python(f"""
from edgecls.data import load_dataset
from edgecls.errors import EdgeclsError
from pathlib import Path
try:
    load_dataset({str(data)!r}, 96, "rgb", cache_dir=Path({str(tiny)!r}))
except EdgeclsError as exc:
    print("ERROR", exc)
""", tmp_path)
        assert done.returncode == 0 and "ERROR cannot write the dataset cache" in done.stdout, (done.returncode,
                                                                                             done.stderr[-300:])
        assert "No space left" in done.stdout and list(tiny.iterdir()) == []  # no partial files left
    finally:
        subprocess.run(["umount", str(tiny)])
