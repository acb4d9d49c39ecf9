#!/usr/bin/env python3
"""Run a catalogue of bad inputs and faults against two checkouts and print a Markdown table of what
each did, for docs/reliability.md: the issue-28 sweep (default; each answer gets a verdict) or issue 14's.

    python scripts/reliability_probe.py --before /tmp/before --after .   [--sweep 28|14] [--only 1,4] [--smoke]

Everything runs in a scratch folder under /tmp with a timeout per case (a hang shows as "timeout").
Cases needing an unprivileged reader drop CAP_DAC_OVERRIDE with setpriv when run as root. Each case
runs with a 6 GiB address-space cap (RLIMIT_AS), so an unbounded read ends as "out of memory". A full
disk is a small tmpfs when run as root, else RLIMIT_FSIZE (writes past the limit fail with EFBIG).
Issue 28's verdicts: ok, internal (an "internal error" or a traceback), hang (the timeout), oom, wrong
(exit 0 where a refusal was due, a half-written or mixed output, a wrong answer printed) and misleading
(the one line does not name the cause). On a loaded machine raise --timeout: a "hang" may be load.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from model_edits import graph_of, ops, set_index  # noqa: E402  (the fault tests' own edits)
from PIL import Image

MODEL = Path(__file__).resolve().parents[1] / "models" / "digits-seed" / "model_int8.tflite"
NOCAP = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []


def png(seed=0, size=20) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def setup(w: Path) -> None:
    def classes(root: Path, extra=None):
        for c in "ab":
            (root / c).mkdir(parents=True, exist_ok=True)
            for i in range(4):
                (root / c / f"{i}.png").write_bytes(png(ord(c) * 10 + i))
        if extra:
            extra(root)

    (w / "photos").mkdir()
    (w / "photos" / "a.png").write_bytes(png(1))
    os.mkfifo(w / "photos" / "fifo.png")
    (w / "photos" / "z.png").write_bytes(png(2))
    os.mkfifo(w / "lab.fifo")
    (w / "eps.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    good = png()
    bomb = chunk(b"zTXt", b"C\0\0" + zlib.compress(b"\0" * (80 << 20), 9))  # inflates to 80 MB
    (w / "bomb.png").write_bytes(good[:33] + bomb + good[33:])
    (w / "good.png").write_bytes(good)
    (w / "locked").mkdir()
    (w / "locked" / "x.png").write_bytes(good)
    (w / "part" / "locked").mkdir(parents=True)
    (w / "part" / "locked" / "x.png").write_bytes(good)
    (w / "part" / "ok.png").write_bytes(good)
    classes(w / "ds_fifo", lambda r: os.mkfifo(r / "a" / "pipe.png"))
    classes(w / "ds_zero", lambda r: os.symlink("/dev/zero", r / "a" / "zero.png"))
    classes(w / "ds_bomb", lambda r: shutil.copy(w / "bomb.png", r / "a" / "bomb.png"))
    classes(w / "ds_lock", lambda r: ((r / "b" / "locked").mkdir(),
                                      (r / "b" / "locked" / "x.png").write_bytes(png(99))))
    for name in ("0 cat", "1 dog"):
        (w / "ds_idx" / name).mkdir(parents=True)
        for i in range(4):
            (w / "ds_idx" / name / f"{i}.png").write_bytes(png(len(name) + i))
    classes(w / "ds_nl")
    (w / "ds_nl" / "a").rename(w / "ds_nl" / "new\nline")
    (w / "cwd").mkdir()
    (w / "cwd" / "json.py").write_text("import sys; sys.stderr.write('json.py from the working folder RAN\\n'); "
                                       "raise SystemExit(9)")
    (w / "shape.toml").write_text("train = 5\n")
    (w / "deep.toml").write_text("a = " + "[" * 50000 + "]" * 50000 + "\n")
    (w / "huge.toml").write_text('[train]\narch = "' + "x" * (10 << 20) + '"\n')
    (w / "invoice\u202egnp.exe.png").write_bytes(good)
    for p in (w / "locked", w / "part" / "locked", w / "ds_lock" / "b" / "locked"):
        p.chmod(0)


def dataset(folder: str) -> str:
    return ("from edgecls.data import load_dataset; from pathlib import Path; import sys\n"
            f"d = load_dataset(sys.argv[1] + '/{folder}', 16, 'rgb', cache_dir=Path(sys.argv[1]) / 'cache')\n"
            "print(len(d.images), 'images, skipped:', d.skipped)")


SPLIT = ("from edgecls.data import Dataset, load_split; import numpy as np\n"
         "d = Dataset(np.zeros((12, 4, 4, 1), np.uint8), np.arange(12) % 2, ['a', 'b'], 'x', 'grayscale',\n"
         "            fingerprint='fp')\n"
         "s = load_split({**dict(fingerprint='fp', train=list(range(3, 12)), val=[1], test=[0, 2]), **{CHANGE}}, d)\n"
         "print('accepted: test =', s.test.tolist())")
MEMPROBE = ("import sys; sys.path.insert(0, sys.argv[2])\n"
            "from edgecls.bench.memory import peak_rss; from pathlib import Path\n"
            f"print(peak_rss(Path({str(MODEL)!r}), Path(sys.argv[1]) / 'good.png', 1, 'litert'))")

M = str(MODEL)
CASES = [  # (class, what, argv or ("py", code), options)
    (1, "predict --labels /dev/zero", ["predict", "--labels", "/dev/zero", M, "W/good.png"], {}),
    (1, "predict --labels FIFO", ["predict", "--labels", "W/lab.fifo", M, "W/good.png"], {}),
    (1, "predict MODEL=/dev/zero", ["predict", "/dev/zero", "W/good.png"], {}),
    (1, "info MODEL=FIFO", ["info", "W/lab.fifo"], {}),
    (1, "train --config /dev/zero", ["train", "--config", "/dev/zero", "--out", "W/r1"], {}),
    (1, "dataset entry linked to /dev/zero", ("py", dataset("ds_zero")), {}),
    (2, "predict a folder holding a FIFO", ["predict", M, "W/photos"], {}),
    (2, "dataset (train) with a FIFO in a class folder", ("py", dataset("ds_fifo")), {}),
    (3, "dataset (train, bench --data) with a zTXt zlib-bomb PNG", ("py", dataset("ds_bomb")), {}),
    (3, "predict a 300-character file name + a good one", ["predict", M, "W/" + "y" * 300 + ".png", "W/good.png"], {}),
    (3, "predict a file in a mode-000 folder + a good one", ["predict", M, "W/locked/x.png", "W/good.png"],
     {"nocap": True}),
    (7, "SIGINT during predict (see test_first_ctrl_c...)", None, {}),
    (8, "bench memory probe run from a folder holding json.py", ("py", MEMPROBE), {"cwd": "cwd", "root_arg": True}),
    (8, "predict an EPS named .jpg", ["predict", M, "W/eps.jpg"], {}),
    (8, "predict a file named with U+202E", ["predict", M, "W/invoice\u202egnp.exe.png"], {"show_bidi": True}),
    (9, "split.json whose test part is training images", ("py", SPLIT.replace("{CHANGE}", "{'test': [3, 4]}")), {}),
    (9, "split.json with booleans as indices", ("py", SPLIT.replace("{CHANGE}", "{'test': [True, False]}")), {}),
    (9, "split.json with 10**30", ("py", SPLIT.replace("{CHANGE}", "{'test': [10**30]}")), {}),
    (9, "split.json with string indices", ("py", SPLIT.replace("{CHANGE}", "{'test': ['1']}")), {}),
    (9, "split.json without a fingerprint", ("py", SPLIT.replace("{CHANGE}", "{'fingerprint': None}")), {}),
    (10, "train --seed -1", ["train", "--seed", "-1", "--out", "W/r2"], {}),
    (10, "train --seed 2**32", ["train", "--seed", str(2**32), "--out", "W/r2"], {}),
    (10, "train --lr inf", ["train", "--lr", "inf", "--out", "W/r2"], {}),
    (10, "predict --threads 99999999999", ["predict", "--threads", "99999999999", M, "W/good.png"], {}),
    (10, "train --config (train = 5)", ["train", "--config", "W/shape.toml", "--out", "W/r2"], {}),
    (10, "train --config (50,000 nested arrays)", ["train", "--config", "W/deep.toml", "--out", "W/r2"], {}),
    (10, "train --config (10 MB arch string)", ["train", "--config", "W/huge.toml", "--out", "W/r2"], {}),
    (10, "class folders '0 cat', '1 dog' through labels.txt",
     ("py", "from edgecls.runtime.labels import labels_text, parse_labels\n"
            "print(parse_labels(labels_text(['0 cat', '1 dog'])))"), {}),
    (10, "class folder named 'new\\nline'", ("py", dataset("ds_nl")), {}),
    (11, "predict /dev/urandom", ["predict", M, "/dev/urandom"], {}),
    (11, "predict an unreadable folder argument", ["predict", M, "W/locked"], {"nocap": True}),
    (11, "predict a folder with an unreadable sub-folder", ["predict", M, "W/part"], {"nocap": True}),
    (11, "dataset with an unreadable sub-folder", ("py", dataset("ds_lock")), {"nocap": True}),
]


def _limit_memory() -> None:
    """An address-space cap, so that a "before" that reads /dev/zero fails fast instead of eating the machine."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


MEMORY_CAP = 6 << 30


