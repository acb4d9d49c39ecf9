"""`edgecls bench`: structure and invariants of its figures and reports, device profiles, compare,
and bad input through the real entry point. Never timing comparisons: this machine is shared.

One digits run (one epoch) exported to float32 and int8 serves the module; benches use few runs.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecls.bench import BenchOptions, accuracy, latency, measure
from edgecls.bench.inputs import BenchModel, open_inputs
from edgecls.bench.measure import measure_inputs
from edgecls.bench.plan import resolve_plan
from edgecls.bench.profiles import DeviceProfile, constrained, load_profile, placement_notes
from edgecls.bench.results import BenchReport, add_section
from edgecls.bench.schema import check_report, errors, schema
from edgecls.bench.testset import save_test_images
from edgecls.errors import EdgeclsError
from edgecls.reports.report import COLUMNS, json_text, markdown, write_reports
from edgecls.runtime.cpu import usable_cpus
from edgecls.runtime.doctor import describe_machine

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(warmup=1, runs=4, batch_size=8)


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def run_dir(make_digits_run) -> Path:
    """A seed-CNN digits run, one epoch, exported to float32 and int8 (RUN/export)."""
    pytest.importorskip("sklearn")
    return make_digits_run(epochs=1, seed=1, export_modes=("float32", "int8"))


@pytest.fixture(scope="module")
def bench(run_dir, tmp_path_factory):
    """A full bench of the run (Keras reference, threads 1 and 2, memory, test images saved), reports written."""
    folder = tmp_path_factory.mktemp("bench-report")
    plan = resolve_plan(BenchOptions([run_dir], threads=[1, 2], **FAST))
    inputs = open_inputs(plan.sources, plan.settings)
    save_test_images(inputs.test, folder / "test-images")
    report = measure_inputs(inputs, plan)
    write_reports(report, folder / "report", folder / "bench.json")
    return report, folder


def tflite_models(report):
    return report.tflite_models()


# ---------------------------------------------------------------------- figures: structure and invariants
def test_every_exported_model_and_keras_is_benched(bench, run_dir):
    report, _ = bench
    listed = [m["file"] for m in json.loads((run_dir / "export" / "export.json").read_text())["models"]]
    assert [m.name for m in report.models] == ["keras"] + listed
    assert report.reference == "keras" and report.latency_reference == "model_float32.tflite"
    assert report.data.part == "test" and report.data.run == str(run_dir)
    test_size = len(json.loads((run_dir / "split.json").read_text())["test"])
    assert report.data.images == test_size
    int8 = report.models[2]
    assert int8.mode == "int8" and int8.io["input"]["dtype"] == "int8"
    assert 0 < int8.size_ratio < 0.5 and report.models[1].size_ratio == 1.0


def test_each_model_is_opened_once_and_described_from_that_opening(run_dir, monkeypatch):
    """open_inputs builds one interpreter per model (its Classifier) and describes the model from it: the
    description is inspect_model's, which opens a model of its own."""
    from edgecls.runtime.inspect import inspect_model
    from edgecls.runtime.interpreter import find_backend

    backend = find_backend()
    if backend.name == "tensorflow":  # tf.lite.Interpreter is not looked up on its own module
        pytest.skip("counts the interpreters of LiteRT or tflite_runtime")
    made = []

    class Counted(backend.interpreter_class):
        def __init__(self, *args, **kwargs):
            made.append(type(self))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(sys.modules[backend.interpreter_class.__module__], "Interpreter", Counted)
    plan = resolve_plan(BenchOptions([run_dir]))
    inputs = open_inputs(plan.sources, plan.settings)
    assert len(made) == len(inputs.models) == 2
    assert all(type(c.interpreter) is Counted for c in inputs.classifiers.values())
    for model in inputs.models:
        info = inspect_model(model.path)
        assert (model.size_bytes, model.sha256) == (info["size_bytes"], info["sha256"])
        assert model.mode == info["quantization"]["declared"] == model.path.stem.split("_")[-1]
        assert model.io["input"] == {k: info["inputs"][0][k] for k in ("dtype", "scale", "zero_point")}


def test_open_inputs_reads_each_model_file_once(run_dir):
    """A run's exports are read once each: export.json's digest is checked on the bytes that are opened
    (each file was read whole for its digest, then again to be opened)."""
    from collections import Counter

    opened, watching = [], [True]

    def count(event: str, args: tuple) -> None:  # an audit hook stays for the process: it is switched off after
        if watching[0] and event == "open" and isinstance(args[0], (str, Path)) and str(args[0]).endswith(".tflite"):
            opened.append(Path(args[0]).name)

    sys.addaudithook(count)
    try:
        plan = resolve_plan(BenchOptions([run_dir]))
        inputs = open_inputs(plan.sources, plan.settings)
    finally:
        watching[0] = False
    assert Counter(opened) == {model.path.name: 1 for model in inputs.models}


def test_accuracy_figures_are_consistent(bench):
    report, _ = bench
    n = report.data.images
    for model in report.models:
        acc = model.accuracy
        assert acc.images == n and acc.k == 5
        assert 0 <= acc.top1 <= acc.topk <= 1 and 0 <= acc.macro_f1 <= 1
        per_class = acc.per_class
        assert list(per_class) == report.data.classes
        assert sum(c.n for c in per_class.values()) == n
        assert sum(c.correct for c in per_class.values()) == round(acc.top1 * n)
        confusion = np.array(acc.confusion)
        assert confusion.sum() == n and list(confusion.sum(1)) == [c.n for c in per_class.values()]
        assert list(confusion.diagonal()) == [c.correct for c in per_class.values()]


