"""The third reliability sweep (issue 28): faults found on the newer surfaces, one section per class.

1 hand-walked flatbuffers   2 writing fails        3 unbounded work from small input
4 numbers that are not numbers   5 output sets half-written or mixed   6 what we write we read back
7 cheap checks first, messages that name the cause   8 signals

Each test holds instances beyond the ones the issue names. Models are the repository's digits models
(models/digits-seed) and copies of them with one field changed through the flatbuffer schema, so no
test here needs TensorFlow unless marked slow. Subprocesses have a timeout, so a hang fails fast.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from model_edits import graph_of, ops, set_index
from PIL import Image

from edgecls.errors import EdgeclsError

ROOT = Path(__file__).resolve().parents[1]
INT8 = ROOT / "models" / "digits-seed" / "model_int8.tflite"
FLOAT32 = ROOT / "models" / "digits-seed" / "model_float32.tflite"
HANG = float(os.environ.get("EDGECLS_TEST_HANG", 120))  # seconds a subprocess may take on a loaded machine


# ----------------------------------------------------------------------------- helpers
def digit_png(value: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 40, (28, 28), dtype=np.uint8)
    pixels[4 + value: 20 + value, 8:20] = 220
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def two_classes(root: Path, per_class: int = 10, names: tuple[str, str] = ("c0", "c1")) -> Path:
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"{i:02d}.png").write_bytes(digit_png(c * 5, c * 100 + i))
    return root


def mutated(source: Path, target: Path, change) -> Path:
    """A copy of `source` with change(model, schema) applied to its object tree (ModelT)."""
    import flatbuffers

    from edgecls.runtime.metadata import schema

    s = schema()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(source.read_bytes(), 0))
    change(model, s)
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    target.write_bytes(bytes(builder.Output()))
    return target


def with_metadata(source: Path, target: Path, **input_fields) -> Path:
    from edgecls.runtime.metadata import embed_metadata_bytes, read_metadata

    content = source.read_bytes()
    meta = read_metadata(content)
    meta["input"].update(input_fields)
    target.write_bytes(embed_metadata_bytes(content, json.dumps(meta).encode()))
    return target


def nan_bias(model, s) -> None:
    """The first CONV_2D's bias made NaN: what a diverged training exports."""
    conv = ops(model, "CONV_2D")[0]
    buffer = model.buffers[graph_of(model, conv).tensors[conv.inputs[2]].buffer]
    buffer.data = np.frombuffer(np.full(len(buffer.data) // 4, np.nan, np.float32).tobytes(), np.uint8)


def edgecls_command(*args, cwd: Path, env: dict | None = None, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgecls", *map(str, args)], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "EDGECLS_CACHE": str(cwd / "cache"),
                                 **(env or {})}, **popen)


def bounded_run(argv, cwd: Path, timeout: float, memory: int = 3 << 30) -> subprocess.CompletedProcess:
    """`edgecls ARGV` in a subprocess capped at `memory` bytes of address space and `timeout` seconds
    (scaled by EDGECLS_TEST_HANG): a regression that reads /dev/zero or starts 10**12 runs fails fast."""
    def cap() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    try:
        return subprocess.run([sys.executable, "-m", "edgecls", *map(str, argv)], cwd=cwd, capture_output=True,
                              text=True, timeout=timeout * HANG / 120, preexec_fn=cap, stdin=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "EDGECLS_CACHE": str(cwd / "cache")})
    except subprocess.TimeoutExpired:
        pytest.fail(f"edgecls {' '.join(map(str, argv))} still ran after {timeout} s: no bound checked first")


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("edgecls: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    return lines[0]


# ============================================================================ 1: hand-walked flatbuffers
LAST_FC = -1
BAD_INDICES = {  # name -> (change, words the message must hold)
    "fc input 1e6": (lambda m, s: set_index(ops(m, "FULLY_CONNECTED")[LAST_FC], "inputs", 0, 10**6),
                     ["input 0 of op", "FULLY_CONNECTED", "1000000"]),
    "fc input -1": (lambda m, s: set_index(ops(m, "FULLY_CONNECTED")[LAST_FC], "inputs", 0, -1), ["is -1"]),
    "fc weights -1 (LiteRT crashes at invoke)": (
        lambda m, s: set_index(ops(m, "FULLY_CONNECTED")[LAST_FC], "inputs", 1, -1), ["input 1 of op", "is -1"]),
    "opcode 1e6": (lambda m, s: setattr(ops(m, "SOFTMAX")[0], "opcodeIndex", 10**6), ["opcode index", "1000000"]),
    "buffer 1e6": (lambda m, s: setattr(m.subgraphs[0].tensors[0], "buffer", 10**6), ["buffer index", "1000000"]),
    "graph output 1e6": (lambda m, s: setattr(m.subgraphs[0], "outputs", np.array([10**6], np.int32)),
                         ["output tensor index"]),
    "graph input -1": (lambda m, s: setattr(m.subgraphs[0], "inputs", np.array([-1], np.int32)),
                       ["input tensor index", "-1"]),
    "op output -5": (lambda m, s: set_index(ops(m, "MAX_POOL_2D")[0], "outputs", 0, -5), ["output 0 of op", "-5"]),
    "metadata buffer 1e6": (lambda m, s: setattr(m.metadata[0], "buffer", 10**6), ["metadata", "1000000"]),
    "negative dimension": (lambda m, s: setattr(graph_of(m, ops(m, "CONV_2D")[0]).tensors[5], "shape",
                                                np.array([1, -3], np.int32)),
                           ["shape"]),
}


@pytest.mark.parametrize("name", sorted(BAD_INDICES))
def test_backbone_indices_out_of_range_are_one_line_naming_the_users_file(name, tmp_path):
    from edgecls.tflite.backbone import open_backbone

    change, words = BAD_INDICES[name]
    path = mutated(INT8, tmp_path / "my backbone.tflite", change)
    with pytest.raises(EdgeclsError) as raised:
        open_backbone(path)
    message = str(raised.value)
    assert message.startswith("--backbone my backbone.tflite: ") and "\n" not in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("shape, signature, words", [
    ([1, 2**31 - 1, 2**31 - 1, 1], None, ["8192"]),
    ([1, 100000, 100000, 1], None, ["8192"]),
    ([1, 1, 1, 1], [-1, -1, -1, 1], ["dynamic"]),
    ([1, 28, 0, 1], None, ["not an NHWC image"]),
    ([1, 28, 28, 4], None, ["not an NHWC image"]),
])
def test_backbone_inputs_meet_predicts_limits_before_anything_is_allocated(shape, signature, words, tmp_path):
    from edgecls.runtime.metadata import ModelFileError
    from edgecls.runtime.model import check_image_input
    from edgecls.tflite.backbone import open_backbone

    def change(m, s):
        t = m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]]
        t.shape, t.shapeSignature = np.array(shape, np.int32), np.array(signature or shape, np.int32)

    path = mutated(INT8, tmp_path / "big.tflite", change)
    with pytest.raises(EdgeclsError) as raised:
        open_backbone(path)
    with pytest.raises(ModelFileError) as predicts:  # the very check predict and info make
        check_image_input(shape, signature or shape, "big.tflite")
    assert str(raised.value) == f"--backbone {predicts.value}"
    assert all(word in str(raised.value) for word in words)


