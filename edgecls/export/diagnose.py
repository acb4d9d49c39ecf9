"""Quantisation diagnosis: which ops int8 hurts most, and mixed int8 models that keep them in float.

    diagnosis = diagnose(open_source("runs/digits-seed"))     # TensorFlow's QuantizationDebugger
    diagnosis.worst(3)                                          # ranked by RMSE / scale
    Console().print(render_diagnosis(diagnosis))

The model is calibrated exactly as `edgecls export` calibrates it (edgecls.export.convert.tf_converter,
train-split images), and the debugger runs the quantised ops beside their float twins on
validation images. Each row is one quantised op with the Keras layer(s) it comes from.

Its key figure is RMSE / scale: the error of an op's int8 output against the float op on the
same (quantised) input, in quantisation steps. Rounding alone gives about 1/sqrt(12) = 0.29;
an op far above that loses information, and keeping it in float (`edgecls export --keep-float`,
`--auto-fallback K`) is what this module's `plan_mixed` prepares.
"""

from __future__ import annotations

import csv
import io
import math
import re
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.data import stratified_sample
from edgecls.errors import EdgeclsError, require_tensorflow
from edgecls.export.convert import (
    ConversionError,
    Converted,
    _plain_interpreter,
    calibrate_tf,
    quantize_mixed,
    saved_model,
    tf_converter,
)
from edgecls.native_stderr import native_stderr_silenced
from edgecls.reporter import SILENT, Reporter
from edgecls.rundir import DEFAULT_CALIB_SAMPLES, Calibration, RunDir

DIAGNOSIS_FORMAT = "edgecls.diagnosis/1"
DEFAULT_EVAL = 100
ROUNDING_ONLY = 1 / math.sqrt(12)  # RMSE / scale of a uniform rounding error: a healthy op's level
_KERAS_SUFFIX = re.compile(r"_\d+$")  # SavedModel export names layer `conv1`'s scope `conv1_1`


@dataclass(frozen=True)
class GraphOp:
    """One op of the calibrated (still float) model that the quantiser turns into an integer op."""

    node: str  # its output tensor's name: the key of the converter's denylisted_nodes
    op: str  # builtin op name, e.g. CONV_2D
    layers: tuple[str, ...]  # the Keras layer(s) it was made from (fused ops have several), model order


@dataclass
class LayerStat:
    """The debugger's figures for one quantised op, averaged over the evaluation images."""

    rank: int
    op: str
    layers: list[str]
    rmse_scale: float  # RMSE / scale: error in quantisation steps (ranking key)
    rmse: float
    mean_error: float  # bias: mean of (int8 - float)
    max_abs_error: float
    stddev: float
    scale: float
    zero_point: int
    range: float  # 255 * scale: the float span the int8 tensor covers
    elements: int  # values in the op's output per image
    node: str

    @property
    def label(self) -> str:
        """The Keras layer(s), or the op's tensor name when no layer is recognisable."""
        return "+".join(self.layers) if self.layers else self.node.split(";")[0]


@dataclass
class Diagnosis:
    source: str
    layers: list[LayerStat]  # ranked, worst (highest RMSE / scale) first
    calibration: dict[str, Any]
    eval_split: str
    eval_images: int
    model: dict[str, float]  # whole model, float vs quantised, on the evaluation images
    seconds: float
    graph: list[GraphOp] = field(default_factory=list, repr=False)
    calibrated: Optional[bytes] = field(default=None, repr=False)  # to quantise a mixed model without recalibrating

    def worst(self, k: int) -> list[LayerStat]:
        return self.layers[:max(0, k)]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": DIAGNOSIS_FORMAT, "source": self.source, "metric": "rmse/scale",
            "rounding_only": round(ROUNDING_ONLY, 4), "calibration": self.calibration,
            "eval": {"split": self.eval_split, "images": self.eval_images},
            "model": {k: round(v, 6) for k, v in self.model.items()}, "seconds": round(self.seconds, 2),
            "layers": [{**asdict(row), "label": row.label} for row in self.layers],
        }


# ---------------------------------------------------------------------- diagnosis
def diagnose(source: RunDir, calib_samples: Optional[int] = DEFAULT_CALIB_SAMPLES,  # as export calibrates
             eval_samples: int = DEFAULT_EVAL) -> Diagnosis:
    """Run TensorFlow's QuantizationDebugger on the run's model: `calib_samples` train-split images
    calibrate it as export does, `eval_samples` validation images measure each op."""
    require_tensorflow("quantisation diagnosis")
    model = source.model()
    calibration = source.calibration(calib_samples)
    images = eval_images(source, eval_samples)
    with saved_model(model) as saved:
        return diagnose_saved(saved, model, calibration, images, source.name)


