"""`edgecls export`: a run's Keras model -> self-describing .tflite files, checked on the device
side before anything is written.

    source (run dir | .keras) -> calibration (train split) -> convert each mode (edgecls.convert)
        -> embed metadata -> score every file with the device runtime on the validation split
        -> OUT/model_<mode>.tflite, OUT/labels.txt, OUT/export.json
    (--keep-float / --auto-fallback: also OUT/model_<mode>_mixed.tflite, named ops kept in float)

Nothing reaches OUT until every file converted and passed the check (or --force); each file is
written to a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edgecls import __version__
from edgecls.atomic import check_folder_writable, write_bytes_atomic, write_text_atomic
from edgecls.convert import (INTEGER_MODES, LITERT_INSTALL, LITERT_MODES, MODES, QUANTIZERS, Converted, convert,
                             saved_model)
from edgecls.errors import EdgeclsError, require_tensorflow
from edgecls.config import DEFAULT_CALIB_SAMPLES, DEFAULT_MIN_AGREEMENT
from edgecls.rundir import EXPORT_DIR, EXPORT_REPORT, Calibration, RunDir
from edgecls.runtime.labels import labels_text
from edgecls.runtime.metadata import METADATA_FORMAT, embed_metadata

EXPORT_FORMAT = "edgecls.export/1"


@dataclass
class ExportOptions:
    modes: list[str]
    quantizer: str = "converter"
    calib_samples: Optional[int] = DEFAULT_CALIB_SAMPLES
    out: Optional[Path] = None  # None: RUN_DIR/export, or MODEL-export beside a bare .keras
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    force: bool = False  # write the files even when the agreement gate fails
    # A mixed int8 variant beside each integer mode: these layers / op types / nodes kept in float,
    # plus the `auto_fallback` worst ops by the quantisation diagnosis (edgecls.diagnose).
    keep_float: list[str] = field(default_factory=list)
    auto_fallback: int = 0

    @property
    def mixed(self) -> bool:
        return bool(self.keep_float or self.auto_fallback)


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


@dataclass
class ExportResult:
    out_dir: Path
    models: list[ModelCheck]
    keras_accuracy: float
    val_images: int
    min_agreement: float
    failing: list[str]  # variants whose agreement is below min_agreement
    written: list[Path] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failing

    def advice(self) -> str:
        """What the agreement gate found and, when it stopped the export, what to try."""
        worst = min((m for m in self.models if m.variant in self.failing), key=lambda m: m.agreement)
        calib = self.report.get("calibration") or {}
        others = [variant for variant in self.failing if variant != worst.variant]
        also = f" ({', '.join(others)} too)" if others else ""
        finding = (f"{worst.variant} agrees with the float model on {worst.agreement:.2%} of {self.val_images} "
                   f"validation images{also}, below --min-agreement {self.min_agreement:.2f}")
        if self.written:
            return f"{finding} (written anyway: --force)"
        used = (self.report.get("options") or {}).get("quantizer", "converter")
        other = "converter" if used == "litert" else "litert"
        return (f"{finding}: nothing written. Try more --calib-samples (used {calib.get('samples', '?')}), "
                f"--quantizer {other}, --auto-fallback 2 (keeps the worst layers in float; edgecls bench RUN "
                "--diagnose names them), or --quant float16; or pass --force to write the files anyway")


def parse_modes(text: str, quantizer: str = "converter") -> list[str]:
    """'int8,float32' | 'all' | ... -> modes in a fixed order (float32 first). One-line errors.

    `all` means every mode the quantizer can make (ai-edge-quantizer has no uint8 I/O).
    """
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names:
        raise EdgeclsError(f"--quant is empty: use a comma list of {', '.join(MODES)}, or all")
    chosen: set[str] = set()
    for name in names:
        if name == "all":
            chosen.update(m for m in MODES if not (quantizer == "litert" and m == "uint8"))
        elif name in MODES:
            chosen.add(name)
        else:
            raise EdgeclsError(f"unknown quantisation mode {name!r}: use a comma list of {', '.join(MODES)}, or all")
    return [m for m in MODES if m in chosen]


def parse_names(values: Optional[list[str]]) -> list[str]:
    """--keep-float values, each a name or a comma list -> names, in order, without repeats."""
    names: list[str] = []
    for value in values or []:
        names += [n.strip() for n in value.split(",") if n.strip() and n.strip() not in names]
    return names


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
    if not options.modes:
        raise EdgeclsError("no quantisation mode chosen")
    unknown = [m for m in options.modes if m not in MODES]
    if unknown:
        raise EdgeclsError(f"unknown quantisation mode {unknown[0]!r}: use {', '.join(MODES)} or all")
    if options.quantizer not in QUANTIZERS:
        raise EdgeclsError(f"unknown quantizer {options.quantizer!r}: use converter or litert")
    if options.calib_samples is not None and options.calib_samples < 1:
        raise EdgeclsError(f"--calib-samples must be at least 1 (got {options.calib_samples})")
    if not 0.0 <= options.min_agreement <= 1.0:
        raise EdgeclsError(f"--min-agreement must be between 0 and 1 (got {options.min_agreement})")
    if options.quantizer == "litert" and "uint8" in options.modes:
        raise EdgeclsError("--quantizer litert makes int8 input and output only: use --quantizer converter for uint8")
    if (options.quantizer == "litert" and any(m in LITERT_MODES for m in options.modes)
            and importlib.util.find_spec("ai_edge_quantizer") is None):
        raise EdgeclsError(f"--quantizer litert needs ai-edge-quantizer, which is not installed: {LITERT_INSTALL}")
    if options.auto_fallback < 0:
        raise EdgeclsError(f"--auto-fallback must be 0 or more (got {options.auto_fallback})")
    if options.mixed and not any(m in INTEGER_MODES for m in options.modes):
        raise EdgeclsError("--keep-float and --auto-fallback make a mixed int8 model: add int8 (or uint8) to --quant")
    if options.mixed and options.quantizer != "converter":
        raise EdgeclsError("--keep-float and --auto-fallback need --quantizer converter (its denylists keep ops float)")


# ---------------------------------------------------------------------- the job
def export(source: RunDir, options: ExportOptions, log: Callable[[str], None] = print) -> ExportResult:
    """Convert, check and (if the check passes or options.force) write the files. See the module doc."""
    validate_options(options)
    out = Path(options.out) if options.out else default_out(source)
    check_output_dir(out)
    require_tensorflow("edgecls export")

    model = source.model()
    val_images, val_labels = source.images("val")
    if len(val_images) == 0:
        raise EdgeclsError(f"{source.name} has no validation images to check the export on")
    calibration = None
    if any(m in INTEGER_MODES for m in options.modes):
        calibration = source.calibration(options.calib_samples)
        counts = sorted(calibration.per_class.values())
        log(f"Calibrating on {len(calibration.images)} train-split images (per class {counts[0]}..{counts[-1]}, "
            f"seed {calibration.seed})")
        for warning in calibration.warnings:
            log(f"warning: {warning}")

    keras_probs = keras_probabilities(model, val_images)
    output_kind = "probabilities" if is_distribution(keras_probs) else "logits"
    keras_predicted = keras_probs.argmax(1)
    keras_accuracy = float(np.mean(keras_predicted == val_labels))

    mix_images = None
    if options.auto_fallback:
        from edgecls.diagnose import DEFAULT_EVAL, eval_images

        mix_images = eval_images(source, DEFAULT_EVAL)
    converted, float_model = _convert_modes(model, options, calibration, log, mix_images)
    sha = source.model_sha256()
    files = {variant: embed_metadata(result.content, build_metadata(source, result, calibration, output_kind, sha))
             for variant, (result, _) in converted.items()}
    # Sizes are compared with the float32 file as it would be written, metadata included.
    float_size = len(files["float32"]) if "float32" in files else len(
        embed_metadata(float_model.content, build_metadata(source, float_model, None, output_kind, sha)))
    checks = _check_files(files, converted, source.labels, val_images, val_labels, keras_predicted, float_size)

    failing = [c.variant for c in checks if c.mode in INTEGER_MODES and c.agreement < options.min_agreement]
    result = ExportResult(out, checks, keras_accuracy, len(val_images), options.min_agreement, failing)
    result.report = build_report(source, options, result, calibration, sha)
    if failing and not options.force:
        return result
    for variant, content in files.items():
        result.written.append(write_bytes_atomic(out / model_file_name(variant), content))
    result.written.append(write_text_atomic(out / "labels.txt", labels_text(source.labels)))
    result.written.append(write_text_atomic(out / EXPORT_REPORT, json.dumps(result.report, indent=1) + "\n"))
    return result


def _convert_modes(model, options: ExportOptions, calibration: Optional[Calibration], log: Callable[[str], None],
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
            from edgecls.diagnose import plan_mixed

            plan = plan_mixed(saved, model, calibration, options.keep_float, options.auto_fallback, mix_images, log)
        for mode in options.modes:
            if mode == "float32":
                converted[mode] = float_model
                continue
            log(f"Converting {mode} ({_backend_name(options.quantizer, mode)}) ...")
            converted[mode] = _timed(lambda: convert(saved, mode, options.quantizer, images,
                                                     float_model=float_model[0].content))
            if plan is not None and mode in INTEGER_MODES:
                log(f"Converting {mode} mixed (TFLite converter, {plan.describe()} in float) ...")
                converted[mixed_variant(mode)] = _timed(lambda: plan.quantize(mode, log))
    return converted, float_model[0]


def mixed_variant(mode: str) -> str:
    return f"{mode}_mixed"


def _check_files(files: dict[str, bytes], converted: dict[str, tuple[Converted, float]], labels: list[str],
                 images: np.ndarray, truth: np.ndarray, keras_predicted: np.ndarray, float_size: int) -> list[ModelCheck]:
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
                seconds=round(seconds, 2), io=result.io, sha256=hashlib.sha256(files[variant]).hexdigest(),
                variant=variant, kept_float=result.kept_float))
    return checks


def model_file_name(variant: str) -> str:
    return f"model_{variant}.tflite"


def _backend_name(quantizer: str, mode: str) -> str:
    return "ai-edge-quantizer" if quantizer == "litert" and mode in LITERT_MODES else "TFLite converter"


def _timed(job: Callable[[], Converted]) -> tuple[Converted, float]:
    start = time.perf_counter()
    return job(), time.perf_counter() - start


@contextlib.contextmanager
def _staged(files: dict[str, bytes], labels: list[str]):
    """The files in a private temporary folder (with labels.txt), for the check; removed after."""
    folder = Path(tempfile.mkdtemp(prefix="edgecls-export-"))
    try:
        paths = {}
        for mode, content in files.items():
            paths[mode] = folder / model_file_name(mode)
            paths[mode].write_bytes(content)
        (folder / "labels.txt").write_text(labels_text(labels), encoding="utf-8")
        yield paths
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------- scoring
def keras_probabilities(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The Keras float model's outputs on uint8 images, a batch at a time (no float copy of all)."""
    from keras import ops

    rows = [ops.convert_to_numpy(model(images[i:i + batch_size].astype(np.float32), training=False))
            for i in range(0, len(images), batch_size)]
    return np.concatenate(rows)


