"""A .tflite image classifier's file, checked: its bytes, its one image input (InputSpec),
its one score output (probabilities or logits) and its class labels.

No interpreter is created here; runtime.classify and runtime.inspect pass theirs in.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecls.files import read_capped
from edgecls.runtime.labels import read_labels
from edgecls.runtime.metadata import MAX_INPUT_SIDE, ModelFileError, check_range, check_tflite_bytes
from edgecls.runtime.preprocess import DEFAULT_FIT, DEFAULT_RESIZE, FITS, RESIZE_METHODS, check_preprocessing
from edgecls.text import clean_text

LABELS_FILE = "labels.txt"  # looked for beside the model
_TENSOR_DTYPES = (np.float32, np.uint8, np.int8)  # what a classifier's input and output may be
_PASS_THROUGH = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE"}  # ops that keep a tensor's meaning


@dataclass(frozen=True)
class InputSpec:
    """What the model takes: one uint8 picture of height x width x channels, fed as `dtype`."""

    height: int
    width: int
    channels: int
    dtype: type  # np.float32, np.uint8 or np.int8
    scale: float  # 0.0 for a float input
    zero_point: int
    pixel_range: tuple[float, float]  # the input value that pixel 0 and pixel 255 become
    resize: str = DEFAULT_RESIZE  # how a picture is brought to height x width (preprocess.RESIZE_METHODS)
    fit: str = DEFAULT_FIT  # "stretch" the whole picture, or "crop" its centre to the model's aspect ratio

    @property
    def color(self) -> str:
        return "grayscale" if self.channels == 1 else "rgb"

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


# What `edgecls export` writes into a run directory, best first (rundir's EXPORT_DIR and MODEL_FILE:
# the runtime does not import the workstation's rundir module).
EXPORTED = ("export/model_int8.tflite", "export/model_float32.tflite")
RUN_MODEL = "model.keras"
MAX_MODEL_BYTES = 2 << 30  # a flatbuffer cannot be larger (32-bit offsets)


def read_model_bytes(path: Path) -> bytes:
    try:
        data = read_capped(path, MAX_MODEL_BYTES)
    except FileNotFoundError:
        raise ModelFileError(f"no such model file: {path}") from None
    except IsADirectoryError:  # a run directory, most often: name the .tflite inside it
        raise ModelFileError(f"{path} is a folder, not a .tflite model{_tflite_hint(path)}") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() in (".keras", ".h5"):
        raise ModelFileError(f"{path} is a Keras model, not a .tflite one{_tflite_hint(path.parent)}")
    check_tflite_bytes(data, path.name)
    return data


def _tflite_hint(run_dir: Path) -> str:
    """Where the .tflite of a run directory is (or how to make it): the file to use instead."""
    if not (run_dir / RUN_MODEL).is_file() and not (run_dir / "export").is_dir():
        return ""
    found = next((run_dir / name for name in EXPORTED if (run_dir / name).is_file()), None)
    if found is None and (run_dir / "export").is_dir():
        found = next(iter(sorted((run_dir / "export").glob("*.tflite"))), None)
    if found is not None:
        return f": use {found}"
    return f": run edgecls export {run_dir} first, then use {run_dir / EXPORTED[0]}"


def check_classifier(inputs: list[dict], outputs: list[dict], name: str = "model") -> tuple[dict, dict]:
    """The input and output details of an NHWC image classifier, or a one-line ModelFileError."""
    if len(inputs) != 1:
        raise ModelFileError(
            f"{name}: has {len(inputs)} inputs; an image classifier has one image input [1, H, W, 1|3]"
        )
    if len(outputs) != 1:
        raise ModelFileError(f"{name}: has {len(outputs)} outputs; an image classifier has one output [1, N]")
    inp, out = inputs[0], outputs[0]
    check_image_input(inp["shape"], inp.get("shape_signature", inp["shape"]), name)
    if inp["dtype"] not in _TENSOR_DTYPES:
        raise ModelFileError(
            f"{name}: input type {np.dtype(inp['dtype']).name} is not supported (float32, uint8 or int8)"
        )
    oshape = [int(d) for d in out["shape"]]
    if len(oshape) < 2 or oshape[0] != 1 or any(d != 1 for d in oshape[1:-1]) or oshape[-1] < 1:
        raise ModelFileError(f"{name}: output is {oshape}, not class scores [1, N]")
    if out["dtype"] not in _TENSOR_DTYPES:
        raise ModelFileError(
            f"{name}: output type {np.dtype(out['dtype']).name} is not supported (float32, uint8 or int8)"
        )
    return inp, out


# Inputs that are never optional (-1), beyond each op's first, by builtin operator code (runtime.tflite_names,
# which predict's cold start does not import): the weights of FULLY_CONNECTED (9), CONV_2D (3),
# DEPTHWISE_CONV_2D (4) and TRANSPOSE_CONV (67). LiteRT does not refuse a FULLY_CONNECTED whose weights are
# -1: it crashes (SIGSEGV) while it loads the model.
REQUIRED_INPUTS = {9: 2, 3: 2, 4: 2, 67: 3}


def check_required_inputs(content: bytes, name: str = "model") -> None:
    """Refuse a model whose layer lacks its weights tensor (an input index of -1 where REQUIRED_INPUTS
    says none may be): LiteRT crashes on it while it loads the model. So this runs before the
    interpreter, on bytes not yet verified: a flatbuffer too broken to walk is left to the interpreter
    to refuse. One pass over the ops' input lists (about 0.1 ms for a MobileNet)."""
    from edgecls.runtime import flatbuffer as fb

    try:
        model = fb.model_table(content)
        codes = [max(c.scalar(fb.OPCODE_BUILTIN, fb.INT32), c.scalar(fb.OPCODE_DEPRECATED_BUILTIN, fb.INT8))
                 for c in model.tables(fb.MODEL_OPERATOR_CODES)]
        for graph in model.tables(fb.MODEL_SUBGRAPHS):
            for k, op in enumerate(graph.tables(fb.SUBGRAPH_OPERATORS)):
                index = op.scalar(fb.OPERATOR_OPCODE_INDEX, fb.UINT32)
                required = REQUIRED_INPUTS.get(codes[index] if index < len(codes) else -1, 1)
                inputs = op.scalars(fb.OPERATOR_INPUTS, fb.INT32)[:required]
                if any(i < 0 for i in inputs):
                    from edgecls.runtime.tflite_names import op_name  # only for the message

                    raise ModelFileError(f"{name}: corrupt .tflite: op {k} ({op_name(codes[index], 0, None)}) has no "
                                         f"tensor for its input {inputs.index(min(inputs))} (-1), which it needs")
    except ModelFileError:
        raise
    except Exception:  # a corrupt flatbuffer (struct.error, IndexError, ...): the interpreter refuses it next
        return


