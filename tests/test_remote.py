"""`edgecls bench --remote` against a real OpenSSH server on 127.0.0.1 (no mocks), sustained runs,
CPU features and advice.

The "device" is this machine reached through sshd with throw-away keys; its venv is made offline
from wheels repacked from what is installed here (tests/sshd.py), so no network is needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sshd as ssh_server

from edgecls.bench.sustain import parse_duration
from edgecls.errors import EdgeclsError
from edgecls.runtime.cpu import cpu_features

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "models" / "digits-seed"
MODELS = [str(REFERENCE / "model_float32.tflite"), str(REFERENCE / "model_int8.tflite")]
DATA = str(REFERENCE / "test-images")
needs_sshd = pytest.mark.skipif(not ssh_server.has_sshd(), reason="OpenSSH server not installed (apt install "
                                "openssh-server; .ci/run does it)")


def edgecls(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecls", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = ssh_server.start_sshd(tmp_path_factory.mktemp("sshd"))
    with open(server.config, "a") as config:  # a second host name whose port nobody listens on
        config.write(f"Host edgecls-dead\n  HostName 127.0.0.1\n  Port {ssh_server.free_port()}\n"
                     f"  UserKnownHostsFile {server.known_hosts}\n  BatchMode yes\n")
    yield server
    ssh_server.kill_server(server)


@pytest.fixture(scope="module")
def device(server, tmp_path_factory):
    """Where the device keeps its venvs (a path with spaces and shell syntax in it) and the
    bench options every remote test uses."""
    home = tmp_path_factory.mktemp("device")
    marker = home / "PWNED"
    remote_dir = f"{home}/edgecls remote $(touch {marker}) `touch {marker}`; touch {marker}"
    wheels = ssh_server.repack_wheels(home / "wheels")
    options = ["--ssh-config", server.config, "--wheels", wheels, "--remote-python", _base_python(),
               "--remote-dir", remote_dir]
    return {"home": home, "marker": marker, "remote_dir": remote_dir, "options": options}


def with_option(options: list, name: str, value) -> list:
    """The device options with another value for `name`."""
    options = list(options)
    options[options.index(name) + 1] = value
    return options


def _base_python() -> str:
    """A Python with venv and ensurepip (the one this venv was made from)."""
    return getattr(sys, "_base_executable", sys.executable)


@pytest.fixture(scope="module")
def runs(server, device, tmp_path_factory):
    """Two runs: one device (venv made), then a fleet of it and a dead host (venv reused)."""
    out = tmp_path_factory.mktemp("reports")
    started = time.perf_counter()
    first = edgecls("bench", *MODELS, "--data", DATA, "--runs", 20, "--no-memory", "--report", out / "first",
                    "--remote", server.host, *device["options"])
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    second = edgecls("bench", *MODELS, "--data", DATA, "--runs", 20, "--no-memory", "--report", out / "second",
                     "--remote", f"{server.host},edgecls-dead", *device["options"])
    second_s = time.perf_counter() - started
    print(f"\nbench --remote: first run (venv made) {first_s:.1f} s, second run (venv reused, 2 devices) "
          f"{second_s:.1f} s")
    return {"first": first, "second": second, "out": out, "seconds": (first_s, second_s)}


def _load(folder: Path) -> tuple[dict, dict]:
    host = json.loads((folder / "bench.json").read_text())
    device = json.loads((folder / "devices" / "edgecls-test" / "bench.json").read_text())
    return host, device


@pytest.mark.slow
@needs_sshd
def test_device_rows_have_the_local_benchs_accuracy_agreement_and_flipped_images(runs):
    assert runs["first"].returncode == 0, runs["first"].stderr[-2000:]
    host, device = _load(runs["out"] / "first")
    assert device["remote"]["target"] == "edgecls-test" and device["remote"]["venv_reused"] is False
    assert host["data"]["content_sha256"] == device["data"]["content_sha256"]
    by_name = {m["name"]: m for m in device["models"]}
    for model in host["models"]:
        other = by_name[model["name"]]
        assert other["sha256"] == model["sha256"]
        assert other["accuracy"]["top1"] == model["accuracy"]["top1"]
        assert other["accuracy"]["confusion"] == model["accuracy"]["confusion"]
        if model["vs_reference"]:
            assert other["vs_reference"]["agreement"] == model["vs_reference"]["agreement"]
            assert other["vs_reference"]["flipped"] == model["vs_reference"]["flipped"]
    merged = json.loads((runs["out"] / "first" / "compare.json").read_text())
    assert {row[0] for row in merged["rows"]} == {"host", "edgecls-test"}
    assert "edgecls-test" in runs["first"].stdout
    assert (runs["out"] / "first" / "devices" / "edgecls-test" / "accuracy-latency.png").is_file()  # drawn here


@pytest.mark.slow
@needs_sshd
def test_a_second_run_reuses_the_venv_and_a_dead_device_is_an_error_row(runs):
    second = runs["second"]
    assert second.returncode == 1, second.stderr[-2000:]  # one device of the fleet failed
    _, device = _load(runs["out"] / "second")
    assert device["remote"]["venv_reused"] is True
    assert "venv_s" not in device["remote"]["seconds"]
    merged = json.loads((runs["out"] / "second" / "compare.json").read_text())
    errors = [row for row in merged["rows"] if row[0] == "edgecls-dead"]
    assert len(errors) == 1 and errors[0][1] == "error" and "unreachable" in errors[0][2]
    assert any(row[0] == "edgecls-test" for row in merged["rows"])
    first_s, second_s = runs["seconds"]
    assert second_s < first_s  # no venv made the second time


@pytest.mark.slow
@needs_sshd
def test_a_remote_dir_with_spaces_and_shell_syntax_runs_nothing(runs, device):
    assert runs["first"].returncode == 0
    assert not device["marker"].exists()
    venvs = Path(device["remote_dir"]) / "venvs"
    assert venvs.is_dir() and any((v / ".edgecls-ready").is_file() for v in venvs.iterdir())
    assert list((Path(device["remote_dir"]) / "runs").iterdir()) == []  # each run's folder is removed


@pytest.mark.slow
@needs_sshd
def test_a_wrong_host_key_is_refused_in_one_line(server, device, tmp_path):
    impostor = ssh_server.keygen(tmp_path / "other_key")
    (tmp_path / "known_hosts").write_text(f"edgecls-test {impostor}\n")
    config = tmp_path / "ssh_config"
    ssh_server.write_client_config(config, tmp_path / "known_hosts", server.port, server.user,
                                   server.folder / "client_key")
    options = with_option(device["options"], "--ssh-config", config)
    result = edgecls("bench", *MODELS, "--data", DATA, "--runs", 5, "--no-memory", "--report", tmp_path / "r",
                     "--remote", server.host, *options)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgecls: error:")]
    assert len(errors) == 1 and "host key" in errors[0] and "refused" in errors[0], result.stderr[-1500:]
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
@needs_sshd
def test_the_server_killed_mid_run_is_a_one_line_error_and_no_report(runs, device, tmp_path):
    assert runs["first"].returncode == 0  # the venv is there: this run goes straight to the bench
    server = ssh_server.start_sshd(tmp_path / "sshd")
    report = tmp_path / "report"
    proc = subprocess.Popen([sys.executable, "-m", "edgecls", "bench", *MODELS, "--data", DATA, "--runs", "20",
                             "--no-memory", "--report", str(report), "--remote", server.host, "--sustain", "60s",
                             *map(str, with_option(device["options"], "--ssh-config", server.config))],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("[edgecls-test] Sustained run"):
                ssh_server.kill_server(server)
                break
        rest = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [line for line in rest.splitlines() if line.strip()]
    assert proc.returncode != 0, "".join(seen[-20:]) + rest
    assert lines[-1].startswith("edgecls: error: edgecls-test: the connection dropped"), rest
    assert not report.exists() and not list(tmp_path.glob(".edgecls-remote-*"))


# ---------------------------------------------------------------------- quick ones
@pytest.mark.parametrize("text, seconds", [("10m", 600), ("90s", 90), ("3", 3), ("1h", 3600), ("1m30s", 90)])
def test_sustain_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "0s", "25h", "1x"])
def test_a_bad_sustain_duration_is_refused(text):
    with pytest.raises(EdgeclsError, match="--sustain"):
        parse_duration(text)


def test_cpu_features_of_a_pi5_and_of_a_core_without_dot_product(tmp_path):
    pi5 = tmp_path / "pi5"
    pi5.write_text("processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
                   "atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU part\t: 0xd0b\n")
    found = cpu_features("aarch64", pi5)
    assert found["dot_product"] is True and found["half_precision"] is True and "i8mm" in found["absent"]
    pi4 = tmp_path / "pi4"
    pi4.write_text("Features\t: fp asimd evtstrm crc32 cpuid\nCPU part\t: 0xd08\n")
    assert cpu_features("aarch64", pi4)["dot_product"] is False
    assert cpu_features("aarch64", tmp_path / "absent")["dot_product"] is None  # unknown, not "no"


@pytest.mark.slow
def test_sustain_gives_a_time_series_section_plot_and_advice(tmp_path):
    result = edgecls("bench", *MODELS, "--data", DATA, "--runs", 10, "--no-memory", "--threads", 1,
                     "--sustain", "3s", "--report", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    section = next(s for s in report["sections"] if s["key"] == "sustained")
    assert len(section["data"]["samples"]) == 3 and section["plots"] == ["sustained.png"]
    assert (tmp_path / "sustained.png").stat().st_size > 10_000
    temps = [s["temp_c"] for s in section["data"]["samples"]]
    if section["data"]["temperature_source"] is None:  # a VM: said, never invented
        assert temps == [None] * 3 and any("not available here" in n for n in section["notes"])
    advice = next(s for s in report["sections"] if s["key"] == "advice")
    assert advice["rows"][0][0].startswith("Take ")
    assert "cpu_features" in report["machine"] and "Sustained run" in result.stdout


@pytest.mark.slow
@needs_sshd
def test_the_device_report_fits_the_schema_with_its_remote_and_machine_labels(runs):
    from edgecls.bench.schema import errors, schema

    _, device = _load(runs["out"] / "first")
    assert errors(device) == []
    machine = device["machine"]
    assert {"board", "governor", "cpu_features"} <= set(machine) and machine["versions"]["edgecls"]
    jsonschema = pytest.importorskip("jsonschema")
    assert not list(jsonschema.Draft202012Validator(schema()).iter_errors(device))
    broken = json.loads(json.dumps(device))
    broken["remote"]["venv_reused"] = "yes"
    assert any("venv_reused" in e for e in errors(broken))
    broken = json.loads(json.dumps(device))
    broken["machine"]["cpu_features"].pop("dot_product")
    assert any("dot_product" in e for e in errors(broken))


@pytest.mark.slow
@needs_sshd
@pytest.mark.parametrize("host, extra, needle", [
    ("edgecls-dead", [], "edgecls-dead: unreachable"),
    ("edgecls-test", ["--remote-python", "/no/such/python3"], "edgecls-test: no /no/such/python3 on the device"),
])
def test_one_failing_device_is_a_one_line_error_and_no_report(server, device, tmp_path, host, extra, needle):
    result = edgecls("bench", *MODELS, "--data", DATA, "--runs", 5, "--no-memory", "--report", tmp_path / "r",
                     "--remote", host, *device["options"], *extra)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and lines[-1].startswith(f"edgecls: error: {needle}"), result.stderr[-1500:]
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob(".edgecls-remote-*"))


@pytest.mark.slow
@needs_sshd
def test_a_run_directory_benched_remotely_flips_the_same_images(make_digits_run, server, device, runs, tmp_path):
    """A run's test split is arrays (digits): it travels as PNG files, and the device's flipped
    images are given back this host's ids."""
    run_dir = make_digits_run(1, 3, ("float32", "int8"))
    result = edgecls("bench", run_dir, "--no-keras", "--runs", 5, "--no-memory", "--report", tmp_path / "r",
                     "--remote", server.host, *device["options"])
    assert result.returncode == 0, result.stderr[-2000:]
    host, remote = _load(tmp_path / "r")
    assert host["data"]["content_sha256"] == remote["data"]["content_sha256"]
    assert remote["data"]["part"] == "test"
    for mine, theirs in zip(host["models"], remote["models"]):
        assert mine["accuracy"]["top1"] == theirs["accuracy"]["top1"]
        if mine["vs_reference"]:
            assert mine["vs_reference"]["flipped"] == theirs["vs_reference"]["flipped"]


