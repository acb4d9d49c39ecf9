"""Keras model -> .tflite bytes in one quantisation mode, with either quantiser backend.

Conversion goes through a SavedModel (Keras' own `model.export`), because
`TFLiteConverter.from_keras_model` and a plain concrete function both lose Keras 3's variables
(the converter leaves READ_VARIABLE ops behind and calibration fails). The batch dimension stays
dynamic, so the runtime can score whole batches.

Integer models are checked after conversion, because the converter does not enforce what we
promise: the input must quantise raw pixels exactly (scale 1, zero point -128 for int8, 0 for
uint8), and no op may be left computing in float (TensorFlow's converter silently keeps ops
without an int8 kernel in float even with TFLITE_BUILTINS_INT8).
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.atomic import private_tempdir
from edgecls.errors import EdgeclsError, first_line
from edgecls.export.modes import EXACT_INPUT, LITERT_INSTALL, check_modes, is_integer, made_by_litert
from edgecls.native_stderr import native_stderr_silenced
from edgecls.runtime.metadata import ModelFileError

_NOT_COMPUTING_OPS = {"QUANTIZE", "DEQUANTIZE", "SHAPE"}  # may touch float tensors in an integer model


class ConversionError(EdgeclsError):
    """The converter or quantiser failed on a model: the job failed (exit 1), the input was fine."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=1)


@dataclass
class Converted:
    """One converted model: its bytes, the backend that made it, and its I/O tensors."""

    mode: str
    content: bytes
    backend: str  # "tflite-converter" or "ai-edge-quantizer"
    io: dict[str, Any]
    kept_float: Optional[dict[str, Any]] = None  # a mixed model: what stayed float ("float_ops": 'OP (tensor)' ...)

    @property
    def mixed(self) -> bool:
        return self.kept_float is not None