def test_what_the_interpreter_refuses_in_a_backbone_names_the_users_file_not_a_temp_file(tmp_path):
    from edgecls.tflite.backbone import open_backbone

    def custom(m, s):
        code = m.operatorCodes[ops(m, "MAX_POOL_2D")[0].opcodeIndex]
        code.builtinCode = code.deprecatedBuiltinCode = 32  # CUSTOM
        code.customCode = "EdgeclsNoSuchOp"

    path = mutated(INT8, tmp_path / "mine.tflite", custom)
    with pytest.raises(EdgeclsError) as raised:
        open_backbone(path)
    assert "mine.tflite" in str(raised.value) and "EdgeclsNoSuchOp" in str(raised.value)
    assert "backbone_cut" not in str(raised.value) and "INFO:" not in str(raised.value)


def test_a_cut_that_fails_to_load_names_the_backbone(tmp_path, monkeypatch):
    """Whatever the runtime says about the cut model, the user reads it about the file they gave."""
    from edgecls.runtime import ModelFileError
    from edgecls.tflite.backbone import open_backbone
    from edgecls.transfer import embed

    backbone = open_backbone(INT8)

    def refuse(path, *args, **kwargs):
        raise ModelFileError(f"{Path(path).name}: ai_edge_litert cannot load it: something")

    monkeypatch.setattr(embed, "Classifier", refuse)
    with pytest.raises(EdgeclsError) as raised:
        embed.cut_embedder(backbone, tmp_path, 1)
    assert str(raised.value).startswith("--backbone model_int8.tflite, cut at ")
    assert "backbone_cut" not in str(raised.value)


def test_a_layer_without_weights_is_refused_before_litert_crashes_on_it(tmp_path):
    """LiteRT dies (SIGSEGV) loading a FULLY_CONNECTED whose weights tensor is -1: predict (in a
    subprocess, so a crash fails the test instead of killing it) refuses the file first."""
    from edgecls.runtime.model import REQUIRED_INPUTS
    from edgecls.runtime.tflite_names import BUILTIN_OPERATORS

    assert {BUILTIN_OPERATORS[code] for code in REQUIRED_INPUTS} == {
        "FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"}
    for op, position in (("FULLY_CONNECTED", 1), ("CONV_2D", 1), ("CONV_2D", 0)):
        path = mutated(INT8, tmp_path / f"{op}-{position}.tflite",
                       lambda m, s, op=op, position=position: set_index(ops(m, op)[0], "inputs", position, -1))
        image = ROOT / "models" / "digits-seed" / "test-images" / "0" / "00012-000079.png"
        done = subprocess.run([sys.executable, "-m", "edgecls", "predict", str(path), str(image)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=HANG,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 2 and f"({op}) has no tensor for its input {position}" in one_line(done.stderr)


def test_train_backbone_on_a_corrupt_file_writes_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    path = mutated(INT8, tmp_path / "bad.tflite", BAD_INDICES["fc input -1"][0])
    data = two_classes(tmp_path / "data")
    for command in (["train", "--backbone", path, "--data", data, "--out", tmp_path / "run", "--quiet"],
                    ["data", "check", data, "--backbone", path, "--report", tmp_path / "report"]):
        result = cli(*command)
        assert result.code == 2 and "bad.tflite" in one_line(result.err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tflite", "data"]


# ============================================================================ 2: writing fails
NOCAP = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []


def _limited(fsize: int):
    """preexec_fn: writes past `fsize` bytes fail with EFBIG, as on a full disk (no root needed)."""
    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return apply


def _run(argv, cwd: Path, stdout=subprocess.PIPE, prefix=(), **popen) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "edgecls", *map(str, argv)], cwd=cwd, stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=HANG, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "EDGECLS_CACHE": str(cwd / "cache")}, **popen)


@pytest.mark.parametrize("argv", [
    ["predict", "--json", INT8, "IMG"], ["predict", "--csv", INT8, "IMG"], ["predict", INT8, "IMG"],
    ["info", "--json", INT8], ["info", INT8], ["doctor", "--json"], ["bench", "compare", "REPORT"],
    ["explain", INT8, "IMG", "--json", "--out", "OUT"],
])
def test_standard_output_on_dev_full_is_one_line(argv, tmp_path):
    image = ROOT / "models" / "digits-seed" / "test-images" / "0" / "00012-000079.png"
    report = ROOT / "models" / "digits-seed" / "report" / "bench.json"
    argv = [{"IMG": image, "REPORT": report, "OUT": tmp_path / "ex"}.get(a, a) for a in argv]
    with open("/dev/full", "w") as full:
        done = _run(argv, tmp_path, stdout=full)
    assert done.returncode == 1 and one_line(done.stderr) == \
        "edgecls: error: cannot write to standard output: No space left on device"
    assert "Exception ignored" not in done.stderr