@pytest.mark.slow
@needs_sshd
def test_a_full_disk_on_the_device_is_a_one_line_error(server, device, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)],
                                           capture_output=True).returncode != 0:
        pytest.skip("a small file system for the device needs root and mount")
    try:
        result = edgecls("bench", *MODELS, "--data", DATA, "--runs", 5, "--no-memory", "--report", tmp_path / "r",
                         "--remote", server.host, *with_option(device["options"], "--remote-dir", small / "edgecls"))
    finally:
        subprocess.run(["umount", str(small)], check=True)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and lines[-1].startswith("edgecls: error: edgecls-test: disk full on the device"), \
        result.stderr[-1500:]
    assert not (tmp_path / "r").exists()


def test_every_measurement_option_reaches_the_device_command(tmp_path):
    """Walk BenchOptions' fields: each one marked as describing the measurement, set to a value other
    than its default, is on the device's command line; host files it names travel in the payload."""
    from dataclasses import fields

    from edgecls.bench import BenchOptions
    from edgecls.bench.options import device_flag
    from edgecls.bench.remote import device_command

    labels = tmp_path / "my labels.txt"
    labels.write_text("a\nb\n")
    unknown = tmp_path / "not classes"
    unknown.mkdir()
    (unknown / "x.png").write_bytes(b"png")
    values = {"device": "rpi4", "threads": [1, 3], "warmup": 3, "runs": 7, "batch_size": 5, "backend": "litert",
              "input_range": (-1.0, 1.0), "memory": False, "sustain": 90.0, "labels": str(labels),
              "latency_only": True, "resize": "nearest", "fit": "crop", "unknown_data": str(unknown)}
    measured = [f.name for f in fields(BenchOptions) if "measure" in f.metadata]
    unmarked = [f.name for f in fields(BenchOptions) if "measure" not in f.metadata and "host" not in f.metadata]
    assert not unmarked, f"mark these BenchOptions fields as measure(...) or host(...): {unmarked}"
    assert sorted(measured) == sorted(values), "a new measurement option: give it a value in this test"
    options = BenchOptions(paths=[tmp_path], **values)
    payload = tmp_path / "payload"
    args = device_command(options, ["models/m/a.tflite"], "data", payload)
    for spec in fields(BenchOptions):
        if "measure" in spec.metadata:
            assert device_flag(spec.name) in args, spec.name
    assert args[args.index("--threads") + 1] == "1,3" and args[args.index("--input-range") + 1] == "-1,1"
    assert args[args.index("--resize") + 1] == "nearest" and args[args.index("--fit") + 1] == "crop"
    sent_labels = args[args.index("--labels") + 1]
    assert (payload / sent_labels).read_text() == "a\nb\n"
    assert (payload / args[args.index("--unknown-data") + 1] / "x.png").read_bytes() == b"png"  # a folder travels
    sent_profile = args[args.index("--device") + 1]
    assert sent_profile.endswith("rpi4.toml") and (payload / sent_profile).is_file()
    from edgecls.bench.profiles import load_profile

    assert load_profile(str(payload / sent_profile)).key == "rpi4"
    # defaults stay off the line, so the device's own defaults (its CPU count) apply
    bare = device_command(BenchOptions(paths=[tmp_path]), ["m.tflite"], None, payload)
    assert not {"--threads", "--labels", "--resize", "--data", "--latency-only"} & set(bare)


