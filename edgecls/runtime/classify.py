"""Classify images with a .tflite image classifier: load and check it, then decode, quantise,
invoke, dequantise and take the top k.

    clf = Classifier("digits-int8.tflite")
    clf.classify("seven.png", top_k=3)   # [Class(index=7, label='7', score=0.98), ...]

A Classifier wraps one interpreter and is not thread-safe: use one per thread.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from edgecls.errors import EdgeclsError
from edgecls.runtime.interpreter import Backend, create_interpreter, default_threads, find_backend
from edgecls.runtime.labels import clean_text, read_labels
from edgecls.runtime.metadata import ModelFileError, check_range, check_tflite_bytes, read_metadata
from edgecls.runtime.preprocess import ImageError, ImageSource, load_image

LABELS_FILE = "labels.txt"  # looked for beside the model
MAX_BATCH = 32  # largest batch handed to a model with a dynamic batch dimension
_TENSOR_DTYPES = (np.float32, np.uint8, np.int8)  # what a classifier's input and output may be
_PASS_THROUGH = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE"}  # ops that keep a tensor's meaning


class Class(NamedTuple):
    """One of the top-k classes of an image."""

    index: int
    label: str
    score: float  # a probability


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

    @property
    def color(self) -> str:
        return "grayscale" if self.channels == 1 else "rgb"

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


@dataclass(frozen=True)
class Prediction:
    """The result for one image of `classify_many`: its classes, or why it could not be read."""

    source: Any
    classes: tuple[Class, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        source = self.source if isinstance(self.source, (str, os.PathLike)) else type(self.source).__name__
        return f"Prediction({source!r}, {self.classes!r}" + (f", error={self.error!r})" if self.error else ")")


class Classifier:
    """A TFLite image classifier: input [1, H, W, 1|3] (float32, uint8 or int8), one output [1, N]."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        num_threads: int | None = None,
        labels: str | os.PathLike | Sequence[str] | None = None,
        backend: str | None = None,
        input_range: tuple[float, float] | None = None,
    ):
        """`input_range` (low, high): the input values that pixels 0 and 255 become, overriding the
        metadata's pixel_range and the default (0..255 for a float input: edgecls models scale inside).
        Third-party float models usually want (-1, 1) (MobileNet style) or (0, 1)."""
        self.path = Path(model_path)
        if input_range is not None:
            input_range = check_range(input_range, "input_range", EdgeclsError)
        content = read_model_bytes(self.path)
        self.backend: Backend = find_backend(backend)
        self.num_threads = default_threads() if num_threads is None else num_threads
        started = time.perf_counter()
        # The interpreter verifies the flatbuffer, so it goes first: the metadata reader trusts it.
        self.interpreter = create_interpreter(content, self.backend, self.num_threads, name=self.path.name)
        self.load_seconds = time.perf_counter() - started
        self.size_bytes = len(content)
        self.metadata: dict[str, Any] | None = read_metadata(content)

        inp, out = check_classifier(self.interpreter.get_input_details(), self.interpreter.get_output_details(),
                                    self.path.name)
        self.num_classes = int(out["shape"][-1])
        self.input_spec = _input_spec(inp, self.metadata, self.path.name, input_range)
        self.labels, self.labels_source = resolve_labels(labels, self.metadata, self.path, self.num_classes)
        self.output_kind = output_kind(self.interpreter, out["index"], self.metadata)
        # A model exported with a dynamic batch dimension (shape_signature -1) takes whole batches.
        self.max_batch = MAX_BATCH if int(inp["shape_signature"][0]) == -1 else 1

        self._size, self._color = self.input_spec.size, self.input_spec.color
        self._input_index = inp["index"]
        self._output_index = out["index"]
        self._batch = 1
        self._to_input = input_converter(self.input_spec)
        out_scale, out_zero_point = _per_tensor(out, self.path.name, "output")
        self._from_output = output_converter(out["dtype"], out_scale, out_zero_point)
        # Rows of a quantised softmax sum to 1 only up to half a step per class.
        self._prob_tolerance = 1e-3 + 0.5 * self.num_classes * out_scale

    def __repr__(self) -> str:
        s = self.input_spec
        return (f"Classifier({str(self.path)!r}, input={s.height}x{s.width}x{s.channels} {np.dtype(s.dtype).name}, "
                f"classes={self.num_classes}, backend={self.backend.name}, threads={self.num_threads})")

    # ---------------------------------------------------------------- one image
    def preprocess(self, image: ImageSource) -> np.ndarray:
        """Decode a path / PIL image / array into the uint8 (H, W, C) pixels the model takes."""
        return load_image(image, self._size, self._color)

    def classify(self, image: ImageSource, top_k: int = 1) -> list[Class]:
        """The top-k classes of one image, best first. Raises ImageError for a bad image."""
        pixels = load_image(image, self._size, self._color)  # the array itself when already decoded
        self.set_input(pixels[None])
        self.interpreter.invoke()
        return self.top_classes(self.output()[0], top_k)

    def top_classes(self, probabilities: np.ndarray, k: int = 1) -> list[Class]:
        """(index, label, score) of the k highest scores of one row; ties go to the lower index."""
        if k <= 1:  # the common case, and the hot path's: argmax is several times cheaper
            i = int(probabilities.argmax())
            return [Class(i, self.labels[i], float(probabilities[i]))]
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [Class(int(i), self.labels[i], float(probabilities[i])) for i in order]

    def classify_stream(self, source: Any, top_k: int = 1, **options: Any) -> Any:
        """Classify a camera ("camera:0"), a video file, an rtsp:// or http(s):// stream, or an iterable of
        frames, frame by frame: an iterable of FramePrediction (frame, timestamp, classes, latency) with a
        summary(). Options (every, fps, duration, timeout, reconnect, capture, live, log): see
        edgecls.runtime.stream.LiveStream. Frames go through preprocess() like files."""
        from edgecls.runtime.stream import LiveStream  # here: stream imports this module's types

        return LiveStream(self, source, top_k=top_k, **options)

    # ---------------------------------------------------------------- many images
    def classify_many(
        self,
        images: Iterable[ImageSource],
        top_k: int = 1,
        batch_size: int | None = None,
        workers: int | None = None,
    ) -> Iterator[Prediction]:
        """Classify a stream of images lazily, yielding one Prediction each, in input order.

        Files are decoded `workers` at a time in a thread pool (Pillow releases the GIL) while
        the interpreter runs; a model with a dynamic batch dimension gets `batch_size` images per
        invoke. A bad image becomes a Prediction with `error` set, and the stream goes on; an
        item that already is a Prediction (e.g. an argument that named no image) passes through.
        """
        batch_size = max(1, min(batch_size or self.max_batch, self.max_batch))
        workers = default_threads() if workers is None else workers
        group: list[tuple[Any, np.ndarray | str]] = []
        ready = 0
        for source, pixels in self._decoded(images, workers, depth=batch_size + 2 * workers):
            group.append((source, pixels))
            ready += not isinstance(pixels, str)
            # A full batch, or a run of bad files: memory stays bounded and rows keep coming.
            if ready == batch_size or len(group) >= 2 * batch_size:
                yield from self._predict_group(group, top_k)
                group, ready = [], 0
        if group:
            yield from self._predict_group(group, top_k)

    def _predict_group(self, group: list[tuple[Any, np.ndarray | str]], top_k: int) -> Iterator[Prediction]:
        arrays = [pixels for _, pixels in group if not isinstance(pixels, str)]
        rows = iter(self.probabilities(np.stack(arrays)) if arrays else ())
        for source, pixels in group:
            if isinstance(pixels, str):
                yield Prediction(source, error=pixels)
            else:
                yield Prediction(source, tuple(self.top_classes(next(rows), top_k)))

    def _decoded(self, sources: Iterable[Any], workers: int, depth: int) -> Iterator[tuple[Any, np.ndarray | str]]:
        """(source, pixels or error reason) in input order, decoding up to `depth` ahead."""
        pool = ThreadPoolExecutor(workers, thread_name_prefix="edgecls-decode") if workers > 1 else None
        pending: deque = deque()
        try:
            for source in sources:
                if isinstance(source, Prediction):
                    pending.append((source.source, source.error))
                elif pool is None:
                    pending.append((source, self._decode(source)))
                else:
                    pending.append((source, pool.submit(self._decode, source)))
                while len(pending) >= depth or (pool is None and pending):
                    yield _ready(*pending.popleft())
            while pending:
                yield _ready(*pending.popleft())
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _decode(self, source: ImageSource) -> np.ndarray | str:
        try:
            return self.preprocess(source)
        except ImageError as exc:
            return str(exc)
        except Exception as exc:  # a Pillow plugin choking on a hostile file must not end a batch
            text = str(exc).strip().splitlines()
            return f"cannot decode: {type(exc).__name__}" + (f": {text[0]}" if text else "")

    # ---------------------------------------------------------------- raw scoring (bench uses these)
    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities, float32 (B, N), of a uint8 batch (B, H, W, C) of decoded pixels."""
        if batch.dtype != np.uint8 or batch.shape[1:] != self.input_spec.shape:
            raise EdgeclsError(f"expected a uint8 batch of shape (B, {', '.join(map(str, self.input_spec.shape))}), "
                               f"got {batch.dtype} {batch.shape}")
        if len(batch) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        if len(batch) <= self.max_batch:
            self.set_input(batch)
            self.invoke()
            return self.output()
        step = self.max_batch
        return np.concatenate([self.probabilities(batch[i:i + step]) for i in range(0, len(batch), step)])

    def set_input(self, batch: np.ndarray) -> None:
        """Quantise a uint8 batch (at most max_batch images) and copy it into the input tensor."""
        if len(batch) != self._batch:
            self.interpreter.resize_tensor_input(self._input_index, [len(batch), *self.input_spec.shape])
            self.interpreter.allocate_tensors()
            self._batch = len(batch)
        self.interpreter.set_tensor(self._input_index, self._to_input(batch))

    def invoke(self) -> None:
        """Run the model on the input set by set_input (time this alone for invoke latency)."""
        self.interpreter.invoke()

    def output(self) -> np.ndarray:
        """The last invoke's output as probabilities, float32 (B, N)."""
        raw = self.interpreter.get_tensor(self._output_index)
        scores = self._from_output(raw if raw.ndim == 2 else raw.reshape(self._batch, -1))
        if self.output_kind == "probabilities":
            return scores
        if self.output_kind == "logits" or not _is_distribution(scores, self._prob_tolerance):
            return softmax(scores)
        return scores


