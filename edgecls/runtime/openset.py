"""The device side of "unknown": the open-set rule a .tflite carries, and the subgraph that scores it.

`edgecls calibrate` (and export, and `train --backbone`) leave two things in a model:

- in its edgecls metadata, under "openset": the rule (`top`, `embedding` or `both`), its thresholds,
  the validation scores they came from (for the typicality shown beside each answer), the
  temperature and how all of it was chosen;
- for the embedding rule, a second subgraph in the .tflite. Subgraph 1 ("edgecls_openset", also a
  signature) is the whole classifier plus a tail that computes, from its embedding, the cosine
  similarity to the nearest class prototype: outputs [probabilities, similarity]. Subgraph 0 is one IF
  op that calls subgraph 1 and passes on the probabilities only, so a file made this way is still a
  one-input, one-output classifier to any interpreter and to edgecls installs that predate it (they
  run it, bit-identical, with no unknown rule). This package invokes subgraph 1 directly: one pass
  gives both outputs, and the weights live (and are packed by XNNPACK) once.

An image is unknown when a score of the rule is below its threshold: the calibrated top probability
(`top`), the similarity (`embedding`), either of the two (`both`). Its typicality is the share of the
validation images of known classes whose score is lower (the lower of the two for `both`): 0.01
says 99 % of the known images looked more typical than this one.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from edgecls.runtime.metadata import ModelFileError

OPENSET_KEY = "openset"  # the metadata entry
OPENSET_FORMAT = "edgecls.openset/1"
SIGNATURE = "edgecls_openset"  # the signature (and subgraph name) of the classifier with the score
PROBABILITIES_OUTPUT = "probabilities"  # the signature's output names
SIMILARITY_OUTPUT = "similarity"
RULES = ("top", "embedding", "both")
RULE_CHOICES = ("auto", *RULES)  # what calibration may be asked for (auto: chosen by the figures)
DEFAULT_ACCEPT = 0.95  # the share of validation images of known classes a rule accepts, by default
MAX_QUANTILES = 1001  # validation scores kept for the typicality (interpolated beyond this many)


class Answer(list):
    """What `Classifier.classify` returns: the top-k classes, best first (a list of Class, as before),
    with the open-set verdict beside them: `unknown` (the model's rule says the image is none of its
    classes; the classes are then the best guess) and `typicality` (0..1, see the module doc; None
    for a model without a rule)."""

    unknown = False
    _rule: Optional[OpenSetRule] = None
    _scores: tuple[float, Optional[float]] = (0.0, None)

    @property
    def typicality(self) -> Optional[float]:
        return None if self._rule is None else self._rule.typicality(*self._scores)

    def __repr__(self) -> str:
        if self._rule is None:
            return f"Answer({list.__repr__(self)})"
        return f"Answer({list.__repr__(self)}, unknown={self.unknown}, typicality={self.typicality:.3f})"


def answer(classes: Sequence[Any], rule: Optional[OpenSetRule], top: float, similarity: Optional[float]) -> Answer:
    """An Answer of `classes`; with a rule, its verdict on the scores (top probability, similarity)."""
    result = Answer(classes)
    if rule is not None:
        result._rule, result._scores = rule, (top, similarity)
        result.unknown = rule.is_unknown(top, similarity)
    return result


@dataclass(frozen=True)
class OpenSetRule:
    """The rule of a model's metadata: thresholds on the calibrated top probability and/or on the
    similarity to the nearest prototype, and the sorted validation scores behind them."""

    rule: str  # top | embedding | both
    accept: float  # the share of validation images of known classes it was set to accept
    top_threshold: Optional[float]
    similarity_threshold: Optional[float]
    top_scores: tuple[float, ...]  # sorted validation scores, for the typicality
    similarity_scores: tuple[float, ...]
    temperature: float  # 1.0: none; applied by the runtime only when not in the graph
    temperature_in_graph: bool

    @property
    def needs_similarity(self) -> bool:
        return self.similarity_threshold is not None

    def is_unknown(self, top: float, similarity: Optional[float]) -> bool:
        if self.top_threshold is not None and not top >= self.top_threshold:  # NaN scores are unknown too
            return True
        return self.similarity_threshold is not None and not (similarity is not None
                                                               and similarity >= self.similarity_threshold)

    def typicality(self, top: float, similarity: Optional[float]) -> float:
        shares = []
        if self.top_threshold is not None:
            shares.append(_share_below(self.top_scores, top))
        if self.similarity_threshold is not None:
            shares.append(_share_below(self.similarity_scores, similarity))
        return min(shares)

    def decide(self, top: np.ndarray, similarity: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(unknown, typicality) of a batch: top probabilities (B,) and similarities (B,) or None."""
        unknown = np.zeros(len(top), bool)
        typicality = np.ones(len(top))
        for threshold, scores, values in ((self.top_threshold, self.top_scores, top),
                                          (self.similarity_threshold, self.similarity_scores, similarity)):
            if threshold is None:
                continue
            values = np.full(len(top), np.nan) if values is None else np.asarray(values, np.float64)
            unknown |= ~(values >= threshold)
            share = np.searchsorted(np.asarray(scores), values, side="left") / max(1, len(scores))
            typicality = np.minimum(typicality, np.where(np.isnan(values), 0.0, share))
        return unknown, typicality

    @classmethod
    def from_metadata(cls, metadata: Optional[dict], name: str = "model") -> Optional[OpenSetRule]:
        """The rule of an edgecls metadata document, None without one; a one-line ModelFileError
        when the entry is malformed (parsed from an untrusted file)."""
        entry = (metadata or {}).get(OPENSET_KEY)
        if entry is None:
            return None
        what = f"{name}: malformed edgecls metadata: openset"
        if not isinstance(entry, dict) or entry.get("rule") not in RULES:
            raise ModelFileError(f"{what}: 'rule' must be one of {', '.join(RULES)}")
        accept = _number(entry.get("accept"), f"{what}.accept")
        thresholds, scores = {}, {}
        for part in ("top", "embedding"):
            wanted = entry["rule"] in (part, "both")
            table = entry.get(part)
            if not wanted:
                thresholds[part], scores[part] = None, ()
                continue
            if not isinstance(table, dict):
                raise ModelFileError(f"{what}.{part} must be an object for rule {entry['rule']!r}")
            thresholds[part] = _number(table.get("threshold"), f"{what}.{part}.threshold")
            values = table.get("scores")
            if not (isinstance(values, list) and 0 < len(values) <= MAX_QUANTILES):
                raise ModelFileError(f"{what}.{part}.scores must be a list of 1 to {MAX_QUANTILES} numbers")
            scores[part] = tuple(sorted(_number(v, f"{what}.{part}.scores") for v in values))
        temperature = entry.get("temperature") or {}
        if not isinstance(temperature, dict):
            raise ModelFileError(f"{what}.temperature must be an object")
        value = _number(temperature.get("value", 1.0), f"{what}.temperature.value")
        if not value > 0:
            raise ModelFileError(f"{what}.temperature.value must be positive")
        return cls(entry["rule"], accept, thresholds["top"], thresholds["embedding"], scores["top"],
                   scores["embedding"], value, temperature.get("applied") == "graph")


