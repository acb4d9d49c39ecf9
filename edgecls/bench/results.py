"""The bench report as typed records (format edgecls.bench/1, report.schema.json): what measure
builds, what every renderer, merger and analysis reads, and — through `to_json()` — exactly the
bench.json that is written.

Each record is a dataclass whose fields are the JSON keys, in the order they are written.
`from_json(doc)` reads a bench.json (checked by schema.check_report first, where it comes from
outside); the rules of edgecls.records apply (keys no field names are kept, a field marked
`omitted()` is absent while None, a key an older file lacked stays absent): a bench.json read and
written again is the same JSON.

Free-form parts stay plain JSON: a section's `data`, a model's `io`, the machine's `versions`, the
data's `label_map` and the per-model `preprocessing` are passed through, not interpreted here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from edgecls.records import Record, omitted


# ---------------------------------------------------------------------- latency ($defs/latency)
@dataclass(kw_only=True)
class Timing(Record):
    """Per-image times in ms: percentiles, moments and the (rounded) samples."""

    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float
    n: int
    samples: list[float]
    source: Optional[str] = omitted()  # file -> label: where its image files came from


@dataclass(kw_only=True)
class Throughput(Record):
    """Images per second at a batch size."""

    batch: int
    batch_ms: float
    images_per_s: float


@dataclass(kw_only=True)
class LatencyRatio(Record):
    """A model's times over the latency reference's (a float32 .tflite), same threads, paired by round."""

    reference: str
    invoke_p50_ratio: float
    file_p50_ratio: float
    throughput_ratio: float


@dataclass(kw_only=True)
class Latency(Record):
    """One model at one thread count (bench.latency's summary of a contender)."""

    threads: int
    init_ms: float
    load_ms: float
    first_inference_ms: float
    invoke_ms: Timing
    invoke_round_medians_ms: Optional[list[float]] = omitted()
    file_ms: Timing
    throughput: Throughput
    vs_reference: Optional[LatencyRatio] = None


# ---------------------------------------------------------------------- accuracy ($defs/accuracy, paired)
@dataclass(kw_only=True)
class ClassAccuracy(Record):
    """One class: its images, how many were right, their share (None for a class with no image)."""

    n: int
    correct: int
    accuracy: Optional[float]


@dataclass(kw_only=True)
class Accuracy(Record):
    """A model's accuracy on the test images (fractions in [0, 1])."""

    top1: float
    topk: float
    k: int
    macro_f1: float
    images: int
    per_class: dict[str, ClassAccuracy]
    confusion: list[list[int]]


@dataclass(kw_only=True)
class Flip(Record):
    """An image whose top-1 differs between the reference and the model."""

    index: int
    id: Union[int, str]
    reference: str
    model: str
    true: str


@dataclass(kw_only=True)
class Paired(Record):
    """A model against the float reference on the same images."""

    reference: str
    delta_accuracy: float
    agreement: float
    mean_abs_dprob: float
    max_abs_dprob: Optional[float] = omitted()
    per_class_delta: dict[str, float]
    flipped: list[Flip]


# ---------------------------------------------------------------------- memory, models
@dataclass(kw_only=True)
class Memory(Record):
    """Peak RSS of a fresh device-side process (bench.memory), or why it could not be measured."""

    peak_rss_mb: Optional[float] = omitted()
    measure: Optional[str] = omitted()  # VmHWM | ru_maxrss
    heavy_modules: Optional[list[str]] = omitted()
    top1: Optional[int] = None  # the probe's top-1 class index (None for the baseline)
    threads: Optional[int] = omitted()
    error: Optional[str] = omitted()

    @property
    def measured(self) -> bool:
        return self.peak_rss_mb is not None

    def to_json(self) -> dict[str, Any]:
        doc = super().to_json()
        if not self.measured and self.top1 is None:  # the error form: {"error": ...} alone
            doc.pop("top1", None)
        return doc


@dataclass
class BenchModel:
    """One model to bench, as bench.inputs opened it (an exported .tflite, or the run's Keras float model):
    what its ModelResult says before the figures."""

    name: str  # shown in tables
    kind: str  # "tflite" | "keras"
    mode: str  # float32, int8, ... (keras: float32)
    path: Path
    size_bytes: int
    sha256: Optional[str] = None
    io: dict[str, Any] = field(default_factory=dict)  # input/output dtype, scale, zero point

    @property
    def is_float(self) -> bool:
        return self.mode == "float32"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "mode": self.mode, "path": str(self.path),
                "size_bytes": self.size_bytes, "sha256": self.sha256, "io": self.io}


@dataclass(kw_only=True)
class ModelResult(Record):
    """One benched model: what it is, its accuracy, its pairing with the reference, latency per
    thread count and peak memory."""

    name: str
    kind: str  # tflite | keras
    mode: str  # float32, int8, ...
    path: str
    size_bytes: int
    sha256: Optional[str] = None
    io: Optional[dict[str, Any]] = omitted()  # input/output dtype, scale, zero point (bench.inputs)
    size_ratio: Optional[float] = None  # size over the float32 .tflite's
    accuracy: Optional[Accuracy] = None  # None in a --latency-only bench
    vs_reference: Optional[Paired] = None
    latency: list[Latency] = field(default_factory=list)
    memory: Optional[Memory] = None

    @property
    def is_tflite(self) -> bool:
        return self.kind == "tflite"