def _ready(source: Any, pixels: Any) -> tuple[Any, np.ndarray | str]:
    return source, (pixels.result() if isinstance(pixels, Future) else pixels)


# -------------------------------------------------------------------- checks and conversions
def parse_input_range(text: str | None, option: str = "--input-range") -> tuple[float, float] | None:
    """'-1,1' -> (-1.0, 1.0): two finite, distinct numbers. One-line EdgeclsError otherwise."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        value = (float(parts[0]), float(parts[1]))
    except ValueError:
        raise EdgeclsError(f"{option} takes LO,HI, the values pixels 0 and 255 become, e.g. -1,1 or 0,1 "
                           f"(got {text!r})") from None
    return check_range(value, option, EdgeclsError)


def read_model_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"no such model file: {path}") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a folder, not a .tflite model") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model {path}: {exc.strerror or exc}") from None
    check_tflite_bytes(data, path.name)
    return data


def check_classifier(inputs: list[dict], outputs: list[dict], name: str = "model") -> tuple[dict, dict]:
    """The input and output details of an NHWC image classifier, or a one-line ModelFileError."""
    if len(inputs) != 1:
        raise ModelFileError(f"{name}: has {len(inputs)} inputs; an image classifier has one image input [1, H, W, 1|3]")
    if len(outputs) != 1:
        raise ModelFileError(f"{name}: has {len(outputs)} outputs; an image classifier has one output [1, N]")
    inp, out = inputs[0], outputs[0]
    shape = [int(d) for d in inp["shape"]]
    if len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3) or min(shape) < 1:
        raise ModelFileError(f"{name}: input is {shape}, not an NHWC image tensor [1, H, W, 1|3]")
    if inp["dtype"] not in _TENSOR_DTYPES:
        raise ModelFileError(f"{name}: input type {np.dtype(inp['dtype']).name} is not supported (float32, uint8 or int8)")
    oshape = [int(d) for d in out["shape"]]
    if len(oshape) < 2 or oshape[0] != 1 or any(d != 1 for d in oshape[1:-1]) or oshape[-1] < 1:
        raise ModelFileError(f"{name}: output is {oshape}, not class scores [1, N]")
    if out["dtype"] not in _TENSOR_DTYPES:
        raise ModelFileError(f"{name}: output type {np.dtype(out['dtype']).name} is not supported (float32, uint8 or int8)")
    return inp, out


def _per_tensor(details: dict, name: str, what: str) -> tuple[float, int]:
    params = details.get("quantization_parameters") or {}
    scales = params.get("scales", ())
    if len(scales) > 1:
        raise ModelFileError(f"{name}: {what} is quantised per channel; a classifier's {what} must be per tensor")
    scale, zero_point = details["quantization"]
    return float(scale), int(zero_point)


def _input_spec(details: dict, metadata: dict | None, name: str,
                input_range: tuple[float, float] | None = None) -> InputSpec:
    _, height, width, channels = (int(d) for d in details["shape"])
    dtype = details["dtype"]
    scale, zero_point = _per_tensor(details, name, "input")
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
    return InputSpec(height, width, channels, dtype, scale, zero_point, pixel_range)


def input_converter(spec: InputSpec) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 pixels -> the input tensor's values, chosen once per model (the hot path calls it).

    A pixel v becomes the real value lo + v * (hi - lo) / 255, quantised with the model's own
    scale and zero point. For edgecls models (range 0..255, scale 1, zero point -128) that is
    exactly v - 128, done as a byte XOR with 0x80.
    """
    low, high = spec.pixel_range
    step = (high - low) / 255.0
    if spec.dtype == np.float32:
        if (low, high) == (0.0, 255.0):
            return lambda batch: batch.astype(np.float32)
        return lambda batch: batch.astype(np.float32) * np.float32(step) + np.float32(low)
    info = np.iinfo(spec.dtype)
    if spec.scale <= 0:
        raise ModelFileError(f"{spec.dtype.__name__} input has no quantisation scale")
    real = low + np.arange(256) * step
    table = np.clip(np.rint(real / spec.scale + spec.zero_point), info.min, info.max).astype(spec.dtype)
    offset = table.astype(np.int64) - np.arange(256)
    if np.all(offset == offset[0]):
        if spec.dtype == np.uint8 and offset[0] == 0:
            return lambda batch: batch
        if spec.dtype == np.int8 and offset[0] == -128:
            return lambda batch: np.bitwise_xor(batch, np.uint8(0x80)).view(np.int8)
    return lambda batch: table[batch]


def output_converter(dtype: type, scale: float, zero_point: int) -> Callable[[np.ndarray], np.ndarray]:
    """Output tensor -> float32 scores.

    An 8-bit output is looked up in a 256-entry table of (value - zero point) * scale, computed
    once from the integer values: no int8 wraparound, and one numpy call on the hot path.
    """
    if dtype == np.float32:
        return lambda raw: raw
    values = np.arange(256, dtype=np.uint8).view(dtype).astype(np.float64)  # every bit pattern
    table = ((values - zero_point) * scale).astype(np.float32)
    return lambda raw: table.take(raw.view(np.uint8))


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _is_distribution(scores: np.ndarray, tolerance: float) -> bool:
    return bool(scores.min() >= -tolerance and np.all(np.abs(scores.sum(axis=-1) - 1.0) <= tolerance))


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
        raise ModelFileError(f"{source}: {len(found)} labels but the model has {num_classes} classes")
    return found, source
