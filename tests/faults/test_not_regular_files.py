"""What is not a regular file where one is expected: FIFOs, devices, huge sparse files, symlink loops.
Refused by name, never read, never waited on."""

from __future__ import annotations

import json
import os

import pytest
from faultkit import MODEL, class_folder, edgecls, one_line_error, photos, png, python, rows, within

from edgecls.errors import EdgeclsError


def test_non_regular_files_are_refused_by_name_never_read(tmp_path):
    fifo = tmp_path / "labels.fifo"
    os.mkfifo(fifo)
    cases = [  # (argv, fragment of the one-line error)
        (["predict", "--labels", "/dev/zero", MODEL, tmp_path], "character device"),
        (["predict", "--labels", fifo, MODEL, tmp_path], "FIFO"),
        (["predict", "/dev/zero", tmp_path], "character device"),
        (["info", fifo], "FIFO"),
        (["train", "--config", "/dev/zero", "--out", tmp_path / "run"], "character device"),
        (["train", "--config", fifo, "--out", tmp_path / "run"], "FIFO"),
        (["predict", "--labels", tmp_path, MODEL, tmp_path], ""),
    ]
    for argv, fragment in cases:
        one_line_error(edgecls(*argv, cwd=tmp_path), 2, fragment)


def test_dataset_entries_that_are_devices_or_huge_sparse_files_cost_no_memory(tmp_path):
    data = class_folder(tmp_path / "data")
    os.symlink("/dev/zero", data / "a" / "zero.png")
    os.mkfifo(data / "b" / "pipe.png")
    with open(data / "b" / "sparse.png", "wb") as handle:  # 1 GiB of holes, read to hash it
        handle.truncate(1 << 30)
    done = python(f"""
from edgecls.data import load_dataset
from pathlib import Path
d = load_dataset({str(data)!r}, 16, "rgb", cache_dir=Path({str(tmp_path / 'cache')!r}))
print(len(d.images), sorted(r for _, r in d.skipped))
print(next(int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:")))
""", tmp_path)  # VmHWM, not ru_maxrss: that one survives exec and would be the pytest process's peak
    assert done.returncode == 0, done.stderr[-800:]
    count, *_, rss_mb = done.stdout.splitlines()
    assert count.startswith("8 ") and "FIFO" in count and "character device" in count, count
    assert int(rss_mb) < 400, (f"peak RSS {rss_mb} MB: the sparse file was read whole", done.stdout, done.stderr[-500:])


def test_idx_and_split_files_that_are_fifos_are_errors(tmp_path):
    from edgecls.artifacts import read_json
    from edgecls.data import read_idx

    os.mkfifo(tmp_path / "train-images-idx3-ubyte")
    os.mkfifo(tmp_path / "split.json")
    with within(), pytest.raises(EdgeclsError, match="FIFO"):
        read_idx(tmp_path / "train-images-idx3-ubyte")
    with within(), pytest.raises(EdgeclsError, match="FIFO"):
        read_json(tmp_path / "split.json")


def test_fifos_in_image_folders_are_error_rows_not_hangs(tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (photos / "a.png").write_bytes(png(1))
    os.mkfifo(photos / "b.png")
    os.mkfifo(photos / "sub" / "c.jpg")
    (photos / "z.png").write_bytes(png(2))
    for args in (["--json", MODEL, photos], ["--json", MODEL, photos / "b.png", photos / "a.png"],
                 ["--json", MODEL, str(photos / "*.png")]):
        done = edgecls("predict", *args, cwd=tmp_path)
        found = rows(done.stdout)
        assert done.returncode == 1 and "a.png" in found and found["a.png"].get("classes"), done.stderr
        assert "FIFO" in found["b.png"]["error"]
    done = edgecls("predict", "--json", MODEL, photos, cwd=tmp_path)
    assert "FIFO" in rows(done.stdout)["c.jpg"]["error"] and rows(done.stdout)["z.png"]["classes"]


def test_symlink_loop_file_is_an_error_row(tmp_path, cli):
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    result = cli("predict", "--json", MODEL, tmp_path / "loop.png")
    assert result.code == 1 and "Traceback" not in result.err
    assert json.loads(result.out)["error"]


def test_symlink_loop_in_a_dataset_folder_is_not_followed(tmp_path, monkeypatch):
    from edgecls.data import load_dataset

    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    root = photos(tmp_path / "data")
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)
    (root / "b" / "self.png").symlink_to(root / "b" / "self.png")
    dataset = load_dataset(str(root), img_size=16)
    assert len(dataset.labels) == 12  # the twelve images; the loops add nothing
    assert any(path.endswith("self.png") for path, _ in dataset.skipped)