def eval_images(source: RunDir, samples: int) -> np.ndarray:
    """Up to `samples` validation images, stratified by class and seeded (never calibration images)."""
    if samples < 1:
        raise EdgeclsError(f"the diagnosis needs at least 1 evaluation image (got {samples})")
    images, labels = source.images("val")
    if len(images) == 0:
        raise EdgeclsError(f"{source.name} has no validation images to run the diagnosis on")
    return images[stratified_sample(labels, samples, source.seed)]


def diagnose_saved(saved: Path, model, calibration: Calibration, images: np.ndarray, name: str = "") -> Diagnosis:
    """The diagnosis of a model already exported to a SavedModel (export's auto-fallback uses this)."""
    import tensorflow as tf

    started = time.perf_counter()
    converter = tf_converter(saved, "int8", calibration.images)
    # The debugger's own models take and give float; quantised internals do not depend on it.
    converter.inference_input_type = converter.inference_output_type = tf.float32
    pixels = images.astype(np.float32)
    options = tf.lite.experimental.QuantizationDebugOptions(model_debug_metrics={
        "top1_agreement": lambda f, q: float(np.argmax(f[0]) == np.argmax(q[0])),
        "mean_abs_output_error": lambda f, q: float(np.mean(np.abs(f[0] - q[0]))),
    })
    try:
        with native_stderr_silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=lambda: ([pixels[i:i + 1]] for i in range(len(pixels))),
                debug_options=options)
            debugger.run()
            dump = io.StringIO()
            debugger.layer_statistics_dump(dump)  # the public form of its per-op results
    except (KeyboardInterrupt, MemoryError):
        raise
    except EdgeclsError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise ConversionError(f"TensorFlow's QuantizationDebugger failed: {type(exc).__name__}: {text}") from None
    calibrated = bytes(debugger.calibrated_model)
    graph = graph_ops(calibrated, model)
    return Diagnosis(
        source=name, layers=_rank(dump.getvalue(), graph), calibration=calibration.summary(), eval_split="val",
        eval_images=len(images), model={k: float(v) for k, v in (debugger.model_statistics or {}).items()},
        seconds=time.perf_counter() - started, graph=graph, calibrated=calibrated)


def _rank(dump: str, graph: list[GraphOp]) -> list[LayerStat]:
    layers_of = {op.node: op.layers for op in graph}
    rows = []
    for row in csv.DictReader(io.StringIO(dump)):
        scale, mse = float(row["scale"]), float(row["mean_squared_error"])
        rmse = math.sqrt(max(mse, 0.0))
        rows.append(LayerStat(
            rank=0, op=row["op_name"], layers=list(layers_of.get(row["tensor_name"], ())),
            rmse_scale=rmse / scale if scale > 0 else float("inf"), rmse=rmse, mean_error=float(row["mean_error"]),
            max_abs_error=float(row["max_abs_error"]), stddev=float(row["stddev"]), scale=scale,
            zero_point=int(float(row["zero_point"])), range=255 * scale, elements=int(float(row["num_elements"])),
            node=row["tensor_name"]))
    rows.sort(key=lambda r: -r.rmse_scale)
    for i, row in enumerate(rows, start=1):
        row.rank = i
    return rows


def graph_ops(calibrated: bytes, model) -> list[GraphOp]:
    """The ops of a calibrated model that compute in float (what the quantiser quantises), with
    the Keras layers their tensor names come from. The model's output op belongs to its output layer."""
    names = [layer.name for layer in model.layers]
    history = getattr(model.outputs[0], "_keras_history", None)
    output_layer = history.operation.name if history is not None else names[-1]
    interpreter = _plain_interpreter(calibrated)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    outputs = {d["index"] for d in interpreter.get_output_details()}
    found = []
    for op in interpreter._get_ops_details():
        produced = [int(i) for i in op["outputs"] if int(i) in tensors]
        if len(produced) != 1 or tensors[produced[0]]["dtype"] != np.float32:
            continue  # shape arithmetic (int32) is not quantised
        node = tensors[produced[0]]["name"]
        layers = keras_layers(node, names) or ((output_layer,) if produced[0] in outputs else ())
        found.append(GraphOp(node, op["op_name"], layers))
    return found


def keras_layers(node: str, layer_names: Sequence[str]) -> tuple[str, ...]:
    """The Keras layers named in a converted tensor name ('seed_cnn_1/conv1_1/Relu;...'), model order."""
    present = set()
    for part in node.split(";"):
        for scope in part.split("/"):
            for candidate in (_KERAS_SUFFIX.sub("", scope), scope):
                if candidate in layer_names:
                    present.add(candidate)
                    break
    return tuple(name for name in layer_names if name in present)