def run(root: Path, work: Path, argv, opts: dict, timeout: float) -> str:
    env = {**os.environ, "PYTHONPATH": str(root), "EDGECLS_CACHE": str(work / "cache")}
    if argv[0] == "py":
        isolated = ["-I"] if opts.get("root_arg") else []  # the harness itself must not import the cwd's json.py
        command = [sys.executable, *isolated, "-c", argv[1], str(work)] + ([str(root)] if isolated else [])
    else:
        command = [sys.executable, "-m", "edgecls", *[a.replace("W/", f"{work}/") for a in argv]]
    if opts.get("nocap"):
        command = NOCAP + command
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", env=env, timeout=timeout,
                              cwd=work / opts["cwd"] if "cwd" in opts else root, stdin=subprocess.DEVNULL,
                              preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        return f"timeout (> {timeout:.0f} s, killed)"
    text = (done.stdout + done.stderr).replace(str(work) + "/", "")
    if "Traceback (most recent call last)" in done.stderr:  # a library call (the "py" cases) raised
        last = [line for line in done.stderr.splitlines() if line.strip()][-1].replace(str(work) + "/", "")
        text = f"raised {last}"
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(("INFO:", "score"))]
    shown = " / ".join(lines[:3])
    if not opts.get("show_bidi"):
        shown = shown.replace("\u202e", "<U+202E>")
    elif "\u202e" in shown:
        shown = shown.replace("\u202e", "**<U+202E>**")
    shown = shown.replace("|", "\\|")
    size = f" [{len(done.stderr)} characters on stderr]" if len(done.stderr) > 1000 else ""
    return f"exit {done.returncode}: {shown[:230]}{'...' if len(shown) > 230 else ''}{size}"



# ============================================================================ issue 28: the third sweep
# Each case states what a correct answer is, so the table's verdicts are computed, not judged by eye:
#   internal  "internal error" or a traceback          hang  the timeout killed it
#   oom       killed by the kernel or "out of memory"   wrong exit 0 where a refusal was due, a half-written or
#   misleading  the one line does not name the cause          mixed output left, or a wrong answer printed
# Fixtures (F/...) are built once per probe run and shared read-only; each case runs in its own scratch
# folder (W/...). RUN is a one-epoch digits run trained once per checkout (F/run-before, F/run-after),
# copied into W when a case writes into it.

VERDICTS = ("ok", "internal", "hang", "oom", "crash", "wrong", "misleading", "unreached", "n/a")


@dataclass
class Case:
    cls: int
    what: str
    argv: Any  # edgecls arguments (W/ F/ RUN/ M/ MF/ expanded) or ("py", code)
    refuse: bool = True  # exit 0 is a silently wrong answer
    say: tuple = ()  # words (case-insensitive) the error line must hold: else misleading
    never: tuple = ()  # words it must not hold (an internal temp file, an option the command lacks)
    absent: tuple = ()  # globs under W that must not exist afterwards (half-written / staging leftovers)
    prep: Optional[Callable[[Path, Path], None]] = None  # (W, F): case-specific files
    stdout: Optional[str] = None  # "/dev/full"
    disk_kib: Optional[int] = None  # a full disk at W/full: a tmpfs of this size (root), else RLIMIT_FSIZE
    disk_inodes: Optional[int] = None  # and of this many inodes (root): symbolic links take no data blocks
    nocap: bool = False  # without CAP_DAC_OVERRIDE (read-only folders bite root too)
    term: Optional[str] = None  # the signal once this glob exists under W (or "after:SECONDS")
    signal: str = "SIGTERM"
    check: Optional[Callable[[dict, Path], Optional[str]]] = None  # extra verdict from the result
    run: bool = False  # needs RUN (copied into W/run)
    second: Optional[list] = None  # started at the same time as argv, in the same folder
    timeout: Optional[float] = None
    cwd: Optional[str] = None  # under W


def _digits_png(value: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 40, (28, 28), dtype=np.uint8)
    pixels[4 + value: 20 + value, 8:20] = 200 + rng.integers(0, 50)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _mutate(source: Path, target: Path, change: Callable[[Any, Any], None]) -> None:
    """A copy of the .tflite `source` with `change(model, schema)` applied to its object tree."""
    import flatbuffers

    from edgecls.runtime.metadata import schema

    s = schema()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(source.read_bytes(), 0))
    change(model, s)
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    target.write_bytes(bytes(builder.Output()))


def _custom_pool(model, s) -> None:
    """MAX_POOL_2D's opcode turned into a custom op no interpreter knows."""
    code = model.operatorCodes[ops(model, "MAX_POOL_2D")[0].opcodeIndex]
    code.builtinCode = code.deprecatedBuiltinCode = 32  # CUSTOM
    code.customCode = "EdgeclsNoSuchOp"


def _nan_bias(model, s) -> None:
    """The first CONV_2D's bias made NaN: what a diverged training exports."""
    conv = ops(model, "CONV_2D")[0]
    buffer = model.buffers[graph_of(model, conv).tensors[conv.inputs[2]].buffer]
    count = len(buffer.data) // 4
    buffer.data = np.frombuffer(np.full(count, np.nan, np.float32).tobytes(), np.uint8)


def _set_input_shape(shape, signature=None):
    def change(model, s):
        t = model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]]
        t.shape = np.array(shape, np.int32)
        t.shapeSignature = np.array(signature if signature is not None else shape, np.int32)
    return change


def _with_metadata(source: Path, target: Path, update: Callable[[dict], None]) -> None:
    from edgecls.runtime.metadata import embed_metadata_bytes, read_metadata

    content = source.read_bytes()
    meta = read_metadata(content)
    update(meta)
    raw = json.dumps(meta, allow_nan=True).encode()
    target.write_bytes(embed_metadata_bytes(content, raw))


def build_fixtures(F: Path, log: Callable[[str], None]) -> None:
    """What the cases read, made once: mutated backbones, odd metadata and reports, images, labels, configs."""
    from edgecls.tflite.classifier import plain_bytes

    int8, float32 = MODEL, MODEL.with_name("model_float32.tflite")
    (F / "bb").mkdir(parents=True)
    plain = F / "bb" / "plain.tflite"  # the classifier the shipped (calibrated) reference wraps: one subgraph
    plain.write_bytes(plain_bytes(int8.read_bytes()))
    last_fc = lambda m: ops(m, "FULLY_CONNECTED")[-1]  # noqa: E731
    mutations = {
        "fc_input_1e6": lambda m, s: set_index(last_fc(m), "inputs", 0, 10**6),
        "fc_input_minus1": lambda m, s: set_index(last_fc(m), "inputs", 0, -1),
        "opcode_1e6": lambda m, s: setattr(ops(m, "SOFTMAX")[0], "opcodeIndex", 10**6),
        "buffer_1e6": lambda m, s: setattr(graph_of(m, last_fc(m)).tensors[last_fc(m).inputs[1]], "buffer", 10**6),
        "output_1e6": lambda m, s: setattr(m.subgraphs[0], "outputs", np.array([10**6], np.int32)),
        "input_minus1": lambda m, s: setattr(m.subgraphs[0], "inputs", np.array([-1], np.int32)),
        "side_2e31": _set_input_shape([1, 2**31 - 1, 2**31 - 1, 1]),
        "side_1e5": _set_input_shape([1, 100000, 100000, 1]),
        "dynamic_hw": _set_input_shape([1, 1, 1, 1], [-1, -1, -1, 1]),
        "zero_dim": _set_input_shape([1, 0, 28, 1]),
        "weights_minus1": lambda m, s: set_index(last_fc(m), "inputs", 1, -1),
        "custom_op": _custom_pool,
        "cycle": lambda m, s: set_index(last_fc(m), "inputs", 0, int(last_fc(m).outputs[0])),
    }
    for name, change in mutations.items():
        _mutate(plain, F / "bb" / f"{name}.tflite", change)
    (F / "bb" / "truncated.tflite").write_bytes(int8.read_bytes()[: len(int8.read_bytes()) // 2])
    # Numbers that are not numbers
    (F / "nan").mkdir()
    _with_metadata(float32, F / "nan" / "range_1e300.tflite",
                   lambda m: m["input"].__setitem__("pixel_range", [0, 1e300]))
    _with_metadata(float32, F / "nan" / "range_3e38.tflite",
                   lambda m: m["input"].__setitem__("pixel_range", [0, 3e38]))
    _with_metadata(float32, F / "nan" / "range_tiny.tflite",
                   lambda m: m["input"].__setitem__("pixel_range", [0, 1e-300]))
    _with_metadata(int8, F / "nan" / "range_nan.tflite",
                   lambda m: m["input"].__setitem__("pixel_range", [0, float("nan")]))
    _mutate(int8, F / "nan" / "out_scale_nan.tflite", lambda m, s: setattr(
        m.subgraphs[0].tensors[m.subgraphs[0].outputs[0]].quantization, "scale", np.array([np.nan], np.float32)))
    _mutate(int8, F / "nan" / "in_scale_inf.tflite", lambda m, s: setattr(
        m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]].quantization, "scale", np.array([np.inf], np.float32)))
    _mutate(float32, F / "nan" / "nan_weights.tflite", _nan_bias)
    shutil.copy(MODEL.with_name("labels.txt"), F / "nan" / "labels.txt")
    report = json.loads((MODEL.parent / "report" / "bench.json").read_text())
    bad = json.loads(json.dumps(report))
    bad["models"][1]["accuracy"]["top1"] = float("nan")
    (F / "nan" / "nan-top1.json").write_text(json.dumps(bad))
    text = json.dumps(report)
    (F / "nan" / "digits-10000.json").write_text(text.replace('"images": 179', '"images": ' + "9" * 10000, 1))
    bad = json.loads(json.dumps(report))
    bad["models"][1]["accuracy"]["top1"] = 10**400
    (F / "nan" / "huge-top1.json").write_text(json.dumps(bad))
    bad = json.loads(json.dumps(report))
    bad["models"][1]["size_bytes"] = float("inf")
    (F / "nan" / "inf-size.json").write_text(json.dumps(bad))
    # Images: a small folder of 2 classes (the digits backbone's 28x28 grayscale), single images
    for c in range(2):
        (F / "ds" / f"c{c}").mkdir(parents=True)
        for i in range(12):
            (F / "ds" / f"c{c}" / f"{i:02d}.png").write_bytes(_digits_png(c * 5, c * 100 + i))
    (F / "img").mkdir()
    (F / "img" / "seven.png").write_bytes(_digits_png(3, 7))
    for sub in ("a", "b"):
        (F / "twins" / sub).mkdir(parents=True)
        (F / "twins" / sub / "x.png").write_bytes(_digits_png(1 if sub == "a" else 6, 9))
    # Labels
    (F / "labels").mkdir()
    (F / "labels" / "ten-a.txt").write_text("a\n" * 10)
    (F / "labels" / "twice.txt").write_text("".join(f"{n}\n" for n in
                                                    ["crane", "cat", "dog", "3", "crane", "5", "6", "7", "8", "9"]))
    (F / "labels" / "million.txt").write_text("".join(f"class {i}\n" for i in range(10**6)))
    (F / "labels" / "case-twins.txt").write_text("".join(f"{n}\n" for n in
                                                         ["cat", "dog", "Cat", "3", "4", "5", "6", "7", "8", "9"]))
    # Configs
    (F / "cfg").mkdir()
    (F / "cfg" / "backbone-in-train.toml").write_text(f'[train]\nbackbone = "{F / "bb" / "fc_input_1e6.tflite"}"\n'
                                                      f'data = "{F / "ds"}"\n')
    (F / "cfg" / "epochs-huge.toml").write_text("[train]\nepochs = 1000000000000\n")
    (F / "cfg" / "fine-tune-lr-inf.toml").write_text("[train]\nfine_tune_lr = inf\n")
    (F / "afile").write_text("a file, not a folder\n")


