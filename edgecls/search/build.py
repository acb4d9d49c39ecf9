"""One search candidate made: trained on the search's split (the test split not scored), its .tflite
files made and scored on the validation split, and its record (candidate.json) written last.

    plan -> backbone: edgecls.transfer (a head on the .tflite; one file, in the backbone's quantisation)
            scratch, student: edgecls.train (student: --teacher), then each --variants file (export --target's
              converters, edgecls.export.target.build_checked) -> RUN/export/ (export.json lists them)
         -> every file's top-1 on each validation picture -> RUN/candidate.json

A candidate whose training or every file fails is recorded as failed, with why; a variant that fails is
a failed file of a built candidate. A folder without candidate.json (a killed search) is made again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.artifacts import EXPORT_DIR, ExportEntry, ExportIndex, model_file_name, read_json, write_export
from edgecls.atomic import write_text_atomic
from edgecls.errors import EdgeclsError
from edgecls.jsonio import dumps
from edgecls.records import Record, omitted
from edgecls.reporter import Reporter
from edgecls.search.space import Plan

CANDIDATE_FILE = "candidate.json"
CANDIDATE_FORMAT = "edgecls.search-candidate/1"


@dataclass(kw_only=True)
class VariantFile(Record):
    """One .tflite of a candidate and how it scored on the validation split."""

    variant: str  # int8, float32, ... (a backbone candidate: its own quantisation, e.g. uint8)
    status: str = "built"  # built | failed
    reason: Optional[str] = omitted()
    file: Optional[str] = None  # relative to the candidate's folder
    mode: Optional[str] = None
    size_bytes: Optional[int] = None
    val_correct: Optional[int] = None
    val_images: Optional[int] = None
    val_right: Optional[str] = None  # per validation picture, 1 when its top-1 is right (paired comparisons)
    sha256: Optional[str] = None
    convert_seconds: Optional[float] = omitted()

    @property
    def val_accuracy(self) -> Optional[float]:
        return self.val_correct / self.val_images if self.val_images else None

    def right(self) -> Optional[np.ndarray]:
        return np.array([c == "1" for c in self.val_right]) if self.val_right else None


@dataclass(kw_only=True)
class CandidateRecord(Record):
    """candidate.json: what was trained, how it went, and its files."""

    format: str = CANDIDATE_FORMAT
    name: str
    kind: str
    what: str
    settings: dict[str, Any]
    status: str  # built | failed
    reason: Optional[str] = omitted()
    seconds: dict[str, float] = field(default_factory=dict)  # train, export
    epochs_run: Optional[int] = None
    best_epoch: Optional[int] = None
    stopped_for_time: bool = False
    reference_val_accuracy: Optional[float] = None  # the Keras float model's, or the numpy float head's
    distillation: Optional[dict[str, Any]] = omitted()  # a student's: its teacher on validation, what it cost
    files: list[VariantFile] = field(default_factory=list)

    @property
    def built_files(self) -> list[VariantFile]:
        return [f for f in self.files if f.status == "built"]

    def write(self, folder: Path) -> None:
        write_text_atomic(folder / CANDIDATE_FILE, dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def read(cls, folder: Path) -> Optional[CandidateRecord]:
        """The record of a finished candidate, or None (none yet, or unreadable: made again)."""
        path = folder / CANDIDATE_FILE
        if not path.is_file():
            return None
        try:
            doc = read_json(path)
            record = cls.from_json(doc)
        except (EdgeclsError, KeyError, TypeError, ValueError):
            return None
        return record if record.format == CANDIDATE_FORMAT else None


def build_candidate(plan: Plan, folder: Path, data: str, split: dict, variants: list[str],
                    time_limit_s: Optional[float], reporter: Reporter) -> CandidateRecord:
    """Train and export `plan` into `folder` (replaced), score its files on validation, write its record."""
    record = CandidateRecord(name=plan.name, kind=plan.kind, what=plan.what, settings=plan.settings, status="built")
    started = time.perf_counter()
    try:
        if plan.kind == "backbone":
            _train_backbone(plan, folder, data, split, record, reporter)
        else:
            _train_keras(plan, folder, data, split, time_limit_s, record, reporter)
    except EdgeclsError as exc:
        return _failed(record, folder, f"training failed: {exc}", started)
    record.seconds["train"] = round(time.perf_counter() - started, 1)
    if plan.kind != "backbone":
        begun = time.perf_counter()
        try:
            record.files = export_variants(folder, variants, reporter)
        except EdgeclsError as exc:
            return _failed(record, folder, f"export failed: {exc}", started)
        record.seconds["export"] = round(time.perf_counter() - begun, 1)
    if not record.built_files:
        reasons = "; ".join(f"{f.variant}: {f.reason}" for f in record.files)
        return _failed(record, folder, f"no file could be exported ({reasons})", started)
    record.write(folder)
    return record


def _failed(record: CandidateRecord, folder: Path, reason: str, started: float) -> CandidateRecord:
    record.status, record.reason = "failed", " ".join(reason.split())
    record.seconds["total"] = round(time.perf_counter() - started, 1)
    folder.mkdir(parents=True, exist_ok=True)
    record.write(folder)
    return record


def _train_keras(plan: Plan, folder: Path, data: str, split: dict, time_limit_s: Optional[float],
                 record: CandidateRecord, reporter: Reporter) -> None:
    from edgecls.train.job import train
    from edgecls.train.options import TrainOptions, validate

    values = {k: v for k, v in plan.settings.items() if k not in ("teacher", "teacher_sha256")}
    options = TrainOptions(data=data, out=str(folder), teacher=str(plan.teacher) if plan.teacher else None, **values)
    validate(options)
    result = train(options, force=True, reporter=reporter.quiet(), split=split, score_test=False,
                   time_limit_s=time_limit_s)
    m = result.metrics
    record.epochs_run, record.best_epoch = m.get("epochs_run"), m.get("best_epoch")
    record.stopped_for_time = "stopped_for_time" in m
    record.reference_val_accuracy = m.get("val_accuracy")
    record.distillation = m.get("distillation")


def _train_backbone(plan: Plan, folder: Path, data: str, split: dict, record: CandidateRecord,
                    reporter: Reporter) -> None:
    from edgecls.runtime.classify import Classifier
    from edgecls.transfer.job import TransferOptions, train_with_backbone

    s = plan.settings
    options = TransferOptions(data=data, backbone=s["backbone"], out=str(folder), head=s["head"], views=s["views"],
                              seed=s["seed"], val_fraction=s["val_fraction"], test_fraction=s["test_fraction"])
    result = train_with_backbone(options, force=True, reporter=reporter.quiet(), split=split, score_test=False)
    m = result.metrics
    record.epochs_run, record.best_epoch = m.get("epochs_run"), m.get("best_epoch")
    record.reference_val_accuracy = m.get("val_accuracy")
    images, labels = validation_images(folder)
    right = Classifier(result.model_file).probabilities(images).argmax(1) == labels
    mode = result.model_file.stem.removeprefix("model_")  # the backbone's own quantisation: uint8, int8, float32
    record.files = [_variant_file(mode, folder, result.model_file, right, mode)]


def validation_images(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The run's validation pictures at its own size, and their labels (never the test split)."""
    from edgecls.rundir import open_run

    return open_run(run_dir).images("val")


