#!/usr/bin/env python3
"""Run the issue-14 catalogue of bad inputs against two checkouts and print a Markdown table of what
each did (exit code and first line), for docs/reliability.md.

    python scripts/reliability_probe.py --before /tmp/before --after .   [--smoke]

Everything runs in a scratch folder under /tmp with a timeout per case (a hang shows as "timeout").
Cases needing an unprivileged reader drop CAP_DAC_OVERRIDE with setpriv when run as root. Each case
runs with a 6 GiB address-space cap (RLIMIT_AS), so an unbounded read ends as "out of memory".
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="the checkout before the fixes (--smoke: this one)")
    parser.add_argument("--after", type=Path, help="the checkout after them (--smoke: this one)")
    parser.add_argument("--smoke", action="store_true", help="the first three cases only")
    parser.add_argument("--timeout", type=float, default=20)
    parser.add_argument("--only", default="", help="comma list of class numbers to run (default: all)")
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    if args.smoke:
        args.before, args.after = args.before or here, args.after or here
    elif args.before is None or args.after is None:
        parser.error("give --before and --after (two checkouts), or --smoke")
    print("| class | input | before | after |\n| --- | --- | --- | --- |")
    only = {int(n) for n in args.only.split(",") if n}
    for number, what, argv, opts in CASES[:3] if args.smoke else CASES:
        if only and number not in only:
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
                    results.append(run(root.resolve(), work, argv, opts, args.timeout))
                finally:
                    for p in work.rglob("*"):
                        if p.is_dir() and not p.is_symlink():
                            p.chmod(0o755)
        print(f"| {number} | {what} | {results[0]} | {results[1]} |", flush=True)


if __name__ == "__main__":
    main()