def test_export_target_on_a_device_sends_its_bench_settings_through_the_same_command(tmp_path):
    """export --target user@host times its candidates with a bench on the device (bench.measure over
    bench.remote): its settings travel by the same generated command line, none set by hand."""
    from dataclasses import fields

    from edgecls.bench.options import device_flag
    from edgecls.bench.remote import device_command
    from edgecls.export.target import bench_options, resolve_target

    options = bench_options(resolve_target("pi@raspberrypi.local"), [tmp_path / "model_int8.tflite"], 7)
    args = device_command(options, ["models/t/model_int8.tflite"], "data", tmp_path / "payload")
    changed = [f for f in fields(options) if "measure" in f.metadata and getattr(options, f.name) != f.default]
    assert {f.name for f in changed} == {"warmup", "runs", "batch_size", "memory"}
    for spec in changed:
        assert device_flag(spec.name) in args, spec.name
    assert args[args.index("--runs") + 1] == "7" and args[args.index("--batch-size") + 1] == "16"
    assert "--threads" not in args  # the device sweeps 1 and all its CPUs; the largest is kept


@pytest.fixture(scope="module")
def coral_folder(tmp_path_factory):
    """Class folders named by ImageNet labels: the Coral test image and a generated picture."""
    from conftest import SHARED_DATA
    from PIL import Image

    pretrained = SHARED_DATA / "pretrained"
    if not pretrained.is_dir():
        pytest.skip(f"{pretrained} is not present")
    folder = tmp_path_factory.mktemp("coral")
    (folder / "Egyptian cat").mkdir()
    (folder / "tabby").mkdir()
    import shutil

    shutil.copy(pretrained / "cat.bmp", folder / "Egyptian cat" / "cat.bmp")
    Image.open(pretrained / "cat.bmp").transpose(Image.Transpose.FLIP_LEFT_RIGHT).crop((0, 0, 300, 200)).save(
        folder / "tabby" / "cat-part.png")
    return {"model": pretrained / "mobilenet_v1_0.25_128_quant.tflite",
            "labels": pretrained / "imagenet_labels.txt", "data": folder}