def build_bomb(F: Path, log: Callable[[str], None]) -> None:
    """A model.keras whose config.json inflates to 4 GiB (4 MB on disk)."""
    log("fixtures: the 4 GiB zip bomb (about 20 s)")
    with zipfile.ZipFile(F / "bomb.keras", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("metadata.json", '{"keras_version": "3.0.0"}')
        with archive.open("config.json", "w", force_zip64=True) as member:
            block = b" " * (16 << 20)
            for _ in range(256):
                member.write(block)


def build_runs(F: Path, roots: dict[str, Path], log: Callable[[str], None]) -> None:
    """A one-epoch digits run per checkout (F/run-before, F/run-after), unless already there."""
    for label, root in roots.items():
        if (F / f"run-{label}" / "export" / "export.json").is_file():
            continue
        log(f"fixtures: a one-epoch digits run, exported, for {label} (a minute or two)")
        env = {**os.environ, "PYTHONPATH": str(root), "EDGECLS_CACHE": str(F / "cache")}
        shutil.rmtree(F / f"run-{label}", ignore_errors=True)
        for argv in (["train", "--epochs", "1", "--quiet", "--out", str(F / f"run-{label}")],
                     ["export", str(F / f"run-{label}")]):
            done = subprocess.run([sys.executable, "-m", "edgecls", *argv], env=env, capture_output=True, text=True,
                                  cwd=F)
            if done.returncode != 0:
                raise SystemExit(f"the fixture run for {label} failed: {done.stderr[-2000:]}")


def _noise_classes(w: Path) -> None:
    """Two class folders of the same random noise: no head can tell them apart."""
    rng = np.random.default_rng(0)
    for name in ("x", "y"):
        (w / "noise" / name).mkdir(parents=True)
        for i in range(60):
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(w / "noise" / name / f"{i}.png")


def _many_images(root: Path, per_class: int) -> None:
    """Two class folders of `per_class` 28x28 digit-like PNGs each."""
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            (root / f"c{c}" / f"{i:04d}.png").write_bytes(_digits_png(c * 5, c * 10_000 + i))


def _copy(source: str, target: str) -> Callable[[Path, Path], None]:
    def prep(w: Path, f: Path) -> None:
        src = f / source
        (shutil.copytree if src.is_dir() else shutil.copy)(src, w / target)
    return prep


def _all(*preps: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
    def prep(w: Path, f: Path) -> None:
        for p in preps:
            p(w, f)
    return prep


def _readonly(name: str) -> Callable[[Path, Path], None]:
    def prep(w: Path, f: Path) -> None:
        (w / name).mkdir()
        (w / name).chmod(0o555)
    return prep


def _calibration_data(w: Path, f: Path) -> None:
    """W/cal: 30 digit-like images in each of the model's classes 0 and 5 (enough to calibrate on)."""
    for digit in (0, 5):
        (w / "cal" / str(digit)).mkdir(parents=True)
        for i in range(30):
            (w / "cal" / str(digit) / f"{i:02d}.png").write_bytes(_digits_png(digit, digit * 100 + i))


def _folder_kept(name: str) -> Callable[[Path, Path], None]:
    """W/NAME: a folder holding the user's file keep.txt (that must survive)."""
    def prep(w: Path, f: Path) -> None:
        (w / name).mkdir()
        (w / name / "keep.txt").write_text("mine")
    return prep


def _still_there(name: str) -> Callable[[dict, Path], Optional[str]]:
    def check(r: dict, w: Path) -> Optional[str]:
        return None if (w / name / "keep.txt").is_file() else "wrong"
    return check


def _report_kept(r: dict, w: Path) -> Optional[str]:
    """Wrong when data check said it wrote a report that is not there (the review folder replaced it)."""
    if r["code"] == 0 and not list(w.glob("dc*/**/datacheck.md")):
        return "wrong"
    return None


def _no_rows_of_class(words: str) -> Callable[[dict, Path], Optional[str]]:
    """Wrong when stdout shows a class for an image the model cannot answer (a NaN score)."""
    def check(r: dict, w: Path) -> Optional[str]:
        if any(word in r["stdout"] for word in words.split("|")):
            return "wrong"
        return None
    return check


def _distinct_labels(r: dict, w: Path) -> Optional[str]:
    """Wrong when one answer names two classes alike ("a a a"), or when the repeat goes unsaid."""
    for line in r["stdout"].splitlines():
        if line.startswith("{"):
            names = [c["label"] for c in json.loads(line).get("classes", [])]
        elif line.startswith(("score", "error")) or not line.strip():
            continue
        else:
            names = line.split("  ")[1:-1]
        names = [n.strip() for n in names if n.strip() and not n.strip()[0].isdigit()]
        if len(set(names)) != len(names):
            return "wrong"
    return None if "repeats" in r["stderr"] else "misleading"


def _whole_set(folder: Path) -> Optional[str]:
    """Wrong unless the folder's .tflite files are exactly what its export.json lists, with those digests."""
    import hashlib

    listed = {m["file"]: m["sha256"] for m in json.loads((folder / "export.json").read_text())["models"]}
    present = {p.name for p in folder.glob("*.tflite")}
    digests_ok = all(hashlib.sha256((folder / f).read_bytes()).hexdigest() == d for f, d in listed.items()
                     if (folder / f).is_file())
    return None if present == set(listed) and digests_ok else "wrong"


def _strict_json_files(r: dict, w: Path) -> Optional[str]:
    for path in w.rglob("*.json"):
        try:
            json.loads(path.read_text(), parse_constant=lambda token: (_ for _ in ()).throw(ValueError(token)))
        except ValueError:
            return "wrong"
    return None


def _distinct_pngs(r: dict, w: Path) -> Optional[str]:
    pngs = list((w / "ex").glob("*.png"))
    return "wrong" if len(pngs) < 2 else None


def _csv_names(r: dict, expected: list) -> Optional[str]:
    import csv

    rows = list(csv.reader(io.StringIO(r["stdout"])))
    return None if [row[0] for row in rows[1:]] == expected else "wrong"


def _md_tables(folder: Path) -> Optional[str]:
    """Wrong when a Markdown table row has more cells than its header (an unescaped '|')."""
    for md in folder.rglob("*.md"):
        header = None
        for line in md.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.startswith("|"):
                header = None
                continue
            cells = len(line.replace("\\|", "").split("|"))
            if header is None:
                header = cells
            elif cells != header:
                return "wrong"
    return None


def _one_export_json(r: dict, w: Path) -> Optional[str]:
    """Two exports of one run at once: each must end with a complete set of its own, or one must refuse."""
    doc = w / "run" / "export" / "export.json"
    if not doc.is_file():
        return "wrong"
    listed = {m["file"]: m["sha256"] for m in json.loads(doc.read_text())["models"]}
    import hashlib

    for name, digest in listed.items():
        path = w / "run" / "export" / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            return "wrong"
    stray = [p.name for p in (w / "run" / "export").glob("*.tflite") if p.name not in listed]
    if stray or r["codes"] == [0, 0]:  # both said "Wrote ...": one of them was overwritten by the other
        return "wrong"
    return None


DS, BB, NAN, LAB, CFG, MODEL_F = "F/ds", "F/bb", "F/nan", "F/labels", "F/cfg", "MF"


def _bb(name: str, **kw: Any) -> Case:
    """train --backbone of a mutated digits model: one line naming the user's file, nothing written."""
    return Case(1, f"train --backbone ({name.replace('_', ' ')})",
                ["train", "--backbone", f"{BB}/{name}.tflite", "--data", DS, "--out", "W/r", "--quiet"],
                **{"say": (f"{name}.tflite",), "never": ("backbone_cut",), "absent": ("r", ".r.partial-*"), **kw})


CASES28: list[Case] = [
    # ---- 1: the backbone route's hand-walked flatbuffer
    _bb("fc_input_1e6"),
    _bb("fc_input_minus1"),
    _bb("opcode_1e6"),
    _bb("buffer_1e6"),
    _bb("output_1e6"),
    _bb("input_minus1", say=("input_minus1.tflite", "-1")),
    _bb("side_2e31", say=("side_2e31.tflite", "8192")),
    _bb("side_1e5", say=("side_1e5.tflite", "8192")),
    _bb("dynamic_hw", say=("dynamic_hw.tflite", "dynamic")),
    _bb("zero_dim"),
    _bb("weights_minus1"),
    _bb("custom_op", say=("custom_op.tflite", "EdgeclsNoSuchOp")),
    _bb("cycle"),
    _bb("truncated"),
    Case(1, "data check --backbone (tensor index out of range)",
         ["data", "check", DS, "--backbone", f"{BB}/fc_input_1e6.tflite", "--report", "W/dc"],
         say=("fc_input_1e6.tflite",), absent=("dc",)),
    Case(1, "data check --backbone (input 2**31-1 px a side)",
         ["data", "check", DS, "--backbone", f"{BB}/side_2e31.tflite", "--report", "W/dc"],
         say=("side_2e31.tflite",), absent=("dc",)),
    Case(1, "predict a .tflite whose FULLY_CONNECTED has no weights tensor (-1): LiteRT itself",
         ["predict", f"{BB}/weights_minus1.tflite", "F/img/seven.png"], say=("weights_minus1.tflite",)),
    Case(1, "train --backbone --embedding-tensor on a model with an index of -1",
         ["train", "--backbone", f"{BB}/fc_input_minus1.tflite", "--embedding-tensor", "x", "--data", DS,
          "--out", "W/r", "--quiet"], say=("fc_input_minus1.tflite",), absent=("r",)),
    # ---- 2: writing fails
    Case(2, "explain --out on a read-only folder", ["explain", "M", "F/img/seven.png", "--out", "W/ro/ex"],
         prep=_readonly("ro"), nocap=True, say=("W/ro",)),
    Case(2, "explain --out under a file", ["explain", "M", "F/img/seven.png", "--out", "W/afile/sub"],
         prep=_copy("afile", "afile"), say=("afile",), never=("File exists",)),
    Case(2, "train --out on a full disk (CNN)", ["train", "--epochs", "1", "--quiet", "--out", "W/full/r"],
         disk_kib=64, say=("space",), absent=("full/r", "full/.r.partial-*")),
    Case(2, "train --backbone --out on a full disk",
         ["train", "--backbone", "M", "--data", DS, "--out", "W/full/r", "--quiet", "--epochs", "3"],
         disk_kib=48, say=("space",), absent=("full/r", "full/.r.partial-*")),
    Case(2, "predict --json > /dev/full", ["predict", "--json", "M", "F/img/seven.png"], stdout="/dev/full",
         say=("space",)),
    Case(2, "predict (table) > /dev/full", ["predict", "M", "F/ds"], stdout="/dev/full", say=("space",)),
    Case(2, "info --json > /dev/full", ["info", "--json", "M"], stdout="/dev/full", say=("space",)),
    Case(2, "predict --csv > /dev/full", ["predict", "--csv", "M", "F/img/seven.png"], stdout="/dev/full",
         say=("space",)),
    Case(2, "export --out on a full disk", ["export", "RUN", "--quant", "int8", "--out", "W/full/ex"], run=True,
         disk_kib=48, say=("space",), absent=("full/ex/*.tflite", "full/ex/.*partial*")),
    Case(2, "export --out under a file", ["export", "RUN", "--out", "W/afile/ex"], run=True,
         prep=_copy("afile", "afile"), say=("afile",), never=("File exists",)),
    Case(2, "bench --report on a read-only folder", ["bench", "M", "--data", DS, "--latency-only", "--runs", "2",
                                                     "--no-memory", "--report", "W/ro/rep"],
         prep=_readonly("ro"), nocap=True, say=("W/ro",)),
    Case(2, "bench compare --report on a full disk", ["bench", "compare", "M/report/bench.json",
                                                      "--report", "W/full/cmp"], disk_kib=8, say=("space",),
         absent=("full/cmp/*.partial",)),
    Case(2, "data check --report under a file", ["data", "check", DS, "--report", "W/afile/dc"],
         prep=_copy("afile", "afile"), say=("afile",)),
    Case(2, "explain --out on a full disk", ["explain", "M", "F/ds", "--out", "W/full/ex"], disk_kib=24,
         say=("space",)),
    Case(2, "bench --save-test-images on a full disk", ["bench", "RUN", "--no-keras", "--runs", "2", "--no-memory",
                                                        "--save-test-images", "W/full/imgs"],
         run=True, disk_kib=16, say=("space",)),
    Case(2, "bench --json into a read-only folder", ["bench", "M", "--data", DS, "--latency-only", "--runs", "2",
                                                     "--no-memory", "--json", "W/ro/b.json"],
         prep=_readonly("ro"), nocap=True, say=("W/ro",)),
    Case(2, "train (CNN) --out in a read-only folder", ["train", "--epochs", "1", "--out", "W/ro/r"],
         prep=_readonly("ro"), nocap=True, say=("W/ro",)),
    Case(2, "data check --review on a full disk", ["data", "check", DS, "--report", "W/dc", "--review", "W/full/rv"],
         disk_kib=4, disk_inodes=8, say=("space|full",), absent=("full/rv", "full/.rv.partial-*")),
    Case(2, "doctor --json > /dev/full", ["doctor", "--json"], stdout="/dev/full", say=("space",)),
    # ---- 3: unbounded work from small input
    Case(3, "export a 4.6 MB model.keras whose config.json inflates to 4 GiB",
         ["export", "F/bomb.keras", "--data", "digits", "--out", "W/ex"], say=("config.json",), absent=("ex",)),
    Case(3, "explain --masks 10**12 --method rise", ["explain", "M", "F/img/seven.png", "--method", "rise",
                                                     "--masks", str(10**12), "--out", "W/ex"], say=("--masks",)),
    Case(3, "bench --runs 10**12", ["bench", "M", "--data", DS, "--latency-only", "--runs", str(10**12),
                                    "--no-memory"], say=("--runs",)),
    Case(3, "bench --warmup 10**12", ["bench", "M", "--data", DS, "--latency-only", "--warmup", str(10**12),
                                      "--no-memory"], say=("--warmup",)),
    Case(3, "bench --batch-size 10**9", ["bench", "M", "--data", DS, "--latency-only", "--batch-size", str(10**9),
                                         "--no-memory"], say=("--batch-size",)),
    Case(3, "train --epochs 10**12", ["train", "--epochs", str(10**12), "--out", "W/r"], say=("--epochs",),
         absent=("r",)),
    Case(3, "train --batch-size 10**12", ["train", "--batch-size", str(10**12), "--out", "W/r"],
         say=("--batch-size",), absent=("r",)),
    Case(3, "train --backbone --views 10**9", ["train", "--backbone", "M", "--data", DS, "--views", str(10**9),
                                               "--out", "W/r"], say=("--views",), absent=("r",)),
    Case(3, "train --backbone --epochs 10**12", ["train", "--backbone", "M", "--data", DS, "--epochs",
                                                 str(10**12), "--out", "W/r"], say=("--epochs",), absent=("r",)),
    Case(3, "train --config with epochs = 10**12", ["train", "--config", f"{CFG}/epochs-huge.toml", "--out", "W/r"],
         say=("epochs",), absent=("r",)),
    Case(3, "export --calib-samples 10**18", ["export", "RUN", "--calib-samples", str(10**18)], run=True,
         refuse=False, say=("--calib-samples",)),  # before: all the train split (documented), so not wrong
    Case(3, "export --target host --timing-runs 10**12", ["export", "RUN", "--target", "host", "--timing-runs",
                                                          str(10**12)], run=True, say=("--timing-runs",)),
    Case(3, "export --target host --max-fallback 10**6", ["export", "RUN", "--target", "host", "--max-fallback",
                                                          str(10**6)], run=True, say=("--max-fallback",)),
    Case(3, "explain --dataset --worst 10**9", ["explain", "--dataset", "RUN", "--worst", str(10**9), "--out", "W/ex"],
         run=True, say=("--worst",)),
    Case(3, "data check --max-pages 10**9", ["data", "check", DS, "--max-pages", str(10**9), "--report", "W/dc"],
         say=("--max-pages",)),
    Case(3, "predict --top-k 10**18", ["predict", "--top-k", str(10**18), "M", "F/img/seven.png"], refuse=False),
    Case(3, "predict --every 10**30 --source", ["predict", "M", "--source", "F/img/seven.png", "--every",
                                                str(10**30)], say=("--every",)),
    Case(3, "bench --explain-flips 10**9", ["bench", "RUN", "--no-keras", "--no-memory", "--runs", "2",
                                            "--explain-flips", str(10**9)], run=True, say=("--explain-flips",)),
    Case(3, "bench --calib-sweep 10**12", ["bench", "RUN", "--calib-sweep", str(10**12)], run=True,
         say=("--calib-sweep",)),
    Case(3, "bench --remote @/dev/zero (hosts file)", ["bench", "M", "--data", DS, "--latency-only", "--remote",
                                                     "@/dev/zero"],
         say=("/dev/zero", "not a regular file")),
    # ---- 4: numbers that are not numbers
    Case(4, "predict a model whose metadata pixel_range is [0, 1e300]", ["predict", f"{NAN}/range_1e300.tflite",
                                                                         "F/img/seven.png", "F/ds/c0/00.png"],
         say=("pixel_range",), check=_no_rows_of_class("0.0|null|nan")),
    Case(4, "bench a model whose metadata pixel_range is [0, 1e300]",
         ["bench", f"{NAN}/range_1e300.tflite", "--data", "digits", "--runs", "2", "--no-memory", "--report", "W/b"],
         say=("pixel_range",)),
    Case(4, "predict --json, metadata pixel_range [0, 3e38] (finite in float32, overflows in the model)",
         ["predict", "--json", f"{NAN}/range_3e38.tflite", "F/img/seven.png"],
         say=("pixel_range",), check=_no_rows_of_class('"classes"')),
    Case(4, "predict, metadata pixel_range [0, 1e-300] (0 in float32)",
         ["predict", f"{NAN}/range_tiny.tflite", "F/img/seven.png"], say=("pixel_range",)),
    Case(4, "predict --input-range 0,1e300", ["predict", "--input-range", "0,1e300", MODEL_F, "F/img/seven.png"],
         say=("--input-range",)),
    Case(4, "predict a model whose output scale is NaN", ["predict", f"{NAN}/out_scale_nan.tflite",
                                                          "F/img/seven.png"], say=("scale",),
         check=_no_rows_of_class("0.0|null|nan")),
    Case(4, "predict a model whose input scale is inf", ["predict", f"{NAN}/in_scale_inf.tflite", "F/img/seven.png"],
         say=("scale",)),
    Case(4, "export --target host --max-drop inf", ["export", "RUN", "--target", "host", "--max-drop", "inf",
                                                    "--candidates", "float32", "--out", "W/t"],
         run=True, say=("--max-drop",), check=_strict_json_files, absent=("t/model.tflite",)),
    Case(4, "export --min-agreement nan", ["export", "RUN", "--min-agreement", "nan", "--out", "W/ex"], run=True,
         say=("--min-agreement",), absent=("ex",)),
    Case(4, "export --target host --max-drop nan", ["export", "RUN", "--target", "host", "--max-drop", "nan",
                                                    "--out", "W/t"], run=True, say=("--max-drop",), absent=("t",)),
    Case(4, "bench compare a report whose top-1 is NaN", ["bench", "compare", f"{NAN}/nan-top1.json"],
         say=("top1",), check=_no_rows_of_class("nan")),
    Case(4, "bench compare a report with a 10,000-digit integer", ["bench", "compare", f"{NAN}/digits-10000.json"],
         say=("digits-10000.json",)),
    Case(4, "bench compare a report whose top-1 is 10**400", ["bench", "compare", f"{NAN}/huge-top1.json"],
         say=("huge-top1.json",)),
    Case(4, "bench compare a report with size_bytes Infinity", ["bench", "compare", f"{NAN}/inf-size.json"],
         say=("inf-size.json",)),
    Case(4, "bench --explain-threshold nan", ["bench", "RUN", "--no-keras", "--explain-flips", "0",
                                              "--explain-threshold", "nan"], run=True, say=("--explain-threshold",)),
    Case(4, "train --config with fine_tune_lr = inf", ["train", "--config", f"{CFG}/fine-tune-lr-inf.toml",
                                                       "--arch", "mobilenet_v2", "--color", "rgb", "--out", "W/r"],
         say=("fine_tune_lr|fine-tune-lr",), absent=("r",)),
    Case(4, "train --fine-tune-lr inf", ["train", "--arch", "mobilenet_v2", "--color", "rgb", "--fine-tune-lr", "inf",
                                         "--out", "W/r"],
         say=("--fine-tune-lr",), absent=("r",)),
    Case(4, "predict --source --fps nan", ["predict", "M", "--source", "F/img/seven.png", "--fps", "nan"],
         say=("--fps",)),
    Case(4, "predict --source --timeout inf", ["predict", "M", "--source", "camera:77", "--timeout", "inf"],
         say=("--timeout",)),
    Case(4, "train --backbone on a float backbone whose weights are NaN (NaN embeddings)",
         ["train", "--backbone", f"{NAN}/nan_weights.tflite", "--data", DS, "--out", "W/r", "--quiet"],
         say=("not numbers|not a number|non-finite|nan|infinite",), never=("collapsed",), absent=("r",)),
    Case(4, "predict a float model whose weights are NaN (a diverged training)",
         ["predict", f"{NAN}/nan_weights.tflite", "F/img/seven.png", "F/ds/c0/00.png"],
         say=("not numbers|nan",), check=_no_rows_of_class("0.0|null|nan  ")),
    Case(4, "predict --json, a float model whose weights are NaN", ["predict", "--json", f"{NAN}/nan_weights.tflite",
                                                                   "F/img/seven.png"],
         say=("not numbers|nan",), check=_no_rows_of_class('"classes"')),
    Case(4, "bench a float model whose weights are NaN", ["bench", f"{NAN}/nan_weights.tflite", "--data", "digits",
                                                          "--runs", "2", "--no-memory", "--report", "W/b"],
         say=("not numbers",), absent=("b/bench.json",)),
    Case(4, "explain a float model whose weights are NaN", ["explain", f"{NAN}/nan_weights.tflite",
                                                            "F/img/seven.png", "--out", "W/ex"],
         say=("not numbers",), check=_strict_json_files),
    Case(4, "predict a model whose metadata pixel_range is [0, NaN]", ["predict", f"{NAN}/range_nan.tflite",
                                                                       "F/img/seven.png"], say=("pixel_range",)),
    # ---- 5: output sets half-written or mixed
    Case(5, "predict --top-k 3 with labels.txt holding 'a' ten times", ["predict", "--top-k", "3", "--labels",
                                                                        f"{LAB}/ten-a.txt", "M", "F/img/seven.png"],
         refuse=False, check=_distinct_labels),
    Case(5, "predict --json --top-k 5 with ImageNet-style labels naming two classes 'crane'",
         ["predict", "--json", "--top-k", "5", "--labels", f"{LAB}/twice.txt", "M", "F/img/seven.png"],
         refuse=False, check=_distinct_labels),
    Case(5, "predict with labels 'cat' and 'Cat'", ["predict", "--labels", f"{LAB}/case-twins.txt", "M",
                                                   "F/img/seven.png"], refuse=False),
    Case(5, "explain two images both named x.png", ["explain", "M", "F/twins/a/x.png", "F/twins/b/x.png",
                                                    "--out", "W/ex"], refuse=False, check=_distinct_pngs),
    Case(5, "two concurrent exports of one run directory (default modes, and --quant int8)", ["export", "RUN"],
         run=True, refuse=False, second=["export", "RUN", "--quant", "int8"], check=_one_export_json),
    Case(5, "bench compare --json inside --report (one file twice)",
         ["bench", "compare", "M/report/bench.json", "--report", "W/cmp", "--json", "W/cmp/compare.json"],
         refuse=False, check=lambda r, w: "wrong" if r["stdout"].count("compare.json") > 1 else None),
    Case(5, "export --quant int8 after a default export: no file of the old set left unlisted",
         [["export", "RUN", "--quant", "float32,int8", "--out", "W/ex"], ["export", "RUN", "--quant", "int8", "--out",
                                                                           "W/ex"]],
         run=True, refuse=False, check=lambda r, w: _whole_set(w / "ex")),
    Case(5, "bench --json inside --report (bench.json twice)",
         ["bench", "M", "--data", DS, "--latency-only", "--runs", "2", "--no-memory", "--report", "W/rep", "--json",
          "W/rep/bench.json"], refuse=False,
         check=lambda r, w: "wrong" if "JSON report:" in r["stdout"] + r["stderr"] else None),  # listed twice
    # ---- 6: what we write we read back (a step list: each command must work on what the one before wrote)
    Case(6, "train --backbone on a data folder named with a quote, a backslash and a tab; then bench the run",
         [["train", "--backbone", "M", "--data", 'W/d"q\\b\tt', "--out", "W/r", "--quiet", "--epochs", "3"],
          ["bench", "W/r", "--no-memory", "--runs", "2"]],
         prep=lambda w, f: shutil.copytree(f / "ds", w / 'd"q\\b\tt'), refuse=False),
    Case(6, "train --backbone on a data folder whose name is not UTF-8; then bench the run",
         [["train", "--backbone", "M", "--data", "W/d\udcffx", "--out", "W/r", "--quiet", "--epochs", "3"],
          ["bench", "W/r", "--no-memory", "--runs", "2"]],
         prep=lambda w, f: shutil.copytree(f / "ds", os.fsdecode(os.fsencode(w) + b"/d\xffx")), refuse=False),
    Case(6, "class folders named with quotes, backslashes, '#', '=' and a leading dash; then predict, bench",
         [["train", "--backbone", "M", "--data", "W/odd", "--out", "W/r", "--quiet", "--epochs", "3"],
          ["predict", "W/r/export/model_int8.tflite", "F/img/seven.png"],
          ["bench", "W/r", "--no-memory", "--runs", "2"]],
         prep=lambda w, f: [shutil.copytree(f / "ds" / c, w / "odd" / n) for c, n in
                            (("c0", '-a "quoted" \\ # name'), ("c1", "b = [x]'"))], refuse=False),
    Case(6, "class folders whose names are not UTF-8; then predict and bench the run",
         [["train", "--backbone", "M", "--data", "W/odd", "--out", "W/r", "--quiet", "--epochs", "3"],
          ["predict", "W/r/export/model_int8.tflite", "F/img/seven.png"],
          ["bench", "W/r", "--no-memory", "--runs", "2"]],
         prep=lambda w, f: [shutil.copytree(f / "ds" / c, os.fsdecode(os.fsencode(w) + b"/odd/" + n)) for c, n in
                            (("c0", b"caf\xe9"), ("c1", b"plain"))], refuse=False),
    Case(6, "train --out named with a quote and a newline; then bench the run",
         [["train", "--backbone", "M", "--data", DS, "--out", 'W/r"\nx', "--quiet", "--epochs", "3"],
          ["bench", 'W/r"\nx', "--no-memory", "--runs", "2"]], refuse=False),
    Case(6, "explain an image whose name is not UTF-8; then read explain.json",
         [["explain", "M", "W/x\udcff.png", "--out", "W/ex"],
          ["py", "import json, sys; json.load(open(sys.argv[1] + '/ex/explain.json')); print('read back')"]],
         prep=lambda w, f: shutil.copy(f / "img" / "seven.png", os.fsdecode(os.fsencode(w) + b"/x\xff.png")),
         refuse=False),
    Case(6, "predict --csv of a file named with a comma, a quote and a newline; read the CSV back",
         ["predict", "--csv", "M", 'W/a,"b\nc.png'], refuse=False,
         prep=lambda w, f: shutil.copy(f / "img" / "seven.png", w / 'a,"b\nc.png'),
         check=lambda r, w: _csv_names(r, [f'{w}/a,"b\nc.png']) ),
    Case(6, "bench --report of a model file named 'a|b.tflite': the Markdown table keeps its columns",
         ["bench", "W/a|b.tflite", "--data", DS, "--latency-only", "--runs", "2", "--no-memory", "--report", "W/rep"],
         prep=lambda w, f: shutil.copy(MODEL, w / "a|b.tflite"), refuse=False,
         check=lambda r, w: _md_tables(w / "rep")),
    Case(6, "data check of class folders with '|' and '*' in their names: datacheck.md",
         ["data", "check", "W/odd", "--report", "W/dc"], refuse=False,
         prep=lambda w, f: [shutil.copytree(f / "ds" / c, w / "odd" / n) for c, n in (("c0", "a|b"), ("c1", "*c*"))],
         check=lambda r, w: _md_tables(w / "dc")),
    # ---- 7: cheap checks first, messages that name the real cause
    Case(7, "export --target 'pi@rasp berry'", ["export", "RUN", "--target", "pi@rasp berry"], run=True,
         say=("--target",), never=("--remote",), timeout=40),
    Case(7, "predict --source ''", ["predict", "M", "--source", ""], say=("--source",), never=(" is a folder",)),
    Case(7, "bench a run directory named run", ["bench", "run", "--no-keras", "--no-memory", "--runs", "2"],
         cwd=".", run=True, refuse=False, check=lambda r, w: None if r["code"] == 0 else "misleading"),
    Case(7, "bench a run whose labels.txt has 10**6 lines", ["bench", "RUN", "--no-memory", "--runs", "2"],
         run=True, prep=lambda w, f: (w / "run" / "labels.txt").write_text("a\n" * 10**6),
         say=("labels.txt", "1000000"), never=("on a device",)),
    Case(7, "predict with a labels file of 10**6 lines", ["predict", "--labels", f"{LAB}/million.txt", "M",
                                                          "F/img/seven.png"], say=("million.txt",)),
    Case(7, "train --config with backbone under [train]", ["train", "--config", f"{CFG}/backbone-in-train.toml",
                                                           "--out", "W/r"], never=("--config does not apply",)),
    Case(7, "train --out afile/run", ["train", "--out", "W/afile/run"], prep=_copy("afile", "afile"),
         say=("afile",), never=("File exists",)),
    Case(7, "train --backbone --head mlp on classes of pure noise: the advice",
         ["train", "--backbone", "M", "--data", "W/noise", "--head", "mlp", "--out", "W/r", "--quiet"],
         prep=lambda w, f: _noise_classes(w), say=("--head linear",), never=("--head mlp,",)),
    Case(7, "explain --out afile", ["explain", "M", "F/img/seven.png", "--out", "W/afile"],
         prep=_copy("afile", "afile"), say=("afile",)),
    Case(7, "export --target 'pi@' (no host)", ["export", "RUN", "--target", "pi@"], run=True, say=("--target",),
         timeout=40),
    Case(7, "predict --source camera:x", ["predict", "M", "--source", "camera:x"], say=("camera:x",)),
    Case(7, "export --target 'pi@-oProxyCommand=x'", ["export", "RUN", "--target", "pi@-oProxyCommand=x"],
         run=True, say=("--target",), never=("--remote",), timeout=40),
    # ---- the field-loop and live surface, new since the baseline (calibrate, predict --collect, data check,
    # serve's live options): "n/a" where the baseline has no such command or option
    Case(2, "calibrate --out under a file", ["calibrate", "M", "--data", "W/cal", "--out", "W/afile/c.tflite"],
         prep=_all(_calibration_data, _copy("afile", "afile")), say=("afile is a file",), never=("File exists",)),
    Case(2, "calibrate --out in a read-only folder", ["calibrate", "M", "--data", "W/cal", "--out", "W/ro/c.tflite"],
         prep=_all(_calibration_data, _readonly("ro")), nocap=True, say=("W/ro",)),
    Case(2, "calibrate --out on a full disk", ["calibrate", "M", "--data", "W/cal", "--out", "W/full/c.tflite"],
         prep=_calibration_data, disk_kib=64, say=("space|too large",), absent=("full/c.tflite", "full/.*partial*")),
    Case(2, "calibrate > /dev/full", ["calibrate", "M", "--data", "W/cal", "--out", "W/c.tflite"],
         prep=_calibration_data, stdout="/dev/full", say=("standard output",)),
    Case(2, "predict --collect under a file", ["predict", "M", "F/img/seven.png", "--collect", "W/afile/in"],
         prep=_copy("afile", "afile"), say=("afile is a file",)),
    Case(2, "predict --collect naming a file", ["predict", "M", "F/img/seven.png", "--collect", "W/afile"],
         prep=_copy("afile", "afile"), say=("afile is a file",), never=("File exists",)),
    Case(2, "predict --collect in a read-only folder", ["predict", "M", "F/img/seven.png", "--collect", "W/ro/in"],
         prep=_readonly("ro"), nocap=True, say=("W/ro",)),
    Case(2, "data check --report in a read-only folder", ["data", "check", DS, "--report", "W/ro/dc"],
         prep=_readonly("ro"), nocap=True, say=("W/ro",)),
    Case(2, "serve --systemd-unit > /dev/full", ["serve", "M", "--systemd-unit"], stdout="/dev/full",
         say=("standard output",), timeout=40),
    Case(3, "calibrate --threads 10**9", ["calibrate", "M", "--data", "W/cal", "--threads", str(10**9)],
         prep=_calibration_data, say=("--threads",)),
    Case(3, "predict --collect --collect-max-mb 1e300", ["predict", "M", "F/img/seven.png", "--collect", "W/in",
                                                        "--collect-max-mb", "1e300"], say=("--collect-max-mb",)),
    Case(3, "predict --collect --collect-reserve-mb 1e300", ["predict", "M", "F/img/seven.png", "--collect", "W/in",
                                                            "--collect-reserve-mb", "1e300"],
         say=("--collect-reserve-mb",)),
    Case(3, "predict --collect --shadow-every 10**21",
         ["predict", "M", "F/img/seven.png", "--collect", "W/in", "--collect-when", "disagree", "--shadow", "MF",
          "--shadow-every", str(10**21)], say=("--shadow-every",)),
    Case(3, "predict --source --duration 1e300", ["predict", "M", "--source", "F/img/seven.png", "--duration",
                                                 "1e300"], say=("--duration",)),
    Case(3, "data check --max-pages -1", ["data", "check", DS, "--max-pages", "-1", "--report", "W/dc"],
         say=("--max-pages",), absent=("dc",)),
    Case(3, "serve --queue 10**12", ["serve", "M", "--port", "0", "--queue", str(10**12)], say=("--queue",),
         timeout=40),
    Case(3, "serve --interpreters 10**5", ["serve", "M", "--port", "0", "--interpreters", str(10**5)],
         say=("--interpreters",), timeout=40),
    Case(3, "serve --max-connections 10**9", ["serve", "M", "--port", "0", "--max-connections", str(10**9)],
         say=("--max-connections",), timeout=40),
    Case(3, "serve --max-body-mb 1e300", ["serve", "M", "--port", "0", "--max-body-mb", "1e300"],
         say=("--max-body-mb",), timeout=40),
    Case(3, "serve --grace-s 1e300", ["serve", "M", "--port", "0", "--grace-s", "1e300"], say=("--grace-s",),
         timeout=40),
    Case(3, "serve --source --frame-max-side 10**9", ["serve", "M", "--port", "0", "--source", "F/img/seven.png",
                                                      "--frame-max-side", str(10**9)], say=("--frame-max-side",),
         timeout=40),
    Case(3, "serve --source --reconnect 1e300", ["serve", "M", "--port", "0", "--source", "F/img/seven.png",
                                                 "--reconnect", "1e300"], say=("--reconnect",), timeout=40),
    Case(3, "serve --source --min-stable 10**12", ["serve", "M", "--port", "0", "--source", "F/img/seven.png",
                                                   "--min-stable", str(10**12)], say=("--min-stable",), timeout=40),
    Case(3, "serve --token-file /dev/zero", ["serve", "M", "--port", "0", "--token-file", "/dev/zero"],
         say=("/dev/zero", "not a regular file"), timeout=40),
    Case(3, "serve --mqtt-credentials /dev/zero", ["serve", "M", "--port", "0", "--source", "F/img/seven.png",
                                                   "--mqtt", "mqtt://127.0.0.1:1/t", "--mqtt-credentials",
                                                   "/dev/zero"], say=("/dev/zero",), timeout=40),
    Case(3, "serve --tls-cert /dev/zero", ["serve", "M", "--port", "0", "--tls-cert", "/dev/zero", "--tls-key",
                                           "/dev/zero"], say=("/dev/zero",), timeout=40),
    Case(4, "calibrate --accept nan", ["calibrate", "M", "--data", "W/cal", "--accept", "nan"],
         prep=_calibration_data, say=("--accept",)),
    Case(4, "predict --collect --collect-max-mb nan", ["predict", "M", "F/img/seven.png", "--collect", "W/in",
                                                      "--collect-max-mb", "nan"], say=("--collect-max-mb",)),
    Case(4, "predict --collect --collect-reserve-mb nan", ["predict", "M", "F/img/seven.png", "--collect", "W/in",
                                                          "--collect-reserve-mb", "nan"],
         say=("--collect-reserve-mb",)),
    Case(4, "predict --collect-when 'uncertain<nan'", ["predict", "M", "F/img/seven.png", "--collect", "W/in",
                                                      "--collect-when", "uncertain<nan"], say=("--collect-when",)),
    Case(4, "predict --collect-when 'every=1e400s' (infinite)", ["predict", "M", "F/img/seven.png", "--collect",
                                                                "W/in", "--collect-when", "every=1e400s"],
         say=("--collect-when",)),
    Case(4, "predict --collect-when 'sample=2'", ["predict", "M", "F/img/seven.png", "--collect", "W/in",
                                                 "--collect-when", "sample=2"], say=("sample=2",)),
    Case(4, "predict --source --duration nan", ["predict", "M", "--source", "F/img/seven.png", "--duration", "nan"],
         say=("--duration",)),
    Case(4, "serve --max-megapixels inf", ["serve", "M", "--port", "0", "--max-megapixels", "inf"],
         say=("--max-megapixels",), timeout=40),
    Case(4, "serve --max-body-mb nan", ["serve", "M", "--port", "0", "--max-body-mb", "nan"],
         say=("--max-body-mb",), timeout=40),
    Case(4, "serve --grace-s nan", ["serve", "M", "--port", "0", "--grace-s", "nan"], say=("--grace-s",), timeout=40),
    Case(4, "serve --header-timeout-s inf", ["serve", "M", "--port", "0", "--header-timeout-s", "inf"],
         say=("--header-timeout-s",), timeout=40),
    Case(4, "serve --source --fps nan", ["serve", "M", "--port", "0", "--source", "F/img/seven.png", "--fps", "nan"],
         say=("--fps",), timeout=40),
    Case(5, "data check with --review the same folder as --report", ["data", "check", DS, "--report", "W/dc",
                                                                    "--review", "W/dc"],
         refuse=False, check=_report_kept),
    Case(5, "data check with --review around --report", ["data", "check", DS, "--report", "W/dc/report",
                                                        "--review", "W/dc"], refuse=False, check=_report_kept),
    Case(5, "calibrate --out the model itself --force", ["calibrate", "W/m.tflite", "--data", "W/cal", "--out",
                                                         "W/m.tflite", "--force"],
         prep=_all(_calibration_data, lambda w, f: shutil.copy(MODEL, w / "m.tflite")), say=("--out",)),
    Case(5, "calibrate --out an existing folder --force", ["calibrate", "M", "--data", "W/cal", "--out", "W/keep",
                                                           "--force"],
         prep=_all(_calibration_data, _folder_kept("keep")), say=("W/keep",), check=_still_there("keep")),
    Case(5, "bench --json naming a folder", ["bench", "M", "--data", DS, "--latency-only", "--runs", "2",
                                             "--no-memory", "--json", "W/keep"],
         prep=_folder_kept("keep"), say=("W/keep",), check=_still_there("keep")),
    Case(7, "predict --collect-when without --collect", ["predict", "M", "F/img/seven.png", "--collect-when",
                                                        "unknown"], say=("--collect",)),
    Case(7, "predict --collect-when disagree without --shadow", ["predict", "M", "F/img/seven.png", "--collect", "W/in",
                                                                "--collect-when", "disagree"], say=("--shadow",)),
    Case(7, "predict --collect-when class=NAME the model lacks", ["predict", "M", "F/img/seven.png", "--collect",
                                                                 "W/in", "--collect-when", "class=nosuch"],
         say=("nosuch",)),
    Case(7, "predict --shadow with other labels", ["predict", "M", "F/img/seven.png", "--collect", "W/in",
                                                  "--collect-when", "disagree", "--shadow", "W/other.tflite"],
         prep=lambda w, f: _with_metadata(MODEL, w / "other.tflite",
                                          lambda m: m.__setitem__("labels", [f"x{i}" for i in range(10)])),
         say=("--shadow",)),
    Case(7, "calibrate --data /dev/zero", ["calibrate", "M", "--data", "/dev/zero"], say=("--data",)),
    Case(7, "calibrate --unknown-data /dev/zero", ["calibrate", "M", "--data", "W/cal", "--unknown-data", "/dev/zero"],
         prep=_calibration_data, say=("--unknown-data",)),
    Case(7, "calibrate --data of folders that name no label", ["calibrate", "M", "--data", DS], say=("c0",)),
    Case(7, "data check of an image file", ["data", "check", "F/img/seven.png", "--report", "W/dc"],
         say=("seven.png",)),
    Case(7, "data check --embedding-tensor without --backbone", ["data", "check", DS, "--embedding-tensor", "x",
                                                                "--report", "W/dc"], say=("--backbone",)),
    Case(7, "serve --source ''", ["serve", "M", "--port", "0", "--source", ""], say=("--source",),
         never=(" is a folder",), timeout=40),
    Case(7, "serve --mqtt 'mqtt://' (no broker, no topic)", ["serve", "M", "--port", "0", "--source",
                                                             "F/img/seven.png", "--mqtt", "mqtt://"],
         say=("--mqtt",), timeout=40),
    Case(7, "serve --mqtt with a password in the URL", ["serve", "M", "--port", "0", "--source", "F/img/seven.png",
                                                        "--mqtt", "mqtt://u:secret@127.0.0.1/t"],
         say=("--mqtt",), never=("secret",), timeout=40),
    Case(7, "a usage error under python -m names the command as typed", ["predict", "--top-k", "x", "M"],
         say=("edgecls predict --help",), never=("-m edgecls",)),
    Case(8, "SIGTERM during predict --collect of 4,000 images",
         ["predict", "M", "W/big", "--collect", "W/in", "--collect-when", "sample=1"],
         prep=lambda w, f: _many_images(w / "big", 2000), term="after:4", say=("terminated",),
         absent=("in/**/.*.partial",), timeout=180),
    # ---- 8: signals (each job is long enough that the signal comes while it works)
    Case(8, "SIGTERM during train", ["train", "--epochs", "200", "--patience", "0", "--out", "W/r"],
         term=".r.partial-*", say=("terminated",), absent=("r", ".r.partial-*"), timeout=180),
    Case(8, "SIGTERM during train --backbone", ["train", "--backbone", "M", "--data", "W/big", "--views", "60",
                                                "--epochs", "10000", "--patience", "10000", "--out", "W/r", "--quiet"],
         prep=lambda w, f: _many_images(w / "big", 120), term=".r.partial-*", say=("terminated",),
         absent=("r", ".r.partial-*"), timeout=180),
    Case(8, "SIGHUP during train --backbone (the terminal closed)",
         ["train", "--backbone", "M", "--data", "W/big", "--views", "60", "--epochs", "10000", "--patience", "10000",
          "--out", "W/r", "--quiet"], prep=lambda w, f: _many_images(w / "big", 120), term=".r.partial-*",
         signal="SIGHUP", say=("terminated by SIGHUP",), absent=("r", ".r.partial-*"), timeout=180),
    Case(8, "SIGTERM during export", ["export", "RUN", "--quant", "all"], run=True, term="after:6",
         say=("terminated",), absent=("run/export/.*partial*",), timeout=180),
    Case(8, "SIGTERM during data check --review", ["data", "check", "W/big", "--report", "W/dc", "--review", "W/rv"],
         prep=lambda w, f: _many_images(w / "big", 600), term="after:3", say=("terminated",),
         absent=(".rv.partial-*", "dc/.*partial*", "rv"), timeout=180),
    Case(8, "SIGTERM during predict of 4,000 images", ["predict", "M", "W/big"],
         prep=lambda w, f: _many_images(w / "big", 2000), term="after:3", say=("terminated",), timeout=180),
    Case(8, "SIGTERM during bench --report", ["bench", "M", "--data", "W/big", "--latency-only", "--runs", "100000",
                                              "--no-memory", "--report", "W/rep"],
         prep=lambda w, f: _many_images(w / "big", 50), term="after:4", say=("terminated",),
         absent=("rep/*.partial", "rep/.*partial*"), timeout=180),
]


# The instances issue 28 itself names; every other case is one of the sweep's own, beyond the issue's list.
ISSUE_NAMED = {
    "train --backbone (fc input 1e6)", "train --backbone (fc input minus1)", "train --backbone (opcode 1e6)",
    "train --backbone (buffer 1e6)", "train --backbone (side 2e31)", "train --backbone (side 1e5)",
    "train --backbone (dynamic hw)",
    "explain --out on a read-only folder", "explain --out under a file", "train --out on a full disk (CNN)",
    "train --backbone --out on a full disk", "predict --json > /dev/full",
    "export a 4.6 MB model.keras whose config.json inflates to 4 GiB",
    "predict a model whose metadata pixel_range is [0, 1e300]",
    "bench a model whose metadata pixel_range is [0, 1e300]",
    "export --target host --max-drop inf", "bench compare a report whose top-1 is NaN",
    "bench compare a report with a 10,000-digit integer",
    "train --backbone on a float backbone whose weights are NaN (NaN embeddings)",
    "predict --top-k 3 with labels.txt holding 'a' ten times",
    "two concurrent exports of one run directory (default modes, and --quant int8)",
    "export --target 'pi@rasp berry'", "predict --source ''", "bench a run directory named run",
    "bench a run whose labels.txt has 10**6 lines", "train --config with backbone under [train]",
    "train --out afile/run",
    "train --backbone --head mlp on classes of pure noise: the advice", "SIGTERM during train",
}


def _expand(arg: str, work: Path, fixtures: Path, run: Path) -> str:
    for prefix, value in (("W/", f"{work}/"), ("F/", f"{fixtures}/"), ("M/", f"{MODEL.parent}/"),
                          ("@F/", f"@{fixtures}/")):
        if arg.startswith(prefix):
            return value + arg[len(prefix):]
    return {"M": str(MODEL), "MF": str(MODEL.with_name("model_float32.tflite")), "RUN": str(run)}.get(arg, arg)


def _limits(fsize: Optional[int]) -> Callable[[], None]:
    def apply() -> None:
        import resource
        import signal

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
        if fsize is not None:  # a "full disk" without root: writes past fsize bytes fail with EFBIG
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return apply


def _run_one(root: Path, work: Path, fixtures: Path, run: Path, argv: list, case: Case, timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root), "EDGECLS_CACHE": str(work / "cache"), "COLUMNS": "100",
           "XDG_CACHE_HOME": str(work / "xdg")}
    if argv[0] == "py":
        command = [sys.executable, "-c", argv[1], str(work)]
    else:
        command = [sys.executable, "-m", "edgecls", *[_expand(a, work, fixtures, run) for a in argv]]
    if case.nocap:
        command = NOCAP + command
    fsize = case.disk_kib * 1024 if case.disk_kib and os.geteuid() != 0 else None
    stdout = open(case.stdout, "w") if case.stdout else subprocess.PIPE
    started = time.monotonic()
    cwd = work / case.cwd if case.cwd else work
    commands = [command]
    if case.second:
        commands.append([sys.executable, "-m", "edgecls", *[_expand(a, work, fixtures, run) for a in case.second]])
    procs = [subprocess.Popen(c, stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                              cwd=cwd, preexec_fn=_limits(fsize), text=True, errors="surrogateescape")
             for c in commands]
    result = {"code": None, "stdout": "", "stderr": "", "timeout": False, "signalled": None}
    try:
        if case.term:
            deadline = started + timeout
            while time.monotonic() < deadline and procs[0].poll() is None:
                if case.term.startswith("after:"):
                    if time.monotonic() - started >= float(case.term[6:]):
                        break
                elif list(work.glob(case.term)):
                    time.sleep(2)
                    break
                time.sleep(0.2)
            if procs[0].poll() is None:
                procs[0].send_signal(getattr(signal, case.signal))
                result["signalled"] = case.signal
        outs = [p.communicate(timeout=max(1.0, timeout - (time.monotonic() - started))) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.communicate()
        result["timeout"] = True
        return result
    finally:
        if case.stdout:
            stdout.close()
    result.update(code=procs[0].returncode, stdout="".join(o[0] or "" for o in outs),
                  stderr="".join(o[1] or "" for o in outs), codes=[p.returncode for p in procs])
    return result


def _mount_full_disk(work: Path, kib: int, inodes: Optional[int] = None) -> Optional[Path]:
    """A tmpfs of `kib` KiB (and `inodes` inodes) at W/full when root (a real ENOSPC); else RLIMIT_FSIZE
    stands in (EFBIG)."""
    (work / "full").mkdir()
    if os.geteuid() != 0:
        return None
    size = f"size={kib}k" + (f",nr_inodes={inodes}" if inodes else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(work / "full")], capture_output=True)
    return work / "full" if done.returncode == 0 else None


def verdict(case: Case, r: dict, work: Path) -> str:
    if r["timeout"]:
        return "hang"
    if r["code"] == 2 and ("No such command" in r["stderr"] or "No such option" in r["stderr"]):
        return "n/a"  # that checkout has no such command or option (the new surface, before it existed)
    if case.term and not r.get("signalled"):  # the job ended before the signal: nothing was tested
        return "unreached"
    err = r["stderr"]
    if r["code"] in (-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS) and not case.term:
        return "crash"  # the interpreter's native code died
    if r["code"] is not None and r["code"] < 0 and not case.term or "out of memory" in err \
            or "MemoryError" in err:
        return "oom"
    if "internal error" in err or "Traceback (most recent call last)" in err:
        return "internal"
    if case.check is not None:
        found = case.check(r, work)
        if found:
            return found
    if case.refuse and r["code"] == 0:
        return "wrong"
    for pattern in case.absent:
        if list(work.glob(pattern)):
            return "wrong"
    lines = [line for line in err.splitlines() if line.startswith("edgecls: error:")]
    # the one error line; for a batch command without one, its error rows and summary
    message = (lines[-1] if lines else r["stdout"] + err).replace(str(work) + "/", "W/").lower()
    if r["code"] == 0 and not case.refuse:
        return "ok"
    if case.term and r["code"] == -getattr(signal, case.signal):  # killed by the signal: said nothing
        return "misleading"
    if r["code"] != 0 and case.refuse is not None and not lines and not case.term and r["code"] != 1:
        return "misleading"  # a failure without its one line
    for words in case.say:
        if not any(w.lower() in message for w in words.split("|")):
            return "misleading"
    if any(w.lower() in message for w in case.never):
        return "misleading"
    return "ok"


def run_case28(case: Case, root: Path, fixtures: Path, label: str, timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="edgecls-probe-") as tmp:
        work = Path(tmp)
        mounted = None
        try:
            run = fixtures / f"run-{label}"
            if case.run:
                shutil.copytree(run, work / "run")
                run = work / "run"
            if case.disk_kib:
                mounted = _mount_full_disk(work, case.disk_kib, case.disk_inodes)
            if case.prep:
                case.prep(work, fixtures)
            steps = case.argv if isinstance(case.argv[0], list) else [case.argv]
            for n, argv in enumerate(steps):
                r = _run_one(root.resolve(), work, fixtures, run, argv, case, case.timeout or timeout)
                last = n == len(steps) - 1
                if not last and (r["timeout"] or r["code"] != 0):
                    break
            found = verdict(case, r, work)
            if len(steps) > 1 and found == "ok" and r["code"] != 0:
                found = "wrong"
            shown = _shown(r, work, fixtures, steps.index(argv) if len(steps) > 1 else None)
            return f"{found if found in ('ok', 'n/a') else '**' + found + '**'}: {shown}"
        finally:
            if mounted is not None:
                subprocess.run(["umount", "-l", str(mounted)], capture_output=True)
            for p in work.rglob("*"):
                if p.is_dir() and not p.is_symlink():
                    p.chmod(0o755)


def _shown(r: dict, work: Path, fixtures: Path, step: Optional[int]) -> str:
    if r["timeout"]:
        return "timeout (killed)"
    text = r["stderr"] + ("" if r["code"] != 0 or not r["stdout"] else r["stdout"])
    for path, name in ((str(work) + "/", ""), (str(fixtures) + "/", "F/"), (str(MODEL.parent) + "/", "")):
        text = text.replace(path, name)
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith(("INFO:", "WARNING: All log", "W0000", "I0000"))]
    errors = [line for line in lines if line.startswith("edgecls: error:")]
    lines = errors[-1:] or lines[-2:]
    shown = " / ".join(lines).replace("|", "\\|").encode("utf-8", "backslashreplace").decode("utf-8")
    signalled = f"{r['signalled']}, " if r.get("signalled") else ""
    where = f"step {step + 1}, " if step is not None else ""
    return f"{where}{signalled}exit {r['code']}: {shown[:200]}{'...' if len(shown) > 200 else ''}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="the checkout before the fixes (--smoke: this one)")
    parser.add_argument("--after", type=Path, help="the checkout after them (--smoke: this one)")
    parser.add_argument("--sweep", choices=("28", "14"), default="28", help="which catalogue (default: 28)")
    parser.add_argument("--smoke", action="store_true", help="three cases, this checkout against itself")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds a case may take (default: 20 for sweep 14, 90 for 28: TensorFlow's import "
                             "alone takes 10-30 s on a loaded machine)")
    parser.add_argument("--only", default="", help="comma list of class numbers to run (default: all)")
    parser.add_argument("--match", default="", help="only the cases whose description matches this regular "
                                                     "expression (sweep 28; sweep 14: holds this text)")
    parser.add_argument("--fixtures", type=Path, help="keep the issue-28 fixtures here (made once, reused)")
    parser.add_argument("--model", type=Path, default=MODEL,
                        help="the int8 digits model the issue-28 cases use and mutate (its folder also gives "
                             "model_float32.tflite, labels.txt, report/bench.json; default: this checkout's "
                             "models/digits-seed). The baseline's own uncalibrated model keeps the comparison "
                             "about the faults: an older checkout may not know a newer file's layout")
    args = parser.parse_args()
    globals()["MODEL"] = args.model.resolve()
    here = Path(__file__).resolve().parents[1]
    if args.smoke:
        args.before, args.after = args.before or here, args.after or here
    elif args.before is None and args.after is None or args.sweep == "14" and None in (args.before, args.after):
        parser.error("give --before and --after (two checkouts; sweep 28 also takes one of them alone), or --smoke")
    only = {int(n) for n in args.only.split(",") if n}
    if args.sweep == "14":
        sweep14(args, only)
    else:
        sweep28(args, only)