# ---------------------------------------------------------------------- entry point
@contextlib.contextmanager
def saved_model(model) -> Iterator[Path]:
    """Export `model` (inference only) to a temporary SavedModel; removed afterwards."""
    with private_tempdir("edgecls-savedmodel") as folder, interrupt_checkpoints():
        try:
            with native_stderr_silenced(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.export(str(folder / "model"), format="tf_saved_model", verbose=False)
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:
            raise ConversionError(
                f"cannot export the Keras model for conversion: {_type_and_first_line(exc)}"
            ) from None
        yield folder / "model"


_interrupted: list[BaseException] = []  # the interrupt a signal raised, kept in case TensorFlow swallowed it
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def interrupt_checkpoints() -> Iterator[None]:
    """Remember a Ctrl-C (or a SIGTERM or SIGHUP, which edgecls.entry treats alike) even when
    TensorFlow swallows the exception it raises (raised inside its garbage collection, it is only
    printed as "Exception ignored"): check_interrupted() raises it again after each conversion step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in _SIGNALS}

    def remember(signum, frame):
        try:
            previous[signum](signum, frame)  # raises: KeyboardInterrupt, or edgecls' Terminated
            raise KeyboardInterrupt
        except BaseException as exc:
            _interrupted.append(exc)
            raise

    # Only signals Python handles (SIGINT; SIGTERM and SIGHUP under edgecls.entry): a default or
    # ignored one keeps what it does.
    previous = {signum: handler for signum, handler in previous.items() if callable(handler)}
    _interrupted.clear()
    for signum in previous:
        signal.signal(signum, remember)
    try:
        yield
        check_interrupted()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _interrupted.clear()


def check_interrupted() -> None:
    if _interrupted:
        raise _interrupted[-1]


def convert(saved_model_dir: Path, mode: str, quantizer: str = "converter",
            calibration: Optional[np.ndarray] = None, float_model: Optional[bytes] = None) -> Converted:
    """Convert to `mode`; `calibration` (uint8 N,H,W,C) is needed by int8 and uint8.

    With quantizer "litert", int8 and dynamic are made by ai-edge-quantizer from the float32
    model (`float_model`, converted here if not given); float32 and float16 are always the
    TensorFlow converter's.
    """
    check_modes([mode], quantizer)
    if is_integer(mode) and (calibration is None or len(calibration) == 0):
        raise EdgeclsError(f"{mode} needs calibration images")
    if made_by_litert(mode, quantizer):
        if float_model is None:
            float_model = convert_tf(saved_model_dir, "float32")
        content, backend = quantize_litert(float_model, mode, calibration), "ai-edge-quantizer"
    else:
        content, backend = convert_tf(saved_model_dir, mode, calibration), "tflite-converter"
    check_interrupted()  # a Ctrl-C the converter swallowed ends the export here
    return Converted(mode, content, backend, check_converted(content, mode, backend))


# ---------------------------------------------------------------------- TensorFlow's converter
def convert_tf(saved_model_dir: Path, mode: str, calibration: Optional[np.ndarray] = None) -> bytes:
    """The TFLite converter's output for `mode` (no checks here: see check_converted)."""
    return _run_converter(tf_converter(saved_model_dir, mode, calibration), mode)


def tf_converter(saved_model_dir: Path, mode: str, calibration: Optional[np.ndarray] = None):
    """A TFLiteConverter set up for `mode`: the settings every conversion and diagnosis shares."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif is_integer(mode):
        images = representative_images(calibration)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([images[i:i + 1]] for i in range(len(images)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = tf.int8 if mode == "int8" else tf.uint8
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    return converter


def _run_converter(converter, mode: str) -> bytes:
    try:
        with native_stderr_silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bytes(converter.convert())
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # ConverterError, RuntimeError from the calibrator, ValueError ...
        raise ConversionError(f"the TFLite converter failed on {mode}: {converter_failure(exc)}") from None


# ---------------------------------------------------------------------- mixed integer models
def calibrate_tf(saved_model_dir: Path, mode: str, calibration: np.ndarray) -> bytes:
    """The float model with calibration statistics: the converter's int8 path stopped before it
    quantises (what QuantizationDebugger does too); quantize_mixed's input."""
    converter = tf_converter(saved_model_dir, mode, calibration)
    converter._experimental_calibrate_only = True  # a private switch, the one the debugger itself uses
    return _run_converter(converter, mode)


def quantize_mixed(calibrated: bytes, mode: str, nodes: Sequence[str] = (), op_types: Sequence[str] = ()) -> Converted:
    """Quantise a calibrated model to `mode`, keeping the named ops in float.

    `nodes` are op output tensor names, `op_types` builtin op names (FULLY_CONNECTED): the
    converter's denylists, passed as QuantizationDebugger.get_nondebug_quantized_model passes
    them, plus the integer input and output the converter's own int8 path asks for. The input
    keeps its calibrated exact quantisation (checked). The quantiser may leave a same-scale op
    (pooling) in integer even when named: kept_float["float_ops"] says what really is float.
    """
    import tensorflow as tf
    from tensorflow.lite.python.convert import (
        mlir_quantize,  # no public API takes denylists
    )

    io_type = tf.int8 if mode == "int8" else tf.uint8
    try:
        with native_stderr_silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            content = bytes(mlir_quantize(calibrated, input_data_type=io_type, output_data_type=io_type,
                                          denylisted_nodes=list(nodes) or None,
                                          denylisted_ops=list(op_types) or None))
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        raise ConversionError(f"the TFLite quantiser failed on mixed {mode}: {converter_failure(exc)}") from None
    io = check_converted(content, mode, "tflite-converter", mixed=True)
    return Converted(mode, content, "tflite-converter", io, kept_float={"float_ops": float_ops(content)})


def representative_images(calibration: np.ndarray) -> np.ndarray:
    """Calibration images as float32 raw pixels, with the first image holding a 0 and a 255.

    The input range the quantiser sees must be the full 0..255, or it would narrow the input
    scale and two pixel values could share one int8 value.
    """
    images = np.asarray(calibration, dtype=np.float32).copy()
    images[0, 0, 0, :] = 0.0
    images[0, 0, -1, :] = 255.0
    return images


_NOT_BUILTIN = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")
_NOT_QUANTIZABLE = re.compile(r"[Qq]uantization not yet supported for op: '?([\w.]+)'?")


def converter_failure(exc: BaseException) -> str:
    """A one-line reason from a converter exception, naming the ops where it can."""
    text = str(exc)
    missing = sorted(set(_NOT_BUILTIN.findall(text)))
    if missing:
        return (f"op(s) {', '.join(missing)} have no TFLite builtin kernel; remove or replace the layers "
                "that use them")
    unquantizable = sorted(set(_NOT_QUANTIZABLE.findall(text)))
    if unquantizable:
        return f"op(s) {', '.join(unquantizable)} cannot be quantised; try --quant dynamic or float16"
    for line in text.splitlines():
        if "error:" in line:  # MLIR diagnostics: drop the location noise before 'error:'
            return line.split("error:", 1)[1].strip()[:300]
    return _type_and_first_line(exc)[:300]


# ---------------------------------------------------------------------- ai-edge-quantizer
def quantize_litert(float_model: bytes, mode: str, calibration: Optional[np.ndarray] = None) -> bytes:
    """Quantise a float32 .tflite with ai-edge-quantizer: static int8 (calibrated) or dynamic.

    Its calibrator keeps a moving average of each tensor's min and max over the samples, which
    would narrow the input range below 0..255; the input's range is therefore set to exactly
    [0, 255] after calibration (pixels are raw bytes by construction).
    """
    try:
        from ai_edge_quantizer import quantizer as aeq
        from ai_edge_quantizer import recipe
    except ImportError:
        raise EdgeclsError(
            f"--quantizer litert needs ai-edge-quantizer, which is not installed: {LITERT_INSTALL}"
        ) from None
    from edgecls.runtime.interpreter import default_threads

    try:  # its calibration progress bar writes to sys.stderr: keep it off the user's terminal
        with native_stderr_silenced(), warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            if mode == "dynamic":
                q = aeq.Quantizer(bytearray(float_model), recipe.dynamic_wi8_afp32())
                result = q.quantize(enable_progress_report=False)
            elif mode == "int8":
                q = aeq.Quantizer(bytearray(float_model), recipe.static_wi8_ai8())
                signature, input_name, tensor_name = _signature_input(float_model)
                images = representative_images(calibration)
                samples = [{input_name: images[i:i + 1]} for i in range(len(images))]
                ranges = q.calibrate({signature: samples}, num_threads=default_threads())
                if tensor_name not in ranges:
                    raise ConversionError(f"ai-edge-quantizer recorded no range for the input tensor {tensor_name}")
                ranges[tensor_name] = {key: np.full_like(value, 0.0 if key == "min" else 255.0)
                                       for key, value in ranges[tensor_name].items() if key in ("min", "max")}
                result = q.quantize(ranges, enable_progress_report=False)
            else:
                raise EdgeclsError(f"ai-edge-quantizer does not make {mode} models here: use --quantizer converter")
            return bytes(result.quantized_model)
    except EdgeclsError:
        raise
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        raise ConversionError(f"ai-edge-quantizer failed on {mode}: {_type_and_first_line(exc)[:300]}") from None


def _signature_input(float_model: bytes) -> tuple[str, str, str]:
    """(signature key, its input name, the input tensor's name) of a one-input float model."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=float_model)
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        raise ConversionError(f"the float model has {len(signatures)} signatures; ai-edge-quantizer needs one")
    key = next(iter(signatures))
    inputs = interpreter.get_signature_runner(key).get_input_details()
    if len(inputs) != 1:
        raise ConversionError(f"the float model has {len(inputs)} inputs; an image classifier has one")
    name, details = next(iter(inputs.items()))
    return key, name, details["name"]


# ---------------------------------------------------------------------- checks
def check_converted(
    content: bytes, mode: str, backend: str = "tflite-converter", mixed: bool = False
) -> dict[str, Any]:
    """Load the model with the device-side interpreter and check it keeps our promises.

    Returns its input and output tensors (dtype, scale, zero point, shape signature). For int8
    and uint8: exact input quantisation and no float op (float ops allowed when `mixed`: ops
    kept in float on purpose); else a one-line ConversionError.
    """
    from edgecls.runtime.interpreter import create_interpreter, find_backend

    try:
        interpreter = create_interpreter(content, find_backend(), num_threads=1, name=f"the {mode} model")
    except ModelFileError as exc:  # the converter made something the device runtime cannot load
        raise ConversionError(str(exc)) from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ConversionError(
            f"the {mode} model has {len(inputs)} inputs and {len(outputs)} outputs; expected one each"
        )
    io = {"input": _tensor_io(inputs[0]), "output": _tensor_io(outputs[0])}
    if is_integer(mode):
        got = io["input"]
        if io["output"]["dtype"] != mode:
            raise ConversionError(f"the {mode} model's output is {io['output']['dtype']}, not {mode}")
        scale, zero_point = EXACT_INPUT[mode]
        if got["dtype"] != mode or got["scale"] != scale or got["zero_point"] != zero_point:
            raise ConversionError(
                f"{mode} input quantisation is not exact: {got['dtype']} scale {got['scale']!r} zero point "
                f"{got['zero_point']!r} (expected {mode} scale {scale} zero point {zero_point}); does the model "
                "take raw 0..255 pixels with a Rescaling layer first?")
        left_float = [] if mixed else float_ops(content)
        if left_float:
            listed = ", ".join(left_float[:4]) + (f" and {len(left_float) - 4} more" if len(left_float) > 4 else "")
            other = ", --quantizer litert" if backend == "tflite-converter" else ""
            raise ConversionError(
                f"{mode} export cannot be fully quantised: {backend} left {listed} in float (no integer kernel); "
                f"try --quant dynamic or float16{other}, or replace those layers")
    return io


def float_ops(content: bytes) -> list[str]:
    """'OP (output tensor name)' for each op of the model computing in float.

    Read from an interpreter without delegates: XNNPACK would replace the ops with DELEGATE
    nodes. QUANTIZE and DEQUANTIZE are allowed (they convert at the edges), and SHAPE, which
    reads only a tensor's shape (ai-edge-quantizer feeds it a dequantised copy).
    """
    interpreter = _plain_interpreter(content)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    floats = (np.float32, np.float16, np.float64)
    found = []
    for op in interpreter._get_ops_details():  # the interpreter's own op list (TF and LiteRT alike)
        if op["op_name"] in _NOT_COMPUTING_OPS:
            continue
        used = [int(i) for i in list(op["inputs"]) + list(op["outputs"]) if int(i) >= 0 and int(i) in tensors]
        if any(tensors[i]["dtype"] in floats for i in used):
            outputs = [tensors[int(i)]["name"] for i in op["outputs"] if int(i) in tensors]
            where = outputs[0].split(";")[0] if outputs else "?"
            found.append(f"{op['op_name']} ({where})")
    return found


def _plain_interpreter(content: bytes, preserve_all_tensors: bool = False):
    """An interpreter without delegates; `preserve_all_tensors` keeps intermediate tensors readable."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:  # the workstation has TensorFlow, whose interpreter has the same API
        import tensorflow as tf

        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Interpreter(model_content=content, experimental_preserve_all_tensors=preserve_all_tensors,
                           experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def _tensor_io(details: dict) -> dict[str, Any]:
    scale, zero_point = details["quantization"]
    quantised = details["dtype"] in (np.int8, np.uint8, np.int16)
    return {
        "dtype": np.dtype(details["dtype"]).name,
        "shape_signature": [int(d) for d in details.get("shape_signature", details["shape"])],
        "scale": float(scale) if quantised else None,
        "zero_point": int(zero_point) if quantised else None,
    }


def _type_and_first_line(exc: BaseException) -> str:
    text = first_line(exc)
    return text if text == type(exc).__name__ else f"{type(exc).__name__}: {text}"