def test_agreement_and_flipped_list_agree(bench):
    report, _ = bench
    n = report.data.images
    keras = report.model("keras")
    assert keras.vs_reference is None
    for model in tflite_models(report):
        paired = model.vs_reference
        assert paired.reference == "keras"
        assert 0 <= paired.agreement <= 1 and 0 <= paired.mean_abs_dprob <= paired.max_abs_dprob <= 1
        flipped = paired.flipped
        assert len(flipped) == round((1 - paired.agreement) * n)
        assert len({f.index for f in flipped}) == len(flipped) and all(0 <= f.index < n for f in flipped)
        assert all(f.reference != f.model for f in flipped)
        delta = model.accuracy.top1 - keras.accuracy.top1
        assert paired.delta_accuracy == pytest.approx(delta)


def test_latency_figures_per_model_and_thread_count(bench):
    report, _ = bench
    settings = report.settings
    assert report.device.threads == [1, 2]
    assert settings.rounds * settings.per_round >= settings.runs == FAST["runs"]
    assert report.models[0].latency == [] and report.models[0].memory is None  # Keras: accuracy only
    for model in tflite_models(report):
        assert [t.threads for t in model.latency] == [1, 2]
        for t in model.latency:
            for s in (t.invoke_ms, t.file_ms):
                assert s.n == len(s.samples) == settings.rounds * settings.per_round
                assert 0 < s.min <= s.p50 <= s.p90 <= s.p99 <= s.max
            assert len(t.invoke_round_medians_ms) == settings.rounds
            assert t.file_ms.source.endswith("written as PNG")  # digits has no files of its own
            assert t.throughput.batch == FAST["batch_size"] and t.throughput.images_per_s > 0
            assert t.init_ms >= t.load_ms > 0 and t.first_inference_ms > 0
            ratio = t.vs_reference
            if model.name == "model_float32.tflite":
                assert ratio is None
            else:
                assert ratio.reference == "model_float32.tflite" and ratio.invoke_p50_ratio > 0


def test_peak_memory_comes_from_a_process_without_tensorflow(bench):
    report, _ = bench
    assert report.memory_baseline.peak_rss_mb > 0
    for model in tflite_models(report):
        memory = model.memory
        assert memory.peak_rss_mb > 0 and memory.threads == 1
        if report.machine.backend.name != "tensorflow":
            assert memory.heavy_modules == []


# ---------------------------------------------------------------------- reports
def test_json_report_validates_against_the_schema(bench):
    report, folder = bench
    doc = json.loads((folder / "bench.json").read_text())
    assert doc == json.loads((folder / "report" / "bench.json").read_text())
    assert errors(doc) == []
    check_report(doc, "bench.json")
    machine = doc["machine"]
    assert {"cpu", "cpu_count", "arch", "platform", "python", "backend", "versions"} <= set(machine)
    assert machine["versions"][machine["backend"]["name"]] == machine["backend"]["version"]


def test_the_written_report_reads_back_as_the_bench_made_it(bench):
    """The Keras reference's entry (accuracy only) too: bench.json is the report's to_json(), byte for byte."""
    report, folder = bench
    text = (folder / "bench.json").read_text(encoding="utf-8")
    read = BenchReport.from_json(json.loads(text))
    assert read == report and json_text(read) == text


def test_the_schema_is_real_json_schema(bench):
    jsonschema = pytest.importorskip("jsonschema")
    report, folder = bench
    validator = jsonschema.Draft202012Validator(schema())
    validator.check_schema(schema())
    assert not list(validator.iter_errors(json.loads((folder / "bench.json").read_text())))


@pytest.mark.parametrize("break_it, needle", [
    (lambda d: d.pop("models"), "'models' is missing"),
    (lambda d: d["models"][1]["vs_reference"].update(agreement=1.5), "above the maximum"),
    (lambda d: d["models"][1].update(size_bytes="big"), "expected integer"),
    (lambda d: d["data"].update(part="train"), "is not one of"),
    (lambda d: d["models"][1]["latency"][0]["invoke_ms"].pop("p99"), "'p99' is missing"),
    (lambda d: d.update(format="edgecls.export/1"), "not an edgecls bench report"),
])
def test_the_validator_rejects_broken_reports(bench, break_it, needle):
    doc = copy.deepcopy(json.loads((bench[1] / "bench.json").read_text()))
    break_it(doc)
    with pytest.raises(EdgeclsError, match="bench report") as raised:
        check_report(doc, "broken.json")
    assert needle in str(raised.value)


def test_markdown_and_plots(bench):
    report, folder = bench
    out = folder / "report"
    text = (out / "bench.md").read_text()
    for heading in ("# edgecls bench", "## Latency in detail", "## Per-class accuracy",
                    "## Flipped top-1: model_int8.tflite against keras", "## Peak memory"):
        assert heading in text
    assert "| " + " | ".join(COLUMNS) + " |" in text
    plots = [name for name in report.report_files if name.endswith(".png")]
    assert {"accuracy-latency.png", "latency.png", "confusion-model_int8.tflite.png"} <= set(plots)
    for name in plots:
        assert f"]({name})" in text
        with Image.open(out / name) as image:
            image.verify()
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 200


def test_extra_sections_reach_every_rendering(bench, tmp_path):
    report = copy.deepcopy(bench[0])
    add_section(report, "calib-sweep", "Calibration sweep", ["samples", "accuracy"], [[25, 0.9], [100, None]],
                notes=["a note"])
    add_section(report, "calib-sweep", "Calibration sweep", ["samples", "accuracy"], [[25, 0.91]])  # replaces
    assert [s.key for s in report.sections].count("calib-sweep") == 1 and errors(report.to_json()) == []
    assert "## Calibration sweep" in markdown(report) and "| 25 | 0.91 |" in markdown(report)
    with pytest.raises(ValueError):
        add_section(report, "Bad Key", "x", [], [])


