"""The reliability catalogue (issue 14): faults beyond bad image bytes — what is not a regular file,
hangs, one bad file in a job, the dataset cache, export sets, concurrency, Ctrl-C, code from the
working directory, run-directory contents, option values and the reasons given. One test per
class, several instances each (a table where the cases share a shape).

Anything that could hang runs in a subprocess with a timeout, so a regression fails in seconds.
Root reads mode-000 files: those cases drop CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH with setpriv
(or run as they are when not root) and skip, with the reason, when neither is possible.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "digits-seed" / "model_int8.tflite"  # dynamic batch: takes 32 images an invoke
HANG = float(os.environ.get("EDGECLS_TEST_HANG", 60))  # seconds: every subprocess here finishes in a few


# ----------------------------------------------------------------------------- helpers
def png(seed: int = 0, size: int = 20) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def ztxt_bomb() -> bytes:
    """A valid small PNG with a zTXt chunk inflating to 80 MB: Pillow's Image.open raises ValueError."""
    good = png()
    return good[:33] + _chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * (80 << 20), 9)) + good[33:]


@contextlib.contextmanager
def within(seconds: int = 10):
    """Fail (TimeoutError) instead of hanging when an in-process call blocks, e.g. opening a FIFO."""
    def expire(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def unprivileged() -> list[str]:
    """A command prefix under which mode-000 files are unreadable, or skip."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") and subprocess.run(
            ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", "true"]).returncode == 0:
        return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    pytest.skip("running as root without setpriv: mode-000 files stay readable, the case cannot be made")


def edgecls(*args, cwd: Path | None = None, prefix: list[str] = (), timeout: float = HANG,
            stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """`python -m edgecls ARGS` in a fresh process (this checkout's code), with a hang guard."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGECLS_CACHE": str(Path(cwd or ROOT) / ".cache-test")}
    return subprocess.run([*prefix, sys.executable, "-m", "edgecls", *map(str, args)], capture_output=True,
                          text=True, errors="replace", cwd=cwd or ROOT, env=env, timeout=timeout, stdin=stdin)


def python(code: str, cwd: Path, prefix: list[str] = (), timeout: float = HANG) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


def rows(out: str) -> dict[str, dict]:
    return {Path(r["file"]).name: r for r in map(json.loads, out.splitlines())}


def one_line_error(done: subprocess.CompletedProcess, code: int, fragment: str) -> None:
    assert done.returncode == code, (done.returncode, done.stderr[-500:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecls: error: ") and fragment in lines[0], done.stderr[-500:]
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


def class_folder(root: Path, classes=("a", "b"), per_class: int = 4, seed: int = 0, size: int = 20) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / name / f"{i}.png").write_bytes(png(seed * 1000 + c * 100 + i, size))
    return root


# ----------------------------------------------------------------------------- 1. not a regular file
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
    from edgecls.errors import EdgeclsError

    os.mkfifo(tmp_path / "train-images-idx3-ubyte")
    os.mkfifo(tmp_path / "split.json")
    with within(), pytest.raises(EdgeclsError, match="FIFO"):
        read_idx(tmp_path / "train-images-idx3-ubyte")
    with within(), pytest.raises(EdgeclsError, match="FIFO"):
        read_json(tmp_path / "split.json")


# ----------------------------------------------------------------------------- 2. hangs
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


def test_first_ctrl_c_ends_predict_with_one_line_and_exit_130(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(1500):
        (photos / f"{i:05d}.png").write_bytes(png(i % 7, 64))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-m", "edgecls", "predict", "--json", MODEL, photos],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert child.stdout.readline()  # it is classifying
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=15)
    finally:
        child.kill()
    assert child.returncode == 130 and err.strip().splitlines()[-1] == "edgecls: error: interrupted", err[-500:]


# ----------------------------------------------------------------------------- 3. one bad file, one row
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


# ----------------------------------------------------------------------------- 4. the dataset cache
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


# ----------------------------------------------------------------------------- 5. export sets
def test_bench_refuses_an_export_folder_that_mixes_sets_or_points_outside(tmp_path):
    from edgecls.bench.inputs import exported_files
    from edgecls.errors import EdgeclsError
    from edgecls.provenance import sha256_file

    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    shutil.copy(MODEL, run / "export" / "model_int8.tflite")
    good = {"models": [{"file": "model_int8.tflite", "sha256": sha256_file(MODEL)}]}
    (run / "export" / "export.json").write_text(json.dumps(good))
    assert exported_files(run) == [run / "export" / "model_int8.tflite"]
    cases = [
        ({"models": [{"file": "model_int8.tflite", "sha256": "0" * 64}]}, "does not match"),
        ({"models": [{"file": str(MODEL), "sha256": sha256_file(MODEL)}]}, "not a file name in its folder"),
        ({"models": [{"file": "../../x.tflite", "sha256": "0" * 64}]}, "not a file name in its folder"),
        ({"models": [{"file": ["x"], "sha256": "0" * 64}]}, "not a file name"),
        ({"models": [{"file": "model_int8.tflite"}]}, "malformed"),
    ]
    for doc, fragment in cases:
        (run / "export" / "export.json").write_text(json.dumps(doc))
        with pytest.raises(EdgeclsError, match=fragment):
            exported_files(run)


def test_private_temp_folders_of_dead_processes_are_cleaned(tmp_path):
    import tempfile

    from edgecls.atomic import private_tempdir

    dead = subprocess.Popen(["true"])
    dead.wait()
    base = Path(tempfile.gettempdir())
    prefixes = ("edgecls-savedmodel", "edgecls-bench")
    stale = [Path(tempfile.mkdtemp(prefix=f"{p}-{dead.pid}-", dir=base)) for p in prefixes]
    live = Path(tempfile.mkdtemp(prefix="edgecls-bench-1-", dir=base))  # pid 1 is alive
    try:
        for prefix in ("edgecls-savedmodel", "edgecls-bench"):
            with private_tempdir(prefix) as folder:
                assert folder.is_dir() and f"-{os.getpid()}-" in folder.name
            assert not folder.exists()
        assert not any(p.exists() for p in stale) and live.exists()
    finally:
        shutil.rmtree(live, ignore_errors=True)


# ----------------------------------------------------------------------------- 6. concurrency
def test_a_run_folder_that_appears_meanwhile_is_not_replaced_without_force(tmp_path):
    from edgecls.atomic import staged_dir
    from edgecls.errors import EdgeclsError

    for theirs in ("full", "file"):
        final = tmp_path / f"run-{theirs}"
        with pytest.raises(EdgeclsError, match="appeared while this run was working"):
            with staged_dir(final) as tmp:
                (tmp / "model.keras").write_text("mine")
                if theirs == "full":  # the other `train --out` finished first
                    final.mkdir()
                    (final / "model.keras").write_text("theirs")
                else:
                    final.write_text("theirs")
        kept = final / "model.keras" if theirs == "full" else final
        assert kept.read_text() == "theirs"
        assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]  # nothing half-written left
    final = tmp_path / "run-full"
    with staged_dir(final, force=True) as tmp:
        (tmp / "model.keras").write_text("mine")
    assert (final / "model.keras").read_text() == "mine"


# ----------------------------------------------------------------------------- 7. Ctrl-C (export)
def test_a_sigint_swallowed_inside_conversion_still_ends_the_export():
    from edgecls.export.convert import check_interrupted, interrupt_checkpoints

    with pytest.raises(KeyboardInterrupt):
        with interrupt_checkpoints():
            try:  # what TensorFlow's garbage collection does with it: printed, not raised
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.5)
            except KeyboardInterrupt:
                pass
            check_interrupted()  # the next conversion step
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    check_interrupted()  # the flag does not outlive the export


# ----------------------------------------------------------------------------- 8. code and formats
def test_the_memory_probe_never_runs_code_from_the_working_directory(tmp_path, monkeypatch):
    from edgecls.bench.memory import peak_rss

    for module in ("json", "numpy", "edgecls"):  # shadow what the probe imports
        (tmp_path / f"{module}.py").write_text("raise SystemExit('ran ' + __name__ + ' from the working folder')")
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "x.png"
    image.write_bytes(png())
    found = peak_rss(MODEL, image, 1, "litert")
    assert "error" not in found, found
    assert found["top1"] is not None and found["heavy_modules"] == []


POSTSCRIPT = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke\nshowpage\n"
FORMAT_CASES = [  # file name, content, reason fragment
    ("eps.jpg", POSTSCRIPT, "not a supported image format (PostScript"),
    ("eps.png", b"\xc5\xd0\xd3\xc6" + b"\0" * 40, "not a supported image format (PostScript"),
    ("pdf.gif", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "not a supported image format (PDF"),
    ("psd.bmp", b"8BPS\x00\x01" + b"\0" * 40, "not a supported image format (PSD"),
    ("jp2.webp", b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\0" * 40, "not a supported image format (JPEG 2000"),
]


@pytest.mark.parametrize("name, content, reason", FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_unsupported_formats_never_reach_their_decoders(name, content, reason, tmp_path):
    from edgecls.runtime import ImageError, load_image

    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageError) as caught:
        load_image(tmp_path / name, (8, 8), "rgb")
    assert reason in str(caught.value) and "Ghostscript" not in str(caught.value)


def test_bidi_overrides_never_reach_the_terminal(tmp_path):
    from edgecls.text import clean_text

    for char in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        assert clean_text(f"ab{char}cd") == "abcd"
    (tmp_path / "invoice\u202egnp.exe.png").write_bytes(png())
    (tmp_path / "\u2067x.png").write_bytes(b"not an image")
    done = edgecls("predict", MODEL, tmp_path, cwd=tmp_path)
    assert done.returncode == 1 and "invoicegnp.exe.png" in done.stdout
    assert not set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069") & set(done.stdout + done.stderr)


# ----------------------------------------------------------------------------- 9. run-directory contents
SPLIT_CASES = [  # what replaces a valid split.json's fields, the error fragment
    ({"test": [0, 1, 2]}, "overlap"),  # test images that are training images
    ({"train": [3, 4, 5], "test": [3, 4, 5]}, "overlap"),  # the train set is the test set
    ({"val": [0, 0]}, "overlap"),
    ({"test": [True, False]}, "integer indices"),
    ({"test": [1.0, 2.0]}, "integer indices"),
    ({"test": ["1"]}, "integer indices"),
    ({"test": [10**30]}, "does not have"),
    ({"test": [-1]}, "does not have"),
    ({"test": [[1, [2]]]}, "integer indices"),
    ({"test": "0-9"}, "integer indices"),
    ({"fingerprint": None}, "no fingerprint"),
    ({"fingerprint": ""}, "no fingerprint"),
    ({"fingerprint": "elsewhere"}, "changed since"),
    ({"train": []}, "train part is empty"),
]


@pytest.mark.parametrize("change, fragment", SPLIT_CASES, ids=[str(c[0])[:40] for c in SPLIT_CASES])
def test_a_tampered_split_is_refused_with_one_line(change, fragment):
    from edgecls.data import Dataset, load_split
    from edgecls.errors import EdgeclsError

    dataset = Dataset(np.zeros((12, 4, 4, 1), np.uint8), np.arange(12) % 2, ["a", "b"], "x", "grayscale",
                      fingerprint="fp")
    doc = {"fingerprint": "fp", "train": list(range(3, 12)), "val": [1], "test": [0, 2]}
    load_split(doc, dataset)  # the valid one loads
    with pytest.raises(EdgeclsError, match=fragment) as caught:
        load_split({**doc, **change}, dataset)
    assert "\n" not in str(caught.value)


def test_deeply_nested_run_files_are_one_line_errors(tmp_path):
    from edgecls.artifacts import read_json
    from edgecls.errors import EdgeclsError
    from edgecls.tomlio import read_toml

    (tmp_path / "split.json").write_text("[" * 100000 + "]" * 100000)
    (tmp_path / "deep.toml").write_text("a = " + "[" * 100000 + "]" * 100000)
    with pytest.raises(EdgeclsError, match="not valid JSON"):
        read_json(tmp_path / "split.json")
    with pytest.raises(EdgeclsError, match="not valid TOML"):
        read_toml(tmp_path / "deep.toml", "config file")


# ----------------------------------------------------------------------------- 10. option values
def test_absurd_option_values_are_one_line_errors(tmp_path):
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "shape.toml").write_text("train = 5\n")
    (tmp_path / "table.toml").write_text("[train]\nlr = [1, 2]\n")
    (tmp_path / "inf.toml").write_text("[train]\nlr = inf\n")
    (tmp_path / "huge.toml").write_text("[train]\narch = " + json.dumps("x" * (10 << 20)) + "\n")
    (tmp_path / "hugekey.toml").write_text("[train]\n" + "k" * (1 << 20) + " = 1\n")
    out = ["--out", tmp_path / "run"]
    cases = [
        (["predict", "--threads", "99999999999", MODEL, tmp_path / "a.png"], "--threads"),
        (["bench", "--threads", "99999999999", MODEL], "--threads"),
        (["train", "--seed", "-1", *out], "--seed"),
        (["train", "--seed", str(2**32), *out], "--seed"),
        (["train", "--lr", "inf", *out], "--lr"),
        (["train", "--lr", "nan", *out], "--lr"),
        (["train", "--config", tmp_path / "shape.toml", *out], "must be a table"),
        (["train", "--config", tmp_path / "table.toml", *out], "lr must be float"),
        (["train", "--config", tmp_path / "inf.toml", *out], "finite"),
        (["train", "--config", tmp_path / "huge.toml", *out], "arch"),
        (["train", "--config", tmp_path / "hugekey.toml", *out], "unknown key"),
    ]
    for argv, fragment in cases:
        done = edgecls(*argv, cwd=tmp_path)
        one_line_error(done, 2, fragment)
        assert len(done.stderr) < 3000, (argv[:3], len(done.stderr))


def test_class_names_survive_labels_txt_or_are_refused(tmp_path):
    from edgecls.data import load_dataset
    from edgecls.errors import EdgeclsError
    from edgecls.runtime.labels import labels_text, parse_labels

    for labels in (["0 cat", "1 dog"], ["3 apples", "pears"], ["1", "0"], ["7: x", "8: y"], ["cat", "dog"],
                   ["1", "2 b"]):
        assert parse_labels(labels_text(labels)) == labels, labels
    for bad in (["a\nb", "c"], ["a\x1b[31m", "b"], [" a", "b"], ["a", ""]):
        with pytest.raises(EdgeclsError, match="rename"):
            labels_text(bad)
    data = class_folder(tmp_path / "data", classes=("new\nline", "ok"))
    with pytest.raises(EdgeclsError, match="rename the folder") as caught:
        load_dataset(str(data), 16, "rgb", cache_dir=tmp_path / "cache")
    assert "\n" not in str(caught.value).replace("\\n", "")


def test_model_inputs_that_are_dynamic_or_huge_are_refused():
    from edgecls.runtime.metadata import ModelFileError
    from edgecls.runtime.model import check_classifier

    out = {"shape": np.array([1, 10]), "dtype": np.float32}

    def inp(shape, signature=None):
        return {"shape": np.array(shape), "shape_signature": np.array(signature or shape), "dtype": np.float32}

    check_classifier([inp([1, 28, 28, 1], [-1, 28, 28, 1])], [out])  # a dynamic batch is fine
    for details, fragment in ((inp([1, 1, 1, 3], [-1, -1, -1, 3]), "dynamic"),
                              (inp([1, 1, 28, 3], [1, -1, 28, 3]), "dynamic"),
                              (inp([1, 30000, 30000, 3]), "over 8192"),
                              (inp([1, 10, 9000, 1]), "over 8192")):
        with pytest.raises(ModelFileError, match=fragment):
            check_classifier([details], [out])


def test_nan_scores_are_valid_json():
    from edgecls.console import _json_writer
    from edgecls.runtime import Class, Prediction

    buffer = io.StringIO()
    write = _json_writer(buffer, None, 2)
    for score in (float("nan"), float("inf"), -float("inf"), 0.5):
        write(Prediction("x.png", (Class(0, "a", score),)))
    scores = [json.loads(line)["classes"][0]["score"] for line in buffer.getvalue().splitlines()]
    assert scores == [None, None, None, 0.5]


# ----------------------------------------------------------------------------- 11. the reasons given
def test_reasons_name_the_real_cause(tmp_path):
    (tmp_path / "eps.jpg").write_bytes(POSTSCRIPT)
    done = edgecls("predict", "--json", MODEL, "/dev/urandom", "/dev/null", tmp_path / "eps.jpg", cwd=tmp_path)
    found = rows(done.stdout)
    assert "character device" in found["urandom"]["error"] and "empty" not in found["urandom"]["error"]
    assert "character device" in found["null"]["error"]
    assert "not a supported image format" in found["eps.jpg"]["error"]


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