def _share_below(sorted_scores: tuple[float, ...], value: Optional[float]) -> float:
    if value is None or value != value:  # NaN: as far from typical as it gets
        return 0.0
    return bisect_left(sorted_scores, value) / len(sorted_scores)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ModelFileError(f"{what} must be a finite number")
    return float(value)


# ---------------------------------------------------------------------- running subgraph 1
@dataclass(frozen=True)
class Subgraph:
    """One subgraph of an interpreter: its image input and outputs, and the calls that run it."""

    index: int
    input: dict  # tensor details, as get_input_details() gives them
    output: dict  # the probabilities
    similarity: Optional[dict]  # the open-set score, (B, 1) float32
    set_tensor: Callable[[int, np.ndarray], None]
    invoke: Callable[[], None]
    get_tensor: Callable[[int], np.ndarray]
    resize_input: Callable[[int, Sequence[int]], None]  # and allocate


def primary(interpreter: Any) -> Subgraph:
    """Subgraph 0 through the interpreter's public API (every model; the classifier of a plain one)."""
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def resize(index: int, shape: Sequence[int]) -> None:
        interpreter.resize_tensor_input(index, list(shape))
        interpreter.allocate_tensors()

    return Subgraph(0, inp, out, None, interpreter.set_tensor, interpreter.invoke, interpreter.get_tensor, resize)


def scoring_subgraph(interpreter: Any) -> Optional[Subgraph]:
    """The "edgecls_openset" subgraph of a calibrated model, allocated to run directly (one pass for
    the probabilities and the similarity), or None when the model or the interpreter has none.

    Call it before anything allocates subgraph 0: the IF there takes over subgraph 1's input and
    output tensors once prepared. Uses the interpreter wrapper's per-subgraph calls, which LiteRT's
    own SignatureRunner makes (LiteRT, tflite_runtime and tf.lite have them)."""
    try:
        if SIGNATURE not in interpreter.get_signature_list():
            return None
        runner = interpreter.get_signature_runner(SIGNATURE)
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        index = int(runner._subgraph_index)
        del runner  # it holds the wrapper: interpreter.invoke() refuses to run while anything does
        if len(inputs) != 1 or PROBABILITIES_OUTPUT not in outputs or SIMILARITY_OUTPUT not in outputs:
            return None
        wrapper = type(interpreter._interpreter)
        if not (all(hasattr(wrapper, call) for call in ("SetTensor", "Invoke", "AllocateTensors", "ResizeInputTensor"))
                and "subgraph_index" in interpreter.get_tensor.__code__.co_varnames):
            return None
    except (AttributeError, KeyError, ValueError, RuntimeError, TypeError):
        return None
    interpreter._interpreter.AllocateTensors(index)  # a broken subgraph: the caller's one-line error

    # Looked up on each call, never held: interpreter.invoke() checks that nothing else holds the wrapper.
    def set_tensor(tensor: int, value: np.ndarray) -> None:
        interpreter._interpreter.SetTensor(tensor, value, index)

    def invoke() -> None:
        interpreter._interpreter.Invoke(index)

    def resize(tensor: int, shape: Sequence[int]) -> None:
        interpreter._interpreter.ResizeInputTensor(tensor, np.asarray(shape, np.int32), False, index)
        interpreter._interpreter.AllocateTensors(index)

    return Subgraph(index, next(iter(inputs.values())), outputs[PROBABILITIES_OUTPUT], outputs[SIMILARITY_OUTPUT],
                    set_tensor, invoke, lambda tensor: interpreter.get_tensor(tensor, index), resize)