def test_a_report_written_again_drops_the_plots_of_the_last_one_it_no_longer_has(bench, tmp_path):
    """A bench with --explain-flips, then one without, into the same folder: the first's sheet went on
    lying there, linked from nothing. Files the folder's bench.json did not list (the user's) stay."""
    report, folder = copy.deepcopy(bench[0]), tmp_path / "report"
    folder.mkdir()
    (folder / "explain-flips-model_int8.png").write_bytes(b"png")  # written by the analysis, as explain does
    (folder / "mine.png").write_bytes(b"png")
    add_section(report, "explain-flips", "Flips", ["model"], [["model_int8.tflite"]],
                plots=["explain-flips-model_int8.png"])
    write_reports(report, folder)
    assert (folder / "explain-flips-model_int8.png").exists()
    report.sections = [s for s in report.sections if s.key != "explain-flips"]
    write_reports(report, folder)
    assert not (folder / "explain-flips-model_int8.png").exists() and (folder / "mine.png").exists()
    assert (folder / "bench.md").exists() and all((folder / name).exists() for name in report.report_files)


# ---------------------------------------------------------------------- the device side
def test_saved_test_images_bench_the_same_without_tensorflow(bench, run_dir, tmp_path):
    """The device workflow: the test split as PNG folders, then a bench of the .tflite files in a
    process that must not import TensorFlow, scoring exactly what the run's bench scored."""
    report, folder = bench
    images = folder / "test-images"
    assert sum(1 for _ in images.rglob("*.png")) == report.data.images
    assert json.loads((images / "test-images.json").read_text())["run"] == str(run_dir)
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from edgecls.bench import BenchOptions, measure\n"
        f"r = measure(BenchOptions([Path({str(run_dir / 'export' / 'model_float32.tflite')!r}), "
        f"Path({str(run_dir / 'export' / 'model_int8.tflite')!r})], data={str(images)!r}, threads=[1], "
        "warmup=0, runs=2, memory=False))\n"
        "print(json.dumps({'tf': 'tensorflow' in sys.modules, 'keras': 'keras' in sys.modules, "
        "'top1': [m.accuracy.top1 for m in r.models], 'part': r.data.part, "
        "'files': r.models[0].latency[0].file_ms.source, 'reference': r.reference, "
        "'notes': r.notes}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["tf"] is False and found["keras"] is False
    assert found["part"] == "test" and found["reference"] == "model_float32.tflite"
    assert f"the held-out test split of {run_dir}, saved by edgecls bench --save-test-images" in found["notes"][0]
    assert found["files"] == f"{report.data.images} test image files"
    assert found["top1"] == [m.accuracy.top1 for m in tflite_models(report)]


@pytest.mark.parametrize("data", [None, "digits"])
def test_a_bare_model_is_scored_on_the_test_split_of_the_run_it_names(bench, run_dir, data):
    """Not on every image of the dataset (its training images included)."""
    report = measure(BenchOptions([run_dir / "export" / "model_int8.tflite"], data=data, threads=[1], memory=False,
                                    **FAST))
    assert report.data.part == "test" and report.data.images == bench[0].data.images
    assert any("the run named in model_int8.tflite's metadata" in note for note in report.notes)
    assert report.models[0].accuracy.top1 == bench[0].models[2].accuracy.top1
    assert report.reference is None and report.models[0].vs_reference is None


def test_a_bare_model_whose_named_run_is_another_one_needs_data(bench, run_dir, tmp_path, cli):
    """The metadata's run path is only a name: a run there whose model.keras is not the one the file
    was exported from (SHA-256) must not lend its test split."""
    from edgecls.runtime.metadata import embed_metadata, read_metadata

    data = (run_dir / "export" / "model_int8.tflite").read_bytes()
    meta = read_metadata(data)
    assert meta["source"]["run"] and Path(meta["source"]["run"], "split.json").is_file()
    other = tmp_path / "model_int8.tflite"
    other.write_bytes(embed_metadata(data, {**meta, "source": {**meta["source"], "model_sha256": "0" * 64}}))
    result = cli("bench", other, "--no-memory", "--runs", "2", "--warmup", "0", "--threads", "1")
    assert_one_line_error(result, "--data", "another model.keras", "SHA-256")
    report = measure(BenchOptions([other], data="digits", threads=[1], memory=False, **FAST))
    assert report.data.part == "all" and report.data.run is None
    assert any("it is not this model's run" in note and "--data digits" in note for note in report.notes)
    assert not any("the run named in" in note for note in report.notes)


# ---------------------------------------------------------------------- device profiles and emulation
def test_shipped_profiles_load():
    names = sorted(p.stem for p in (ROOT / "devices").glob("*.toml"))
    assert {"rpi5", "rpi4", "rpi3-64", "rpi-zero2w", "x86-host"} <= set(names)
    for name in names:
        profile = load_profile(name)
        assert profile.key == name and profile.arch and profile.cores >= 0 and profile.threads >= 0
    assert load_profile(str(ROOT / "devices" / "rpi5.toml")).cores == 4


def test_a_profile_constrains_and_the_report_says_it_is_not_the_device(run_dir, tmp_path):
    before = usable_cpus()
    report = measure(BenchOptions([run_dir], device="rpi-zero2w", keras=False, memory=False, **FAST))
    device = report.device
    # the profile's 4 threads, but never more than the CPUs it could use here
    assert device.profile.key == "rpi-zero2w" and device.threads == [min(4, len(device.cpus_used))]
    if report.machine.arch == "aarch64":
        pytest.skip("this machine may really be the profile's device")
    assert device.is_device is False
    assert any("not on a Raspberry Pi Zero 2 W" in note for note in device.notes)
    if before is not None:
        assert len(device.cpus_used) == min(4, len(before))
        assert usable_cpus() == before  # the affinity is restored


def test_affinity_is_applied_inside_and_restored_after():
    before = usable_cpus()
    if before is None or len(before) < 2:
        pytest.skip("needs CPU affinity and at least 2 CPUs")
    one = DeviceProfile(key="one", path="-", name="One core", arch="aarch64", cores=1, threads=1)
    with constrained(one) as cpus:
        assert cpus == before[:1] == usable_cpus()
    assert usable_cpus() == before