@pytest.mark.parametrize("argv, staged", [
    (["train", "--backbone", INT8, "--data", "DATA", "--out", "OUT", "--quiet", "--epochs", "3"], True),
    (["bench", INT8, "--data", "DATA", "--latency-only", "--runs", "2", "--no-memory", "--report", "OUT"], False),
    (["explain", INT8, "DATA/c0/00.png", "--out", "OUT"], False),
    (["data", "check", "DATA", "--report", "OUT"], False),
])
def test_a_full_disk_is_one_line_naming_what_could_not_be_written(argv, staged, tmp_path):
    """RLIMIT_FSIZE stands in for a full disk (EFBIG where a disk gives ENOSPC): the same code path."""
    data = two_classes(tmp_path / "data")
    (tmp_path / "cache").mkdir()
    warm = [{"DATA": data, "OUT": tmp_path / "warm"}.get(a, str(a).replace("DATA", str(data))) for a in argv]
    assert _run(warm, tmp_path).returncode == 0  # the dataset cache is made without the limit
    argv = [{"DATA": data, "OUT": tmp_path / "out"}.get(a, str(a).replace("DATA", str(data))) for a in argv]
    done = _run(argv, tmp_path, preexec_fn=_limited(20_000))
    line = one_line(done.stderr)
    assert done.returncode == 1 and "File too large" in line and "out" in line, line
    if staged:
        assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="a real full disk needs root (tmpfs)")
def test_a_real_full_disk_under_train_leaves_nothing(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(full)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        data = two_classes(tmp_path / "data")
        done = _run(["train", "--backbone", INT8, "--data", data, "--out", full / "run", "--quiet", "--epochs", "3"],
                    tmp_path)
        line = one_line(done.stderr)
        assert done.returncode == 1 and "No space left on device" in line and "full/run" in line
        assert list(full.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(full)])


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="a real full disk needs root (tmpfs)")
def test_a_disk_out_of_inodes_under_the_review_links_is_named_and_leaves_nothing(tmp_path):
    """Symbolic links take no data blocks: only a disk without free inodes refuses them. The reason is
    that disk's (no space), not the hard link's fallback across disks ("Invalid cross-device link")."""
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=8", "tmpfs", str(full)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        data = two_classes(tmp_path / "data", per_class=6)
        for c in ("c0", "c1"):  # byte-identical copies: findings to link whatever the checks decide
            shutil.copy(data / c / "00.png", data / c / "dup.png")
        done = _run(["data", "check", data, "--report", tmp_path / "dc", "--review", full / "rv"], tmp_path)
        line = one_line(done.stderr)
        assert done.returncode == 1 and "No space left on device" in line and "full/rv" in line, line
        assert list(full.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(full)])


@pytest.mark.parametrize("argv", [
    ["explain", INT8, "IMG", "--out", "RO/ex"],
    ["explain", INT8, "IMG", "--out", "FILE/ex"],
    ["train", "--backbone", INT8, "--data", "DATA", "--out", "RO/run"],
    ["train", "--out", "FILE/run"],
    ["bench", INT8, "--data", "DATA", "--latency-only", "--report", "RO/rep"],
    ["data", "check", "DATA", "--report", "FILE/dc"],
    ["data", "check", "DATA", "--review", "RO/rv"],
    ["calibrate", INT8, "--data", "DATA", "--out", "FILE/c.tflite"],
    ["calibrate", INT8, "--data", "DATA", "--out", "RO/c.tflite"],
    ["predict", INT8, "IMG", "--collect", "FILE/inbox"],
    ["predict", INT8, "IMG", "--collect", "RO/inbox"],
])
def test_an_unwritable_output_is_refused_before_any_work(argv, tmp_path):
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("root writes into read-only folders and setpriv is missing")
    image = ROOT / "models" / "digits-seed" / "test-images" / "0" / "00012-000079.png"
    data = two_classes(tmp_path / "data")
    (tmp_path / "ro").mkdir(mode=0o555)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "cache").mkdir(mode=0o777)
    values = {"IMG": image, "DATA": data}
    argv = [values.get(a, str(a).replace("RO/", f"{tmp_path}/ro/").replace("FILE/", f"{tmp_path}/afile/"))
            for a in argv]
    started = time.perf_counter()
    done = _run(argv, tmp_path, prefix=NOCAP)
    line = one_line(done.stderr)
    assert done.returncode == 2 and ("Permission denied" in line or "afile is a file" in line), line
    assert time.perf_counter() - started < HANG / 2 and list((tmp_path / "ro").iterdir()) == []


# ============================================================================ 3: unbounded work from small input
def _numeric_options():
    """(command path, option) for every int or float option of every edgecls command."""
    from typer.main import get_command

    from edgecls.cli import app

    def walk(command, path):
        if hasattr(command, "commands"):  # a group (click's, or Typer's vendored copy of it)
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])
            return
        for param in command.params:
            descriptor = getattr(param, "type_descriptor", None)  # Typer 0.29; older ones carry click types
            kind = descriptor.annotation if descriptor is not None else {"integer": int, "float": float}.get(
                getattr(getattr(param, "type", None), "name", ""))
            if param.param_type_name == "option" and kind in (int, float):
                yield " ".join(path), max(param.opts, key=len)

    yield from walk(get_command(app), [])


# Numeric options bounded elsewhere, with why: the rest must be in edgecls.bounds.BOUNDS.
BOUNDED_ELSEWHERE = {
    "--threads": "runtime.interpreter.MAX_THREADS (the device runtime's hot path does not import edgecls.bounds)",
    "--top-k": "at most the model's classes are shown: no work grows with it",
    "--target": "a class index, checked against the model's classes",
}


def test_every_numeric_option_has_a_documented_bound():
    from edgecls.bounds import BOUNDS, bounds_table

    options = {option for _, option in _numeric_options()}
    assert options, "no numeric options found: the walk is broken"
    missing = options - set(BOUNDS) - set(BOUNDED_ELSEWHERE)
    assert not missing, f"numeric options without a bound in edgecls.bounds: {sorted(missing)}"
    table = bounds_table()
    assert all(f"`{option}`" in table for option in BOUNDS)
    docs = (ROOT / "docs" / "reliability.md").read_text()
    assert all(f"`{option}`" in docs for option in BOUNDS), "docs/reliability.md lacks the bounds table"


@pytest.mark.parametrize("option, value", [
    ("--epochs", 10**12), ("--batch-size", 10**12), ("--views", 10**9), ("--masks", 10**12), ("--runs", 10**12),
    ("--warmup", 10**12), ("--worst", 10**9), ("--max-pages", 10**9), ("--timing-runs", 10**12),
    ("--max-fallback", 10**6), ("--calib-samples", 10**18), ("--lr", float("inf")), ("--fine-tune-lr", float("inf")),
    ("--max-drop", float("inf")), ("--max-drop", float("nan")), ("--budget-s", float("inf")), ("--fps", float("nan")),
    ("--timeout", float("inf")), ("--reconnect", float("nan")), ("--explain-threshold", float("inf")),
    ("--min-agreement", float("nan")), ("--seed", 2**32), ("--runs", 10**400), ("--every", 10**30),
])
def test_a_huge_or_non_finite_option_is_refused_naming_its_bound(option, value):
    from edgecls.bounds import BOUNDS, check_bound

    with pytest.raises(EdgeclsError) as raised:
        check_bound(option, value)
    message = str(raised.value)
    assert message.startswith(f"{option} must be ") and BOUNDS[option].why in message and len(message) < 200