@pytest.mark.slow
@pytest.mark.shared_data
@needs_sshd
@pytest.mark.parametrize("mode", ["labelled", "latency-only"])
def test_a_third_party_model_is_benched_on_the_device_as_on_the_host(server, device, coral_folder, tmp_path,
                                                                     mode):
    """--labels, --resize nearest, --fit crop and --latency-only reach the device: its rows equal the host's."""
    extra = (["--labels", coral_folder["labels"], "--data", coral_folder["data"]] if mode == "labelled"
             else ["--latency-only"])
    result = edgecls("bench", coral_folder["model"], *extra, "--resize", "nearest", "--fit", "crop", "--runs", 5,
                     "--no-memory", "--report", tmp_path / "r", "--remote", server.host, *device["options"])
    assert result.returncode == 0, result.stderr[-2000:]
    host, remote = _load(tmp_path / "r")
    assert remote["settings"]["preprocessing"] == host["settings"]["preprocessing"]
    assert list(host["settings"]["preprocessing"].values()) == [{"resize": "nearest", "fit": "crop"}]
    assert remote["settings"]["latency_only"] == host["settings"]["latency_only"] == (mode == "latency-only")
    assert remote["data"]["content_sha256"] == host["data"]["content_sha256"]
    for mine, theirs in zip(host["models"], remote["models"]):
        assert mine["sha256"] == theirs["sha256"]
        assert mine["accuracy"] == theirs["accuracy"]
    if mode == "labelled":
        assert remote["settings"]["labels"] and host["models"][0]["accuracy"]["top1"] is not None
        assert remote["data"]["classes"] == host["data"]["classes"]


