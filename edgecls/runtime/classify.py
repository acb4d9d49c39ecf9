"""Classify images with a .tflite image classifier: the Classifier (one image, a batch, a stream).

Loading and checking the model is runtime.model; the quantisation maths is runtime.quant.

    clf = Classifier("digits-int8.tflite")
    clf.classify("seven.png", top_k=3)   # [Class(index=7, label='7', score=0.98), ...]

A Classifier wraps one interpreter and is not thread-safe: use one per thread.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edgecls.errors import EdgeclsError
from edgecls.runtime.interpreter import (
    Backend,
    create_interpreter,
    default_threads,
    find_backend,
)
from edgecls.runtime.metadata import ModelFileError, check_range, read_metadata
from edgecls.runtime.model import (
    check_io,
    check_required_inputs,
    read_model_bytes,
    resolve_labels,
    unique_labels,
)
from edgecls.runtime.openset import Answer, OpenSetRule, answer, primary, scoring_subgraph
from edgecls.runtime.preprocess import ImageError, ImageSource, load_image
from edgecls.runtime.quant import (
    input_converter,
    is_distribution,
    output_converter,
    output_scores,
    quant_tolerance,
    row_writer,
    single_writer,
    softmax,
)

# The reason of an image's error row, and of the error of a batch, when the model's scores are NaN or inf.
NOT_NUMBERS = ("the model's scores are not numbers (NaN or infinite): its weights, quantisation or input range "
               "are broken")
_UINT8 = np.dtype(np.uint8)  # numpy's one uint8 dtype: `is` is the cheapest test on the hot path
_new_class = tuple.__new__  # _new_class(Class, (i, label, score)) skips NamedTuple's Python-level __new__
MAX_BATCH = 32  # largest batch handed to a model with a dynamic batch dimension
STREAM_WAIT = 0.25  # seconds an image may keep a partial batch waiting before its rows are given


class Class(NamedTuple):
    """One of the top-k classes of an image."""

    index: int
    label: str
    score: float  # a probability


@dataclass(frozen=True)
class Prediction:
    """The result for one image of `classify_many`: its classes, or why it could not be read; with a
    model that has an open-set rule, also whether it is unknown and how typical (see Answer)."""

    source: Any
    classes: tuple[Class, ...] = ()
    error: str | None = None
    unknown: bool = False
    typicality: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        source = self.source if isinstance(self.source, (str, os.PathLike)) else type(self.source).__name__
        verdict = f", unknown={self.unknown}, typicality={self.typicality:.3f}" if self.typicality is not None else ""
        return (f"Prediction({source!r}, {self.classes!r}{verdict}" +
                (f", error={self.error!r})" if self.error else ")"))


class Classifier:
    """A TFLite image classifier: input [1, H, W, 1|3] (float32, uint8 or int8), one output [1, N].

    A model calibrated by edgecls (export, `train --backbone`, `edgecls calibrate`) also answers
    "unknown" when its open-set rule says an image is none of its classes: see Answer and
    edgecls.runtime.openset. `open_set=False` gives the raw answer (never unknown)."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        num_threads: int | None = None,
        labels: str | os.PathLike | Sequence[str] | None = None,
        backend: str | None = None,
        input_range: tuple[float, float] | None = None,
        resize: str | None = None,
        fit: str | None = None,
        open_set: bool = True,
        content: bytes | None = None,
    ):
        """`content`: the model's bytes, already read (and checked with check_tflite_bytes); `model_path`
        then only names the model in messages and says where labels.txt would be (edgecls serve checks an
        uploaded model as the file it is about to become).

        `input_range` (low, high): the input values that pixels 0 and 255 become, overriding the
        metadata's pixel_range and the default (0..255 for a float input: edgecls models scale inside).
        Third-party float models usually want (-1, 1) (MobileNet style) or (0, 1).

        `resize` (bilinear, nearest, area, lanczos) and `fit` (stretch, crop: the centre at the model's
        aspect ratio) say how a picture becomes the input size; by default the metadata's (the resize
        an edgecls model was trained with), else bilinear and stretch. Match what the model was
        evaluated with: Google's Coral MobileNets expect nearest."""
        self.path = Path(model_path)
        if input_range is not None:
            input_range = check_range(input_range, "input_range", EdgeclsError)
        if content is None:
            content = read_model_bytes(self.path)
        self.backend: Backend = find_backend(backend)
        self.num_threads = default_threads() if num_threads is None else num_threads
        check_required_inputs(content, self.path.name)  # what LiteRT crashes on (SIGSEGV) instead of refusing
        started = time.perf_counter()
        # The interpreter verifies the flatbuffer, so it goes first: the metadata reader trusts it. A
        # calibrated model runs its subgraph 1 (probabilities and the open-set similarity in one pass);
        # any other its subgraph 0.
        scoring: list[Any] = []

        def allocate(interpreter: Any) -> None:
            scoring.append(scoring_subgraph(interpreter))
            if scoring[0] is None:
                interpreter.allocate_tensors()

        self.interpreter = create_interpreter(content, self.backend, self.num_threads, name=self.path.name,
                                              allocate=allocate)
        self.load_seconds = time.perf_counter() - started
        self.size_bytes = len(content)
        self.metadata: dict[str, Any] | None = read_metadata(content)

        graph = scoring[0]
        #: the checked input and output (the scoring subgraph's, for a calibrated model)
        self.io = check_io(self.interpreter, self.metadata, self.path.name,
                           (graph.input, graph.output) if graph is not None else None, input_range, resize, fit)
        rule = OpenSetRule.from_metadata(self.metadata, self.path.name)
        if graph is None:
            graph = primary(self.interpreter)
        if rule is not None and rule.needs_similarity and graph.similarity is None:
            raise ModelFileError(f"{self.path.name}: its open-set rule needs the similarity output of the "
                                 f"edgecls_openset subgraph, which {self.backend.name} cannot run or the file lacks")
        #: the rule this classifier applies (None: none, or open_set=False); the model's own is in metadata
        self.open_set_rule = rule if open_set else None
        self._graph = graph
        self._similarity_index = graph.similarity["index"] if graph.similarity is not None else None
        self._needs_similarity = self.open_set_rule is not None and self.open_set_rule.needs_similarity
        self._temperature = 1.0 if rule is None or rule.temperature_in_graph else rule.temperature
        self.output_kind = self.io.output_kind
        self.num_classes = self.io.num_classes
        self.input_spec = self.io.spec
        found, self.labels_source = resolve_labels(labels, self.metadata, self.path, self.num_classes)
        # Repeated names (a labels file with 'a' ten times; ImageNet's two 'crane's) get their index:
        # an answer must say which class it is. labels_note says so (predict prints it).
        self.labels, self.labels_note = unique_labels(found, self.labels_source)
        self.max_batch = MAX_BATCH if self.io.dynamic_batch else 1

        self._size, self._color = self.input_spec.size, self.input_spec.color
        self._resize, self._fit = self.input_spec.resize, self.input_spec.fit
        self._input_index = self.io.input["index"]
        self._output_index = self.io.output["index"]
        self._batch = 1
        self._to_input = input_converter(self.input_spec)
        self._single = np.empty((1, *self.input_spec.shape), self.input_spec.dtype)  # classify()'s input, reused
        self._shape = self.input_spec.shape  # a property: classify() compares with it on every call
        self._write_single = single_writer(self.input_spec, self._single)
        out_dtype, out_scale, out_zero_point = self.io.output["dtype"], self.io.output_scale, self.io.output_zero_point
        #: what the output's probabilities are rounded to (1/256 for an 8-bit softmax; 0.0 for a float output)
        self.output_step = out_scale if out_dtype != np.float32 else 0.0
        self._from_output = output_converter(out_dtype, out_scale, out_zero_point)
        self._prob_tolerance = quant_tolerance(self.num_classes, out_scale)
        # classify(top_k=1) of a model whose output is probabilities reads the top class straight from
        # the raw output tensor: the same index and score as output() + top_classes, without either.
        self._raw_scores = output_scores(out_dtype, out_scale, out_zero_point)
        self._raw_top1 = self.output_kind == "probabilities" and (out_dtype == np.float32 or
                                                                  self._raw_scores is not None)
        self._set_tensor, self._invoke, self._get_tensor = graph.set_tensor, graph.invoke, graph.get_tensor

    def __repr__(self) -> str:
        s = self.input_spec
        return (f"Classifier({str(self.path)!r}, input={s.height}x{s.width}x{s.channels} {np.dtype(s.dtype).name} "
                f"({s.resize}, {s.fit}), "
                f"classes={self.num_classes}, backend={self.backend.name}, threads={self.num_threads})")

    # ---------------------------------------------------------------- one image
    def preprocess(self, image: ImageSource) -> np.ndarray:
        """Decode a path / encoded bytes / PIL image / array into the uint8 (H, W, C) pixels the model takes."""
        return load_image(image, self._size, self._color, self._resize, self._fit)

    def classify(self, image: ImageSource, top_k: int = 1) -> Answer:
        """The top-k classes of one image, best first (an Answer: a list of Class with `unknown` and
        `typicality` beside it). Raises ImageError for a bad image."""
        if type(image) is np.ndarray and image.dtype is _UINT8 and image.shape == self._shape:
            pixels = image  # already decoded: what load_image would return, minus its checks
        else:
            pixels = self.preprocess(image)
        if self._batch != 1:
            self._set_batch(1)
        self._set_tensor(self._input_index, self._write_single(pixels))
        self._invoke()
        if top_k <= 1 and self._raw_top1:
            raw = self._get_tensor(self._output_index)
            i = int(raw.argmax())  # batch 1: the flat index is the class
            value = raw.item(i)
            if self._raw_scores is not None:  # 8-bit: the table's scores are finite (checked at load)
                score = self._raw_scores[value & 0xFF]
            elif value - value:  # NaN or inf (x - x is 0.0 for any finite x); argmax stops at the first NaN
                raise self._not_numbers(1, 1)
            else:
                score = value
            classes = [_new_class(Class, (i, self.labels[i], score))]  # Class(...) in half the time
        else:
            scores = self.output()[0]
            if not np.isfinite(scores).all():
                raise self._not_numbers(1, 1)
            classes = self.top_classes(scores, top_k)
        if self.open_set_rule is None:
            return Answer(classes)
        similarity = self._get_tensor(self._similarity_index).item(0) if self._needs_similarity else None
        return answer(classes, self.open_set_rule, classes[0].score, similarity)

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
        rows = np.empty((batch_size, *self.input_spec.shape), self.input_spec.dtype)  # the input, row by row
        write_row = row_writer(self.input_spec, rows)
        group: list[tuple[Any, str | None]] = []  # (source, None: its row is in `rows` | the error reason)
        ready = 0
        if batch_size > 1 and not isinstance(images, (list, tuple)):
            # A slow source (a network folder, a camera) must not hold back decoded rows; a list in
            # memory is never slow to give its next item, and a reader thread would only cost it time.
            images = _prefetched(images, depth=batch_size)
        items, failure = self._decoded(images, workers, depth=batch_size + 2 * workers), None
        while True:
            try:
                item = next(items)
            except StopIteration:
                break
            except Exception as exc:  # the source failed: the rows it gave before come first, then its error
                failure = exc
                break
            if item is None:  # the next image is slow to come: give the rows already decoded now
                if ready:
                    yield from self._predict_group(group, rows[:ready], top_k)
                    group, ready = [], 0
                continue
            source, pixels = item
            if isinstance(pixels, str):
                group.append((source, pixels))
            else:
                write_row(pixels, ready)
                group.append((source, None))
                ready += 1
            # A full batch, or a run of bad files: memory stays bounded and rows keep coming.
            if ready == batch_size or len(group) >= 2 * batch_size:
                yield from self._predict_group(group, rows[:ready], top_k)
                group, ready = [], 0
        if group:
            yield from self._predict_group(group, rows[:ready], top_k)
        if failure is not None:
            raise failure

    def _predict_group(self, group: list[tuple[Any, str | None]], inputs: np.ndarray,
                       top_k: int) -> Iterator[Prediction]:
        probabilities, similarity = self._run(inputs) if len(inputs) else (np.zeros((0, 0)), None)
        rule = self.open_set_rule
        unknown, typicality = (rule.decide(probabilities.max(1, initial=0.0), similarity) if rule is not None
                               else (None, None))
        finite = np.isfinite(probabilities).all(axis=1)  # one call a batch: a NaN row is an error row, never a class
        if top_k <= 1 and len(probabilities):  # the common case: each row's top class, one numpy call a batch
            best = probabilities.argmax(1)
            tops = [(_new_class(Class, (i, self.labels[i], score)),)
                    for i, score in zip(best.tolist(), probabilities[np.arange(len(best)), best].tolist())]
        row = 0
        for source, error in group:
            if error is not None:
                yield Prediction(source, error=error)
                continue
            if not finite[row]:
                yield Prediction(source, error=NOT_NUMBERS)
                row += 1
                continue
            classes = tops[row] if top_k <= 1 else tuple(self.top_classes(probabilities[row], top_k))
            if rule is None:
                yield Prediction(source, classes)
            else:
                yield Prediction(source, classes, unknown=bool(unknown[row]), typicality=float(typicality[row]))
            row += 1

    def _decoded(self, sources: Iterable[Any], workers: int,
                 depth: int) -> Iterator[tuple[Any, np.ndarray | str] | None]:
        """(source, pixels or error reason) in input order, decoding up to `depth` ahead; None when
        the next one has kept us waiting STREAM_WAIT seconds (so the caller can flush a partial batch)."""
        if workers > 1:  # the pool reads `depth` ahead anyway; one image needs no pool, nor its import
            sources = iter(sources)
            head = list(islice(sources, 2))
            workers = workers if len(head) == 2 else 1
            sources = chain(head, sources)
        pool = None
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor  # with logging, ~40 ms of a cold start

            pool = ThreadPoolExecutor(workers, thread_name_prefix="edgecls-decode")
        pending: deque = deque()
        try:
            for source in sources:
                if source is _STALLED:  # nothing new for a while: hand over what is decoded so far
                    while pending:
                        yield from _when_ready(pending.popleft())
                    yield None
                    continue
                if pool is None:  # in order, nothing ahead: no queue (a folder at one thread pays per image)
                    yield (source.source, source.error) if isinstance(source, Prediction) else (
                        source, self._decode(source))
                    continue
                if isinstance(source, Prediction):
                    pending.append((source.source, source.error))
                else:
                    pending.append((source, pool.submit(self._decode, source)))
                while len(pending) >= depth:
                    yield from _when_ready(pending.popleft())
            while pending:
                yield from _when_ready(pending.popleft())
        except BaseException:
            # Ctrl-C or the consumer stopped: do not wait for queued decodes (wait=True ignored the first Ctrl-C).
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        if pool is not None:
            pool.shutdown(wait=True)

    def _decode(self, source: ImageSource) -> np.ndarray | str:
        try:
            return self.preprocess(source)
        except ImageError as exc:
            return str(exc)
        except Exception as exc:  # a Pillow plugin choking on a hostile file must not end a batch
            text = str(exc).strip().splitlines()
            return f"cannot decode: {type(exc).__name__}" + (f": {text[0]}" if text else "")

    # ---------------------------------------------------------------- raw scoring (bench uses these)
    def probabilities(self, batch: np.ndarray, check: bool = True) -> np.ndarray:
        """Class probabilities, float32 (B, N), of a uint8 batch (B, H, W, C) of decoded pixels.

        Scores that are not numbers (NaN, inf: a broken model or input range) raise an EdgeclsError
        naming how many images had them, unless `check` is False (then the caller looks)."""
        scores = self.scores(batch)[0]
        if check:
            bad = int(np.count_nonzero(~np.isfinite(scores).all(axis=1)))
            if bad:
                raise self._not_numbers(bad, len(batch))
        return scores

    def _not_numbers(self, bad: int, total: int) -> EdgeclsError:
        low, high = self.input_spec.pixel_range
        return EdgeclsError(f"{self.path.name}: {NOT_NUMBERS} for {bad} of {total} image(s) (input range "
                            f"{low:g}..{high:g}); no class is given for them", exit_code=1)

    def scores(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(class probabilities (B, N), the open-set similarity (B,) or None) of a uint8 batch; with
        Classifier.open_set_rule.decide they give each image's unknown flag and typicality."""
        if batch.dtype != np.uint8 or batch.shape[1:] != self.input_spec.shape:
            raise EdgeclsError(f"expected a uint8 batch of shape (B, {', '.join(map(str, self.input_spec.shape))}), "
                               f"got {batch.dtype} {batch.shape}")
        if len(batch) == 0:
            return np.zeros((0, self.num_classes), np.float32), None if self._similarity_index is None else np.zeros(0)
        if len(batch) <= self.max_batch:
            return self._run(self._to_input(batch))
        step = self.max_batch
        parts = [self.scores(batch[i:i + step]) for i in range(0, len(batch), step)]
        similarity = None if parts[0][1] is None else np.concatenate([p[1] for p in parts])
        return np.concatenate([p[0] for p in parts]), similarity

    def set_input(self, batch: np.ndarray) -> None:
        """Quantise a uint8 batch (at most max_batch images) and copy it into the input tensor."""
        self._set_inputs(self._to_input(batch))

    def _set_inputs(self, inputs: np.ndarray) -> None:
        """Copy a batch already in the input's dtype (at most max_batch images) into the input tensor."""
        if len(inputs) != self._batch:
            self._set_batch(len(inputs))
        self._set_tensor(self._input_index, inputs)

    def _run(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities, similarity or None) of a batch already in the input's dtype."""
        self._set_inputs(inputs)
        self._invoke()
        return self.output(), self.similarity()

    def _set_batch(self, batch: int) -> None:
        self._graph.resize_input(self._input_index, [batch, *self.input_spec.shape])
        self._batch = batch

    def invoke(self) -> None:
        """Run the model on the input set by set_input (time this alone for invoke latency)."""
        self._invoke()

    def output(self) -> np.ndarray:
        """The last invoke's output as probabilities, float32 (B, N)."""
        raw = self._get_tensor(self._output_index)
        scores = self._from_output(raw if raw.ndim == 2 else raw.reshape(self._batch, -1))
        if self.output_kind == "probabilities":
            return scores
        if self.output_kind == "logits" or not is_distribution(scores, self._prob_tolerance):
            # a temperature the graph could not take (no SOFTMAX to fold it into) is applied here
            return softmax(scores / self._temperature if self._temperature != 1.0 else scores)
        return scores

    def similarity(self) -> np.ndarray | None:
        """The last invoke's open-set similarity, float32 (B,), or None for a model without one."""
        if self._similarity_index is None:
            return None
        return self._get_tensor(self._similarity_index).reshape(self._batch).astype(np.float32, copy=False)


_STALLED = object()  # from _prefetched: the source has kept us waiting STREAM_WAIT seconds
_END = object()


def _prefetched(sources: Iterable[Any], depth: int) -> Iterator[Any]:
    """`sources`, read ahead (up to `depth` items) by a daemon thread, with _STALLED whenever the next
    item is slow to come.

    The hand-over is a deque (its append and popleft are atomic) and two Events that are touched only
    when a side has to wait: a fast source costs no lock per item and the reader wakes once per half
    `depth`, where a queue.Queue cost ~40 us an image (a lock, a condition, a thread switch each)."""
    sources = iter(sources)
    first = next(sources, _END)  # read here (nothing is decoded yet that it could hold back); the rest read ahead
    if first is _END:
        return
    yield first
    import threading

    ahead: deque = deque()
    has_items, has_room, stop = threading.Event(), threading.Event(), threading.Event()
    has_items.set()

    def feed() -> None:
        try:
            for item in sources:
                while len(ahead) >= depth and not stop.is_set():  # full: wait until half of it is read
                    has_room.clear()
                    if len(ahead) >= depth:
                        has_room.wait(STREAM_WAIT)
                if stop.is_set():
                    return
                ahead.append((item, None))
                if not has_items.is_set():
                    has_items.set()
            ahead.append((_END, None))
        except BaseException as exc:  # raised again in the consumer's thread
            ahead.append((_END, exc))
        has_items.set()

    threading.Thread(target=feed, name="edgecls-source", daemon=True).start()
    try:
        while True:
            if not ahead:
                has_items.clear()
                if not ahead and not has_items.wait(STREAM_WAIT):
                    yield _STALLED
                    continue
                if not ahead:
                    continue
            item, error = ahead.popleft()
            if len(ahead) <= depth // 2 and not has_room.is_set():
                has_room.set()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        has_room.set()


def _when_ready(item: tuple[Any, Any]) -> Iterator[tuple[Any, np.ndarray | str] | None]:
    source, pixels = item
    if not isinstance(pixels, (np.ndarray, str)):  # a Future of the decode pool (imported only with it)
        from concurrent.futures import wait

        if not wait([pixels], timeout=STREAM_WAIT).done:
            yield None
        pixels = pixels.result()
    yield source, pixels