# ---------------------------------------------------------------------- mixed models
@dataclass
class MixedPlan:
    """What to keep in float, resolved against the calibrated model, ready to quantise per mode."""

    calibrated: bytes
    nodes: list[str]
    op_types: list[str]
    requested: list[str]
    auto_fallback: int
    chosen: list[GraphOp]  # the ops named by nodes or op types
    diagnosis: Optional[Diagnosis] = None

    def quantize(self, mode: str, reporter: Reporter = SILENT) -> Converted:
        """The mixed `mode` model; what stayed float (and what was asked) is in its kept_float."""
        converted = quantize_mixed(self.calibrated, mode, self.nodes, self.op_types)
        # The quantiser may keep a named op integer (pooling stays at its input's scale): compare
        # op types, as the converted tensors' names are not the calibrated ones.
        float_types = Counter(text.split(" ", 1)[0] for text in converted.kept_float["float_ops"])
        stayed = []
        for op in self.chosen:
            if float_types[op.op] > 0:
                float_types[op.op] -= 1
            else:
                stayed.append(op)
        if len(stayed) == len(self.chosen):
            raise ConversionError(
                f"nothing could be kept in float: the TFLite quantiser left {_describe(stayed)} in integer "
                "(it keeps value-moving ops such as pooling at their input's scale); name a layer with weights")
        if stayed:
            reporter(f"warning: the TFLite quantiser left {_describe(stayed)} in integer")
        converted.kept_float.update(self.record())
        converted.kept_float["layers"] = sorted({name for op in self.chosen if op not in stayed for name in op.layers})
        return converted

    def record(self) -> dict[str, Any]:
        """What the metadata and export.json say about the choice (float_ops says what really is float)."""
        doc: dict[str, Any] = {
            "requested": self.requested, "auto_fallback": self.auto_fallback,
            "layers": sorted({name for op in self.chosen for name in op.layers}),
            "op_types": self.op_types, "nodes": self.nodes,
        }
        if self.diagnosis is not None and self.auto_fallback:
            doc["worst"] = [{"label": r.label, "op": r.op, "rmse_scale": round(r.rmse_scale, 4)}
                            for r in self.diagnosis.worst(self.auto_fallback)]
        return doc

    def describe(self) -> str:
        return _describe(self.chosen)


def plan_mixed(saved: Path, model, calibration: Calibration, keep: Sequence[str] = (), auto_fallback: int = 0,
               images: Optional[np.ndarray] = None, reporter: Reporter = SILENT) -> MixedPlan:
    """Calibrate (and, for auto_fallback, diagnose on `images`) and resolve `keep`: Keras layer
    names, op types (FULLY_CONNECTED) or node names. One-line EdgeclsError for a name that is none."""
    if auto_fallback < 0:
        raise EdgeclsError(f"--auto-fallback must be 0 or more (got {auto_fallback})")
    diagnosis = None
    if auto_fallback:
        if images is None:
            raise ValueError("auto_fallback needs evaluation images")
        diagnosis = diagnose_saved(saved, model, calibration, images)
        calibrated, graph = diagnosis.calibrated, diagnosis.graph
        if auto_fallback > len(diagnosis.layers):
            raise EdgeclsError(f"--auto-fallback {auto_fallback}: the model has only {len(diagnosis.layers)} "
                               "quantised ops")
    else:
        calibrated = calibrate_tf(saved, "int8", calibration.images)
        graph = graph_ops(calibrated, model)
    nodes, op_types = resolve_keep_float(keep, graph)
    if diagnosis is not None:
        worst = diagnosis.worst(auto_fallback)
        reporter(f"Diagnosis: the {auto_fallback} worst op(s) by RMSE/scale: "
            + ", ".join(f"{r.label} ({r.op}, {r.rmse_scale:.2f})" for r in worst))
        nodes += [r.node for r in worst if r.node not in nodes]
    plan = _plan(calibrated, graph, nodes, op_types, list(keep), auto_fallback, diagnosis)
    reporter(f"Keeping in float: {plan.describe()}")
    return plan


def fallback_plan(diagnosis: Diagnosis, k: int) -> MixedPlan:
    """The plan keeping the `k` worst ops of an existing diagnosis in float (no new calibration or
    diagnosis: `edgecls export --target` tries k = 1, 2, ... from one diagnosis)."""
    if not 1 <= k <= len(diagnosis.layers):
        raise EdgeclsError(f"fallback of {k} op(s): the model has {len(diagnosis.layers)} quantised ops")
    nodes = [r.node for r in diagnosis.worst(k)]
    return _plan(diagnosis.calibrated, diagnosis.graph, nodes, [], [], k, diagnosis)


