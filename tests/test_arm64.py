"""scripts/arm64-check: edgecls' device side on emulated Raspberry Pi cores gives the host's answers.

The emulated tests are marked `arm64` (deselect them with -m "not arm64"). The first run downloads
about 150 MB of packages into .cache/arm64 ($EDGECLS_ARM64_CACHE) and builds the environment in
10-30 s; they skip, saying why, when the packages cannot be downloaded. Together they take about
two minutes (doctor, info, predict, preprocessing and `edgecls bench` on two cores, then one core
made to differ). The comparison logic is also tested on its own below, with no emulator and no
download.
"""

from __future__ import annotations

import copy
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "arm64_check.py"
REFERENCE = [REPO / "models/digits-seed/model_float32.tflite", REPO / "models/digits-seed/model_int8.tflite"]
EXIT_SETUP = 3


def load_script():
    loader = importlib.machinery.SourceFileLoader("arm64_check", str(SCRIPT))
    spec = importlib.util.spec_from_loader("arm64_check", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["arm64_check"] = module  # dataclasses look their module up
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no scripts/__pycache__
    try:
        loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


check = load_script()


def run_script(*args, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, cwd=REPO)


# ----------------------------------------------------------------------------- emulated
@pytest.fixture(scope="module")
def emulator():
    """The emulated environment, built once (cached across runs); skip when it cannot be built."""
    done = run_script("setup", timeout=1800)
    if done.returncode == EXIT_SETUP:
        said = (done.stdout + done.stderr).splitlines()
        reason = next((line for line in said if "cannot set up" in line), said[-1] if said else "exit 3")
        pytest.skip(f"emulated aarch64 environment unavailable (packages cannot be downloaded?): {reason}")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def model_pair(request):
    """(float32, int8) .tflite: the reference models in models/, else the test suite's own."""
    if all(path.is_file() for path in REFERENCE):
        return REFERENCE
    made = request.getfixturevalue("models")  # conftest: converted with TensorFlow once per session
    return [made.rgb_float_meta, made.rgb_int8_meta]


def _bytecode_files() -> set[Path]:
    skip = {".git", ".cache", ".venv", ".pytest_cache", ".hypothesis"}
    found = set()
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = [d for d in dirnames if d not in skip]
        found.update(Path(dirpath, f) for f in filenames if f.endswith(".pyc"))
    return found


@pytest.mark.arm64
def test_emulated_pi4_and_pi5_match_the_host(emulator, model_pair):
    before = _bytecode_files()
    done = run_script("--cpu", "cortex-a72,cortex-a76", "--max-real", 3, "--models", ",".join(map(str, model_pair)))
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "RESULT: PASS on cortex-a72, cortex-a76" in report
    with_bench = model_pair == REFERENCE  # labelled images come from beside the reference models
    for cpu, profile in (("cortex-a72", "rpi4"), ("cortex-a76", "rpi5")):
        line = next(line for line in report.splitlines() if line.startswith(cpu))
        assert " PASS " in line and "doctor ok" in line and "tensors identical" in line, line
        assert f"serve {model_pair[-1].name} over HTTP same as host" in line, line
        if with_bench:
            assert f"bench --device {profile} on 100 images: top-1 model_float32.tflite 0." in line, line
            assert "same as host; latency labelled emulated" in line, line
    assert "set-up " in report and "cache " in report and "run " in report
    # Bytecode of both sides goes to the cache, not beside the repo's sources.
    assert _bytecode_files() <= before
    if with_bench:  # the emulated bench's own report, as written under emulation
        raw = Path(next(line for line in report.splitlines() if line.startswith("raw outputs: "))[13:])
        bench = json.loads((raw / "cortex-a76" / "bench.json").read_text())
        assert bench["machine"]["emulated"] == "qemu-aarch64 -cpu cortex-a76"
        assert bench["machine"]["arch"] == "aarch64" and bench["device"]["profile"]["key"] == "rpi5"
        assert bench["device"]["is_device"] is False
        host = json.loads((raw / "host" / "bench.json").read_text())
        assert host["machine"]["emulated"] is None
        assert [m["accuracy"] for m in bench["models"]] == [m["accuracy"] for m in host["models"]]


@pytest.mark.arm64
def test_the_check_fails_with_a_readable_diff_when_arm_differs(emulator, model_pair):
    float_model, int8_model = model_pair
    # The emulated side runs the float model where the host runs the int8 one.
    done = run_script("--cpu", "cortex-a72", "--max-real", 1, "--models", int8_model, "--arm-models", float_model)
    report = done.stdout + done.stderr
    assert done.returncode == 1, report
    assert "RESULT: FAIL" in report
    assert "cortex-a72   FAIL" in report
    assert f"predict {int8_model.name}:" in report and f"info {int8_model.name}:" in report
    # Which image, and the host's and arm's values.
    diff = next(line for line in report.splitlines() if "scores differ (integer model, allowed:" in line)
    assert "generated/" in diff or ".jpg" in diff or ".png" in diff
    assert "host " in diff and " arm " in diff
    assert "inputs[0].dtype: host 'int8', arm 'float32'" in report
    if model_pair == REFERENCE:  # the bench sees it too: another file, though just as accurate
        assert "    bench:" in report
        assert "model_int8.tflite: mode: host 'int8', arm 'float32'" in report


@pytest.mark.arm64
def test_any_python_command_runs_emulated(emulator):
    """The hook `edgecls bench` under emulation will use (issue 6, point 3); a Pi 3 / Zero 2 W core."""
    done = run_script("python", "--cpu", "cortex-a53", "--",
                      "-c", "import platform, edgecls.runtime; print(platform.machine())", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "aarch64"


# ----------------------------------------------------------------------------- comparison logic
def _rows(*rows):
    return {"code": 0, "rows": [{"file": f, "classes": [{"index": i, "label": str(i), "score": s}
                                                        for i, s in classes]} for f, classes in rows]}


INT8_INFO = {"quantization": {"detected": "int8"}, "outputs": [{"scale": 0.00390625}],
             "ops": {"CONV_2D": 1, "FULLY_CONNECTED": 1}}


def test_integer_model_scores_must_be_identical():
    rule = check.ScoreRule.for_model(INT8_INFO, tolerance=1e-5)
    assert rule == check.ScoreRule(exact=True)
    host = _rows(("/x/a.png", [(3, 0.5), (1, 0.25)]), ("/x/b.png", [(0, 0.75), (1, 0.25)]))
    arm = _rows(("/x/a.png", [(3, 0.5), (1, 0.25)]), ("/x/b.png", [(0, 0.75), (1, 0.246094)]))
    diffs, stats = check.compare_predict(host, arm, rule, short=lambda f: Path(f).name)
    assert diffs == [
        "b.png: scores differ (integer model, allowed: identical scores): class 1: host 0.250000 arm 0.246094"
    ]
    assert stats["same"] == 1


def test_an_int8_softmax_may_be_one_step_apart_and_is_counted():
    """aarch64 TFLite has its own int8 SOFTMAX kernel: one output step (1/256) apart is allowed."""
    rule = check.ScoreRule.for_model({**INT8_INFO, "ops": {"CONV_2D": 1, "SOFTMAX": 1}}, tolerance=1e-5)
    assert rule.softmax_step == 0.00390625
    host = _rows(("a.png", [(3, 0.5), (1, 0.25)]), ("b.png", [(0, 0.75), (1, 0.25)]))
    arm = _rows(("a.png", [(3, 0.5), (1, 0.25)]), ("b.png", [(0, 0.753906), (1, 0.246094)]))
    diffs, stats = check.compare_predict(host, arm, rule, short=str)
    assert diffs == [] and stats["same"] == 2 and stats["softmax_steps"] == ["b.png"]
    two_steps = _rows(("a.png", [(3, 0.5), (1, 0.25)]), ("b.png", [(0, 0.757812), (1, 0.242188)]))
    diffs, _ = check.compare_predict(host, two_steps, rule, short=str)
    assert len(diffs) == 1 and "one int8 SOFTMAX step (0.00390625) apart" in diffs[0]
    strict = check.ScoreRule.for_model({**INT8_INFO, "ops": {"SOFTMAX": 1}}, tolerance=1e-5, strict_int8=True)
    assert check.compare_predict(host, arm, strict, short=str)[0] != []


def test_a_softmax_step_that_changes_the_top1_is_a_difference_and_says_so():
    rule = check.ScoreRule.for_model({**INT8_INFO, "ops": {"SOFTMAX": 1}}, tolerance=1e-5)
    host = _rows(("3/00031.png", [(3, 0.5), (5, 0.5)]))
    arm = _rows(("3/00031.png", [(5, 0.503906), (3, 0.496094)]))
    diffs, stats = check.compare_predict(host, arm, rule, short=str)
    assert diffs == ["3/00031.png: top-1 host 3 (0.500000), arm 5 (0.503906); the scores are one int8 SOFTMAX "
                     "step apart at most: aarch64's own SOFTMAX kernel tipped a near-tie"]
    assert stats["same"] == 0 and stats["softmax_steps"] == []


def test_float_model_within_tolerance_passes_and_top1_must_match():
    rule = check.ScoreRule.for_model({"quantization": {"detected": "float32"}, "ops": {"SOFTMAX": 1}}, 1e-5)
    host = _rows(("a.png", [(3, 0.5), (1, 0.4999)]), ("b.png", [(2, 0.6), (0, 0.4)]))
    arm = _rows(("a.png", [(3, 0.500004), (1, 0.499896)]), ("b.png", [(0, 0.51), (2, 0.49)]))
    diffs, _ = check.compare_predict(host, arm, rule, short=str)
    assert len(diffs) == 1 and diffs[0].startswith("b.png: top-1 host 2 (0.600000), arm 0 (0.510000)")
    assert "max |score diff| 1.10e-01 > 1e-05" in diffs[0]


def test_error_rows_and_missing_rows_are_compared():
    host = {"code": 1, "rows": [{"file": "bad.jpg", "error": "not an image Pillow can decode"},
                                {"file": "gone.png", "classes": [{"index": 0, "label": "0", "score": 1.0}]}]}
    arm = {"code": 0, "rows": [{"file": "bad.jpg", "classes": [{"index": 0, "label": "0", "score": 1.0}]}]}
    diffs, _ = check.compare_predict(host, arm, check.ScoreRule(exact=True), short=str)
    assert diffs == ["exit code: host 1, arm 0",
                     "bad.jpg: host not an image Pillow can decode; arm classified it",
                     "gone.png: only host has a row for it"]


def test_preprocessing_difference_names_the_image_and_the_pixels(tmp_path):
    host_pixels = np.zeros((4, 4, 1), np.uint8)
    arm_pixels = host_pixels.copy()
    arm_pixels[2, 1, 0] = 3
    np.savez(tmp_path / "host.npz", **{"0|4x4 grayscale": host_pixels})
    np.savez(tmp_path / "arm.npz", **{"0|4x4 grayscale": arm_pixels})
    libs = {"numpy": "2", "pillow": "11", "libs": {}}
    host = {"data": {**libs, "hashes": {"/img/a.jpg": {"4x4 grayscale": {"sha256": "aa" * 32, "shape": [4, 4, 1]}}}}}
    arm = {"data": {**libs, "hashes": {"/img/a.jpg": {"4x4 grayscale": {"sha256": "bb" * 32, "shape": [4, 4, 1]}}}}}
    diffs, stats = check.compare_preprocess(host, arm, tmp_path / "host.npz", tmp_path / "arm.npz", str)
    assert stats == {"same": 0, "total": 1, "libs": ({}, {})}
    assert diffs == ["/img/a.jpg @ 4x4 grayscale: host sha256 aaaaaaaaaaaa, arm bbbbbbbbbbbb (1 of 16 values "
                     "differ, max |diff| 3; first at (row, col, channel) (2, 1, 0): host 0, arm 3)"]


def _served(classes, code=0, sha="ab" * 32):
    return {"code": code, "image": "/x/seven.png", "data": {"model": {"sha256": sha}, "classes": [
        {"index": i, "label": str(i), "score": score} for i, score in classes]}}


def test_the_emulated_servers_answer_must_be_the_hosts():
    rule = check.ScoreRule(exact=True)
    host = _served([(7, 0.99), (1, 0.01)])
    assert check.compare_serve(host, _served([(7, 0.99), (1, 0.01)]), rule, short=str) == []
    differs = check.compare_serve(host, _served([(1, 0.6), (7, 0.4)]), rule, short=str)
    assert len(differs) == 1 and differs[0].startswith("/x/seven.png: top-1 host 7 (0.990000), arm 1 (0.600000)")
    assert check.compare_serve(host, _served([(7, 0.99), (1, 0.01)], code=-15, sha="cd" * 32), rule, short=str) == [
        "exit code after SIGTERM: arm -15", f"model sha256: host {'ab' * 6}, arm {'cd' * 6}"]
    assert check.compare_serve(host, {"failed": "serve did not become ready: no output"}, rule, short=str) == [
        "host ok; arm serve did not become ready: no output"]


def test_info_and_doctor_differences():
    assert check.compare_info({"data": {"a": {"b": [1, 2]}, "c": 1}}, {"data": {"a": {"b": [1, 3]}, "c": 1}}) \
        == ["a.b[1]: host 2, arm 3"]
    host = {"data": {"ok": True, "arch": "x86_64", "python_bits": 64, "warnings": [], "numpy": "2.4",
                     "pillow": "12", "backend": {"name": "ai_edge_litert", "version": "2.3.0"}}}
    arm = {"data": {**host["data"], "arch": "armv7l", "python_bits": 32, "numpy": "1.26"}}
    assert check.compare_doctor(host, arm) == ["arch: arm says 'armv7l', expected 'aarch64'",
                                               "python_bits: arm says 32, expected 64",
                                               "numpy: host '2.4', arm '1.26'"]


# ----------------------------------------------------------------------------- the bench comparison
HOST_BENCH = REPO / "models/digits-seed/report/bench.json"  # a real host report, made by the toolkit
EMULATED_NOTE = ("Emulated (qemu-aarch64 -cpu cortex-a72): latency under emulation is not a device figure; "
                 "accuracy, agreement and sizes are.")


@pytest.fixture()
def bench_pair():
    """(host, arm) as compare_bench takes them: the host's real report, and a copy labelled as an
    emulated run would be (machine, device notes, its table's wrapped caption, its Markdown)."""
    if not HOST_BENCH.is_file():
        pytest.skip(f"{HOST_BENCH} is not here")
    report = json.loads(HOST_BENCH.read_text())
    arm = copy.deepcopy(report)
    arm["machine"].update(arch="aarch64", emulated="qemu-aarch64 -cpu cortex-a72")
    arm["device"].update(is_device=False, notes=[EMULATED_NOTE] + arm["device"]["notes"])
    terminal = "edgecls bench\n ... \nEmulated (qemu-aarch64 -cpu cortex-a72): latency under emulation is not a device\nfigure; accuracy, agreement and sizes are.\n"  # noqa: E501
    markdown = f"# edgecls bench\n\n- {EMULATED_NOTE}\n"
    names = [model["name"] for model in report["models"]]
    rules = [check.ScoreRule(exact=True, softmax_step=1 / 256) if model["mode"] == "int8"
             else check.ScoreRule(exact=False, tolerance=1e-5) for model in report["models"]]
    return ({"data": report, "terminal": "", "markdown": ""},
            {"data": arm, "terminal": terminal, "markdown": markdown, "device": "rpi4"}, names, rules)


def test_an_emulated_bench_like_the_hosts_passes(bench_pair):
    host, arm, names, rules = bench_pair
    int8 = next(m for m in arm["data"]["models"] if m["mode"] == "int8")
    int8["vs_reference"]["max_abs_dprob"] += 1 / 256  # one int8 SOFTMAX step: allowed
    diffs, summary = check.compare_bench(host, arm, names, rules, tolerance=1e-5)
    assert diffs == []
    report = host["data"]
    assert summary.startswith(f"bench --device rpi4 on {report['data']['images']} images: top-1 ")
    assert (
        f"model_int8.tflite {int8['accuracy']['top1']:.4f} (agrees " in summary
    )  # e.g. 0.9944 (agrees 1.0000, 0 flipped)
    assert summary.endswith(", same as host; latency labelled emulated")


def test_a_bench_that_differs_gives_a_readable_diff(bench_pair):
    host, arm, names, rules = bench_pair
    int8 = next(m for m in arm["data"]["models"] if m["mode"] == "int8")
    accuracy, paired, images = int8["accuracy"], int8["vs_reference"], arm["data"]["data"]["images"]
    # One test image of a class the host got all right turned on arm (c -> 8): its accuracy,
    # per-class and confusion figures, its agreement with the float reference and the flipped list say so.
    c = next(k for k, row in enumerate(accuracy["confusion"]) if row[k] == sum(row) and k != 8)
    top1, agreement, dprob = accuracy["top1"], paired["agreement"], paired["mean_abs_dprob"]
    accuracy["top1"] = (round(top1 * images) - 1) / images
    accuracy["per_class"][str(c)]["correct"] -= 1
    accuracy["confusion"][c][c] -= 1
    accuracy["confusion"][c][8] += 1
    paired["agreement"] = (round(agreement * images) - 1) / images
    image = next(i for i in range(images) if str(i) not in {str(f["id"]) for f in paired["flipped"]})
    paired["flipped"] = paired["flipped"] + [{"index": 4, "id": image, "reference": str(c), "model": "8",
                                              "true": str(c)}]
    paired["mean_abs_dprob"] += 0.01  # far more than one SOFTMAX step
    diffs, summary = check.compare_bench(host, arm, names, rules, tolerance=1e-5)
    assert summary == "bench DIFFERS"
    assert f"model_int8.tflite: accuracy.top1: host {top1!r}, arm {accuracy['top1']!r}" in diffs
    assert f"model_int8.tflite: accuracy.confusion[{c}][8]: host 0, arm 1" in diffs
    assert f"model_int8.tflite: vs_reference.agreement: host {agreement!r}, arm {paired['agreement']!r}" in diffs
    assert (f"model_int8.tflite: image {image} (true {c}), top-1 against the float model: host: agrees with keras; "
            f"arm: keras says {c}, this model 8") in diffs
    assert any(d.startswith(f"model_int8.tflite: vs_reference.mean_abs_dprob: host {dprob:.6g}, "
                            f"arm {dprob + 0.01:.6g} ") for d in diffs), diffs
    assert not any(d.startswith(("model_float32.tflite", "keras:")) for d in diffs), diffs  # they did not change
    # (run_check exits 1 on any difference: test_the_check_fails_with_a_readable_diff_when_arm_differs)


def test_an_emulated_report_that_is_no_bench_report_is_a_diff_line_not_a_traceback(bench_pair):
    host, arm, names, rules = bench_pair
    del arm["data"]["models"][0]["accuracy"]  # a partial report from the emulated side
    diffs, summary = check.compare_bench(host, arm, names, rules, tolerance=1e-5)
    assert summary == "bench DIFFERS" and len(diffs) == 1
    assert "the arm bench.json is not a valid bench report" in diffs[0]


def test_an_emulated_bench_must_say_so(bench_pair):
    host, arm, names, rules = bench_pair
    unlabelled = {
        "data": copy.deepcopy(host["data"]),
        "terminal": "edgecls bench\n...",
        "markdown": "# edgecls bench\n",
    }
    diffs, summary = check.compare_bench(host, unlabelled, names, rules, tolerance=1e-5)
    assert summary == "bench DIFFERS"
    assert diffs == [
        "machine.emulated is not set: the report does not say it was measured under emulation",
        "device.is_device is True: emulated latency offered as a device figure",
        "device.notes never say the latency is 'not a device figure'",
        "the terminal table does not say it was emulated and 'not a device figure'",
        "the Markdown report does not say it was emulated and 'not a device figure'",
    ]
    # Labelled in the JSON but not in what a reader sees, or the reverse: still a difference.
    arm["markdown"] = "# edgecls bench\n"
    assert check.compare_bench(host, arm, names, rules, 1e-5)[0] == [
        "the Markdown report does not say it was emulated and 'not a device figure'"]
    # And a host report that calls itself emulated is wrong too.
    host["data"]["machine"]["emulated"] = "qemu-x86_64 (detected)"
    assert "the host's report says it was emulated (qemu-x86_64 (detected))" in check.compare_bench(
        host, arm, names, rules, 1e-5)[0]


def test_a_failed_bench_on_either_side_is_a_difference(bench_pair):
    host, arm, names, rules = bench_pair
    diffs, summary = check.compare_bench(host, {"failed": "exit 2: no such profile"}, names, rules, 1e-5)
    assert diffs == ["host ok; arm exit 2: no such profile"] and summary == "bench FAILED"


def test_cpus_by_core_or_device_profile():
    assert check.resolve_cpus("cortex-a72, cortex-a76,cortex-a72") == ["cortex-a72", "cortex-a76"]
    if (REPO / "devices/rpi5.toml").is_file():
        assert check.resolve_cpus("rpi5") == ["cortex-a76"]
    with pytest.raises(check.UsageError, match="no real core"):
        check.resolve_cpus("max")
    if (REPO / "devices/rpi4.toml").is_file():
        assert check.device_profile_for("cortex-a72") == "rpi4"
    assert check.device_profile_for("cortex-a15") is None


def test_runtime_pins_are_the_hosts_versions_for_aarch64():
    from importlib.metadata import version

    pins = check.runtime_pins()
    assert f"numpy=={version('numpy')}" in pins
    assert f"pillow=={version('pillow')}" in pins
    assert f"ai-edge-litert=={version('ai-edge-litert')}" in pins
    assert not any(pin.startswith(("tomli==", "tensorflow", "keras")) for pin in pins)  # 3.11; device side only
    for package in ("starlette", "uvicorn", "prometheus-client", "python-multipart"):  # the serve extra too
        assert f"{package}=={version(package)}" in pins


# ----------------------------------------------------------------------------- runs side by side
def test_runs_side_by_side_each_get_their_own_work_folder_and_ended_ones_are_removed(tmp_path):
    first, second = check.Cache(tmp_path), check.Cache(tmp_path)
    (tmp_path / "work" / "images").mkdir(parents=True)  # an older version's single work folder
    with first.own_run():
        mine = first.work
        assert mine.parent == tmp_path / "work" and not (tmp_path / "work" / "images").exists()
        with second.own_run():  # a second check while the first runs: each its own folder
            theirs = second.work
            assert theirs != mine and theirs.parent == mine.parent
        assert theirs.is_dir()  # an ended run's outputs stay until the next run starts
        with check.Cache(tmp_path).own_run():  # ... which removes them, never a running one's
            assert mine.is_dir() and not theirs.exists()
    third = check.Cache(tmp_path)
    with third.own_run():
        assert [p.name for p in (tmp_path / "work").iterdir()] == [third.work.name]


def test_a_missing_part_is_built_under_the_exclusive_lock_then_used_under_the_shared_one(tmp_path, monkeypatch):
    import fcntl

    cache, seen = check.Cache(tmp_path), []

    def set_up(cache, refresh=False):  # one part, built when its stamp is missing (like ensure_site)
        part = tmp_path / "part"
        if refresh or not check.stamp_matches(part, "v1"):
            with cache.building(part, "v1"):
                pass
        with open(tmp_path / ".lock", "a") as probe:  # is the lock held exclusively right now?
            try:
                fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
                seen.append("shared")
            except BlockingIOError:
                seen.append("exclusive")
        return {"seconds": 0.0, "built": []}

    monkeypatch.setattr(check, "set_up", set_up)
    with check.environment(cache, refresh=False):
        assert seen == ["exclusive", "shared"]  # tried shared: NeedsBuild; built exclusively; held shared
        with check.environment(check.Cache(tmp_path), refresh=False):  # a second user shares it at once
            assert seen == ["exclusive", "shared", "shared"]
    with pytest.raises(check.NeedsBuild):
        with check.Cache(tmp_path, may_build=False).building(tmp_path / "other", "v1"):
            pass


def test_smoke_is_the_check_made_small():
    args = check.parse_args(["--smoke"])
    assert (args.cpu, args.max_real, args.no_generated, args.no_bench) == (check.DEFAULT_CPUS[0], 1, True, True)
    assert check.parse_args([]).cpu == ",".join(check.DEFAULT_CPUS)