@pytest.mark.parametrize("argv", [
    ["train", "--epochs", str(10**12)],
    ["train", "--batch-size", str(10**12)],
    ["train", "--backbone", str(INT8), "--views", str(10**9)],
    ["train", "--backbone", str(INT8), "--epochs", str(10**12)],
    ["train", "--backbone", str(INT8), "--seed", "-1"],
    ["explain", str(INT8), "x.png", "--method", "rise", "--masks", str(10**12)],
    ["bench", str(INT8), "--latency-only", "--runs", str(10**12)],
    ["bench", str(INT8), "--latency-only", "--warmup", str(10**12), "--no-memory"],
    ["data", "check", "digits", "--max-pages", str(10**9)],
    ["predict", str(INT8), "--source", "camera:0", "--timeout", "inf"],
    ["predict", str(INT8), "--source", "camera:0", "--every", str(10**7)],
])
def test_options_are_checked_before_any_work(argv, tmp_path):
    """In a subprocess with a memory cap and a timeout: without the bound, these run for days or eat
    the machine's memory, and a regression must fail here, not take the machine down."""
    done = bounded_run([*argv, *(["--out", tmp_path / "r"] if argv[0] == "train" else [])], tmp_path, timeout=90)
    line = one_line(done.stderr)
    assert done.returncode == 2 and " must be " in line, line
    assert not (tmp_path / "r").exists()


def test_a_keras_archive_is_refused_from_its_declared_sizes_without_inflating_anything(tmp_path):
    """The issue's model.keras inflates config.json to 4 GiB; this one to 100 MiB (over the 64 MiB
    cap) so the test stays quick. Zip members never inflate past their declared size."""
    import resource

    from edgecls.rundir import check_keras_file

    bomb = tmp_path / "model.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", "{}")
        with archive.open("config.json", "w") as member:
            for _ in range(100):
                member.write(b" " * (1 << 20))
    assert bomb.stat().st_size < 1 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(EdgeclsError, match="config.json inflates to 100 MiB"):
        check_keras_file(bomb)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: nothing was inflated


