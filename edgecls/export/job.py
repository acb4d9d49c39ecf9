"""`edgecls export`: a run's Keras model -> self-describing .tflite files, checked on the device
side before anything is written.

    source (run dir | .keras) -> calibration (train split) -> convert each mode (edgecls.export.convert)
        -> embed metadata -> score every file with the device runtime on the validation split
        -> OUT/model_<mode>.tflite, OUT/labels.txt, OUT/export.json
    (--keep-float / --auto-fallback: also OUT/model_<mode>_mixed.tflite, named ops kept in float)

Nothing reaches OUT until every file converted and passed the check (or --force); each file is
written to a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.artifacts import EXPORT_DIR, LABELS_FILE, TRANSFER_FILE, ExportIndex, model_file_name, write_export
from edgecls.atomic import check_folder_writable, folder_lock, private_tempdir
from edgecls.calibrate.job import calibrate_split
from edgecls.calibrate.job import validate as validate_open_set
from edgecls.errors import EdgeclsError, require_tensorflow
from edgecls.export.convert import Converted, convert, saved_model
from edgecls.export.modes import (
    check_modes,
    is_integer,
    made_by_litert,
)
from edgecls.export.options import ExportOptions
from edgecls.export.report import build_metadata, build_report
from edgecls.options import check
from edgecls.provenance import sha256_bytes
from edgecls.reporter import SILENT, Reporter
from edgecls.rundir import Calibration, RunDir, keras_probabilities
from edgecls.runtime.labels import labels_text
from edgecls.runtime.metadata import embed_metadata
from edgecls.runtime.quant import is_distribution
from edgecls.train.quality import assess, refuse_useless


@dataclass
class ModelCheck:
    """One exported file and how it scored on the validation split."""

    file: str
    mode: str
    backend: str
    size_bytes: int
    ratio_to_float32: float
    accuracy: float
    agreement: float  # top-1 agreement with the Keras float model
    seconds: float  # conversion time
    io: dict[str, Any]
    sha256: str
    variant: str = ""  # the mode, or "<mode>_mixed" for a mixed model (the file's model_<variant>.tflite)
    kept_float: Optional[dict[str, Any]] = None  # a mixed model: what stayed float
    open_set: Optional[dict[str, Any]] = None  # its calibration and unknown rule (calibrate.job.calibrate_split)
    # per validation image, whether its top-1 is right: two files' accuracies are compared pair by pair
    right: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @property
    def correct(self) -> int:
        """How many validation images the accuracy stands for."""
        return int(self.right.sum()) if self.right is not None else 0


@dataclass
class ExportResult:
    out_dir: Path
    models: list[ModelCheck]
    keras_accuracy: float
    val_images: int
    min_agreement: float
    failing: list[str]  # variants whose agreement is below min_agreement
    written: list[Path] = field(default_factory=list)
    report: Optional[ExportIndex] = None  # export.json

    @property
    def passed(self) -> bool:
        return not self.failing

    def advice(self) -> str:
        """What the agreement gate found and, when it stopped the export, what to try."""
        worst = min((m for m in self.models if m.variant in self.failing), key=lambda m: m.agreement)
        calib = self.report.calibration or {}
        others = [variant for variant in self.failing if variant != worst.variant]
        also = f" ({', '.join(others)} too)" if others else ""
        finding = (f"{worst.variant} agrees with the float model on {worst.agreement:.2%} of {self.val_images} "
                   f"validation images{also}, below --min-agreement {self.min_agreement:.2f}")
        if self.written:
            return f"{finding} (written anyway: --force)"
        used = (self.report.options or {}).get("quantizer", "converter")
        other = "converter" if used == "litert" else "litert"
        return (f"{finding}: nothing written. Try more --calib-samples (used {calib.get('samples', '?')}), "
                f"--quantizer {other}, --auto-fallback 2 (keeps the worst layers in float; edgecls bench RUN "
                "--diagnose names them), or --quant float16; or pass --force to write the files anyway")


    def next_command(self, source: Path, data: Optional[str] = None) -> str:
        """The bench to run next: `edgecls bench RUN_DIR` reads RUN_DIR/export, so files written
        elsewhere (or from a bare .keras file) are benched by name. A run's files name their run (bench
        finds its test split); a bare .keras file's do not, so its --data goes with them when bench scores
        a test part of it (a named dataset, a folder with test/ or t10k files), not a folder without one
        (bench would score all of it, the images the model was trained on too)."""
        import shlex

        default_out = source.is_dir() and Path(self.out_dir).resolve() == (source / EXPORT_DIR).resolve()
        words = [shlex.quote(str(source))] if default_out else [
            shlex.quote(str(p)) for p in self.written if p.suffix == ".tflite"]
        if not source.is_dir() and data:
            from edgecls.data import has_test_part

            if Path(data).is_dir() and not has_test_part(Path(data)):
                return " ".join(["edgecls bench", *words, "--data TEST-FOLDER  # images the model did not train on"])
            words += ["--data", shlex.quote(data)]
        return " ".join(["edgecls bench", *words])


def default_out(source: RunDir) -> Path:
    if source.run_dir is not None:
        return source.run_dir / EXPORT_DIR
    return source.model_path.with_name(f"{source.model_path.stem}-export")


def check_output_dir(out: Path) -> None:
    """Fail now, before any work, if `out` cannot be created and written. Leaves nothing behind."""
    if out.exists() and not out.is_dir():
        raise EdgeclsError(f"--out {out} is a file, not a folder")
    check_folder_writable("--out", out, out)


def validate_options(options: ExportOptions) -> None:
    """Each option's bounds and choices (edgecls.options.check), then the rules between modes, quantizer and a
    mixed model (export.modes)."""
    check(options)
    check_modes(options.modes, options.quantizer, options.mixed)
    validate_open_set(options.open_set)
    if options.unknown_data is not None and not Path(options.unknown_data).is_dir():
        raise EdgeclsError(f"--unknown-data {options.unknown_data} is not a folder")


def refuse_backbone_run(source: RunDir) -> None:
    """A run trained on a .tflite backbone (edgecls.transfer) has no Keras model to convert: its .tflite
    was written by train itself. Said before TensorFlow loads, with where the model is."""
    run = source.run_dir
    if run is None or source.model_path.is_file() or not (run / TRANSFER_FILE).is_file():
        return
    files = sorted(p.name for p in (run / EXPORT_DIR).glob("*.tflite"))
    where = f"{run / EXPORT_DIR}/{files[0] if len(files) == 1 else ''}" if files else f"{run / EXPORT_DIR}/"
    raise EdgeclsError(f"{run} was trained on a .tflite backbone: its model is already in {EXPORT_DIR}/ ({where}; "
                       f"train --backbone writes it, there is no model.keras to export); next: edgecls bench {run}")


# ---------------------------------------------------------------------- the job
def export(source: RunDir, options: ExportOptions, reporter: Reporter = SILENT) -> ExportResult:
    """Convert, check and (if the check passes or options.force) write the files. See the module doc."""
    validate_options(options)
    refuse_backbone_run(source)
    out = Path(options.out) if options.out else default_out(source)
    check_output_dir(out)
    with folder_lock(out, "an export"):  # a second export of this run at once is refused, not interleaved
        return _export(source, options, out, reporter)


def _export(source: RunDir, options: ExportOptions, out: Path, reporter: Reporter) -> ExportResult:
    # The run's own verdict first (no TensorFlow needed); a bare .keras file is judged below.
    refuse_useless(source.training_metrics(), options.force, source.name, reporter)
    require_tensorflow("edgecls export")

    model, val_images, val_labels, keras_predicted, keras_accuracy, output_kind = validation_reference(
        source, "check the export on")
    calibration = None
    if any(is_integer(m) for m in options.modes):
        calibration = source.calibration(options.calib_samples)
        counts = sorted(calibration.per_class.values())
        reporter(f"Calibrating on {len(calibration.images)} train-split images (per class {counts[0]}..{counts[-1]}, "
            f"seed {calibration.seed})")
        for warning in calibration.warnings:
            reporter(f"warning: {warning}")

    if source.run_dir is None:  # a bare .keras file has no training verdict: judge it on validation
        refuse_useless(assess(keras_predicted, val_labels, source.labels), options.force, source.name, reporter)

    mix_images = None
    if options.auto_fallback:
        from edgecls.export.diagnose import DEFAULT_EVAL, eval_images

        mix_images = eval_images(source, DEFAULT_EVAL)
    converted, float_model = _convert_modes(model, options, calibration, reporter, mix_images)
    sha = source.model_sha256()
    files = {variant: embed_metadata(result.content, build_metadata(source, result, calibration, output_kind, sha))
             for variant, (result, _) in converted.items()}
    files, open_set = _calibrated(files, source, options, reporter)
    # Sizes are compared with the float32 file as it would be written, metadata included.
    float_size = len(files["float32"]) if "float32" in files else len(
        embed_metadata(float_model.content, build_metadata(source, float_model, None, output_kind, sha)))
    checks = check_files(files, converted, source.labels, val_images, val_labels, keras_predicted, float_size)
    for scored in checks:
        scored.open_set = open_set.get(scored.variant)

    failing = [c.variant for c in checks if is_integer(c.mode) and c.agreement < options.min_agreement]
    result = ExportResult(out, checks, keras_accuracy, len(val_images), options.min_agreement, failing)
    result.report = build_report(source, options, result, calibration, sha)
    if failing and not options.force:
        return result
    named = {model_file_name(variant): content for variant, content in files.items()}
    result.written += write_export(out, named, source.labels, result.report)
    return result


def _calibrated(files: dict[str, bytes], source: RunDir, options: ExportOptions, reporter: Reporter
                ) -> tuple[dict[str, bytes], dict[str, dict]]:
    """Each file with its temperature and unknown rule (edgecls.calibrate), and each one's report."""
    dataset, split = source.dataset(), source.split()
    negatives = source.negatives()  # a retrained run's unknown/ images (train --from RUN --add)
    if negatives is not None:
        reporter(f"{len(negatives)} images of the unknown/ folders this run added are negatives for the unknown rule"
                 + (f", with --unknown-data {options.unknown_data}" if options.unknown_data else ""))
    calibrated, reports = {}, {}
    for variant, content in files.items():
        calibrated[variant], reports[variant] = calibrate_split(
            content, dataset.images, dataset.labels, split, options.open_set, options.unknown_data,
            model_file_name(variant), reporter, negatives)
    return calibrated, reports