def device_probabilities(path: Path, images: np.ndarray) -> np.ndarray:
    """Probabilities from the device-side runtime (edgecls.runtime.Classifier) on uint8 images."""
    from edgecls.runtime.classify import Classifier

    return Classifier(path).probabilities(images)


def is_distribution(scores: np.ndarray) -> bool:
    return bool(scores.min() >= -1e-4 and np.allclose(scores.sum(1), 1.0, atol=1e-3))


# ---------------------------------------------------------------------- metadata and report
def created_timestamp() -> str:
    """UTC now, or SOURCE_DATE_EPOCH when set (the reproducible-builds convention), so that the
    same run exported twice can give byte-identical files."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (_dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch and epoch.isdigit()
              else _dt.datetime.now(_dt.timezone.utc))
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def build_metadata(source: RunDir, converted: Converted, calibration: Optional[Calibration], output_kind: str,
                   model_sha256: str) -> dict[str, Any]:
    """The JSON document embedded in each .tflite (format edgecls.model/1)."""
    return {
        "format": METADATA_FORMAT,
        "labels": list(source.labels),
        "input": {"height": source.img_size, "width": source.img_size, "color": source.color,
                  "pixel_range": [0, 255]},
        "output": output_kind,
        "quantization": {
            "mode": converted.mode,
            "backend": converted.backend,
            "io": {"input": converted.io["input"]["dtype"], "output": converted.io["output"]["dtype"]},
            "calibration": calibration.summary() if calibration is not None and converted.mode in INTEGER_MODES else None,
            # only in a mixed model: the ops that compute in float ("float_ops") and why
            **({"kept_float": converted.kept_float} if converted.mixed else {}),
        },
        "versions": versions(converted.backend),
        "source": source_info(source, model_sha256),
        "created": created_timestamp(),
    }


def source_info(source: RunDir, model_sha256: str) -> dict[str, Any]:
    # Paths as the user gave them: a model copied to a device should not carry this machine's layout.
    return {"run": str(source.run_dir) if source.run_dir else None,
            "model": str(source.model_path), "model_sha256": model_sha256, "data": source.data}


def versions(backend: str = "") -> dict[str, str]:
    import keras
    import tensorflow as tf

    found = {"edgecls": __version__, "tensorflow": tf.__version__, "keras": keras.__version__}
    if backend == "ai-edge-quantizer":
        found["ai_edge_quantizer"] = _dist_version("ai-edge-quantizer")
    return found


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_report(source: RunDir, options: ExportOptions, result: ExportResult, calibration: Optional[Calibration],
                 model_sha256: str) -> dict[str, Any]:
    """export.json: what was made, from what, and how each file scored."""
    from edgecls.runtime.interpreter import find_backend

    backend = find_backend()
    return {
        "format": EXPORT_FORMAT,
        "created": created_timestamp(),
        "source": source_info(source, model_sha256),
        "options": {"modes": options.modes, "quantizer": options.quantizer, "calib_samples": options.calib_samples,
                    "min_agreement": options.min_agreement, "force": options.force,
                    "keep_float": options.keep_float, "auto_fallback": options.auto_fallback},
        "calibration": calibration.summary() if calibration is not None else None,
        "check": {"split": "val", "images": result.val_images, "keras_accuracy": round(result.keras_accuracy, 6),
                  "interpreter": {"name": backend.name, "version": backend.version},
                  "passed": result.passed, "failing": result.failing},
        "versions": versions("ai-edge-quantizer" if options.quantizer == "litert" else ""),
        "models": [{
            "file": m.file, "mode": m.mode, "variant": m.variant or m.mode, "backend": m.backend,
            "size_bytes": m.size_bytes, **({"kept_float": m.kept_float} if m.kept_float else {}),
            "ratio_to_float32": round(m.ratio_to_float32, 4), "accuracy": round(m.accuracy, 6),
            "agreement": round(m.agreement, 6), "convert_seconds": m.seconds, "input": m.io["input"],
            "output": m.io["output"], "sha256": m.sha256,
        } for m in result.models],
    }


def render_table(result: ExportResult):
    """A rich table of the files and their check figures."""
    from rich import box
    from rich.table import Table

    by_litert = [m.mode for m in result.models if m.backend == "ai-edge-quantizer"]
    made_by = f"{', '.join(by_litert)} by ai-edge-quantizer, the rest" if by_litert else "all"
    mixed = next((m.kept_float for m in result.models if m.kept_float), None)
    kept = f" *_mixed: {', '.join(mixed.get('layers') or mixed['float_ops'])} kept in float." if mixed else ""
    table = Table(box=box.SIMPLE_HEAD, caption=f"Checked on {result.val_images} validation images; Keras float "
                  f"accuracy {result.keras_accuracy:.4f}; {made_by} by the TFLite converter. input: dtype "
                  f"scale/zero point; agree: top-1 agreement with the Keras model.{kept}")
    for column, justify in (("file", "left"), ("input", "left"), ("size", "right"),
                            ("×f32", "right"), ("accuracy", "right"), ("agree", "right")):
        table.add_column(column, justify=justify, no_wrap=True)
    for m in result.models:
        inp = m.io["input"]
        spec = inp["dtype"] if inp["scale"] is None else f"{inp['dtype']} {inp['scale']:g}/{inp['zero_point']}"
        agreement = f"{m.agreement:.4f}"
        if (m.variant or m.mode) in result.failing:
            agreement = f"[red]{agreement}[/red]"
        table.add_row(m.file, spec, _size(m.size_bytes), f"{m.ratio_to_float32:.3f}",
                      f"{m.accuracy:.4f}", agreement)
    return table


def _size(n: int) -> str:
    return f"{n / 1024:.1f}K" if n < 1 << 20 else f"{n / (1 << 20):.2f}M"