def test_user_named_files_are_never_read_past_a_cap(tmp_path):
    """No Path.read_text / read_bytes on what a user names: a grep, so a new one is caught here.
    The exceptions read the kernel's own files or the package's."""
    allowed = {
        "edgecls/runtime/cpu.py": "/sys and /proc",
        "edgecls/bench/profiles.py": "/proc/self/comm, /proc/cpuinfo, the device-tree model",
        "edgecls/bench/sustain.py": "/sys/class/thermal",
        "edgecls/bench/schema.py": "the package's own schema file",
        "edgecls/serve/page.py": "the package's own page.html",
    }
    found = []
    for path in sorted((ROOT / "edgecls").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if (".read_text(" in text or ".read_bytes(" in text) and relative not in allowed:
            found.append(relative)
    assert not found, f"unbounded reads (use edgecls.files.read_capped): {found}"


def test_a_hosts_file_that_never_ends_is_one_line(tmp_path):
    huge = tmp_path / "hosts.txt"
    huge.write_text("pi@a.invalid\n" * 200_000)
    for target, words in (("@/dev/zero", "not a regular file"), ("@" + str(tmp_path), "folder"),
                          (f"@{huge}", "larger than")):
        # a subprocess with a memory cap: reading /dev/zero whole would take the machine's memory
        done = bounded_run(["bench", INT8, "--latency-only", "--remote", target, "--report", tmp_path / "rep"],
                           tmp_path, timeout=60)
        assert done.returncode == 2 and words in one_line(done.stderr)


# ============================================================================ 4: numbers that are not numbers
@pytest.fixture(scope="module")
def nan_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nan")
    shutil.copy(INT8.with_name("labels.txt"), folder / "labels.txt")
    return mutated(FLOAT32, folder / "diverged.tflite", nan_bias)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return two_classes(tmp_path_factory.mktemp("images"), per_class=3)


def test_nan_scores_are_error_rows_never_a_class(cli, nan_model, images):
    from edgecls.runtime import Classifier

    for fmt in ((), ("--top-k", "3")):
        result = cli("predict", *fmt, nan_model, images)
        rows = result.out.splitlines()[1:]
        assert result.code == 1 and len(rows) == 6 and all(row.startswith("error ") for row in rows), result
        assert all("not numbers" in row for row in rows)
    result = cli("predict", "--json", nan_model, images)
    rows = [json.loads(line) for line in result.out.splitlines()]
    assert result.code == 1 and len(rows) == 6 and all("classes" not in row and "not numbers" in row["error"]
                                                       for row in rows)
    result = cli("predict", "--csv", nan_model, images)
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert result.code == 1 and len(rows) == 6 and all(not row["score"] and row["error"] for row in rows)
    classifier = Classifier(nan_model)
    with pytest.raises(EdgeclsError, match="not numbers"):
        classifier.classify(np.zeros((28, 28, 1), np.uint8))
    with pytest.raises(EdgeclsError, match="not numbers"):
        classifier.classify(np.zeros((28, 28, 1), np.uint8), top_k=3)
    with pytest.raises(EdgeclsError, match=r"for 4 of 4 image"):
        classifier.probabilities(np.zeros((4, 28, 28, 1), np.uint8))
    rows = list(classifier.classify_many([images / "c0" / "00.png"]))
    assert not rows[0].ok and "not numbers" in rows[0].error and rows[0].classes == ()


def test_bench_refuses_to_score_nan_outputs(cli, nan_model, images, tmp_path):
    result = cli("bench", nan_model, "--data", "digits", "--runs", "2", "--no-memory", "--report", tmp_path / "b")
    assert result.code == 1 and "not numbers" in one_line(result.err)
    assert not (tmp_path / "b" / "bench.json").exists()


def test_nan_embeddings_are_named_not_called_a_collapsed_head(cli, nan_model, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    data = two_classes(tmp_path / "data")
    result = cli("train", "--backbone", nan_model, "--data", data, "--out", tmp_path / "run", "--quiet")
    line = one_line(result.err)
    assert result.code == 2 and "diverged.tflite" in line and "not numbers" in line and "collapsed" not in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("pixel_range", [[0, 1e300], [0, 3e38], [-1e7, 0], [0, 1e-300], [5, 5 + 1e-9]])
def test_a_pixel_range_float32_cannot_carry_is_refused(pixel_range, tmp_path, cli):
    from edgecls.runtime import Classifier, ModelFileError

    path = with_metadata(FLOAT32, tmp_path / "m.tflite", pixel_range=pixel_range)
    with pytest.raises(ModelFileError, match="pixel_range"):
        Classifier(path)
    result = cli("predict", "--input-range", f"{pixel_range[0]!r},{pixel_range[1]!r}", FLOAT32,
                 ROOT / "models" / "digits-seed" / "test-images" / "0" / "00012-000079.png")
    assert result.code == 2 and "--input-range" in one_line(result.err)


@pytest.mark.parametrize("side, value", [("outputs", np.nan), ("outputs", np.inf), ("outputs", 0.0),
                                         ("inputs", np.nan)])
def test_a_quantisation_scale_that_is_not_a_finite_positive_number_is_refused(side, value, tmp_path):
    from edgecls.runtime import Classifier, ModelFileError

    def change(m, s):
        tensor = m.subgraphs[0].tensors[getattr(m.subgraphs[0], side)[0]]
        tensor.quantization.scale = np.array([value], np.float32)

    path = mutated(INT8, tmp_path / "q.tflite", change)
    with pytest.raises(ModelFileError, match="quantisation scale|cannot load it"):
        Classifier(path)


@pytest.mark.parametrize("text, where", [
    ('{"models": [{"accuracy": {"top1": NaN}}]}', "models[0].accuracy.top1 is NaN"),
    ('{"a": Infinity}', "a is Infinity"),
    ('{"a": [1, -Infinity]}', "a[1] is -Infinity"),
    ('{"a": 1e400}', "a is Infinity"),
    ('{"n": ' + "9" * 10000 + "}", "n is an integer of 10000 digits"),
    ('{"n": 9223372036854775808}', "n is an integer of 19 digits"),
    ("[" * 100000, "nested too deeply"),
    (b'{"a": "\xff"}', "not UTF-8"),
])
def test_json_readers_are_strict_and_say_where(text, where):
    from edgecls.jsonio import JSONValueError, parse_json

    with pytest.raises(JSONValueError) as raised:
        parse_json(text)
    assert where in str(raised.value)
    assert parse_json('{"n": -9223372036854775807, "x": 1.5}') == {"n": -9223372036854775807, "x": 1.5}


def test_every_json_reader_of_a_user_file_refuses_nan_and_huge_integers(cli, tmp_path):
    from edgecls.artifacts import read_json as read_run_json
    from edgecls.bench.schema import read_report_file
    from edgecls.jsonio import read_json

    report = json.loads((ROOT / "models" / "digits-seed" / "report" / "bench.json").read_text())
    report["models"][1]["accuracy"]["top1"] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(report))
    text = (ROOT / "models" / "digits-seed" / "report" / "bench.json").read_text()
    (tmp_path / "digits.json").write_text(text.replace('"images": 179', '"images": ' + "9" * 10000, 1))
    for name, where in (("nan.json", "top1 is NaN"), ("digits.json", "10000 digits")):
        with pytest.raises(EdgeclsError, match=where):
            read_report_file(tmp_path / name)
        result = cli("bench", "compare", tmp_path / name)
        assert result.code == 2 and where in one_line(result.err)
    (tmp_path / "split.json").write_text('{"train": [1, NaN]}')
    with pytest.raises(EdgeclsError, match=r"train\[1\] is NaN"):
        read_run_json(tmp_path / "split.json")
    with pytest.raises(EdgeclsError, match="not a regular file"):
        read_json("/dev/zero", "report")


def test_json_writers_refuse_what_is_not_json():
    from edgecls.jsonio import dumps

    with pytest.raises(ValueError, match=r"b\[0\] is NaN"):
        dumps({"a": 1, "b": [float("nan")]})
    assert dumps({"a": [1.5, None]}) == '{"a": [1.5, null]}'


def test_a_schema_range_check_does_not_pass_nan():
    from edgecls.bench.schema import errors

    doc = json.loads((ROOT / "models" / "digits-seed" / "report" / "bench.json").read_text())
    doc["models"][1]["accuracy"]["top1"] = float("nan")
    assert any("top1" in problem and "finite" in problem for problem in errors(doc))


# ============================================================================ 5: output sets half-written or mixed
def test_a_second_writer_of_one_folder_is_refused_at_once_and_the_first_keeps_it(tmp_path):
    from edgecls.atomic import folder_lock

    out = tmp_path / "export"
    with folder_lock(out, "an export"):
        script = ("import sys; from edgecls.atomic import folder_lock\n"
                  "with folder_lock(sys.argv[1], 'an export'): print('got it')")
        done = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True,
                              timeout=HANG, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 1 and "another edgecls is writing an export" in done.stderr
    assert not out.exists()  # made for the run, left empty: removed
    with folder_lock(out, "an export"):  # free again once the holder is done
        (out / "x").write_text("x")
    assert (out / "x").is_file()


def test_a_set_is_written_whole_or_not_at_all_and_replaces_the_previous_one(tmp_path):
    from edgecls.atomic import write_set

    out = tmp_path / "export"
    write_set(out, {"model_float32.tflite": b"f", "model_int8.tflite": b"i", "export.json": b"{}"})
    (out / "mine.txt").write_text("a file of the user's")
    write_set(out, {"model_int8.tflite": b"I", "export.json": b"{2}"}, ["model_float32.tflite", "model_int8.tflite"])
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "mine.txt", "model_int8.tflite"]
    assert (out / "model_int8.tflite").read_bytes() == b"I"

    with pytest.raises(TypeError):  # a failure while the set is written: the old set is untouched
        write_set(out, {"model_int8.tflite": b"new", "export.json": object()}, ["model_int8.tflite"])
    assert (out / "model_int8.tflite").read_bytes() == b"I" and (out / "export.json").read_bytes() == b"{2}"
    assert not list(out.glob(".*partial*"))