def _plan(calibrated: bytes, graph: list[GraphOp], nodes: list[str], op_types: list[str], requested: list[str],
          auto_fallback: int, diagnosis: Optional[Diagnosis]) -> MixedPlan:
    chosen = [op for op in graph if op.node in nodes or op.op in op_types]
    return MixedPlan(calibrated, nodes, op_types, requested, auto_fallback, chosen, diagnosis)


def resolve_keep_float(names: Sequence[str], graph: list[GraphOp]) -> tuple[list[str], list[str]]:
    """(nodes, op types) for --keep-float names. A name is a Keras layer (every op made from it),
    an op type in any case (CONV_2D), or an exact node name."""
    nodes: list[str] = []
    op_types: list[str] = []
    layers = list(dict.fromkeys(name for op in graph for name in op.layers))  # model order
    types = sorted({op.op for op in graph})
    for name in names:
        if any(name in op.layers for op in graph):
            nodes += [op.node for op in graph if name in op.layers and op.node not in nodes]
        elif name.upper() in types:
            if name.upper() not in op_types:
                op_types.append(name.upper())
        elif any(name == op.node for op in graph):
            if name not in nodes:
                nodes.append(name)
        else:
            raise EdgeclsError(f"--keep-float {name!r} is not a layer or op of this model: use a Keras layer "
                               f"({', '.join(layers) or 'none recognised'}) or an op type ({', '.join(types)})")
    return nodes, op_types


def _describe(ops: Sequence[GraphOp]) -> str:
    return ", ".join(f"{'+'.join(op.layers) or op.node.split(';')[0]} ({op.op})" for op in ops) or "nothing"


# ---------------------------------------------------------------------- report
COLUMNS = ("#", "layer", "op", "rmse/scale", "rmse", "bias", "max|err|", "range")
_TEXT_COLUMNS = ("layer", "op")


def diagnosis_rows(diagnosis: Diagnosis, top: Optional[int] = None) -> list[list[str]]:
    """The ranked ops (all, or the `top` worst) as text cells under COLUMNS: the terminal table's
    rows, and what a bench report section takes."""
    return [[str(r.rank), r.label, r.op, f"{r.rmse_scale:.3f}", f"{r.rmse:.2g}", f"{r.mean_error:+.1g}",
             f"{r.max_abs_error:.2g}", f"{r.range:.3g}"] for r in diagnosis.layers[:top]]


def diagnosis_notes(diagnosis: Diagnosis) -> list[str]:
    """What the figures are, and the whole model's agreement: the table's caption, sentence by sentence."""
    notes = [f"int8 ops against their float twins on {diagnosis.eval_images} {diagnosis.eval_split} images "
             f"(TensorFlow's QuantizationDebugger; calibration {diagnosis.calibration.get('samples')} train images).",
             f"#: rank, worst first; layer and op: where it is; rmse/scale: error in quantisation steps, about "
             f"{ROUNDING_ONLY:.2f} from rounding alone; rmse: the error in float units; bias: mean error; "
             "max|err|: the largest; range: the float span of the int8 output."]
    if diagnosis.model:
        notes.append(f"Whole model: top-1 agreement {diagnosis.model.get('top1_agreement', float('nan')):.4f}, "
                     f"mean |Δ output| {diagnosis.model.get('mean_abs_output_error', float('nan')):.5f}.")
    return notes


def fix_advice(diagnosis: Diagnosis, run_dir: Any) -> str:
    """The next step: which layers to keep in float, or (int8 gives the float model's top-1 on every evaluation
    image) that the model needs no fix."""
    agreement = diagnosis.model.get("top1_agreement")
    if agreement is not None and agreement >= 1.0:
        return (f"No fix needed: int8 gives the float model's top-1 on all {diagnosis.eval_images} "
                f"{diagnosis.eval_split} images; keeping ops in float would only cost latency.")
    # --keep-float takes Keras layer names: the worst ops' layers, each once
    worst = list(dict.fromkeys(layer for row in diagnosis.worst(3) for layer in row.layers))[:2] or \
        [row.op for row in diagnosis.worst(1)]
    return (f"To keep the worst in float: edgecls export {run_dir} --keep-float {','.join(worst)} "
            "(or --auto-fallback 2), then bench again to see the accuracy recovered and the latency it costs.")


def render_diagnosis(diagnosis: Diagnosis, top: Optional[int] = None):
    """A table of the ranked ops (all, or the `top` worst) for the terminal (tables.data_table: names
    whole); far-above-rounding errors in red."""
    from edgecls.tables import data_table

    rows = []
    for row, cells in zip(diagnosis.layers, diagnosis_rows(diagnosis, top)):
        if row.rmse_scale > 2 * ROUNDING_ONLY:
            cells[3] = f"[red]{cells[3]}[/red]"
        rows.append(cells)
    return data_table(COLUMNS, rows, names=_TEXT_COLUMNS, caption=" ".join(diagnosis_notes(diagnosis)))