# ---------------------------------------------------------------------- search --target user@host: the device first
def _search_options(out: Path, target: str, remote=None):
    from edgecls.search.options import SearchOptions

    # one backbone head (numpy) and one from-scratch shape of one epoch: both timings (shapes, then files) run
    return SearchOptions(data="digits", target=target, max_latency_ms=1000.0, backbones=MODELS[1], heads="linear",
                         views="1", archs="seed", sizes="28", widths="0.5", epochs=1, students=0, variants="int8",
                         timing_runs=5, out=str(out), remote=remote)


def test_search_says_an_unreachable_target_before_it_splits_or_trains(tmp_path):
    """Nothing listens on this port of 127.0.0.1: the search ends at the probe, before the split is made or a
    candidate trained (it used to reach the device only to time the first files, minutes in)."""
    import shutil

    if shutil.which("ssh") is None:
        pytest.skip("no ssh client")
    spec = f"edgecls@127.0.0.1:{ssh_server.free_port()}"
    out = tmp_path / "search"
    result = edgecls("search", "--data", "digits", "--target", spec, "--max-latency-ms", 1, "--backbones", MODELS[1],
                     "--archs", "", "--out", out, timeout=300)  # a backbone head only: no TensorFlow to import
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and lines[-1].startswith(f"edgecls: error: {spec}: unreachable"), result.stderr
    assert f"Checking the device over SSH: {spec}" in result.stderr
    assert "Search on digits" not in result.stderr and not (out / "candidates").exists() and \
        not (out / "split.json").exists()