def test_a_full_disk_while_a_set_is_written_keeps_the_old_set(tmp_path):
    script = ("import sys, resource, signal; from edgecls.atomic import write_set\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
              "write_set(sys.argv[1], {'model_int8.tflite': b'x' * 500, 'big.tflite': b'y' * 5000, "
              "'export.json': b'{}'}, ['old.tflite'])")
    out = tmp_path / "export"
    out.mkdir()
    (out / "old.tflite").write_bytes(b"old")
    (out / "export.json").write_bytes(b"{old}")
    done = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=HANG,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1 and "cannot write" in done.stderr and "big.tflite" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "old.tflite"]
    assert (out / "export.json").read_bytes() == b"{old}"


@pytest.mark.parametrize("names, shown", [
    (["a"] * 10, ["a (0)", "a (1)"]),
    (["crane", "cat", "crane", "dog"], ["crane (0)", "cat", "crane (2)", "dog"]),
])
def test_repeated_class_names_are_told_apart_and_said(names, shown, tmp_path):
    from edgecls.runtime import Classifier
    from edgecls.runtime.model import unique_labels

    labels, note = unique_labels(names, "labels.txt")
    assert labels[:len(shown)] == shown and len(set(labels)) == len(labels) and "repeats" in note
    assert unique_labels(["a", "b"], "x") == (["a", "b"], None)
    path = tmp_path / "labels.txt"
    path.write_text("".join(f"{n}\n" for n in (names * 10)[:10]))
    classifier = Classifier(INT8, labels=path)
    assert len(set(classifier.labels)) == 10 and "repeats" in classifier.labels_note


def test_repeated_labels_are_never_written(tmp_path):
    from edgecls.runtime.labels import labels_text

    with pytest.raises(EdgeclsError, match="'a' is given to 2 classes"):
        labels_text(["a", "b", "a"])


def test_two_inputs_of_one_name_get_two_outputs(cli, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "x.png").write_bytes(digit_png(3 if sub == "a" else 6, 1))
    result = cli("explain", INT8, tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", "--out", tmp_path / "ex",
                 "--json")
    summary = json.loads(result.out)
    pngs = [row["png"] for row in summary["images"]]
    assert result.code == 0 and len(set(pngs)) == 2 and all(Path(p).is_file() for p in pngs)


def test_bench_json_named_as_the_reports_own_is_listed_once(cli, tmp_path):
    data = two_classes(tmp_path / "data", per_class=3)
    common = ("bench", INT8, "--data", data, "--latency-only", "--runs", "2", "--no-memory",
              "--report", tmp_path / "rep")
    same = cli(*common, "--json", tmp_path / "rep" / "bench.json")
    assert same.code == 0 and "JSON report:" not in same.out and "bench.json" in same.out, same.out
    assert json.loads((tmp_path / "rep" / "bench.json").read_text())["models"]
    other = cli(*common, "--json", tmp_path / "other.json")
    assert other.code == 0 and f"JSON report: {tmp_path / 'other.json'}" in other.out


def test_json_named_as_the_reports_own_is_written_once(cli, tmp_path):
    report = ROOT / "models" / "digits-seed" / "report" / "bench.json"
    result = cli("bench", "compare", report, "--report", tmp_path / "cmp", "--json", tmp_path / "cmp" / "compare.json")
    assert result.code == 0 and result.out.count("compare.json") == 1


@pytest.mark.slow
def test_two_concurrent_exports_of_one_run_leave_one_whole_set(make_digits_run, tmp_path):
    import hashlib

    run = tmp_path / "run"
    shutil.copytree(make_digits_run(1, 0), run)
    procs = [edgecls_command("export", run, *extra, cwd=tmp_path) for extra in ((), ("--quant", "int8"))]
    outs = [p.communicate(timeout=HANG * 5) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outs
    assert any("another edgecls is writing an export" in err for _, err in outs)
    index = json.loads((run / "export" / "export.json").read_text())
    listed = {m["file"]: m["sha256"] for m in index["models"]}
    present = {p.name for p in (run / "export").glob("*.tflite")}
    assert present == set(listed)
    assert all(hashlib.sha256((run / "export" / f).read_bytes()).hexdigest() == d for f, d in listed.items())


# ============================================================================ 6: what we write, we read back
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Names as users make them: quotes, backslashes, '#', '=', brackets, leading dashes, control characters,
# any Unicode, and bytes that are not UTF-8 (a Latin-1 folder name arrives as surrogate escapes).
_TRICKY = st.sampled_from(['"', "'", "\\", "#", "=", "[", "]", "{", "|", "*", ",", "-", "--", " ", "\t", "\n", "\r",
                           "\x1b[31m", "\u202e", "é", "猫", "\x00", "\udcff", "\udce9"])
NAMES = st.lists(st.one_of(_TRICKY, st.text(max_size=4)), min_size=1, max_size=8).map("".join)
FOLDER_NAMES = st.lists(st.one_of(st.sampled_from(['"', "'", "\\", "#", "=", "[", "|", "*", "-", " x", "é",
                                                    "\udcff", "\udce9", "a"]),
                                  st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=3)),
                        min_size=1, max_size=6).map("".join).filter(
    lambda n: n.strip() == n and n not in (".", "..") and n and "/" not in n and not n.startswith(".")
    and len(os.fsencode(n)) < 100)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(data=NAMES, out=NAMES, tensor=NAMES)
def test_config_toml_reads_back_whatever_the_paths(data, out, tensor):
    from edgecls.artifacts import RunConfig
    from edgecls.tomlio import path_from, toml_text
    from edgecls.train.options import read_config

    config = RunConfig({"data": data, "out": out, "epochs": 3, "lr": 0.001, "img_size": 28, "color": "rgb"},
                       {"python": "3.11"}, {"embedding_tensor": tensor, "backbone": data})
    text = config.text()
    text.encode("utf-8")  # always writable as UTF-8
    import tomllib

    doc = tomllib.loads(text)
    assert path_from(doc["train"]["data"]) == data and path_from(doc["transfer"]["backbone"]) == data
    assert path_from(doc["transfer"]["embedding_tensor"]) == tensor
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.toml"
        path.write_text(text, encoding="utf-8")
        values = read_config(path)  # the next command's reader: edgecls train --config
        back = RunConfig.parse(text.encode("utf-8"), path)  # the run directory's reader
    assert values["data"] == data and values["out"] == out and values["epochs"] == 3
    assert back.data == data and back.transfer["embedding_tensor"] == tensor and back.text() == text
    assert toml_text({"t": {"k": data}}).encode("utf-8")