def validation_reference(source: RunDir, purpose: str) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, float, str]:
    """(Keras model, validation images, labels, the Keras model's predictions, its accuracy, and
    whether it outputs probabilities or logits): what every exported file is checked against."""
    model = source.model()
    images, labels = source.images("val")
    if len(images) == 0:
        raise EdgeclsError(f"{source.name} has no validation images to {purpose}")
    probabilities = keras_probabilities(model, images)
    predicted = probabilities.argmax(1)
    kind = "probabilities" if is_distribution(probabilities) else "logits"
    return model, images, labels, predicted, float(np.mean(predicted == labels)), kind


def _convert_modes(model, options: ExportOptions, calibration: Optional[Calibration], reporter: Reporter,
                   mix_images: Optional[np.ndarray] = None) -> tuple[dict[str, tuple[Converted, float]], Converted]:
    """{variant: (converted, seconds)} for the requested modes (and, with options.mixed, a
    "<mode>_mixed" variant after each integer mode), and the float32 model (always made: it is
    ai-edge-quantizer's input and the size reference)."""
    converted: dict[str, tuple[Converted, float]] = {}
    images = calibration.images if calibration is not None else None
    with saved_model(model) as saved:
        float_model = _timed(lambda: convert(saved, "float32"))
        plan = None
        if options.mixed:
            from edgecls.export.diagnose import plan_mixed

            plan = plan_mixed(saved, model, calibration, options.keep_float, options.auto_fallback, mix_images,
                              reporter)
        for mode in options.modes:
            if mode == "float32":
                converted[mode] = float_model
                continue
            reporter(f"Converting {mode} ({_backend_name(options.quantizer, mode)}) ...")
            converted[mode] = _timed(lambda: convert(saved, mode, options.quantizer, images,  # noqa: B023 (run at once)
                                                     float_model=float_model[0].content))
            if plan is not None and is_integer(mode):
                reporter(f"Converting {mode} mixed (TFLite converter, {plan.describe()} in float) ...")
                converted[mixed_variant(mode)] = _timed(lambda: plan.quantize(mode, reporter))  # noqa: B023 (run at once)
    return converted, float_model[0]