def _variant_file(variant: str, folder: Path, path: Path, right: np.ndarray, mode: Optional[str],
                  seconds: Optional[float] = None) -> VariantFile:
    from edgecls.provenance import sha256_file

    return VariantFile(variant=variant, file=str(path.relative_to(folder)), mode=mode, size_bytes=path.stat().st_size,
                       val_correct=int(right.sum()), val_images=int(len(right)),
                       val_right="".join("1" if r else "0" for r in right), sha256=sha256_file(path),
                       convert_seconds=seconds)


def export_variants(run_dir: Path, variants: list[str], reporter: Reporter) -> list[VariantFile]:
    """Each variant of the run's Keras model made (export --target's converters) and scored on validation
    with the device runtime; the built ones written to RUN/export/ with an export.json that lists them."""
    from edgecls.export.convert import saved_model
    from edgecls.export.job import validation_reference
    from edgecls.export.report import source_info
    from edgecls.export.target import Context, build_checked, candidates
    from edgecls.provenance import created_timestamp, sha256_bytes
    from edgecls.rundir import DEFAULT_CALIB_SAMPLES, open_run

    source = open_run(run_dir)
    model, images, labels, keras_predicted, keras_accuracy, output_kind = validation_reference(source,
                                                                                              "check the export on")
    sha = source.model_sha256()
    todo = [c for c in candidates(fallback=0) if c.name in variants]
    found: list[VariantFile] = []
    contents: dict[str, bytes] = {}
    entries: list[ExportEntry] = []
    with saved_model(model) as saved:
        ctx = Context(saved, model, source, DEFAULT_CALIB_SAMPLES)
        for candidate in todo:
            reporter(f"  {run_dir.name}: {candidate.name} ({candidate.what})")
            try:
                built = build_checked(ctx, candidate, output_kind, sha, (images, labels, keras_predicted,
                                                                         keras_accuracy))
            except EdgeclsError as exc:
                found.append(VariantFile(variant=candidate.name, status="failed",
                                         reason=" ".join(f"{type(exc).__name__}: {exc}".split())))
                reporter(f"  {run_dir.name}: {candidate.name} failed: {exc}")
                continue
            m = built.check
            name = model_file_name(candidate.name)
            contents[name] = built.content
            right = m.right
            found.append(VariantFile(variant=candidate.name, file=f"{EXPORT_DIR}/{name}", mode=m.mode,
                                     size_bytes=m.size_bytes, val_correct=int(right.sum()), val_images=int(len(right)),
                                     val_right="".join("1" if r else "0" for r in right), sha256=m.sha256,
                                     convert_seconds=m.seconds))
            entries.append(ExportEntry(file=name, mode=m.mode, variant=candidate.name, backend=m.backend,
                                       size_bytes=m.size_bytes, accuracy=round(m.accuracy, 6),
                                       agreement=round(m.agreement, 6), input=m.io["input"], output=m.io["output"],
                                       sha256=sha256_bytes(built.content)))
    if contents:
        index = ExportIndex(created=created_timestamp(), source=source_info(source, sha),
                            options={"search_variants": variants},
                            check={"split": "val", "images": int(len(images)),
                                   "keras_accuracy": round(keras_accuracy, 6)},
                            models=entries)
        write_export(run_dir / EXPORT_DIR, contents, source.labels, index)
    return found