@PROPERTY
@given(name=NAMES, other=NAMES)
def test_json_files_read_back_whatever_the_names(name, other, tmp_path):
    from edgecls import jsonio
    from edgecls.atomic import write_text_atomic

    doc = {"image": name, "labels": [name, other], name.replace("\udcff", "") or "k": other}
    for ascii_only in (True, False):
        path = write_text_atomic(tmp_path / "x.json", jsonio.dumps(doc, ensure_ascii=ascii_only))
        assert jsonio.read_json(path, "test") == doc


@PROPERTY
@given(names=st.lists(NAMES, min_size=1, max_size=6))
def test_labels_files_read_back_or_are_refused_with_a_reason(names):
    from edgecls.runtime.labels import labels_text, parse_labels

    try:
        text = labels_text(names)
    except EdgeclsError as exc:
        assert "labels.txt" in str(exc) or "unique" in str(exc)
        return
    text.encode("utf-8")
    assert parse_labels(text) == names


@PROPERTY
@given(name=NAMES, other=NAMES)
def test_csv_rows_read_back_whatever_the_file_names(name, other):
    from edgecls.console import _csv_writer
    from edgecls.runtime.classify import Class, Prediction
    from edgecls.runtime.labels import printable

    out = io.StringIO()
    write = _csv_writer(out, SimpleNamespace(open_set_rule=None), 1)
    write(Prediction(name, (Class(1, other, 0.5),)))
    write(Prediction(other, error=f"bad: {name}"))
    out.getvalue().encode("utf-8")
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[1][0] == printable(name) and rows[1][3] == printable(other) and rows[2][0] == printable(other)
    # a row names its file once: a reason ending in ': <the row's own file>' loses that ending
    reason = f"bad: {name}"
    assert rows[2][5] == printable(reason[:-len(other) - 2] if reason.endswith(f": {other}") else reason)


@PROPERTY
@given(cells=st.lists(NAMES, min_size=1, max_size=5))
def test_markdown_tables_keep_their_columns_whatever_the_cells(cells):
    from edgecls.reports.report import md_table

    lines = md_table([f"c{i}" for i in range(len(cells))], [cells])
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    for line in lines:  # a | that is not escaped (an odd run of backslashes before it) separates cells
        separators = [i for i, ch in enumerate(line) if ch == "|"
                      and (len(line[:i]) - len(line[:i].rstrip("\\"))) % 2 == 0]
        assert len(separators) == len(cells) + 1, line


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(FOLDER_NAMES, min_size=2, max_size=2, unique_by=lambda n: n.encode("utf-8", "surrogateescape")
                      .decode("utf-8", "backslashreplace")), data_name=FOLDER_NAMES)
@pytest.mark.slow
def test_the_pipeline_works_on_what_it_wrote_whatever_the_names(names, data_name, tmp_path_factory):
    """train --backbone on class folders and a data folder of generated names, then predict, bench and data check
    on what train wrote: every file edgecls writes is read back by the next command."""
    work = tmp_path_factory.mktemp("pipeline")
    data = work / data_name
    two_classes(data, names=tuple(names))
    run = work / f"run {data_name}"

    def edgecls(*argv) -> int:
        done = subprocess.run([sys.executable, "-m", "edgecls", *map(str, argv)], capture_output=True,
                              timeout=HANG * 2, cwd=work, errors="surrogateescape", text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "EDGECLS_CACHE": str(work / "cache")})
        assert done.returncode == 0, (argv, done.stderr[-2000:])
        return done

    edgecls("train", "--backbone", INT8, "--data", data, "--out", run, "--quiet", "--epochs", "3", "--force")
    model = run / "export" / "model_int8.tflite"
    rows = edgecls("predict", "--json", model, data).stdout.splitlines()
    from edgecls.runtime.labels import printable

    assert {c["label"] for row in rows for c in json.loads(row)["classes"]} <= {printable(n) for n in names}
    edgecls("bench", run, "--no-memory", "--runs", "2")
    edgecls("data", "check", run, "--report", work / "dc")


# ============================================================================ 7: cheap checks, the real cause
def test_export_target_refuses_a_bad_host_before_any_conversion():
    from edgecls.export.target import resolve_target

    for spec in ("pi@rasp berry", "pi@", "pi@host:99999", "pi@a,pi@b"):
        with pytest.raises(EdgeclsError) as raised:
            resolve_target(spec)
        assert "--target" in str(raised.value) and "--remote" not in str(raised.value)
    assert resolve_target("pi@raspberrypi.local").kind == "remote"


def test_an_empty_source_is_called_empty_not_a_folder():
    from edgecls.runtime.capture import SourceError, parse_source

    for text in ("", "  "):
        with pytest.raises(SourceError) as raised:
            parse_source(text)
        assert "--source is empty" in str(raised.value) and "folder" not in str(raised.value)