def mixed_variant(mode: str) -> str:
    return f"{mode}_mixed"


def check_files(
    files: dict[str, bytes],
    converted: dict[str, tuple[Converted, float]],
    labels: list[str],
    images: np.ndarray,
    truth: np.ndarray,
    keras_predicted: np.ndarray,
    float_size: int,
) -> list[ModelCheck]:
    """Score each file with the device runtime, as it will be written (from a private temp folder)."""
    checks = []
    with _staged(files, labels) as staged:
        for variant, path in staged.items():
            result, seconds = converted[variant]
            predicted = device_probabilities(path, images).argmax(1)
            checks.append(ModelCheck(
                file=path.name, mode=result.mode, backend=result.backend, size_bytes=len(files[variant]),
                ratio_to_float32=len(files[variant]) / float_size,
                accuracy=float(np.mean(predicted == truth)),
                agreement=float(np.mean(predicted == keras_predicted)),
                seconds=round(seconds, 2), io=result.io, sha256=sha256_bytes(files[variant]),
                variant=variant, kept_float=result.kept_float, right=predicted == truth))
    return checks


def _backend_name(quantizer: str, mode: str) -> str:
    return "ai-edge-quantizer" if made_by_litert(mode, quantizer) else "TFLite converter"


def _timed(job: Callable[[], Converted]) -> tuple[Converted, float]:
    start = time.perf_counter()
    return job(), time.perf_counter() - start


@contextlib.contextmanager
def _staged(files: dict[str, bytes], labels: list[str]):
    """The files in a private temporary folder (with labels.txt), for the check; removed after."""
    with private_tempdir("edgecls-export") as folder:  # a killed export's leftovers go with the next run
        paths = {}
        for mode, content in files.items():
            paths[mode] = folder / model_file_name(mode)
            paths[mode].write_bytes(content)
        (folder / LABELS_FILE).write_text(labels_text(labels), encoding="utf-8")
        yield paths


# ---------------------------------------------------------------------- scoring
def device_probabilities(path: Path, images: np.ndarray) -> np.ndarray:
    """Probabilities from the device-side runtime (edgecls.runtime.Classifier) on uint8 images."""
    from edgecls.runtime.classify import Classifier

    return Classifier(path).probabilities(images)
