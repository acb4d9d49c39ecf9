"""The metadata entry edgecls embeds in a .tflite flatbuffer, read and written without TensorFlow.

A TFLite model has a list of named metadata entries, each pointing at a buffer. edgecls
stores one JSON document there under METADATA_NAME: class names, the input spec, how pixels
are scaled, the quantisation mode and where the model came from. Reading needs only `flatbuffers`
(a base dependency, through `edgecls.runtime.flatbuffer`); writing repacks the model with the
schema module's object API, which ships with LiteRT (and with TensorFlow) but not with
tflite_runtime: export, and `train --backbone` (also on a device with ai-edge-litert).

What edgecls writes there is one typed record, ModelMetadata (edgecls.records), whatever made the
file: export, export --target (which adds its `decision`) and the .tflite backbone route. Reading
stays a validated dict (`read_metadata`): a device reads any file, partial or hostile, field by field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Optional

from edgecls.errors import EdgeclsError
from edgecls.records import Record, omitted

METADATA_NAME = "edgecls"
METADATA_FORMAT = "edgecls.model/1"
MAX_METADATA_BYTES = 1 << 20  # metadata is parsed from untrusted files: cap what we read
MAX_INPUT_SIDE = 8192  # pixels: an input height or width beyond this is no image classifier (and takes minutes)
TFLITE_IDENTIFIER = b"TFL3"
# A pixel range [low, high] (what pixels 0 and 255 become): image models take -1..1, 0..1, 0..255 or a
# mean-subtracted 0..255. Beyond 1e6, float32 maths in the model overflows to inf and NaN (1e300 is
# finite in float64 but inf in float32); a span under 1e-6 maps every pixel to the same float32 value.
MAX_PIXEL_VALUE = 1e6
MIN_PIXEL_SPAN = 1e-6


class ModelFileError(EdgeclsError):
    """A file that is not a usable .tflite model; the message says why."""


# ---------------------------------------------------------------------- the record (format edgecls.model/1)
@dataclass(kw_only=True)
class ModelInput(Record):
    """What the model takes: its size and colour, what pixels 0..255 become, how pictures are resized."""

    height: int
    width: int
    color: str  # grayscale | rgb
    pixel_range: list[float]
    resize: Optional[str] = omitted()  # the training decode's (edgecls export); absent: the runtime's default
    fit: Optional[str] = omitted()


@dataclass(kw_only=True)
class Quantization(Record):
    mode: str  # float32, int8, uint8, ...
    backend: str  # converter | ai-edge-quantizer | edgecls.transfer
    io: dict[str, str]  # input and output dtypes
    calibration: Optional[dict[str, Any]] = None  # what the ranges were calibrated on; None without
    kept_float: Optional[dict[str, Any]] = omitted()  # a mixed model: the ops that compute in float and why


@dataclass(kw_only=True)
class ModelSource(Record):
    """Where the model came from (paths as the user gave them: a copy on a device carries no layout)."""

    run: Optional[str]
    model: str
    model_sha256: str
    data: str
    backbone: Optional[dict[str, Any]] = omitted()  # a .tflite backbone run: the backbone and its embedding
    head: Optional[str] = omitted()
    views: Optional[int] = omitted()


@dataclass(kw_only=True)
class ModelMetadata(Record):
    """The document embedded in every .tflite edgecls writes."""

    format: str = METADATA_FORMAT
    labels: list[str]
    input: ModelInput
    output: str  # probabilities | logits
    quantization: Quantization
    versions: dict[str, str]
    source: ModelSource
    created: str
    decision: Optional[dict[str, Any]] = omitted()  # export --target: why this file was chosen
    # the temperature and the unknown rule: edgecls.calibrate writes it, edgecls.runtime.openset reads it
    openset: Optional[dict[str, Any]] = omitted()


def schema():
    """The TFLite flatbuffer schema module, from LiteRT if present, else from TensorFlow: for
    writing a model only (reading goes through edgecls.runtime.flatbuffer, which needs none)."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        try:  # last resort: imports TensorFlow, only on machines without LiteRT
            from tensorflow.lite.python import schema_py_generated
        except ImportError:
            raise EdgeclsError(
                "writing a .tflite needs the flatbuffer schema module from ai-edge-litert: pip install ai-edge-litert"
            ) from None
    return schema_py_generated