def sweep14(args: argparse.Namespace, only: set[int]) -> None:
    print("| class | input | before | after |\n| --- | --- | --- | --- |")
    for number, what, argv, opts in CASES[:3] if args.smoke else CASES:
        if only and number not in only or args.match not in what:
            continue
        if argv is None:
            print(f"| {number} | {what} | exit 130, nothing printed | exit 130: edgecls: error: interrupted |")
            continue
        results = []
        for root in (args.before, args.after):
            with tempfile.TemporaryDirectory(prefix="edgecls-probe-") as tmp:
                work = Path(tmp)
                setup(work)
                try:
                    results.append(run(root.resolve(), work, argv, opts, args.timeout or 20))
                finally:
                    for p in work.rglob("*"):
                        if p.is_dir() and not p.is_symlink():
                            p.chmod(0o755)
        print(f"| {number} | {what} | {results[0]} | {results[1]} |", flush=True)


def sweep28(args: argparse.Namespace, only: set[int]) -> None:
    cases = [c for c in CASES28 if (not only or c.cls in only) and re.search(args.match, c.what)]
    if args.smoke:
        cases = cases[:3]
    roots = {label: root.resolve() for label, root in (("before", args.before), ("after", args.after))
             if root is not None and not (args.smoke and label == "before")}
    keep = args.fixtures
    holder = tempfile.TemporaryDirectory(prefix="edgecls-probe-fixtures-") if keep is None else None
    fixtures = keep or Path(holder.name)
    try:
        if not (fixtures / "bb").is_dir():
            fixtures.mkdir(parents=True, exist_ok=True)
            build_fixtures(fixtures, log=lambda m: print(m, file=sys.stderr, flush=True))
        if any(c.run for c in cases):
            build_runs(fixtures, roots, log=lambda m: print(m, file=sys.stderr, flush=True))
        if any("F/bomb.keras" in str(c.argv) for c in cases) and not (fixtures / "bomb.keras").is_file():
            build_bomb(fixtures, log=lambda m: print(m, file=sys.stderr, flush=True))
        counts = {label: dict.fromkeys(VERDICTS, 0) for label in roots}
        print(f"| class | input | {' | '.join(roots)} |\n| --- | --- |{' --- |' * len(roots)}")
        for case in cases:
            cells = []
            for label, root in roots.items():
                cell = run_case28(case, root, fixtures, label, args.timeout or 90)
                counts[label][cell.split(":", 1)[0].strip("*")] += 1
                cells.append(cell)
            what = case.what.replace("|", "\\|")
            print(f"| {case.cls} | {what} | {' | '.join(cells)} |", flush=True)
        print(f"\n| verdict | {' | '.join(roots)} |\n| --- |{' --- |' * len(roots)}")
        for name in VERDICTS:
            print(f"| {name} | {' | '.join(str(counts[label][name]) for label in roots)} |")
        print(f"| cases | {' | '.join(str(len(cases)) for _ in roots)} |")
        named = sum(c.what in ISSUE_NAMED for c in cases)
        print(f"\n{len(cases)} cases: {named} the issue names, {len(cases) - named} beyond its list.")
    finally:
        if holder is not None:
            holder.cleanup()


if __name__ == "__main__":
    main()