def check_image_input(shape: Sequence[int], signature: Sequence[int], name: str = "model") -> None:
    """One NHWC image [1, H, W, 1|3] of a fixed size up to MAX_INPUT_SIDE a side, else a one-line
    ModelFileError: the limits predict, info and the backbone route (train, data check) share."""
    shape, signature = [int(d) for d in shape], [int(d) for d in signature]
    if len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3) or min(shape) < 1:
        raise ModelFileError(f"{name}: input is {shape}, not an NHWC image tensor [1, H, W, 1|3]")
    if len(signature) == 4 and min(signature[1:3]) < 1:  # allocated as 1x1: every image would be resized to one pixel
        raise ModelFileError(f"{name}: input height and width are dynamic ({signature}); edgecls needs a fixed "
                             "input size: convert the model with a fixed height and width")
    if max(shape[1:3]) > MAX_INPUT_SIDE:
        raise ModelFileError(f"{name}: input is {shape}: over {MAX_INPUT_SIDE} pixels a side is no image "
                             "classifier edgecls runs")
def check_outputs_match(inp: dict, out: dict, scored_input: dict, scored_output: dict, name: str) -> None:
    """A calibrated model's scoring subgraph must take and give what its subgraph 0 does (a one-line
    ModelFileError otherwise: a file edited by hand, or corrupt)."""
    for what, first, second in (("input", inp, scored_input), ("output", out, scored_output)):
        same = (list(first["shape"]) == list(second["shape"]) and first["dtype"] == second["dtype"]
                and tuple(first["quantization"]) == tuple(second["quantization"]))
        if not same:
            raise ModelFileError(f"{name}: the {what} of its edgecls_openset subgraph differs from the model's "
                                 f"({_tensor_text(second)} against {_tensor_text(first)})")