def test_emulation_is_labelled(monkeypatch):
    from edgecls.runtime.interpreter import find_backend

    monkeypatch.setenv("EDGECLS_EMULATED", "qemu-cortex-a76")
    machine = describe_machine(find_backend())
    assert machine["emulated"] == "qemu-cortex-a76"
    profile = load_profile("rpi5")
    aarch64 = {**machine, "arch": "aarch64", "usable_cpus": 4}
    is_device, notes = placement_notes(profile, aarch64, [0, 1, 2, 3], [4])
    assert is_device is False and "latency under emulation is not a device figure" in notes[0]
    monkeypatch.delenv("EDGECLS_EMULATED")
    real = {**aarch64, "emulated": None, "cpu_core": "Cortex-A76"}
    assert placement_notes(profile, real, [0, 1, 2, 3], [4])[0] is True  # a real Pi 5 measures itself


def test_arch_and_core_count_are_not_enough_to_be_the_device(tmp_path):
    """A Pi 5 benched with --device rpi4 has the arch and the 4 cores, not the Cortex-A72."""
    from edgecls.runtime.cpu import host_core

    cpuinfo, model = tmp_path / "cpuinfo", tmp_path / "model"
    cpuinfo.write_text("processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n\nprocessor\t: 1\n"
                       "CPU part\t: 0xd0b\n")
    assert host_core(str(cpuinfo), str(model)) == "Cortex-A76"
    cpuinfo.write_text("model name\t: AMD EPYC\n")
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert host_core(str(cpuinfo), str(model)) == "Cortex-A72"  # from the device tree
    assert host_core(str(cpuinfo), str(tmp_path / "none")) is None

    pi5 = {"arch": "aarch64", "cpu": "Raspberry Pi 5 Model B Rev 1.0", "usable_cpus": 4, "emulated": None,
           "cpu_core": "Cortex-A76"}
    is_device, notes = placement_notes(load_profile("rpi4"), pi5, [0, 1, 2, 3], [4])
    assert is_device is False and "its CPU is a Cortex-A76, not the profile's Cortex-A72" in notes[0]
    assert "these are not Raspberry Pi 4 figures" in notes[0]
    assert placement_notes(load_profile("rpi5"), pi5, [0, 1, 2, 3], [4]) == (
        True, [notes[0].split(" under")[0] + " as Raspberry Pi 5 (4 CPUs, threads 4; Cortex-A76 confirmed)."])
    unknown = {**pi5, "cpu_core": None}
    is_device, notes = placement_notes(load_profile("rpi5"), unknown, [0, 1, 2, 3], [4])
    assert is_device is False and "unconfirmed" in notes[0]
    assert describe_machine(__import__("edgecls.runtime.interpreter").runtime.interpreter.find_backend()
                            ).keys() >= {"cpu_core"}


# ---------------------------------------------------------------------- the arithmetic, by hand
def test_accuracy_arithmetic_on_known_numbers():
    names = ["a", "b", "c"]
    truth = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.1, .6, .3], [.5, .1, .4], [.1, .2, .7]])
    scores = accuracy.model_accuracy(probs, truth, names)
    assert scores.top1 == pytest.approx(4 / 6) and scores.k == 3 and scores.topk == 1.0
    # F1: a = 2/(2+1+1) = .5 (tp 1, fp 1, fn 1), b = 2*2/(4+1+0) = .8, c = 2/(2+0+1) = 2/3
    assert scores.macro_f1 == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert scores.per_class["a"].to_json() == {"n": 2, "correct": 1, "accuracy": 0.5}
    ref = np.eye(3)[truth]  # a perfect reference
    paired = accuracy.paired(ref, probs, truth, ["f0", "f1", "f2", "f3", "f4", "f5"], names, "ref")
    assert paired.agreement == pytest.approx(4 / 6) and paired.delta_accuracy == pytest.approx(-2 / 6)
    assert [(f.id, f.reference, f.model, f.true) for f in paired.flipped] == [
        ("f1", "a", "b", "a"), ("f4", "c", "a", "c")]
    assert paired.per_class_delta == {"a": -0.5, "b": 0.0, "c": -0.5}


def test_rounds_interleave_and_rotate():
    """Each round gives every contender the same images; the first contender rotates."""
    calls = []
    contenders = [latency.Contender(BenchModel(n, "tflite", "float32", Path(n), 1), 1) for n in "ABC"]
    plan = latency.Schedule(warmup=0, runs=6, batch_size=1)  # 6 rounds of 1 image
    latency._rounds(contenders, plan, lambda c, j: calls.append((c.model.name, j)) or 1.0,
                    lambda c: c.invoke_rounds)
    firsts = [calls[i][0] for i in range(0, len(calls), 3)]
    assert firsts == ["A", "B", "C", "A", "B", "C"]
    for r in range(6):
        assert {j for _, j in calls[3 * r:3 * r + 3]} == {r}  # the same image for all in a round
    assert all(len(c.invoke_rounds) == 6 for c in contenders)


