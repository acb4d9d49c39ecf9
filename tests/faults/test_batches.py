"""One bad file in a batch: its own row (predict) or a counted skip (a dataset), never the end of the
job; rows stream as they are done."""

from __future__ import annotations

import time

import numpy as np
import pytest
from faultkit import MODEL, class_folder, edgecls, png, python, rows, unprivileged, ztxt_bomb


def test_rows_stream_while_a_batch_is_not_full():
    """A dynamic-batch model (32 an invoke): the rows of images already decoded come out while the
    next image keeps the batch waiting (before: nothing until 32 images or the end)."""
    from edgecls.runtime import Classifier

    clf = Classifier(MODEL, num_threads=1)
    assert clf.max_batch > 1
    pixels = np.zeros((28, 28, 1), np.uint8)
    started = time.monotonic()

    def slow_source():
        yield from (pixels, pixels)
        time.sleep(3)  # a slow network folder, a camera
        yield pixels

    arrivals = [time.monotonic() - started for _ in clf.classify_many(slow_source(), workers=2)]
    assert len(arrivals) == 3 and arrivals[0] < 2.5 and arrivals[1] < 2.5, arrivals


def test_a_source_that_fails_midway_gives_its_rows_first_then_its_error():
    """The read-ahead of a lazy source hands over what came before a failure, in order, then raises it
    on the caller's thread; a consumer that stops early leaves no reader behind."""
    import threading

    from edgecls.runtime import Classifier

    clf = Classifier(MODEL, num_threads=1)
    images = [np.full((28, 28, 1), v, np.uint8) for v in range(0, 250, 5)]

    def failing():
        yield from images
        raise OSError("the share went away")

    given = []
    with pytest.raises(OSError, match="the share went away"):
        for prediction in clf.classify_many(failing(), batch_size=4, workers=1):
            given.append(prediction)
    assert len(given) == len(images) and all(p.source is image for p, image in zip(given, images))
    many = clf.classify_many(iter(images * 20), batch_size=4, workers=1)
    next(many)
    many.close()  # the consumer stops: the reader thread ends
    deadline = time.monotonic() + 5
    while any(t.name == "edgecls-source" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "edgecls-source" for t in threading.enumerate())


def test_the_first_image_is_read_here_the_rest_ahead_and_a_slow_second_holds_nothing_back():
    """A lazy source's first item is read in the caller's thread (no reader thread exists until a second
    is asked for), the rest by the edgecls-source thread; the first image's row comes out while the
    second is slow to come (a network folder being listed)."""
    import threading

    from edgecls.runtime import Classifier

    clf = Classifier(MODEL, num_threads=1)
    assert clf.max_batch > 1
    pixels = np.zeros((28, 28, 1), np.uint8)

    def source(count, readers, pause=0.0):
        for i in range(count):
            if i == 1:
                time.sleep(pause)
            readers.append(threading.current_thread().name)
            yield pixels
        readers.append(threading.current_thread().name)  # who found the end

    five = []
    assert len(list(clf.classify_many(source(5, five), workers=1))) == 5
    assert five[0] == threading.current_thread().name and set(five[1:]) == {"edgecls-source"}, five
    started = time.monotonic()
    arrivals = [time.monotonic() - started for _ in clf.classify_many(source(2, [], pause=3.0), workers=1)]
    assert len(arrivals) == 2 and arrivals[0] < 2.5 < arrivals[1], arrivals


def test_one_bad_file_is_its_row_or_skip_never_the_jobs_end(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "bomb.png").write_bytes(ztxt_bomb())
    (photos / "good.png").write_bytes(png())
    long_name = photos / ("y" * 300 + ".png")
    through_file = photos / "good.png" / "x.png"
    done = edgecls("predict", "--json", MODEL, photos, long_name, through_file, cwd=tmp_path)
    found = rows(done.stdout)
    assert done.returncode == 1 and found["good.png"]["classes"], done.stderr
    assert "corrupt image data" in found["bomb.png"]["error"]
    assert "too long" in found[long_name.name]["error"].lower()
    assert "internal error" not in done.stderr

    from edgecls.data import load_dataset

    data = class_folder(tmp_path / "data")
    (data / "a" / "bomb.png").write_bytes(ztxt_bomb())
    (data / "b" / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\xff" * 40)  # a corrupt header
    dataset = load_dataset(str(data), 16, "rgb", cache_dir=tmp_path / "cache")
    assert len(dataset.images) == 8 and len(dataset.skipped) == 2, dataset.skipped


def test_a_file_in_an_unreadable_folder_is_a_row(tmp_path):
    prefix = unprivileged()
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.png").write_bytes(png())
    (tmp_path / "good.png").write_bytes(png(1))
    locked.chmod(0)
    try:
        done = edgecls("predict", "--json", MODEL, locked / "a.png", tmp_path / "good.png", cwd=tmp_path,
                       prefix=prefix)
    finally:
        locked.chmod(0o755)
    found = rows(done.stdout)
    assert done.returncode == 1 and found["good.png"]["classes"], done.stderr
    assert "ermission denied" in found["a.png"]["error"]


def test_unreadable_folders_are_reported_by_predict_and_counted_by_the_dataset(tmp_path):
    prefix = unprivileged()
    photos = tmp_path / "photos"
    (photos / "locked").mkdir(parents=True)
    (photos / "locked" / "x.png").write_bytes(png())
    (photos / "ok.png").write_bytes(png(1))
    data = class_folder(tmp_path / "data")
    (data / "a" / "locked").mkdir()
    (data / "a" / "locked" / "x.png").write_bytes(png(9))
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "x.png").write_bytes(png())
    for folder in (photos / "locked", data / "a" / "locked", lonely):
        folder.chmod(0)
    try:
        whole = edgecls("predict", "--json", MODEL, lonely, cwd=tmp_path, prefix=prefix)
        part = edgecls("predict", "--json", MODEL, photos, cwd=tmp_path, prefix=prefix)
        counted = python(f"""
from edgecls.data import load_dataset
from pathlib import Path
d = load_dataset({str(data)!r}, 16, "rgb", cache_dir=Path({str(tmp_path / 'cache')!r}))
print(len(d.images), d.skipped)
""", tmp_path, prefix=prefix)
    finally:
        for folder in (photos / "locked", data / "a" / "locked", lonely):
            folder.chmod(0o755)
    # nothing at all to classify: one line naming the cause (before: "folder contains no images")
    assert whole.returncode == 2 and "lonely: cannot read folder: permission denied" in whole.stderr, whole.stderr
    assert "folder contains no images" not in whole.stderr
    found = rows(part.stdout)
    assert part.returncode == 1 and found["ok.png"]["classes"] and "permission denied" in found["locked"]["error"]
    assert counted.returncode == 0 and counted.stdout.startswith("8 ") and "permission denied" in counted.stdout, (
        counted.stdout, counted.stderr[-300:])