def _tensor_text(details: dict) -> str:
    """'[1, 10] int8 (scale 0.00390625, zero point -128)': what check_outputs_match compares."""
    scale, zero_point = details["quantization"]
    return (f"{[int(d) for d in details['shape']]} {np.dtype(details['dtype']).name} "
            f"(scale {float(scale):g}, zero point {int(zero_point)})")


def per_tensor(details: dict, name: str, what: str) -> tuple[float, int]:
    params = details.get("quantization_parameters") or {}
    scales = params.get("scales", ())
    if len(scales) > 1:
        raise ModelFileError(f"{name}: {what} is quantised per channel; a classifier's {what} must be per tensor")
    scale, zero_point = float(details["quantization"][0]), int(details["quantization"][1])
    if not (math.isfinite(scale) and scale >= 0) or details["dtype"] != np.float32 and scale == 0:
        # NaN or inf here would make every score NaN (or every pixel one value): no class could be trusted
        raise ModelFileError(f"{name}: {what} quantisation scale {scale:g} is not a finite positive number: the "
                             "model file is broken")
    return scale, zero_point


def input_spec(details: dict, metadata: dict | None, name: str,
                input_range: tuple[float, float] | None = None, resize: str | None = None,
                fit: str | None = None) -> InputSpec:
    """The model's InputSpec: the tensor's shape and quantisation; the pixel range, resize method and
    fit from the arguments (the caller knows best), else the edgecls metadata, else the defaults."""
    _, height, width, channels = (int(d) for d in details["shape"])
    dtype = details["dtype"]
    scale, zero_point = per_tensor(details, name, "input")
    declared = (metadata or {}).get("input") or {}
    for key, actual in (("height", height), ("width", width), ("color", "grayscale" if channels == 1 else "rgb")):
        if declared.get(key) not in (None, actual):
            raise ModelFileError(f"{name}: metadata says input {key} {declared[key]!r} but the tensor has {actual!r}")
    pixel_range = declared.get("pixel_range")
    if input_range is not None:  # the caller knows better (a third-party model); checked by __init__
        pixel_range = input_range
    elif pixel_range is not None:
        pixel_range = check_range(pixel_range, f"{name}: malformed edgecls metadata: input pixel_range")
    elif dtype != np.float32 and scale > 0:
        # No metadata: the ecosystem's convention for a quantised input is that it takes the pixel
        # bytes themselves (uint8 as is, int8 shifted by 128): span the tensor's representable range.
        low = scale * (np.iinfo(dtype).min - zero_point)
        pixel_range = (float(low), float(low + 255 * scale))
    else:
        pixel_range = (0.0, 255.0)  # edgecls' convention: scaling lives inside the model
    for key, known in (("resize", RESIZE_METHODS), ("fit", FITS)):
        if declared.get(key) not in (None, *known):
            raise ModelFileError(f"{name}: malformed edgecls metadata: input {key} {str(declared[key])[:40]!r} "
                                 f"(known: {', '.join(known)})")
    resize = resize or declared.get("resize") or DEFAULT_RESIZE
    fit = fit or declared.get("fit") or DEFAULT_FIT
    check_preprocessing(resize, fit)
    return InputSpec(height, width, channels, dtype, scale, zero_point, pixel_range, resize, fit)


@dataclass(frozen=True)
class ModelIO:
    """An image classifier's input and output, checked (check_io): the tensors it is fed and read through,
    what it takes (InputSpec) and what its output holds."""

    input: dict  # the tensor details of the graph that runs: subgraph 0's, or a calibrated model's scoring subgraph's
    output: dict
    spec: InputSpec
    num_classes: int
    output_kind: str  # probabilities | logits | unknown (then decided per batch from the scores)
    output_scale: float  # 0.0 for a float output
    output_zero_point: int

    @property
    def dynamic_batch(self) -> bool:
        """Exported with a dynamic batch dimension (shape_signature -1): it takes whole batches."""
        return int(self.input["shape_signature"][0]) == -1