# ---------------------------------------------------------------------- where and how
@dataclass(kw_only=True)
class Backend(Record):
    name: str
    version: str


@dataclass(kw_only=True)
class CpuFeatures(Record):
    """The CPU features that decide which int8/fp16 kernels run (runtime.cpu.cpu_features)."""

    source: Optional[str]
    present: list[str]
    absent: list[str]
    dot_product: Optional[bool]
    half_precision: Optional[bool]


@dataclass(kw_only=True)
class Machine(Record):
    """The host the figures were measured on (runtime.doctor.describe_machine)."""

    platform: str
    system: str
    arch: str
    python_bits: Optional[int] = omitted()
    cpu: str
    cpu_count: Optional[int]
    memory_mb: Optional[int] = None
    python: str
    usable_cpus: int
    backend: Backend
    versions: dict[str, str]
    emulated: Optional[str]
    cpu_core: Optional[str] = None
    board: Optional[str] = None  # /proc/device-tree/model
    governor: Optional[str] = None
    max_mhz: Optional[float] = None
    min_mhz: Optional[float] = None
    cpu_features: Optional[CpuFeatures] = omitted()


@dataclass(kw_only=True)
class Profile(Record):
    """A device profile as the report records it (profiles.DeviceProfile.to_json)."""

    key: str
    path: Optional[str] = omitted()
    name: str
    arch: str
    cores: int
    threads: int
    cpu: Optional[str] = omitted()
    qemu_cpu: Optional[str] = omitted()
    memory_mb: Optional[int] = omitted()
    notes: Optional[str] = omitted()


@dataclass(kw_only=True)
class Device(Record):
    """The profile asked for, the CPUs and threads used, and whether these are the device's own figures."""

    profile: Optional[Profile]
    cpus_used: Optional[list[int]]
    threads: list[int]
    is_device: bool
    notes: list[str]


@dataclass(kw_only=True)
class TestData(Record):
    """The images scored (bench.inputs.TestSet.to_json)."""

    __test__ = False  # not a pytest test class, whatever its name

    source: str
    part: str  # test | all | unlabelled
    run: Optional[str] = None
    images: int
    classes: list[str]
    shape: Optional[list[int]] = omitted()
    files: Optional[bool] = omitted()
    content_sha256: Optional[str] = omitted()
    shapes: Optional[dict[str, list[int]]] = omitted()  # per model, when each decodes at its own size
    label_map: Optional[list[dict[str, Any]]] = omitted()  # --labels: how each class folder matched


@dataclass(kw_only=True)
class Settings(Record):
    """How the bench measured."""

    warmup: int
    runs: int
    rounds: int
    per_round: int
    batch_size: int
    top_k: int
    keras: Optional[bool] = omitted()
    input_range: Optional[list[float]] = None
    latency_only: Optional[bool] = omitted()
    labels: Optional[str] = None
    preprocessing: Optional[dict[str, dict[str, str]]] = omitted()  # per model: {"resize", "fit"}


@dataclass(kw_only=True)
class Section(Record):
    """An extra titled table (add_section): a diagnosis, a sweep, the advice, ..."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)  # PNG names in the report folder
    data: Any = omitted()  # free-form JSON, the analysis' own


@dataclass(kw_only=True)
class RemoteRun(Record):
    """Set by bench --remote on a report brought back from a device over SSH."""

    target: str
    remote_dir: str
    python: Optional[list[int]] = omitted()
    venv: str
    venv_reused: bool
    seconds: dict[str, float]


# ---------------------------------------------------------------------- the report
@dataclass(kw_only=True)
class BenchReport(Record):
    """A whole bench report (bench.json)."""

    format: str
    created: str
    command: Optional[str] = None
    machine: Machine
    device: Device
    data: TestData
    settings: Settings
    reference: Optional[str]  # the model the others are compared with
    latency_reference: Optional[str] = None  # the float32 .tflite latency ratios are taken against
    models: list[ModelResult]
    memory_baseline: Optional[Memory] = None
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    report_files: Optional[list[str]] = omitted()
    remote: Optional[RemoteRun] = omitted()

    def model(self, name: str) -> Optional[ModelResult]:
        """The model of that name, or None."""
        return next((m for m in self.models if m.name == name), None)

    def section(self, key: str) -> Optional[Section]:
        """The section of that key, or None."""
        return next((s for s in self.sections if s.key == key), None)

    def tflite_models(self) -> list[ModelResult]:
        return [m for m in self.models if m.is_tflite]


def add_section(report: BenchReport, key: str, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                notes: Sequence[str] = (), plots: Sequence[str] = (), data: Any = None) -> Section:
    """Add (or replace) an extra titled table: how other analyses plug into the bench's report.

    `plots` are PNG file names the caller wrote into the report folder; `data` is free-form JSON."""
    if not re.fullmatch(r"[a-z0-9_-]+", key):
        raise ValueError(f"section key {key!r}: use lower-case letters, digits, - and _")
    section = Section(key=key, title=title, columns=list(columns), rows=[list(r) for r in rows], notes=list(notes),
                      plots=list(plots), data=data)
    report.sections = [s for s in report.sections if s.key != key] + [section]
    return section