def check_tflite_bytes(data: bytes, name: str = "model") -> None:
    """Raise ModelFileError unless `data` looks like a TFLite flatbuffer."""
    if len(data) == 0:
        raise ModelFileError(f"{name}: empty file (0 bytes)")
    if len(data) < 16 or data[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(f"{name}: not a .tflite model (no TFL3 flatbuffer identifier)")


def read_metadata(model_bytes: bytes) -> dict[str, Any] | None:
    """Return the edgecls metadata of a model, or None for a model without it (third-party).

    Read with the generic `flatbuffers` table reader rather than the generated schema module:
    tflite_runtime (the interpreter of 32-bit ARM) ships no schema module, and TensorFlow's
    must not be imported on a device.
    """
    check_tflite_bytes(model_bytes)
    try:
        raw = _metadata_entry(model_bytes)
    except ModelFileError:
        raise
    except Exception as exc:  # a corrupt flatbuffer raises anything from struct.error to IndexError
        raise ModelFileError(f"corrupt .tflite flatbuffer ({type(exc).__name__})") from None
    return None if raw is None else parse_metadata_json(raw)


def _metadata_entry(data: bytes) -> bytes | None:
    from edgecls.runtime import flatbuffer as fb

    model = fb.model_table(data)
    for entry in model.tables(fb.MODEL_METADATA):
        if (entry.string(fb.METADATA_NAME) or b"").decode("utf-8", "replace") != METADATA_NAME:
            continue
        index = entry.scalar(fb.METADATA_BUFFER, fb.UINT32)
        if index >= model.count(fb.MODEL_BUFFERS):
            raise ModelFileError("metadata points at a buffer the model does not have")
        start, length = fb.buffer_span(model.at(fb.MODEL_BUFFERS, index))
        if length > MAX_METADATA_BYTES:
            raise ModelFileError(f"metadata entry is {length} bytes, over the {MAX_METADATA_BYTES} limit")
        if start + length > len(data):
            raise ModelFileError("metadata entry runs past the end of the file (truncated .tflite?)")
        return bytes(data[start:start + length])
    return None


def parse_metadata_json(raw: bytes) -> dict[str, Any]:
    """Parse and validate the JSON document; never evaluates anything.

    Every field the toolkit reads is type-checked here, so that a hostile or broken file is a
    one-line ModelFileError, never an AttributeError or TypeError further on.
    """
    if len(raw) > MAX_METADATA_BYTES:
        raise ModelFileError(f"metadata is {len(raw)} bytes, over the {MAX_METADATA_BYTES} limit")
    try:
        meta = json.loads(raw.decode("utf-8"), parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, a 5000-digit integer, NaN
        raise ModelFileError(f"malformed edgecls metadata (not JSON: {_why_not_json(raw, exc)})") from None
    if not isinstance(meta, dict):
        raise ModelFileError("malformed edgecls metadata (not a JSON object)")
    labels = meta.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise ModelFileError("malformed edgecls metadata: 'labels' must be a list of strings")
    for key in ("input", "quantization", "source", "versions"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise ModelFileError(f"malformed edgecls metadata: {key!r} must be an object, "
                                 f"not {_kind(meta[key])}")
    if meta.get("output") is not None and not isinstance(meta["output"], str):
        raise ModelFileError(f"malformed edgecls metadata: 'output' must be a string, not {_kind(meta['output'])}")
    for table, key in (("quantization", "mode"), ("source", "run"), ("source", "model_sha256")):
        value = (meta.get(table) or {}).get(key)
        if value is not None and not isinstance(value, str):
            raise ModelFileError(f"malformed edgecls metadata: {table}.{key} must be a string, not {_kind(value)}")
    spec = meta.get("input")
    if spec is not None:
        if spec.get("color") not in (None, "grayscale", "rgb"):
            raise ModelFileError(f"malformed edgecls metadata: unknown colour {_short(spec.get('color'))}")
        for key in ("height", "width"):
            value = spec.get(key)
            if value is not None and not (_is_int(value) and 0 < value <= MAX_INPUT_SIDE):
                raise ModelFileError(f"malformed edgecls metadata: input {key} {_short(value)}")
        if spec.get("pixel_range") is not None:
            check_range(spec["pixel_range"], "malformed edgecls metadata: input pixel_range")
    return meta


def check_range(value: Any, what: str, error: type[EdgeclsError] = ModelFileError) -> tuple[float, float]:
    """(low, high): what pixels 0 and 255 become, two numbers within +-MAX_PIXEL_VALUE and at least
    MIN_PIXEL_SPAN apart (so that float32 keeps them finite and tells the 256 pixel values apart), else a
    one-line `error` naming `what`."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise error(f"{what} {_short(value)} is not two numbers [low, high]")
    try:
        low, high = float(value[0]), float(value[1])
    except OverflowError:  # an integer too big for a float
        low = high = math.inf
    if not (abs(low) <= MAX_PIXEL_VALUE and abs(high) <= MAX_PIXEL_VALUE and abs(high - low) >= MIN_PIXEL_SPAN):
        raise error(f"{what} {_short(value)} must be two finite numbers within +-{MAX_PIXEL_VALUE:g}, at least "
                    f"{MIN_PIXEL_SPAN:g} apart (what pixels 0 and 255 become: -1,1, 0,1 or 0,255)")
    return low, high


def _why_not_json(raw: bytes, exc: BaseException) -> str:
    """The field that holds NaN, Infinity or a huge integer (edgecls.jsonio names it), else the parser's
    reason. Only on this error path: predict's start-up does not import jsonio."""
    from edgecls.jsonio import JSONValueError, parse_json

    try:
        parse_json(raw)
    except JSONValueError as found:
        return str(found)
    return str(exc) if isinstance(exc, _NotJSON) else exc.__class__.__name__


class _NotJSON(ValueError):
    """NaN, Infinity or -Infinity: Python's json reads them, but they are not JSON."""


def _not_json(token: str) -> Any:
    raise _NotJSON(f"{token} is not a JSON number")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def embed_metadata(model_bytes: bytes, metadata: ModelMetadata | dict[str, Any]) -> bytes:
    """Return the model with `metadata` stored (or replaced) under METADATA_NAME (a dict: a test's or
    a third party's document, written as it is)."""
    document = metadata.to_json() if isinstance(metadata, Record) else metadata
    raw = json.dumps(document, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("utf-8")
    if len(raw) > MAX_METADATA_BYTES:
        raise EdgeclsError(f"metadata is {len(raw)} bytes, over the {MAX_METADATA_BYTES} limit")
    return embed_metadata_bytes(model_bytes, raw)


def embed_metadata_bytes(model_bytes: bytes, raw: bytes) -> bytes:
    """Store `raw` as the METADATA_NAME entry as it is (embed_metadata's JSON, or a test's junk)."""
    import flatbuffers
    import numpy as np

    check_tflite_bytes(model_bytes)
    s = schema()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(model_bytes, 0))
    model.buffers = model.buffers or []
    model.metadata = model.metadata or []
    for buffer in model.buffers:
        # ai-edge-quantizer stores constants after the flatbuffer (offset, size from the file's
        # start): repacking would drop that tail, so bring them inside as ordinary buffer data.
        offset, size = int(getattr(buffer, "offset", 0) or 0), int(getattr(buffer, "size", 0) or 0)
        if offset > 1 and size > 0:
            if offset + size > len(model_bytes):
                raise ModelFileError(f"a constant buffer lies past the end of the model ({offset + size} > "
                                     f"{len(model_bytes)} bytes)")
            buffer.data = np.frombuffer(model_bytes, np.uint8, size, offset)
            buffer.offset, buffer.size = 0, 0
    ours = [m for m in model.metadata if (m.name or b"") in (METADATA_NAME, METADATA_NAME.encode())]
    if ours and 0 <= ours[0].buffer < len(model.buffers):
        # Replace in place: appending would leave the old JSON behind in an orphaned buffer.
        model.buffers[ours[0].buffer].data = list(raw)
        model.metadata = [m for m in model.metadata if m not in ours[1:]]
    else:
        buffer = s.BufferT()
        buffer.data = list(raw)
        model.buffers.append(buffer)
        entry = s.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(model.buffers) - 1
        model.metadata = [m for m in model.metadata if m not in ours] + [entry]
    builder = flatbuffers.Builder(len(model_bytes) + len(raw) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())
