"""The bench report's typed records (edgecls.bench.results): what measure builds is written as
exactly the JSON the schema describes, reads back equal, and a file from another version — older,
or newer with keys this one does not know — is read and written again without losing anything.

A real bench of the shipped digits models (.tflite files and their saved test images: no training,
no TensorFlow) serves the module.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from edgecls.bench import BenchOptions, measure, results
from edgecls.bench.results import (
    Accuracy,
    BenchReport,
    Latency,
    Memory,
    ModelResult,
    Paired,
    RemoteRun,
    Section,
    Timing,
)
from edgecls.bench.schema import FORMAT, check_report, errors, read_report
from edgecls.errors import EdgeclsError
from edgecls.reports.report import json_text, write_reports

DIGITS = Path(__file__).resolve().parents[1] / "models" / "digits-seed"
# The reference model's report as edgecls wrote it on 2026-11-28 (no board, governor, labels, ...), kept as it was.
OLD_REPORT = Path(__file__).resolve().parent / "data" / "bench-2026-11-28.json"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """(the BenchReport, its bench.json as written): float32 and int8 on the saved test images,
    peak memory measured and a one-second sustained run (a section with free-form data)."""
    if not (DIGITS / "test-images").is_dir():
        pytest.skip(f"{DIGITS} is not here")
    out = tmp_path_factory.mktemp("results")
    report = measure(BenchOptions([DIGITS / "model_float32.tflite", DIGITS / "model_int8.tflite"],
                                    data=str(DIGITS / "test-images"), threads=[1], warmup=0, runs=2, batch_size=4,
                                    sustain=1.0))
    write_reports(report, json_path=out / "bench.json")
    return report, out / "bench.json"


def test_measure_builds_typed_records(bench):
    report, _ = bench
    assert isinstance(report, BenchReport) and report.format == FORMAT
    float32, int8 = report.models
    assert isinstance(int8, ModelResult) and int8.mode == "int8" and int8.size_ratio < 1
    assert isinstance(int8.accuracy, Accuracy) and 0 <= int8.accuracy.top1 <= 1
    assert isinstance(int8.vs_reference, Paired) and int8.vs_reference.reference == float32.name
    timing = int8.latency[0]
    assert isinstance(timing, Latency) and isinstance(timing.invoke_ms, Timing) and timing.threads == 1
    assert timing.vs_reference.reference == float32.name and float32.latency[0].vs_reference is None
    assert isinstance(int8.memory, Memory) and int8.memory.measured and int8.memory.threads == 1
    assert report.memory_baseline.measured and report.memory_baseline.top1 is None
    assert [s.key for s in report.sections] == ["calibration", "sustained", "advice"]
    assert all(isinstance(s, Section) for s in report.sections)
    assert report.section("sustained").data["models"] == [float32.name, int8.name]  # free-form JSON, kept as is


def test_to_json_is_what_is_written_and_what_the_schema_describes(bench):
    report, path = bench
    doc = report.to_json()
    assert errors(doc) == []
    check_report(doc, "bench.json")
    assert path.read_text(encoding="utf-8") == json_text(report)
    assert json.loads(path.read_text(encoding="utf-8")) == doc
    # today's key order, which the bytes of bench.json follow
    assert list(doc)[:13] == ["format", "created", "command", "machine", "device", "data", "settings", "reference",
                              "latency_reference", "models", "memory_baseline", "sections", "notes"]
    assert list(doc["models"][1]) == ["name", "kind", "mode", "path", "size_bytes", "sha256", "io", "size_ratio",
                                      "accuracy", "vs_reference", "latency", "memory"]
    assert list(doc["models"][1]["memory"]) == ["peak_rss_mb", "measure", "heavy_modules", "top1", "threads"]
    assert "source" not in doc["models"][1]["latency"][0]["invoke_ms"]  # omitted while None, as before
    assert doc["models"][1]["latency"][0]["file_ms"]["source"]


def test_a_report_reads_back_equal(bench):
    report, path = bench
    assert BenchReport.from_json(report.to_json()) == report
    again = BenchReport.from_json(json.loads(path.read_text(encoding="utf-8")))
    assert again == report and json_text(again) == path.read_text(encoding="utf-8")  # byte for byte


def test_to_json_gives_fresh_containers(bench):
    report, _ = bench
    doc = report.to_json()
    doc["models"][0]["latency"][0]["invoke_ms"]["samples"].clear()
    doc["notes"].append("changed")
    assert report.models[0].latency[0].invoke_ms.samples and "changed" not in report.notes


def test_keys_this_version_does_not_know_survive_a_round_trip(bench):
    report, _ = bench
    doc = report.to_json()
    doc["future"] = {"from": "edgecls.bench/1.1"}
    doc["machine"]["npu"] = "none"
    doc["models"][1]["energy_mj"] = 1.5
    doc["models"][1]["latency"][0]["invoke_ms"]["p999"] = 9.0
    doc["models"][1]["vs_reference"]["flipped"].append({"index": 0, "id": "x.png", "reference": "1", "model": "7",
                                                        "true": "1", "confidence": 0.4})
    doc["sections"][0]["footnote"] = "later"
    assert errors(doc) == []  # the schema lets later minor versions add keys
    read = BenchReport.from_json(copy.deepcopy(doc))
    assert read.extra == {"future": {"from": "edgecls.bench/1.1"}} and read.machine.extra == {"npu": "none"}
    assert read.models[1].extra == {"energy_mj": 1.5} and read.models[1].latency[0].invoke_ms.extra == {"p999": 9.0}
    assert read.models[1].vs_reference.flipped[-1].extra == {"confidence": 0.4}
    assert json.dumps(read.to_json()) == json.dumps(doc)  # unknown keys last, where they were
    assert BenchReport.from_json(read.to_json()) == read


def test_a_file_from_an_earlier_version_is_read_and_written_back_unchanged():
    """A report from 2026-11-28 (models/digits-seed's then) predates board, governor, clocks, CPU features and --labels:
    the keys it lacks stay absent when it is written again."""
    text = OLD_REPORT.read_text(encoding="utf-8")
    doc = json.loads(text)
    assert "board" not in doc["machine"] and "labels" not in doc["settings"]
    report = read_report(doc, str(OLD_REPORT))
    assert report.machine.board is None and report.machine.cpu_features is None and report.settings.labels is None
    assert [m.name for m in report.models] == ["keras", "model_float32.tflite", "model_int8.tflite"]
    assert report.models[0].latency == [] and report.models[0].memory is None  # the Keras reference: accuracy only
    assert report.models[2].accuracy.top1 == doc["models"][2]["accuracy"]["top1"]
    assert report.models[2].latency[0].invoke_ms.p50 == doc["models"][2]["latency"][0]["invoke_ms"]["p50"]
    assert json_text(report) == text


def _todays_dict() -> dict:
    """A bench.json as the dict-building bench wrote it: a --latency-only model (no accuracy), one
    whose memory probe failed, a remote run, a section with data and one without."""
    timing = {"p50": 1.0, "p90": 1.5, "p99": 2.0, "mean": 1.1, "std": 0.2, "min": 0.9, "max": 2.1, "n": 2,
              "samples": [0.9, 1.3]}
    return {
        "format": FORMAT, "created": "2026-01-02T03:04:05Z", "command": "edgecls bench m.tflite --latency-only",
        "machine": {"platform": "Linux-6.1-aarch64", "system": "Linux", "arch": "aarch64", "python_bits": 64,
                    "cpu": "Cortex-A76", "cpu_count": 4, "memory_mb": 8000, "python": "3.11.2", "usable_cpus": 4,
                    "backend": {"name": "ai_edge_litert", "version": "2.3.0"}, "versions": {"numpy": "2.1.0"},
                    "emulated": None, "cpu_core": "Cortex-A76", "board": "Raspberry Pi 5 Model B Rev 1.0",
                    "governor": "ondemand", "max_mhz": 2400.0, "min_mhz": 1500.0,
                    "cpu_features": {"source": "/proc/cpuinfo", "present": ["asimddp"], "absent": [],
                                     "dot_product": True, "half_precision": True}},
        "device": {"profile": {"key": "rpi5", "path": "devices/rpi5.toml", "name": "Raspberry Pi 5", "arch": "aarch64",
                               "cores": 4, "threads": 4, "cpu": "", "qemu_cpu": "cortex-a76", "memory_mb": 0,
                               "notes": ""},
                   "cpus_used": [0, 1, 2, 3], "threads": [4], "is_device": True, "notes": ["Measured on rpi5."]},
        "data": {"source": "photos", "part": "unlabelled", "run": None, "images": 3, "classes": [], "shape": [8, 8, 3],
                 "files": True, "content_sha256": "ab" * 32},
        "settings": {"warmup": 0, "runs": 2, "rounds": 2, "per_round": 1, "batch_size": 4, "top_k": 1, "keras": False,
                     "input_range": None, "latency_only": True, "labels": None,
                     "preprocessing": {"m.tflite": {"resize": "bilinear", "fit": "stretch"}}},
        "reference": None, "latency_reference": None,
        "models": [{"name": "m.tflite", "kind": "tflite", "mode": "int8", "path": "m.tflite", "size_bytes": 1234,
                    "sha256": "cd" * 32, "io": {}, "size_ratio": None, "accuracy": None, "vs_reference": None,
                    "latency": [{"threads": 4, "init_ms": 3.0, "load_ms": 2.0, "first_inference_ms": 1.2,
                                 "invoke_ms": timing, "invoke_round_medians_ms": [1.0, 1.1],
                                 "file_ms": {**timing, "source": "3 test image files"},
                                 "throughput": {"batch": 3, "batch_ms": 3.0, "images_per_s": 1000.0},
                                 "vs_reference": None}],
                    "memory": {"error": "the probe process failed (exit 1): boom"}}],
        "memory_baseline": {"peak_rss_mb": 40.0, "measure": "VmHWM", "heavy_modules": [], "top1": None},
        "sections": [{"key": "advice", "title": "Advice", "columns": ["advice"], "rows": [["Fastest: m."]],
                      "notes": [], "plots": [], "data": ["Fastest: m."]},
                     {"key": "plain", "title": "Plain", "columns": ["a"], "rows": [[1]], "notes": [], "plots": []}],
        "notes": [], "report_files": ["bench.md", "bench.json"],
        "remote": {"target": "pi@pi5", "remote_dir": "/home/pi/.cache/edgecls-remote", "python": [3, 11, 2],
                   "venv": "0.1-abc", "venv_reused": True, "seconds": {"probe_s": 0.5, "bench_s": 9.0}},
    }


def test_a_dict_as_the_earlier_code_wrote_it_is_read():
    doc = _todays_dict()
    check_report(doc, "today.json")
    report = BenchReport.from_json(copy.deepcopy(doc))
    model = report.models[0]
    assert model.accuracy is None and model.vs_reference is None and model.latency[0].file_ms.source
    assert not model.memory.measured and model.memory.error.startswith("the probe process failed")
    assert report.memory_baseline.measured and report.memory_baseline.measure == "VmHWM"
    assert report.device.profile.key == "rpi5" and report.machine.cpu_features.dot_product is True
    assert isinstance(report.remote, RemoteRun) and report.remote.venv_reused and report.remote.python == [3, 11, 2]
    assert report.section("plain").data is None and report.section("advice").data == ["Fastest: m."]
    out = report.to_json()
    assert json.dumps(out) == json.dumps(doc)  # the same keys in the same order, so the same bytes
    assert list(out["models"][0]["memory"]) == ["error"]  # the error form alone, as before
    assert "data" not in out["sections"][1]
    assert errors(out) == []


def test_no_record_field_takes_the_name_of_the_bookkeeping_ones():
    """`extra` and `_absent` are every record's own; a JSON key of that name would shadow them."""
    records = [cls for cls in vars(results).values() if isinstance(cls, type) and issubclass(cls, results.Record)]
    assert len(records) > 15
    for cls in records:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert fields["extra"].type == "dict[str, Any]" and fields["_absent"].type == "frozenset[str]", cls


def test_a_document_that_is_no_report_is_refused_in_one_line():
    doc = _todays_dict()
    del doc["models"][0]["latency"][0]["invoke_ms"]
    with pytest.raises(EdgeclsError, match="not a valid bench report"):
        read_report(doc, "broken.json")
    with pytest.raises(ValueError, match="'invoke_ms' missing"):  # unchecked, from_json still names the key
        BenchReport.from_json(doc)


def test_keys_absent_from_the_file_stay_absent_and_present_ones_stay_present():
    from edgecls.bench.results import Memory, Section

    bare = {"key": "k", "title": "t", "columns": ["a"], "rows": [[1]]}  # no notes, no plots
    assert Section.from_json(bare).to_json() == bare
    unmeasured = {"error": "probe failed", "top1": 3}
    assert Memory.from_json(unmeasured).to_json() == unmeasured
    assert Memory.from_json({"error": "probe failed"}).to_json() == {"error": "probe failed"}