def test_a_run_directory_named_like_a_bench_subcommand_is_benched(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("bench", "run", "--no-memory")
    assert result.code == 2 and "Missing argument" in result.err  # no folder named run: the sub-command
    (tmp_path / "run").mkdir()
    result = cli("bench", "run", "--no-memory")
    assert result.code == 2 and "run is not a run directory" in one_line(result.err)
    (tmp_path / "compare").mkdir()
    result = cli("bench", "compare", "--no-memory")
    assert "compare is not a run directory" in one_line(result.err)


def test_labels_that_disagree_with_the_run_name_the_file_and_give_no_device_advice(tmp_path):
    from edgecls.data import ClassCountError
    from edgecls.rundir import RunDir

    run = RunDir(tmp_path / "model.keras", ["a"] * 10**6, "digits", 28, "grayscale", 0, run_dir=tmp_path)
    with pytest.raises(ClassCountError) as raised:
        run.dataset()
    assert str(raised.value) == f"{tmp_path / 'labels.txt'} names 1000000 classes but its data digits has 10"
    source = (ROOT / "edgecls" / "bench" / "testset.py").read_text()
    assert "except ClassCountError:" in source.split("on a device, bench the .tflite")[0][-600:]


def test_a_backbone_in_a_config_file_is_not_blamed_on_config(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    data = two_classes(tmp_path / "data")
    config = tmp_path / "c.toml"
    config.write_text(f'[train]\nbackbone = "{INT8}"\ndata = "{data}"\nepochs = 3\nkernel_size = 5\n')
    result = cli("train", "--config", config, "--out", tmp_path / "r", "--quiet")
    line = one_line(result.err)
    assert result.code == 2 and f"kernel_size in the config file {config}" in line and "--config does not" not in line
    config.write_text(f'[train]\nbackbone = "{INT8}"\ndata = "{data}"\nepochs = 3\n')
    result = cli("train", "--config", config, "--out", tmp_path / "r", "--quiet")
    assert result.code == 0, result.err
    assert (tmp_path / "r" / "export" / "model_int8.tflite").is_file()


def test_an_out_under_a_file_says_so_before_any_work(tmp_path):
    (tmp_path / "afile").write_text("x")
    data = two_classes(tmp_path / "data")
    for argv in (["train"], ["train", "--backbone", INT8, "--data", data]):
        done = bounded_run([*argv, "--out", tmp_path / "afile" / "run"], tmp_path, timeout=90)
        line = one_line(done.stderr)
        assert done.returncode == 2 and "afile is a file" in line and "File exists" not in line


@pytest.mark.parametrize("argv, words", [
    (["predict", INT8, "IMG", "--collect", "FILE"], "afile is a file, not a folder"),
    (["calibrate", INT8, "--data", "DATA", "--out", "DIR", "--force"], "it is a folder; give a file name"),
    (["bench", INT8, "--data", "DATA", "--latency-only", "--json", "DIR"], "it is a folder; give a file name"),
])
def test_an_output_that_is_the_wrong_kind_of_file_is_named_before_any_work(argv, words, tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir" / "keep.txt").write_text("mine")
    values = {"IMG": INT8.parent / "test-images" / "0" / "00012-000079.png", "DATA": two_classes(tmp_path / "data"),
              "FILE": tmp_path / "afile", "DIR": tmp_path / "adir"}
    done = bounded_run([values.get(a, a) for a in argv], tmp_path, timeout=HANG)
    line = one_line(done.stderr)
    assert done.returncode == 2 and words in line and "File exists" not in line, line
    assert (tmp_path / "afile").read_text() == "x" and (tmp_path / "adir" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("report, review", [("dc", "dc"), ("dc", "dc/review"), ("dc/report", "dc")])
def test_data_check_refuses_a_review_folder_that_would_replace_its_report(report, review, tmp_path):
    data = two_classes(tmp_path / "data", per_class=4)
    done = bounded_run(["data", "check", data, "--report", tmp_path / report, "--review", tmp_path / review],
                       tmp_path, timeout=HANG)
    line = one_line(done.stderr)
    assert done.returncode == 2 and "overlap" in line and not (tmp_path / "dc").exists(), line


def test_a_usage_error_names_the_command_as_typed_without_python_m():
    done = subprocess.run([sys.executable, "-m", "edgecls", "bench", "compare", "--no-such"], capture_output=True,
                          text=True, timeout=HANG)
    assert done.returncode == 2 and "(see edgecls bench compare --help)" in done.stderr, done.stderr


def test_head_advice_never_suggests_the_head_in_use():
    from edgecls.transfer.job import useless_head_advice

    assert "--head mlp" in useless_head_advice("linear") and "--head linear" not in useless_head_advice("linear")
    assert "--head linear" in useless_head_advice("mlp") and "--head mlp" not in useless_head_advice("mlp")
    source = (ROOT / "edgecls" / "transfer" / "job.py").read_text()
    assert '"try --head linear; " if options.head != "linear"' in source


# ============================================================================ 8: signals
def _wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("signum, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP")])
def test_sigterm_during_train_backbone_leaves_nothing_and_says_so(signum, code, name, tmp_path):
    data = two_classes(tmp_path / "data", per_class=40)
    proc = edgecls_command("train", "--backbone", INT8, "--data", data, "--views", "60", "--epochs", "10000",
                           "--patience", "10000", "--out", tmp_path / "run", "--quiet", cwd=tmp_path)
    try:
        assert _wait_for(lambda: list(tmp_path.glob(".run.partial-*")), HANG), "the run never started staging"
        time.sleep(1)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=HANG)
    finally:
        proc.kill()
    assert proc.returncode == code and f"terminated by {name}" in one_line(err)
    assert not list(tmp_path.glob(".run*")) and not (tmp_path / "run").exists()


def test_sigterm_during_predict_is_one_line_with_its_exit_code(tmp_path):
    folder = two_classes(tmp_path / "many", per_class=400)
    proc = edgecls_command("predict", INT8, folder, folder, folder, cwd=tmp_path)
    try:
        assert _wait_for(lambda: proc.stdout.readline() != "", HANG)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=HANG)
    finally:
        proc.kill()
    assert proc.returncode == 143 and one_line(err) == "edgecls: error: terminated by SIGTERM"


def test_an_ignored_sighup_stays_ignored(tmp_path):
    """nohup: a signal ignored when edgecls starts is left ignored."""
    proc = edgecls_command("predict", INT8, two_classes(tmp_path / "d", per_class=200), cwd=tmp_path,
                           preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        assert _wait_for(lambda: proc.stdout.readline() != "", HANG)
        proc.send_signal(signal.SIGHUP)
        out, err = proc.communicate(timeout=HANG)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "terminated" not in err


def test_a_sigterm_swallowed_by_tensorflow_is_raised_again_after_the_step():
    from edgecls.errors import Terminated
    from edgecls.exits import treat_termination_like_ctrl_c
    from edgecls.export.convert import check_interrupted, interrupt_checkpoints

    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        treat_termination_like_ctrl_c()
        with pytest.raises(Terminated):
            with interrupt_checkpoints():
                try:  # what TensorFlow's garbage collection does: the exception is printed and dropped
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.5)
                except Terminated:
                    pass
                check_interrupted()  # the next conversion step
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # the handler is back
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("argv, where", [(["predict", "m.tflite", "a.png", "--top-k"], "edgecls predict"),
                                         (["bench", "compare", "a.json", "--report"], "edgecls bench compare")])
def test_an_option_missing_its_value_names_the_command_help(argv, where):
    """click gives no context for this error: the help named was the root's, not the command's."""
    done = subprocess.run([sys.executable, "-m", "edgecls", *argv], capture_output=True, text=True, timeout=HANG)
    assert done.returncode == 2 and f"requires an argument. (see {where} --help)" in done.stderr, done.stderr
