"""What `edgecls export` records — the metadata embedded in each .tflite (runtime.metadata.ModelMetadata)
and export.json (artifacts.ExportIndex) — and the table it prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from edgecls.artifacts import ExportEntry, ExportIndex
from edgecls.export.convert import Converted
from edgecls.export.modes import is_integer
from edgecls.provenance import created_timestamp, training_versions
from edgecls.rundir import Calibration, RunDir
from edgecls.runtime.metadata import ModelInput, ModelMetadata, ModelSource, Quantization
from edgecls.runtime.metrics import accuracy_text
from edgecls.runtime.preprocess import DEFAULT_FIT, DEFAULT_RESIZE

if TYPE_CHECKING:
    from edgecls.export.job import ExportOptions, ExportResult


def build_metadata(source: RunDir, converted: Converted, calibration: Optional[Calibration], output_kind: str,
                   model_sha256: str) -> ModelMetadata:
    """The document embedded in each .tflite (format edgecls.model/1)."""
    return ModelMetadata(
        labels=list(source.labels),
        input=ModelInput(height=source.img_size, width=source.img_size, color=source.color,
                         # training decoded every picture so (data.py uses load_image's defaults): the runtime
                         # does the same
                         pixel_range=[0, 255], resize=DEFAULT_RESIZE, fit=DEFAULT_FIT),
        output=output_kind,
        quantization=Quantization(
            mode=converted.mode, backend=converted.backend,
            io={"input": converted.io["input"]["dtype"], "output": converted.io["output"]["dtype"]},
            calibration=calibration.summary() if calibration is not None and is_integer(converted.mode) else None,
            # only in a mixed model: the ops that compute in float ("float_ops") and why
            kept_float=converted.kept_float if converted.mixed else None),
        versions=training_versions(converted.backend),
        source=source_info(source, model_sha256),
        created=created_timestamp(),
    )


def source_info(source: RunDir, model_sha256: str) -> ModelSource:
    # Paths as the user gave them: a model copied to a device should not carry this machine's layout.
    return ModelSource(run=str(source.run_dir) if source.run_dir else None, model=str(source.model_path),
                       model_sha256=model_sha256, data=source.data)


def build_report(source: RunDir, options: ExportOptions, result: ExportResult, calibration: Optional[Calibration],
                 model_sha256: str) -> ExportIndex:
    """export.json: what was made, from what, and how each file scored."""
    from edgecls.runtime.interpreter import find_backend

    backend = find_backend()
    return ExportIndex(
        created=created_timestamp(),
        source=source_info(source, model_sha256),
        options={"modes": options.modes, "quantizer": options.quantizer, "calib_samples": options.calib_samples,
                 "min_agreement": options.min_agreement, "force": options.force,
                 "keep_float": options.keep_float, "auto_fallback": options.auto_fallback},
        calibration=calibration.summary() if calibration is not None else None,
        check={"split": "val", "images": result.val_images, "keras_accuracy": round(result.keras_accuracy, 6),
               "interpreter": {"name": backend.name, "version": backend.version},
               "passed": result.passed, "failing": result.failing},
        versions=training_versions("ai-edge-quantizer" if options.quantizer == "litert" else ""),
        models=[ExportEntry(
            file=m.file, mode=m.mode, variant=m.variant or m.mode, backend=m.backend,
            size_bytes=m.size_bytes, kept_float=m.kept_float or None,
            ratio_to_float32=round(m.ratio_to_float32, 4), accuracy=round(m.accuracy, 6),
            agreement=round(m.agreement, 6), convert_seconds=m.seconds, input=m.io["input"],
            output=m.io["output"], sha256=m.sha256, openset=m.open_set,
        ) for m in result.models],
    )


def render_export_table(result: ExportResult):
    """A rich table of the files and their check figures, every column explained under it."""
    from edgecls.console import markup_cell
    from edgecls.tables import data_table

    by_litert = [m.mode for m in result.models if m.backend == "ai-edge-quantizer"]
    made_by = f"{', '.join(by_litert)} by ai-edge-quantizer, the rest" if by_litert else "all"
    mixed = next((m.kept_float for m in result.models if m.kept_float), None)
    kept = f" *_mixed: {', '.join(mixed.get('layers') or mixed['float_ops'])} kept in float." if mixed else ""
    keras_correct = int(round(result.keras_accuracy * result.val_images))
    caption = (f"Checked on {result.val_images} validation images; Keras float accuracy "
               f"{accuracy_text(keras_correct, result.val_images)}; {made_by} by the TFLite converter. input: dtype "
               "scale/zero point; size: of the file, metadata included; ×f32: that size over float32's; accuracy: "
               "top-1 on the validation split (correct: how many); agree: top-1 agreement with the Keras model."
               f"{kept}")
    rows = []
    for m in result.models:
        inp = m.io["input"]
        spec = inp["dtype"] if inp["scale"] is None else f"{inp['dtype']} {inp['scale']:g}/{inp['zero_point']}"
        agreement = f"{m.agreement:.4f}"
        if (m.variant or m.mode) in result.failing:
            agreement = f"[red]{agreement}[/red]"
        rows.append([markup_cell(m.file), spec, _size(m.size_bytes), f"{m.ratio_to_float32:.3f}", f"{m.accuracy:.4f}",
                     f"{m.correct}/{result.val_images}" if m.right is not None else "-", agreement])
    table = data_table(("file", "input", "size", "×f32", "accuracy", "correct", "agree"), rows,
                       names=("file", "input"), caption=markup_cell(caption))
    return table


def _size(n: int) -> str:
    return f"{n / 1024:.1f}K" if n < 1 << 20 else f"{n / (1 << 20):.2f}M"
