"""Calibrate a .tflite classifier and give it an "unknown" answer: one job for every route (export
of a Keras run, `train --backbone`, `edgecls calibrate` of any model), with no TensorFlow.

    model -> the plain classifier (a previous calibration undone) -> probe it on the images: logits,
    embeddings -> temperature (validation NLL) and class prototypes (fit images) -> write the
    candidate file (beta / T in its SOFTMAX, the similarity subgraph) -> run IT on the validation
    and unknown images -> thresholds and the rule, chosen by those figures -> the file with its
    metadata's "openset" entry (everything the device needs, and how it was chosen)

Thresholds come from the written file's own outputs (8-bit probabilities, float32 similarities),
so the device applies them to exactly the numbers they were chosen on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.atomic import private_tempdir
from edgecls.bounds import check_bound
from edgecls.calibrate import fit
from edgecls.calibrate import graph as surgery
from edgecls.errors import EdgeclsError
from edgecls.runtime.classify import Classifier
from edgecls.runtime.interpreter import create_interpreter, find_backend
from edgecls.runtime.metadata import embed_metadata, read_metadata
from edgecls.runtime.metrics import calibration_figures, nll_floor, open_set_figures
from edgecls.runtime.model import read_model_bytes
from edgecls.runtime.openset import DEFAULT_ACCEPT, OPENSET_FORMAT, OPENSET_KEY, RULE_CHOICES, SIGNATURE
from edgecls.runtime.preprocess import load_image
from edgecls.runtime.quant import input_converter, softmax
from edgecls.runtime.sources import MAX_UNKNOWN, read_images
from edgecls.tflite.classifier import plain
from edgecls.tflite.graph import load_model

MAX_PROTOTYPE_BYTES = 64 << 10  # or a quarter of the model, if larger: the prototypes are float32 weights
MIN_VALIDATION = 20  # fewer validation images cannot set a threshold worth the name
MAX_FIT_IMAGES = 5000  # train images the prototypes are fitted on (a stratified sample of a bigger split)


@dataclass
class OpenSetOptions:
    accept: float = DEFAULT_ACCEPT  # the share of validation images of known classes to accept
    rule: str = "auto"  # auto: chosen by the figures (see calibrate.fit.choose)
    per_class: int = fit.PER_CLASS  # prototypes per class
    seed: int = 0
    threads: Optional[int] = None
    backend: Optional[str] = None  # the interpreter backend (find_backend's names; None: the first installed)


@dataclass
class FitData:
    """The labelled images calibration uses (uint8, at the model's input size), and where they came from."""

    fit_images: np.ndarray  # class prototypes are fitted on these (a run's train split)
    fit_labels: np.ndarray
    val_images: np.ndarray  # temperature, thresholds and the rule are chosen on these
    val_labels: np.ndarray
    unknown_images: Optional[np.ndarray] = None  # images of none of the classes (--unknown-data)
    source: dict[str, Any] = field(default_factory=dict)  # {"fit": "...", "val": "...", "unknown": "..."}
    train_labels: Optional[np.ndarray] = None  # the whole train split's, when fit_images are a sample of it


@dataclass
class Calibrated:
    content: bytes  # the calibrated .tflite, metadata included
    record: dict[str, Any]  # its metadata's "openset" entry
    figures: dict[str, Any]  # validation figures before and after (metrics.json, export.json)

    def summary(self) -> str:
        r, f = self.record, self.figures
        chosen = next(c for c in r["chosen"]["candidates"] if c["rule"] == r["rule"])
        rejected = (f", rejects {chosen['rejected_unknown']:.1%} of {r['chosen']['unknown_images']} unknown images"
                    if chosen["rejected_unknown"] is not None else "")
        t, applied = r["temperature"]["value"], r["temperature"]["applied"]
        if applied == "none":
            temperature = "no temperature (the model's output is neither a SOFTMAX nor logits)"
        elif t == 1.0:  # the probabilities as they were (the same up to the output's rounding)
            temperature = (f"no temperature (none lowered both the validation ECE, {f['val']['ece_before']:.4f}, "
                           f"and NLL, {f['val']['nll_before']:.4f})")
        else:
            shown = f"{t:.3f}" if round(t, 3) != 1.0 else f"{t:.5f}"  # a T near 1 is not printed as 1.000
            temperature = (f"temperature {shown}: validation ECE {f['val']['ece_before']:.4f} -> "
                           f"{f['val']['ece_after']:.4f}, NLL {f['val']['nll_before']:.4f} -> "
                           f"{f['val']['nll_after']:.4f}")
        return (f"unknown rule '{r['rule']}' accepts {chosen['accepted']:.1%} of {f['val']['images']} validation "
                f"images (accuracy on them {chosen['selective_accuracy']:.4f}, on all {f['val']['accuracy']:.4f})"
                f"{rejected}; {temperature}")


def validate(options: OpenSetOptions) -> None:
    check_bound("--accept", options.accept)
    if options.rule not in RULE_CHOICES:
        raise EdgeclsError(f"unknown --rule {options.rule!r}: use one of {', '.join(RULE_CHOICES)}")
    if options.per_class < 1:
        raise EdgeclsError(f"--prototypes must be at least 1 (got {options.per_class})")


def calibrate(content: bytes, data: FitData, options: OpenSetOptions, metadata: Optional[dict] = None,
              name: str = "model", input_range: Optional[tuple[float, float]] = None,
              log: Callable[[str], None] = lambda message: None) -> Calibrated:
    """Calibrate the .tflite `content` on `data` (see the module doc). `metadata` is the edgecls metadata
    to write (default: the model's own; a third-party model's caller makes one). One-line errors."""
    validate(options)
    metadata = dict(metadata if metadata is not None else read_metadata(content) or {})
    if len(data.val_labels) < MIN_VALIDATION:
        raise EdgeclsError(f"{len(data.val_labels)} validation images are too few to calibrate {name} on "
                           f"(at least {MIN_VALIDATION}): give more images")
    previous = (metadata.get(OPENSET_KEY) or {}).get("temperature") or {}
    model = load_model(content, name)
    plain(model, previous.get("beta_before") if previous.get("applied") == "graph" else None)
    tail = surgery.find_tail(model)
    classes = len(metadata.get("labels") or []) or int(data.val_labels.max()) + 1
    wants_embedding = options.rule in ("auto", "embedding", "both")
    if options.rule in ("embedding", "both") and tail.embedding is None:
        raise EdgeclsError(f"--rule {options.rule}: {name} has no embedding edgecls can read (no FULLY_CONNECTED "
                           "or 1x1 CONV_2D classifier layer at its end): use --rule top")
    with private_tempdir("edgecls-calibrate") as folder:
        probe_path = folder / "probe.tflite"
        probe_path.write_bytes(surgery.probe(model, tail))
        # The spec (input size, scale, pixel range) of the model as the device reads it.
        spec = _spec(folder, embed_metadata(_plain_bytes(model), _without_openset(metadata)), options, input_range)
        run = _Probe(probe_path, spec, options.threads, options.backend)
        val_out, val_logits, val_embeddings = run(data.val_images)
        output = run.outputs[0]  # an 8-bit softmax rounds what it gives: T is fitted, and NLL reported, on that
        step = float(output["quantization"][0]) if output["dtype"] != np.float32 else 0.0
        before = calibration_figures(_as_probabilities(val_out, metadata), data.val_labels, floor=nll_floor(step))
        temperature, applied = 1.0, "none"
        if tail.softmax is not None or metadata.get("output") == "logits":
            logits = val_logits * tail.beta if tail.softmax is not None else val_logits
            device = (fit.quantised_output(output["dtype"], *output["quantization"]) if tail.softmax is not None
                      else None)
            temperature = fit.calibrating_temperature(logits, data.val_labels, device, nll_floor(step))
            applied = "graph" if tail.softmax is not None else "runtime"
        prototypes = None
        if wants_embedding and tail.embedding is not None:
            prototypes = _prototypes(run, data, classes, tail.dims, len(content), options, log)
        graph_bytes = surgery.calibrated(model, tail, temperature, prototypes)
        candidate_path = folder / "candidate.tflite"
        candidate_path.write_bytes(embed_metadata(graph_bytes, _without_openset(metadata)))
        scorer = Classifier(candidate_path, num_threads=options.threads, backend=options.backend,
                            input_range=input_range, open_set=False)
        val_probs, val_sim = scorer.scores(data.val_images)
        unknown_probs = unknown_sim = None
        if data.unknown_images is not None and len(data.unknown_images):
            unknown_probs, unknown_sim = scorer.scores(data.unknown_images)
            if applied == "runtime":
                unknown_probs = softmax(run(data.unknown_images)[1] / temperature)
        if applied == "runtime":  # a logits output: the device divides by T (Classifier.output)
            val_probs = softmax(val_logits / temperature)
    after = calibration_figures(val_probs, data.val_labels, floor=nll_floor(step))
    correct = val_probs.argmax(1) == data.val_labels
    candidates = fit.rule_figures(options.accept, val_probs.max(1), correct, val_sim,
                                  None if unknown_probs is None else unknown_probs.max(1), unknown_sim)
    if options.rule == "auto":
        chosen, why = fit.choose(candidates)
    else:
        chosen, why = next(c for c in candidates if c.rule == options.rule), f"--rule {options.rule}"
    if chosen.rule == "top" and prototypes is not None:  # the same graph up to the probabilities, without the tail
        graph_bytes, prototypes = surgery.calibrated(model, tail, temperature, None), None
    record = _record(chosen, why, candidates, options, temperature, applied, tail, prototypes, val_probs.max(1),
                     val_sim, data, classes)
    figures = {"val": {"images": int(len(data.val_labels)), "accuracy": float(correct.mean()),
                       "ece_before": before["ece"], "ece_after": after["ece"], "nll_before": before["nll"],
                       "nll_after": after["nll"], "reliability_before": before["bins"],
                       "reliability_after": after["bins"]}}
    result = embed_metadata(graph_bytes, _without_openset(metadata) | {OPENSET_KEY: record})
    calibrated = Calibrated(result, record, figures)
    log(f"{name}: {calibrated.summary()}")
    return calibrated


def calibrate_split(content: bytes, images: np.ndarray, labels: np.ndarray, split: Any, options: OpenSetOptions,
                    unknown_data: Optional[str], name: str, log: Callable[[str], None],
                    negatives: Optional[np.ndarray] = None, score_test: bool = True) -> tuple[bytes, dict]:
    """Calibrate a run's .tflite as export and `train --backbone` do: prototypes from (a stratified sample
    of) the train split, temperature and rule on the validation split, figures on the test split (unless
    `score_test` is False: a caller that chooses among runs on validation reads the test split after);
    `negatives` (images of none of the classes, at the model's size, e.g. a retrained run's unknown/
    images) join --unknown-data's. Returns the calibrated file and its report (metrics.json's and
    export.json's "openset")."""
    from edgecls.data import stratified_sample

    if len(split.val) < MIN_VALIDATION:  # a tiny run still trains and exports: without the rule, said so
        why = (f"no temperature and no unknown rule: {len(split.val)} validation images are too few to set them "
               f"(at least {MIN_VALIDATION})")
        log(f"warning: {name}: {why}")
        return content, {"rule": None, "skipped": why}
    train = np.asarray(split.train)[stratified_sample(labels[split.train], MAX_FIT_IMAGES, options.seed)]
    h, w, c = images.shape[1:]
    color = "grayscale" if c == 1 else "rgb"
    unknown = (read_images(Path(unknown_data), lambda path: load_image(path, (h, w), color), MAX_UNKNOWN,
                           options.seed, "--unknown-data") if unknown_data else None)
    where = [str(unknown_data)] if unknown_data else []
    if negatives is not None and len(negatives):
        unknown = negatives if unknown is None else np.concatenate([unknown, negatives])
        where.append(f"{len(negatives)} images of the run's added unknown/ folders")
    data = FitData(np.asarray(images[train]), labels[train], np.asarray(images[split.val]), labels[split.val], unknown,
                   {"fit": f"train split ({len(train)} images)", "val": "validation split",
                    **({"unknown": " and ".join(where)} if where else {})}, train_labels=labels[split.train])
    result = calibrate(content, data, options, name=name, log=log)
    test = (evaluate(result.content, np.asarray(images[split.test]), labels[split.test], threads=options.threads,
                     backend=options.backend)
            if score_test else None)
    report = {"rule": result.record["rule"], "accept": options.accept,
              "temperature": result.record["temperature"]["value"], "chosen_by": result.record["chosen"]["by"],
              "candidates": result.record["chosen"]["candidates"], "val": result.figures["val"], "test": test}
    return result.content, report


def evaluate(content: bytes, images: np.ndarray, labels: np.ndarray, unknown: Optional[np.ndarray] = None,
             threads: Optional[int] = None, backend: Optional[str] = None) -> dict[str, Any]:
    """A calibrated model's figures on held-out images, as the device answers: ECE, NLL, accepted share,
    accuracy on accepted and on all images; with `unknown` images, the share its rule rejects."""
    with private_tempdir("edgecls-calibrate") as folder:
        path = folder / "model.tflite"
        path.write_bytes(content)
        classifier = Classifier(path, num_threads=threads, backend=backend)
        floor = nll_floor(classifier.output_step)
        probabilities, similarity = classifier.scores(images)
        flags, _ = classifier.open_set_rule.decide(probabilities.max(1), similarity)
        rejected = None
        if unknown is not None and len(unknown):
            probs, sim = classifier.scores(unknown)
            rejected = classifier.open_set_rule.decide(probs.max(1), sim)[0]
    figures = open_set_figures(probabilities, labels, flags, rejected, floor)
    figures.pop("bins")
    return figures


def _spec(folder: Path, content: bytes, options: OpenSetOptions, input_range: Optional[tuple[float, float]]):
    path = folder / "plain.tflite"
    path.write_bytes(content)
    return Classifier(path, num_threads=options.threads, backend=options.backend, input_range=input_range).input_spec


def _plain_bytes(model) -> bytes:
    from edgecls.tflite.graph import serialize

    return serialize(model)


def _without_openset(metadata: dict) -> dict:
    return {k: v for k, v in metadata.items() if k != OPENSET_KEY}


def _as_probabilities(outputs: np.ndarray, metadata: dict) -> np.ndarray:
    from edgecls.runtime.quant import is_distribution

    if metadata.get("output") == "probabilities" or (metadata.get("output") != "logits" and is_distribution(outputs)):
        return outputs
    return softmax(outputs)


def _prototypes(run: _Probe, data: FitData, classes: int, dims: int, model_bytes: int, options: OpenSetOptions,
                log: Callable[[str], None]) -> Optional[np.ndarray]:
    budget = max(MAX_PROTOTYPE_BYTES, model_bytes // 4)
    present = len(np.unique(data.fit_labels))  # a third-party model calibrated on some of its classes
    per_class = min(options.per_class, budget // max(1, present * dims * 4))
    if per_class < 1:
        log(f"no embedding rule: {present} classes x {dims} dimensions would add more than {budget >> 10} KiB")
        return None
    _, _, embeddings = run(data.fit_images)
    return fit.fit_prototypes(embeddings, data.fit_labels, classes, per_class, options.seed)


def _record(chosen: fit.RuleFigures, why: str, candidates: list[fit.RuleFigures], options: OpenSetOptions,
            temperature: float, applied: str, tail: surgery.Tail, prototypes: Optional[np.ndarray],
            top: np.ndarray, sim: Optional[np.ndarray], data: FitData, classes: int) -> dict[str, Any]:
    """The metadata's "openset" entry (format edgecls.openset/1)."""
    record: dict[str, Any] = {"format": OPENSET_FORMAT, "rule": chosen.rule, "accept": options.accept}
    if chosen.top_threshold is not None:
        record["top"] = {"threshold": chosen.top_threshold, "score": "calibrated top probability",
                         "scores": fit.score_table(top)}
    if chosen.similarity_threshold is not None and prototypes is not None:
        record["embedding"] = {
            "threshold": chosen.similarity_threshold, "score": "cosine similarity to the nearest class prototype",
            "scores": fit.score_table(sim), "tensor": tail.embedding_name, "dims": tail.dims,
            "prototypes": int(len(prototypes)), "per_class": int(min(options.per_class, len(prototypes))),
            "seed": options.seed, "signature": SIGNATURE}
    record["temperature"] = {"value": round(temperature, 6), "applied": applied,
                             "fitted_on": "val (NLL, kept where the ECE falls too)"}
    if applied == "graph":
        record["temperature"].update(beta_before=tail.beta, softmax_beta=tail.beta / temperature)
    record["chosen"] = {"by": why, "split": "val", "images": int(len(data.val_labels)),
                        "unknown_images": None if data.unknown_images is None else int(len(data.unknown_images)),
                        "candidates": [c.to_json() for c in candidates]}
    record["class_counts"] = {"fit": np.bincount(data.fit_labels, minlength=classes).tolist(),
                              "val": np.bincount(data.val_labels, minlength=classes).tolist()}
    if data.train_labels is not None:  # the training mix, which serve's drift figures compare the answers with
        record["class_counts"]["train"] = np.bincount(data.train_labels, minlength=classes).tolist()
    record["data"] = data.source
    return record


class _Probe:
    """The probe model (outputs: the model's output, its logits, its embedding), run on uint8 images
    with the model's own input conversion; outputs dequantised to float32."""

    def __init__(self, path: Path, spec: Any, threads: Optional[int], backend: Optional[str] = None):
        self.interpreter = create_interpreter(read_model_bytes(path), find_backend(backend), threads, name=path.name)
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = self.interpreter.get_output_details()
        self.convert = input_converter(spec)
        self.batch = 32 if int(self.input["shape_signature"][0]) == -1 else 1
        self.size = 1

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        parts: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for start in range(0, len(images), self.batch):
            chunk = np.asarray(images[start:start + self.batch])
            if len(chunk) != self.size:
                self.interpreter.resize_tensor_input(self.input["index"], [len(chunk), *chunk.shape[1:]])
                self.interpreter.allocate_tensors()
                self.size = len(chunk)
            self.interpreter.set_tensor(self.input["index"], self.convert(chunk))
            self.interpreter.invoke()
            for found, details in zip(parts, self.outputs):
                raw = self.interpreter.get_tensor(details["index"]).reshape(len(chunk), -1)
                scale, zero_point = details["quantization"]
                found.append(raw.astype(np.float32) if details["dtype"] == np.float32
                             else ((raw.astype(np.float32) - zero_point) * scale))
        arrays = [np.concatenate(p) if p else np.zeros((0, 0), np.float32) for p in parts]
        return arrays[0], arrays[1], arrays[2] if len(arrays) > 2 else None