# ---------------------------------------------------------------------- the CLI: both forms, bad input
def test_cli_bench_then_compare_two_device_profiles(run_dir, tmp_path, cli):
    a, b = tmp_path / "rpi5.json", tmp_path / "host.json"
    common = ["--warmup", "1", "--runs", "3", "--batch-size", "4", "--no-keras", "--no-memory"]
    first = cli("bench", run_dir, "--device", "rpi5", "--json", a, "--report", tmp_path / "ra", *common)
    assert first.code == 0, first.err
    for column in COLUMNS:
        assert column in first.out
    assert "model_int8.tflite" in first.out and "not on a Raspberry Pi 5" in first.out.replace("\n", " ")
    second = cli("bench", "run", run_dir, "--device", str(ROOT / "devices" / "x86-host.toml"), "--threads", "1",
                 "--json", b, *common)
    assert second.code == 0, second.err
    assert (run_dir / "bench" / "bench.json").is_file()  # a run directory's default report folder
    merged = cli("bench", "compare", a, b, "--report", tmp_path / "cmp", "--json", tmp_path / "merged.json")
    assert merged.code == 0, merged.err
    assert "rpi5 profile on" in merged.out and "x86-host" in merged.out
    doc = json.loads((tmp_path / "merged.json").read_text())
    assert [r["name"] for r in doc["reports"]] == ["rpi5", "host"]
    assert len(doc["rows"]) == 4 and {row[0] for row in doc["rows"]} == {"rpi5", "host"}
    assert [r["is_device"] for r in doc["reports"]] == [False, True]
    assert doc["warnings"] == []  # the same models on the same images: a like-for-like comparison
    with Image.open(tmp_path / "cmp" / "compare.png") as image:
        image.verify()
    # against a report of other models on other images, compare says both
    other = cli("bench", "compare", a, ROOT / "models" / "digits-seed" / "report" / "bench.json", "--json",
                tmp_path / "other.json")
    assert other.code == 0, other.err
    warnings = json.loads((tmp_path / "other.json").read_text())["warnings"]
    assert any("different .tflite files" in w for w in warnings) and any("different test images" in w for w in warnings)
    assert "different .tflite files" in other.out.replace("\n", " ")