def check_io(interpreter: Any, metadata: dict | None, name: str, scoring: tuple[dict, dict] | None = None,
             input_range: tuple[float, float] | None = None, resize: str | None = None,
             fit: str | None = None) -> ModelIO:
    """The input and output of the image classifier loaded in `interpreter`, checked, or a one-line
    ModelFileError. `scoring`: the (input, output) details of a calibrated model's scoring subgraph
    (runtime.openset), which must take and give what subgraph 0 does, and is the one that runs;
    `input_range`, `resize`, `fit`: the caller's, over the metadata's (see input_spec)."""
    inp, out = check_classifier(interpreter.get_input_details(), interpreter.get_output_details(), name)
    kind = output_kind(interpreter, out["index"], metadata)  # subgraph 0's ops
    if scoring is not None:
        per_tensor(inp, name, "input")  # a broken scale named as one, before the two graphs differ
        per_tensor(out, name, "output")
        check_outputs_match(inp, out, *scoring, name)
        inp, out = scoring
    spec = input_spec(inp, metadata, name, input_range, resize, fit)
    scale, zero_point = per_tensor(out, name, "output")
    return ModelIO(inp, out, spec, int(out["shape"][-1]), kind, scale, zero_point)


def output_kind(interpreter: Any, output_index: int, metadata: dict | None = None) -> str:
    """'probabilities', 'logits', or 'unknown' (then decided per batch from the scores).

    The metadata's "output" entry wins; else the graph: an output made by SOFTMAX (perhaps
    through a QUANTIZE/DEQUANTIZE/RESHAPE) already is a probability distribution.
    """
    declared = (metadata or {}).get("output")
    if declared in ("probabilities", "logits"):
        return declared
    try:  # a private but long-stable interpreter API (LiteRT, tflite_runtime and tf.lite have it)
        ops = interpreter._get_ops_details()
    except Exception:
        return "unknown"
    # DELEGATE nodes stand for the ops they replaced; look at the original ops.
    producer = {int(t): op for op in ops if op["op_name"] != "DELEGATE" for t in op["outputs"]}
    tensor = output_index
    for _ in range(8):
        op = producer.get(tensor)
        if op is None:
            break
        if op["op_name"] == "SOFTMAX":
            return "probabilities"
        if op["op_name"] not in _PASS_THROUGH or not len(op["inputs"]):
            break
        tensor = int(op["inputs"][0])
    return "unknown"


def resolve_labels(
    labels: str | os.PathLike | Sequence[str] | None, metadata: dict | None, model_path: Path, num_classes: int
) -> tuple[list[str], str]:
    """Class names and where they came from: an explicit labels file or list, the model's
    metadata, labels.txt beside the model, or else the class indices."""
    beside = model_path.with_name(LABELS_FILE)
    if labels is not None:
        if isinstance(labels, (str, os.PathLike)):
            found, source = read_labels(labels), str(labels)
        else:
            found, source = [clean_text(str(label)) for label in labels], "argument"
    elif metadata and metadata.get("labels"):
        found, source = [clean_text(label) for label in metadata["labels"]], "metadata"
    elif beside.is_file():
        found, source = read_labels(beside), str(beside)
    else:
        return [str(i) for i in range(num_classes)], "index"
    if len(found) != num_classes:
        hint = ""
        if len(found) + 1 == num_classes:  # ImageNet's 1001-class convention: class 0 is "background"
            hint = (": the model has one class more, as ImageNet models with a 'background' class 0 do; "
                    "put a first line 'background' in the labels file")
        raise ModelFileError(f"{source}: {len(found)} labels but the model has {num_classes} classes{hint}")
    return found, source


def unique_labels(labels: list[str], source: str) -> tuple[list[str], str | None]:
    """The class names with every repeated one told apart by its index ('crane (134)', 'crane (517)':
    ImageNet names two classes so), and a sentence saying so; else the names as they are and None."""
    if len(set(labels)) == len(labels):  # the usual case, one set: cheap for a thousand names
        return labels, None
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    repeated = [label for label, n in counts.items() if n > 1]
    named = [f"{label} ({i})" if counts[label] > 1 else label for i, label in enumerate(labels)]
    shown = ", ".join(f"{label!r} {counts[label]} times" for label in repeated[:3])
    more = f" and {len(repeated) - 3} more" if len(repeated) > 3 else ""
    return named, (f"{source} repeats {shown}{more}: those classes are named with their index, "
                   f"e.g. {named[labels.index(repeated[0])]!r}")
