"""The bench report as typed records (format edgecls.bench/1, report.schema.json): what run_bench
builds, what every renderer, merger and analysis reads, and — through `to_json()` — exactly the
bench.json that is written.

Each record is a dataclass whose fields are the JSON keys, in the order they are written.
`from_json(doc)` reads a bench.json (checked by schema.check_report first, where it comes from
outside); keys no field names — a later minor version's — are kept in `extra` and written back
last, so a report read and written again loses nothing. A field marked `_omitted()` is left out of
the JSON while it is None (the schema makes it optional and not nullable); every other field is
always written, None as null — but for a key the file read did not have (an older version's
file), which stays absent while it keeps its default: a bench.json read and written again is the same JSON.

Free-form parts stay plain JSON: a section's `data`, a model's `io`, the machine's `versions`, the
data's `label_map` and the per-model `preprocessing` are passed through, not interpreted here.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Optional, TypeVar, Union

R = TypeVar("R", bound="Record")
_OMIT = "omit_when_none"
_BOOKKEEPING = ("extra", "_absent")


def _omitted() -> Any:
    """A field that is absent from the JSON while None (optional, not nullable, in the schema)."""
    return field(default=None, metadata={_OMIT: True})


@dataclass(kw_only=True)
class Record:
    """to_json/from_json from the dataclass fields; unknown keys kept in `extra`."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    # Keys the JSON read had no value for (an older file): still left out while they are None.
    # Underscored, as no JSON key is, so that no record's own field can take its name.
    _absent: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """This record as the JSON object bench.json holds (fresh containers: safe to change)."""
        doc: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in _BOOKKEEPING:
                continue
            value = getattr(self, f.name)
            if value is None and f.metadata.get(_OMIT):
                continue
            if f.name in self._absent and value == _default(f):  # still what the file did not have
                continue
            doc[f.name] = as_json(value)
        doc.update(as_json(self.extra))
        return doc

    @classmethod
    def from_json(cls: type[R], doc: dict[str, Any]) -> R:
        """The record of a JSON object; a missing key takes the field's default (an error if it has none)."""
        if not isinstance(doc, dict):
            raise TypeError(f"{cls.__name__}: expected a JSON object, got {type(doc).__name__}")
        hints = _hints(cls)
        known = {f.name for f in dataclasses.fields(cls) if f.name not in _BOOKKEEPING}
        values = {name: _load(hints[name], doc[name]) for name in known if name in doc}
        extra = {key: copy.deepcopy(value) for key, value in doc.items() if key not in known}
        missing = [f.name for f in dataclasses.fields(cls) if f.name in known and f.name not in values
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"{cls.__name__}: {', '.join(map(repr, missing))} missing")
        return cls(**values, extra=extra, _absent=frozenset(known - set(doc)))


def _default(f: dataclasses.Field) -> Any:
    """The value a field takes when the JSON read lacks its key."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def as_json(value: Any) -> Any:
    """A value with records in it (a record, a list or dict of them, a plain value) as plain JSON."""
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def _load(hint: Any, value: Any) -> Any:
    """A JSON value as the field's type says: records, lists and dicts of records; the rest copied as is."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        kinds = [a for a in typing.get_args(hint) if a is not type(None)]
        return _load(kinds[0], value) if len(kinds) == 1 else copy.deepcopy(value)
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value)
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(hint)
        return [_load(item, v) for v in value]
    if origin is dict and isinstance(value, dict):
        _, item = typing.get_args(hint)
        return {k: _load(item, v) for k, v in value.items()}
    return copy.deepcopy(value)


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
    source: Optional[str] = _omitted()  # file -> label: where its image files came from


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
    invoke_round_medians_ms: Optional[list[float]] = _omitted()
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
    max_abs_dprob: Optional[float] = _omitted()
    per_class_delta: dict[str, float]
    flipped: list[Flip]


# ---------------------------------------------------------------------- memory, models
@dataclass(kw_only=True)
class Memory(Record):
    """Peak RSS of a fresh device-side process (bench.memory), or why it could not be measured."""

    peak_rss_mb: Optional[float] = _omitted()
    measure: Optional[str] = _omitted()  # VmHWM | ru_maxrss
    heavy_modules: Optional[list[str]] = _omitted()
    top1: Optional[int] = None  # the probe's top-1 class index (None for the baseline)
    threads: Optional[int] = _omitted()
    error: Optional[str] = _omitted()

    @property
    def measured(self) -> bool:
        return self.peak_rss_mb is not None

    def to_json(self) -> dict[str, Any]:
        doc = super().to_json()
        if not self.measured and self.top1 is None:  # the error form: {"error": ...} alone
            doc.pop("top1", None)
        return doc


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
    io: Optional[dict[str, Any]] = _omitted()  # input/output dtype, scale, zero point (bench.inputs)
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
    """The host the figures were measured on (profiles.describe_machine)."""

    platform: str
    system: str
    arch: str
    python_bits: Optional[int] = _omitted()
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
    cpu_features: Optional[CpuFeatures] = _omitted()


@dataclass(kw_only=True)
class Profile(Record):
    """A device profile as the report records it (profiles.DeviceProfile.to_json)."""

    key: str
    path: Optional[str] = _omitted()
    name: str
    arch: str
    cores: int
    threads: int
    cpu: Optional[str] = _omitted()
    qemu_cpu: Optional[str] = _omitted()
    memory_mb: Optional[int] = _omitted()
    notes: Optional[str] = _omitted()


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
    shape: Optional[list[int]] = _omitted()
    files: Optional[bool] = _omitted()
    content_sha256: Optional[str] = _omitted()
    shapes: Optional[dict[str, list[int]]] = _omitted()  # per model, when each decodes at its own size
    label_map: Optional[list[dict[str, Any]]] = _omitted()  # --labels: how each class folder matched


@dataclass(kw_only=True)
class Settings(Record):
    """How the bench measured."""

    warmup: int
    runs: int
    rounds: int
    per_round: int
    batch_size: int
    top_k: int
    keras: Optional[bool] = _omitted()
    input_range: Optional[list[float]] = None
    latency_only: Optional[bool] = _omitted()
    labels: Optional[str] = None
    preprocessing: Optional[dict[str, dict[str, str]]] = _omitted()  # per model: {"resize", "fit"}


@dataclass(kw_only=True)
class Section(Record):
    """An extra titled table (report.add_section): a diagnosis, a sweep, the advice, ..."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)  # PNG names in the report folder
    data: Any = _omitted()  # free-form JSON, the analysis' own


@dataclass(kw_only=True)
class RemoteRun(Record):
    """Set by bench --remote on a report brought back from a device over SSH."""

    target: str
    remote_dir: str
    python: Optional[list[int]] = _omitted()
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
    report_files: Optional[list[str]] = _omitted()
    remote: Optional[RemoteRun] = _omitted()

    def model(self, name: str) -> Optional[ModelResult]:
        """The model of that name, or None."""
        return next((m for m in self.models if m.name == name), None)

    def section(self, key: str) -> Optional[Section]:
        """The section of that key, or None."""
        return next((s for s in self.sections if s.key == key), None)

    def tflite_models(self) -> list[ModelResult]:
        return [m for m in self.models if m.is_tflite]