def assert_one_line_error(result, *needles: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgecls: error: "), result.err
    assert "Traceback" not in result.out + result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def bad_inputs(run_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bench-bad")
    shutil.copytree(run_dir, folder / "no-exports", ignore=shutil.ignore_patterns("export", "bench"))
    (folder / "malformed.toml").write_text('name = "Pi"\narch = "aarch64"\ncores = "four"\nthreads = 4\n')
    (folder / "broken.toml").write_text("name = \n")
    (folder / "a-file").write_text("x")
    (folder / "other.json").write_text('{"format": "edgecls.export/1", "models": []}')
    (folder / "text.json").write_text("not json at all")
    for c, name in enumerate(["x", "y", "z"]):  # a three-class dataset of 28x28 grayscale pictures
        (folder / "three" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((28, 28), 40 * c + 7 * i, np.uint8)).save(folder / "three" / name / f"{i}.png")
    return folder


@pytest.mark.parametrize("args, needles", [
    (["NOEXP"], ["has no exported models", "edgecls export"]),
    (["INT8", "--data", "BAD/three"], ["has 10 classes but the test data", "has 3"]),
    (["RUN", "--threads", "0"], ["--threads must be at least 1"]),
    (["RUN", "--threads", "1,two"], ["comma list of whole numbers"]),
    (["RUN", "--runs", "0"], ["--runs must be between 1 and"]),
    (["RUN", "--warmup", "-1"], ["--warmup must be between 0 and"]),
    (["RUN", "--batch-size", "0"], ["--batch-size must be between 1 and"]),
    (["RUN", "--device", "pi9"], ["unknown device profile 'pi9'", "rpi5"]),
    (["RUN", "--device", "BAD/missing.toml"], ["does not exist"]),
    (["RUN", "--device", "BAD/malformed.toml"], ["malformed", "'cores'"]),
    (["RUN", "--device", "BAD/broken.toml"], ["not valid TOML"]),
    (["RUN", "--report", "BAD/a-file/reports"], ["cannot write to", "is a file"]),
    (["RUN", "--json", "BAD/a-file/r.json"], ["cannot write to", "is a file"]),
    (["BAD/other.json"], ["edgecls bench compare"]),
    (["compare", "BAD/other.json"], ["is not an edgecls bench report"]),
    (["compare", "BAD/text.json"], ["is not an edgecls bench report (not valid JSON"]),
    (["compare", "BAD/nothing.json"], ["does not exist"]),
])
def test_bad_input_gives_one_line(args, needles, run_dir, bad_inputs, cli):
    swap = {"RUN": str(run_dir), "NOEXP": str(bad_inputs / "no-exports"),
            "INT8": str(run_dir / "export" / "model_int8.tflite")}
    argv = [swap.get(a, a.replace("BAD", str(bad_inputs))) for a in args]
    before = sorted(p.name for p in run_dir.iterdir())
    assert_one_line_error(cli("bench", *argv), *needles)
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing written


def test_bench_help_lists_both_forms(cli):
    result = cli("bench", "--help")
    assert result.code == 0
    listed = {line.split()[1] for line in result.out.splitlines() if line.startswith("│ ") and len(line.split()) > 2}
    assert {"run", "compare"} <= listed, result.out  # the sub-commands themselves, not the words
    for sub in ("run", "compare"):
        assert cli("bench", sub, "--help").code == 0


def test_a_probe_that_cannot_start_is_reported_not_fatal(monkeypatch, tmp_path):
    from edgecls.bench import memory

    not_a_program = tmp_path / "python"
    not_a_program.write_bytes(b"\x7fELF not really")
    not_a_program.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(not_a_program))
    found = memory.peak_rss(None, None, 1, "ai_edge_litert")
    assert set(found) == {"error"} and "probe process" in found["error"]


def test_the_memory_probe_opens_each_model_with_the_benchs_model_settings():
    """The probe process answers on its image what the bench's own Classifier answers: --input-range (and
    --labels, --resize, --fit) reach it (it opened every model with the defaults)."""
    from edgecls.runtime import Classifier

    model = ROOT / "models" / "digits-seed" / "model_float32.tflite"
    plan = resolve_plan(BenchOptions([model], data=str(ROOT / "models" / "digits-seed" / "test-images"),
                                     input_range=(0.0, 1.0), threads=[1], **FAST))
    inputs = open_inputs(plan.sources, plan.settings)
    image = inputs.test.files[0]  # the probe's image: the first file timed
    as_benched = Classifier(model, input_range=(0.0, 1.0)).classify(image)[0].index
    assert as_benched != Classifier(model).classify(image)[0].index  # the setting changes the answer here
    report = measure_inputs(inputs, plan)
    assert report.models[0].memory.top1 == as_benched


def test_peak_memory_is_the_probes_own_not_the_parents():
    """ru_maxrss survives fork and exec: a big parent must not leak its size into the figure."""
    from edgecls.bench import memory
    from edgecls.runtime.interpreter import find_backend

    ballast = np.ones(256 * 2**20, np.uint8)  # 256 MiB, touched
    found = memory.peak_rss(None, None, 1, find_backend().name)
    assert ballast[-1] == 1
    assert 0 < found["peak_rss_mb"] < 200, found


def test_without_matplotlib_the_plots_are_skipped_with_a_note(bench, tmp_path, monkeypatch):
    from edgecls.reports import plots

    monkeypatch.setattr(plots, "pyplot", lambda: None)
    report = copy.deepcopy(bench[0])
    write_reports(report, tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["bench.json", "bench.md"]
    assert report.report_files == ["bench.md", "bench.json"]
    assert any("matplotlib is not installed" in note for note in report.notes)
    assert errors(json.loads((tmp_path / "r" / "bench.json").read_text())) == []


def test_without_tensorflow_the_float32_file_is_the_reference(run_dir, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    report = measure(BenchOptions([run_dir], threads=[1], memory=False, **FAST))
    assert report.reference == "model_float32.tflite" and report.settings.keras is False
    assert [m.name for m in report.models] == ["model_float32.tflite", "model_int8.tflite"]
    assert any("TensorFlow is not installed here" in note for note in report.notes)


# ---------------------------------------------------------------------- review fixes: names, imports, input range
DIGITS = ROOT / "models" / "digits-seed"


def test_names_from_data_are_shown_as_text_not_rich_markup(tmp_path, cli):
    """A model called evil[/] (a report from elsewhere) or a file called [bold red]m.tflite."""
    doc = json.loads((DIGITS / "report" / "bench.json").read_text())
    doc["models"][-1]["name"] = "evil[/]"
    doc["machine"]["cpu"] = "[bold]CPU\x1b[31m"
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps(doc))
    merged = cli("bench", "compare", hostile)
    assert merged.code == 0, merged.err
    assert "evil[/]" in merged.out and "[bold]CPU[31m" in merged.out and "\x1b" not in merged.out

    model = tmp_path / "[bold red]m.tflite"
    shutil.copy(DIGITS / "model_int8.tflite", model)
    result = cli("bench", model, "--data", DIGITS / "test-images", "--threads", "1", "--runs", "2", "--warmup", "0",
                 "--no-memory")
    assert result.code == 0, result.err
    assert "[bold red]m.tflite" in result.out


def test_a_device_side_bench_imports_no_workstation_module(tmp_path):
    """edgecls bench MODEL.tflite --data FOLDER, as on a Pi: no TensorFlow, no Keras, and none of the
    workstation modules (the folder loader, edgecls.data, is what --data needs)."""
    code = (
        "import json, sys\n"
        "from edgecls.cli import main\n"
        f"sys.argv = ['edgecls', 'bench', {str(DIGITS / 'model_int8.tflite')!r}, '--data', "
        f"{str(DIGITS / 'test-images')!r}, '--threads', '1', '--runs', '2', '--warmup', '0', '--no-memory', "
        f"'--json', {str(tmp_path / 'r.json')!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print(json.dumps({'code': code, 'modules': sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'edgecls', 'sklearn', 'matplotlib'))}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["code"] in (0, None), done.stderr
    # The workstation modules (after the re-cut: the jobs, not the TensorFlow-free options/modes tables
    # the CLI reads for its help).
    heavy = {"tensorflow", "keras", "edgecls.train.job", "edgecls.train.model", "edgecls.export.job",
             "edgecls.export.convert", "edgecls.export.diagnose", "edgecls.export.sweep", "edgecls.export.analyses",
             "sklearn"}
    assert not heavy & set(found["modules"]), found["modules"]
    assert "edgecls.runtime.metrics" in found["modules"]


def test_bench_input_range_scores_a_float_model_that_wants_0_to_1(unit_range, tmp_path, cli):
    from conftest import QUAD_LABELS, quad_image

    data = tmp_path / "quads"
    for name in QUAD_LABELS:
        (data / name).mkdir(parents=True)
        for i, (bright, dark) in enumerate([(255, 0), (200, 40)]):
            Image.fromarray(quad_image(name, bright=bright, dark=dark)).save(data / name / f"{i}.png")
    options = dict(data=str(data), threads=[1], memory=False, **FAST)
    raw = measure(BenchOptions([unit_range.path], **options))
    assert raw.models[0].accuracy.top1 < 0.9 and raw.settings.input_range is None  # saturated
    scaled = measure(BenchOptions([unit_range.path], input_range=(0, 1), **options))
    assert scaled.models[0].accuracy.top1 == 1.0 and scaled.settings.input_range == [0.0, 1.0]
    assert any("--input-range 0,1" in note for note in scaled.notes) and errors(scaled.to_json()) == []
    result = cli("bench", unit_range.path, "--data", data, "--input-range", "0,1", "--threads", "1", "--runs", "2",
                 "--warmup", "0", "--no-memory", "--json", tmp_path / "r.json")
    assert result.code == 0, result.err
    assert json.loads((tmp_path / "r.json").read_text())["models"][0]["accuracy"]["top1"] == 1.0
    assert_one_line_error(cli("bench", unit_range.path, "--data", data, "--input-range", "1,1"), "--input-range")


# ---------------------------------------------------------------------- advice that holds (issue 22)
SHIPPED = Path(__file__).resolve().parents[1] / "models" / "digits-seed" / "report" / "bench.json"


def _timing(threads: int, p50: float, rounds: list[float] | None = None):
    from edgecls.bench.results import Latency, Throughput

    return Latency(threads=threads, init_ms=1.0, load_ms=1.0, first_inference_ms=1.0,
                   invoke_ms=latency.stats([p50] * 3), invoke_round_medians_ms=rounds or [p50] * 10,
                   file_ms=latency.stats([p50], source="files"),
                   throughput=Throughput(batch=1, batch_ms=p50, images_per_s=1e3 / p50))


def _report_with(timings: dict[str, list], threads: list[int], cpus: list[int]) -> BenchReport:
    """The shipped digits report with these latencies per model name (a model not named keeps none)."""
    report = BenchReport.from_json(json.loads(SHIPPED.read_text(encoding="utf-8")))
    report.device.threads, report.device.cpus_used = threads, cpus
    for model in report.models:
        model.latency = timings.get(model.name, [])
    return report


def test_advice_never_recommends_more_threads_than_the_measurement_could_use():
    """Issue 22: with --device rpi4 on a 2-CPU host, bench said "4 threads are faster than 1 ... use them"
    although 4 were slower than 2 (and 4 threads on 2 CPUs say nothing about a 4-core Pi)."""
    from edgecls.bench.advice import advice, best_threads

    report = _report_with({"model_float32.tflite": [_timing(1, 0.030), _timing(2, 0.020), _timing(4, 0.024)],
                           "model_int8.tflite": [_timing(1, 0.013), _timing(2, 0.009), _timing(4, 0.010)]},
                          threads=[1, 2, 4], cpus=[0, 1])
    text = " ".join(advice(report))
    assert "2 threads are the fastest here for every model" in text and "--threads 2" in text
    assert "--threads 4" not in text and "4 threads are" not in text
    assert "Rows at 4 threads ran on the 2 CPUs this measurement could use" in text and "oversubscribed" in text
    assert best_threads(report, report.model("model_int8.tflite")).threads == 2
    # 2 threads within the measured spread of 1 (rounds that do not tell them apart): the fewer threads
    noisy = [0.013, 0.009, 0.014, 0.010, 0.012, 0.015, 0.009, 0.013, 0.011, 0.012]
    tie = _report_with({"model_int8.tflite": [_timing(1, 0.012, noisy), _timing(2, 0.0105, noisy[::-1])]},
                       threads=[1, 2], cpus=[0, 1])
    assert best_threads(tie, tie.model("model_int8.tflite")).threads == 1
    assert "use --threads 1" in " ".join(advice(tie))


def test_advice_treats_the_measured_spread_as_a_tie_and_names_the_simpler_file(tmp_path):
    from edgecls.bench.advice import advice, choice
    from edgecls.reports.job import next_command

    report = _report_with({"model_float32.tflite": [_timing(1, 0.030)], "model_int8.tflite": [_timing(1, 0.0131)]},
                          threads=[1], cpus=[0, 1])
    dynamic = copy.deepcopy(report.model("model_int8.tflite"))
    # as small as the int8 file (a few hundred bytes off): size does not decide
    dynamic.name, dynamic.mode, dynamic.size_bytes = "model_dynamic.tflite", "dynamic", dynamic.size_bytes - 300
    dynamic.path = dynamic.path.replace("int8", "dynamic")
    dynamic.latency = [_timing(1, 0.0128)]  # 2 % faster: within the spread
    report.models.append(dynamic)
    assert choice(report).name == "model_int8.tflite"  # as fast, as accurate, as small: the plainer int8
    first = advice(report)[0]
    assert first.startswith("Take model_int8.tflite (int8): 0.013 ms p50 at 1 thread")
    assert "As fast within the measured spread: model_dynamic.tflite" in first and "interleaved rounds" in first
    assert "Next: model_float32.tflite at 0.030 ms" in first
    int8 = report.model("model_int8.tflite").accuracy
    assert f"({round(int8.top1 * int8.images)}/{int8.images})" in first  # the accuracy with its count
    # the hint names that file and carries what decides predict's answers
    options = BenchOptions(paths=[], labels="labels.txt", resize="nearest", fit="crop", input_range=(-1.0, 1.0),
                           json_path=tmp_path / "b.json")
    hint, compare = next_command(report, options).splitlines()
    assert hint.startswith(f"Next: edgecls predict {report.model('model_int8.tflite').path} IMAGES... --labels "
                           "labels.txt --resize nearest --fit crop --input-range -1,1")
    assert compare.startswith(f"Next: edgecls bench compare {tmp_path / 'b.json'} OTHER/bench.json")


def test_advice_never_takes_a_file_clearly_less_accurate_and_says_when_few_images_cannot_tell():
    """A new user's bench of two third-party models on 4 photos was told to take the faster one at 0/4 against
    2/4, with nothing saying why; a file less accurate beyond chance is passed over, and named."""
    from edgecls.bench.advice import advice, choice

    report = _report_with({"model_float32.tflite": [_timing(1, 0.030)], "model_int8.tflite": [_timing(1, 0.013)]},
                          threads=[1], cpus=[0, 1])
    int8 = report.model("model_int8.tflite")
    int8.accuracy.top1 = 120 / 179  # 120/179 against float32's 174/179: beyond chance
    assert choice(report).name == "model_float32.tflite"
    first = advice(report)[0]
    assert first.startswith("Take model_float32.tflite (float32): 0.030 ms")
    assert "Faster, but less accurate beyond chance: model_int8.tflite 0.013 ms, top-1 0.6704 (120/179)" in first
    assert "Next:" not in first
    for model in report.models:  # 4 images: 0/4 against 2/4 cannot be told apart
        if model.accuracy is not None:
            model.accuracy.images = 4
            model.accuracy.top1 = 0.0 if model.name == "model_int8.tflite" else 0.5
    first = advice(report)[0]
    assert first.startswith("Take model_int8.tflite (int8): 0.013 ms") and "(0/4)" in first
    assert "within chance of the most accurate file's (" in first and "4 images do not tell them apart" in first


def test_a_folder_of_exported_models_without_its_run_points_at_the_files(tmp_path, cli):
    """The shipped reference folder, copied, is not a whole run (no model.keras, no split.json): the
    error names a command that benches its .tflite files on its test images."""
    folder = tmp_path / "reference"
    shutil.copytree(SHIPPED.parents[1], folder)
    result = cli("bench", folder)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert (f"; to bench its exported models, name them: edgecls bench {folder / 'model_float32.tflite'} "
            f"--data {folder / 'test-images'}") in result.err


def test_files_of_one_name_from_two_runs_keep_their_own_figures(bench, run_dir, tmp_path):
    """runs/a/export/model_int8.tflite against runs/b/export/model_int8.tflite (two runs compared, the
    natural case): each row is its own file's; one parent folder did not tell them apart, and one file's
    classifier answered for both."""
    report, folder = bench
    for run, source in (("a", "model_int8.tflite"), ("b", "model_float32.tflite")):  # different files, one name
        (tmp_path / run / "export").mkdir(parents=True)
        shutil.copyfile(run_dir / "export" / source, tmp_path / run / "export" / "model_int8.tflite")
    both = measure(BenchOptions([tmp_path / "a" / "export" / "model_int8.tflite",
                                 tmp_path / "b" / "export" / "model_int8.tflite"],
                                data=str(folder / "test-images"), threads=[1], memory=False, **FAST))
    names = [m.name for m in both.models]
    assert names == ["a/export/model_int8.tflite", "b/export/model_int8.tflite"], names
    own = {m.name: m for m in tflite_models(report)}
    for model, source in zip(both.models, ("model_int8.tflite", "model_float32.tflite")):
        assert model.sha256 == own[source].sha256 and model.size_bytes == own[source].size_bytes
        assert model.accuracy.top1 == own[source].accuracy.top1


def test_advice_says_why_it_names_fewer_threads_than_the_fastest_p50():
    """A new user read "int8 ... 0.013 ms p50 at 1 thread" beside a table showing 0.010 at 2: the rule that
    names the fewer threads within the measured spread is said where the thread counts differ by model."""
    from edgecls.bench.advice import advice

    noisy = [0.013, 0.009, 0.014, 0.010, 0.012, 0.015, 0.009, 0.013, 0.011, 0.012]
    report = _report_with({"model_float32.tflite": [_timing(1, 0.030), _timing(2, 0.018)],
                           "model_int8.tflite": [_timing(1, 0.012, noisy), _timing(2, 0.0105, noisy[::-1])]},
                          threads=[1, 2], cpus=[0, 1])
    text = " ".join(advice(report))
    assert "The fastest thread count differs by model (model_float32.tflite 2, model_int8.tflite 1" in text
    assert "within the measured spread, the fewer threads are named" in text


def test_a_profile_with_more_cores_than_the_host_says_which_rows_are_oversubscribed():
    """The footnote said "2 were used, and at most that many threads" above measured 4-thread rows."""
    from edgecls.bench.profiles import load_profile, placement_notes

    machine = {"arch": "x86_64", "cpu": "AMD EPYC", "usable_cpus": 2, "cpu_core": None, "emulated": None}
    own, notes = placement_notes(load_profile("rpi4"), machine, [0, 1], [1, 2, 4])
    assert not own and "this host has only 2 CPUs, so 2 were used: the rows at 4 threads share them " \
                       "(oversubscribed)" in notes[-1], notes
    _, notes = placement_notes(load_profile("rpi4"), machine, [0, 1], [1, 2])
    assert "so 2 were used)" in notes[-1] and "oversubscribed" not in notes[-1], notes


def test_test_images_of_some_of_the_classes_are_scored_over_all_of_them():
    """Field pictures rarely show every class: folders named by some of the model's labels are matched by
    name (bench and bench compare alike); folders named otherwise are refused with what the command offers."""
    from edgecls.bench.testset import TestSet, match_classes

    def field(names: list[str]) -> TestSet:
        return TestSet(np.zeros((3, 28, 28, 1), np.uint8), np.array([0, 1, 1]), names, [0, 1, 2], None, "field/", "all")

    labels = [str(d) for d in range(10)]
    test = match_classes(field(["3", "5"]), labels, "m.tflite")
    assert test.labels.tolist() == [3, 5, 5] and test.class_names == labels
    assert "field/ has 2 of the model's 10 classes" in test.notes[0]
    with pytest.raises(EdgeclsError, match=r"has 2 \(3, five\), not all of them a class .*some of them will do\)$"):
        match_classes(field(["3", "five"]), labels, "m.tflite", hint="")
    with pytest.raises(EdgeclsError, match="give --labels FILE"):
        match_classes(field(["3", "five"]), labels, "m.tflite")
    with pytest.raises(EdgeclsError, match="not all of them a class"):  # as many folders, one named otherwise
        match_classes(field(["cat", "bird"]), ["cat", "dog"], "m.tflite")
    by_position = match_classes(field(["a", "b"]), ["cat", "dog"], "m.tflite")  # no folder named as a class
    assert by_position.class_names == ["cat", "dog"] and "matched by position" in by_position.notes[-1]


def test_bench_compare_names_a_path_that_is_not_there(cli, tmp_path):
    """A typo among run directories is named as missing, not read as a report mixed with runs."""
    done = cli("bench", "compare", tmp_path, tmp_path / "nope")
    assert done.code == 2 and done.err.count("\n") == 1
    assert done.err.strip().endswith(f"{tmp_path / 'nope'} does not exist: give bench reports (JSON files) or run "
                                     "directories")