@needs_sshd
def test_search_says_a_device_without_the_python_it_needs_before_it_splits_or_trains(server, tmp_path):
    """The real sshd, reached, but no such Python there: said by the probe, before any work."""
    from edgecls.reporter import Reporter
    from edgecls.search.job import search
    from edgecls.transport import RemoteOptions

    spec = f"{server.user}@{server.host}"
    remote = RemoteOptions(spec, python="/no/such/python3", remote_dir=str(tmp_path / "device"),
                           ssh_config=Path(server.config))
    log: list[str] = []
    with pytest.raises(EdgeclsError, match=f"{spec}: no /no/such/python3 on the device"):
        search(_search_options(tmp_path / "search", spec, remote), Reporter(log.append, bars=False))
    assert log == [f"Checking the device over SSH: {spec}"]  # nothing before it, nothing after
    assert not (tmp_path / "search" / "candidates").exists()


@pytest.mark.slow  # trains one epoch, converts, makes the device's venv
@needs_sshd
def test_search_on_a_device_probes_it_once_first_and_times_every_file_there(server, device, tmp_path):
    from edgecls.reporter import Reporter
    from edgecls.search.job import search
    from edgecls.transport import RemoteOptions

    given = dict(zip(device["options"][::2], device["options"][1::2]))
    spec = f"{server.user}@{server.host}"
    remote = RemoteOptions(spec, python=given["--remote-python"], remote_dir=given["--remote-dir"],
                           wheels=Path(given["--wheels"]), ssh_config=Path(server.config))
    log: list[str] = []
    result = search(_search_options(tmp_path / "search", spec, remote), Reporter(log.append, bars=False))
    checks = [i for i, line in enumerate(log) if line.startswith("Checking the device over SSH")]
    first_work = next(i for i, line in enumerate(log) if line.startswith("Search on digits"))
    assert len(checks) == 1 and checks[0] < first_work, log  # once, before the split
    assert sum("making the venv" in line for line in log) <= 1, log  # the second timing reuses what the first made
    assert result.shape_timing.placement[0].startswith(f"Measured on {spec} over SSH")
    assert result.timing.placement[0].startswith(f"Measured on {spec} over SSH")
    assert result.chosen is not None and result.chosen.p50_ms is not None
    assert not device["marker"].exists()


def test_two_runs_files_of_one_name_reach_the_device_as_two_files(tmp_path):
    """runs/a/export/model_int8.tflite and runs/b/export/...: staged by parent folder, both were
    models/export/model_int8.tflite on the device, the second over the first."""
    from types import SimpleNamespace

    from edgecls.bench.inputs import unique_names
    from edgecls.bench.remote import stage_inputs

    models = []
    for run, content in (("a", b"AAA"), ("b", b"BBB")):
        path = tmp_path / "runs" / run / "export" / "model_int8.tflite"
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
        models.append(SimpleNamespace(name=path.name, path=path, kind="tflite"))
    unique_names(models)
    assert [m.name for m in models] == ["a/export/model_int8.tflite", "b/export/model_int8.tflite"]
    names, _ = stage_inputs(models, None, tmp_path / "payload", with_data=False)
    assert [(tmp_path / "payload" / name).read_bytes() for name in names] == [b"AAA", b"BBB"]
