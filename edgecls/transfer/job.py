"""`edgecls train --backbone FILE.tflite`: a folder of photos -> a new classifier on a pretrained
.tflite backbone, with no TensorFlow, written as a run directory with ONE checked .tflite.

    backbone: find the embedding -> cut the model there -> load the images (edgecls.data, at the
    backbone's input size) -> split -> embed (device runtime, cached; + augmented views of the
    training images) -> fit the head (numpy) -> graft it on as TFLite ops -> embed metadata ->
    run the written .tflite on the validation and test images and compare with the numpy head
    -> RUN/{labels.txt, split.json, config.toml, transfer.json, metrics.json, history.csv,
            curves.png, export/model_<mode>.tflite, export/labels.txt, export/export.json}

The run has no model.keras; export/export.json lists the .tflite, so `edgecls bench RUN` and
`edgecls predict RUN/export/model_<mode>.tflite` work as for any run.
"""

from __future__ import annotations

import hashlib
import platform
import tempfile
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.artifacts import (
    CURVES_FILE,
    EXPORT_DIR,
    ExportEntry,
    ExportIndex,
    RunConfig,
    RunRecord,
    model_file_name,
    write_export,
)
from edgecls.atomic import check_new_dir, staged_dir
from edgecls.bounds import check_bound
from edgecls.calibrate.job import OpenSetOptions, calibrate_split
from edgecls.data import DEDUPE_MODES, load_dataset, reuse_split
from edgecls.duplicates import check_hint, dedupe_metrics, grouped_split
from edgecls.errors import EdgeclsError
from edgecls.plotting import pyplot
from edgecls.provenance import created_timestamp, device_versions, sha256_file
from edgecls.reporter import SILENT, Reporter
from edgecls.runtime import Classifier, find_backend
from edgecls.runtime.metadata import ModelInput, ModelMetadata, ModelSource, Quantization, embed_metadata
from edgecls.runtime.metrics import accuracy_text, classification_metrics, correct_count
from edgecls.runtime.model import read_model_bytes
from edgecls.runtime.settings import parse_range, range_text
from edgecls.tflite import graph
from edgecls.tflite.backbone import Backbone, open_backbone
from edgecls.train.options import (
    DEFAULTS,
    HEAD_DEFAULTS,
    HEADS,
    NOT_WITH_BACKBONE,
    TrainOptions,
    config_table,
    route_of,
)
from edgecls.train.quality import (  # numpy only, like this route
    DEFAULT_MIN_AGREEMENT,
    assess,
    quality_warnings,
    refuse_useless,
)
from edgecls.transfer.embed import (
    VIEW_RECIPE,
    Embedder,
    augmented,
    cached,
    cut_embedder,
    dataset_cache_parts,
    default_cache_folder,
    embed_dataset,
)
from edgecls.transfer.head import L2_GRID, Head, HeadOptions, select_head

TRANSFER_FORMAT = "edgecls.transfer/1"
TRAIN_FIELDS = {f.name for f in fields(TrainOptions)}


def useless_head_advice(head: str) -> str:
    """What to try when the head learned nothing: never the head already used."""
    other = "--head mlp, " if head == "linear" else "--head linear, "
    return (f"try another backbone (a larger one, or one trained on pictures like yours), {other}more --epochs or "
            "--patience, or more images a class")


RANGE_MARGIN = 0.1  # head outputs on unseen images can go a little past the training range


@dataclass
class TransferOptions:
    data: str
    backbone: str
    out: Optional[str] = None
    embedding_tensor: Optional[str] = None
    head: str = "linear"
    hidden: int = 128
    views: int = DEFAULTS.views  # views per training image, the image itself included
    epochs: int = HEAD_DEFAULTS["epochs"]
    patience: int = HEAD_DEFAULTS["patience"]
    lr: float = HEAD_DEFAULTS["lr"]
    l2: Optional[float] = None  # None: the best of head.L2_GRID on the validation split
    batch_size: int = HEAD_DEFAULTS["batch_size"]
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    dedupe: Optional[str] = None  # near | exact | off; None: near for a folder of images (TrainOptions.dedupe)
    threads: Optional[int] = None
    input_range: Optional[tuple[float, float]] = None  # what pixels 0 and 255 become for a float backbone
    cache: bool = True
    open_set: OpenSetOptions = field(default_factory=OpenSetOptions)  # the unknown answer (edgecls.calibrate)
    unknown_data: Optional[str] = None  # a folder of images of none of the classes
    from_run: Optional[str] = None  # train --from RUN: RUN's validation and test images kept (edgecls.retraining)
    add: list[str] = field(default_factory=list)  # --add folders: their images join the train split only


@dataclass
class TransferResult:
    run_dir: Path
    model_file: Path
    metrics: dict
    seconds: float
    notes: list[str] = field(default_factory=list)
    data: str = ""  # the data as given (for the summary's data-check hint)
    from_run: Optional[str] = None  # --from RUN as given (for the summary's compare command)

    def summary(self) -> str:
        """The closing lines: the written file's figures with their weight (count, 95 % interval) and where
        the test images came from, the float head's, what was written, what to run next."""
        m, t = self.metrics, self.metrics["tflite"]
        n_test, n_val = m["counts"]["test"], m["counts"]["val"]
        tested = "test split not scored (held back for a later choice)" if t.get("test_accuracy") is None else (
            f"test accuracy {accuracy_text(correct_count(t['test_accuracy'], n_test), n_test)}")
        float_test = f"; float head test {m['test_accuracy']:.4f}" if m.get("test_accuracy") is not None else ""
        return "\n".join([
            "",
            f"{self.model_file.name}: {tested}. Test images: {m.get('test_source') or 'the held-out test split'}.",
            f"Validation {accuracy_text(correct_count(t['val_accuracy'], n_val), n_val)}; agreement with the float "
            f"head {t['agreement']:.4f}{float_test}; best epoch {m['best_epoch']} of "
            f"{m['epochs_run']}; {self.seconds:.0f} s in all.",
            f"Run directory: {self.run_dir} (the model is already in {EXPORT_DIR}/: no edgecls export needed).",
            f"Next: edgecls predict {self.model_file} IMAGES...",
            f"Next: edgecls bench {self.run_dir}",
            *([f"Or: edgecls bench compare {self.from_run or m['from']['run']} {self.run_dir}"]
              if m.get("from") else []),
            check_hint(m.get("dedupe"), self.data).strip(),  # groups kept together, duplicates dropped
        ]).rstrip()

    def warnings(self) -> list[str]:
        """What the quality check found (train.quality), "do not ship" last if the head is no use."""
        return quality_warnings(self.metrics, "written because of --force")


def train_from_options(options: TrainOptions, given: Collection[str], force: bool = False,
                       reporter: Reporter = SILENT, config: Optional[str] = None,
                       from_config: Collection[str] = ()) -> TransferResult:
    """`edgecls train --backbone FILE.tflite`: the run per the command's TrainOptions; `given` names
    the options the user set (command line or --config), as only those override the head's defaults;
    `from_config` those of them the --config file `config` set."""
    return train_with_backbone(options_from_train(options, given, config, from_config), force=force,
                               reporter=reporter)


def options_from_train(options: TrainOptions, given: Collection[str], config: Optional[str] = None,
                       from_config: Collection[str] = ()) -> TransferOptions:
    """TransferOptions from `edgecls train`'s TrainOptions; CNN-only options given are an error that
    says where they were given (the command line or the --config file)."""
    if options.backbone is None:
        raise EdgeclsError("no --backbone FILE.tflite given")
    if options.add and options.from_run is None:
        raise EdgeclsError("--add needs --from RUN: the run whose options, validation and test images the new run "
                           "keeps")
    wrong = [name for name in NOT_WITH_BACKBONE if name in given]
    if wrong:
        name = wrong[0]
        where = (f"{name} in the config file {config}" if name in from_config
                 else f"--{name.replace('_', '-')}")
        with_what = "backbone in the config file" if "backbone" in from_config else "--backbone"
        raise EdgeclsError(f"{where} does not apply with {with_what} (the backbone fixes the input; the head is "
                           "fitted with numpy): leave it out")
    # The options of this route; of those whose CNN defaults are not the head's (HEAD_DEFAULTS: its epochs
    # and patience are not a CNN's) only the ones the user gave.
    values = {f.name: getattr(options, f.name) for f in fields(TransferOptions) if f.name in TRAIN_FIELDS
              and route_of(f.name) != "cnn" and (f.name in given or f.name not in HEAD_DEFAULTS)}
    values["input_range"] = parse_range(values.get("input_range"))
    open_set = OpenSetOptions(accept=options.accept, rule=options.rule, seed=options.seed, threads=options.threads)
    values["add"] = list(options.add or [])
    return TransferOptions(**{**values, "data": options.data, "backbone": options.backbone, "open_set": open_set})


def validate(o: TransferOptions) -> None:
    if o.head not in HEADS:
        raise EdgeclsError(f"unknown --head {o.head!r}: use {' or '.join(HEADS)}")
    if o.dedupe is not None and o.dedupe not in DEDUPE_MODES:
        raise EdgeclsError(f"unknown --dedupe {o.dedupe!r}: use one of {', '.join(DEDUPE_MODES)}")
    for option, value in (("--views", o.views), ("--epochs", o.epochs), ("--batch-size", o.batch_size),
                          ("--patience", o.patience), ("--lr", o.lr), ("--val-fraction", o.val_fraction),
                          ("--test-fraction", o.test_fraction), ("--seed", o.seed)):
        check_bound(option, value)


def default_run_dir(o: TransferOptions) -> Path:
    if o.from_run is not None:  # beside RUN: RUN-2, RUN-3, ...
        from edgecls.retraining import next_run_dir

        return next_run_dir(o.from_run)
    return Path("runs") / f"{Path(o.data.rstrip('/')).name}-{Path(o.backbone).stem}"


# ---------------------------------------------------------------------- the job
def train_with_backbone(options: TransferOptions, force: bool = False, reporter: Reporter = SILENT, *,
                        split: Optional[dict] = None, score_test: bool = True) -> TransferResult:
    """Run the whole job per `options` and write the run directory; returns its figures. `split` (a split.json
    document) and `score_test=False` are for a caller that compares runs (edgecls.search): train on its
    split, and leave the test split unscored until it has chosen."""
    started = time.perf_counter()
    validate(options)
    out = check_new_dir(Path(options.out) if options.out else default_run_dir(options), force)  # before the work
    backbone = open_backbone(options.backbone, options.embedding_tensor)
    h, w, c = backbone.input_shape
    if h != w:
        raise EdgeclsError(f"--backbone {backbone.path.name} takes {h}x{w} images: only square inputs are supported")
    reporter(f"Backbone {backbone.path.name} ({h}x{w}x{c} {backbone.input_dtype}, SHA-256 {backbone.sha256[:12]}…); "
        f"embedding: {backbone.embedding.describe()}")
    retrain, negatives = None, None
    if options.from_run is not None:  # RUN's data and split, grown by the --add folders' images
        from edgecls.retraining import read_negatives, retraining_data

        retrain = retraining_data(options.from_run, options.add, options.data, h, "grayscale" if c == 1 else "rgb",
                                  options.dedupe, (options.val_fraction, options.test_fraction), reporter)
        dataset, split = retrain.dataset, retrain.split
        negatives = read_negatives(retrain.negatives, h, dataset.color, options.seed)
    else:
        dataset = load_dataset(options.data, h, "grayscale" if c == 1 else "rgb", reporter=reporter)
        for line in dataset.skipped_warnings():
            reporter(f"warning: {line}")
        split = (reuse_split(split, dataset) if split is not None else
                 grouped_split(dataset, options.dedupe, options.val_fraction, options.test_fraction, options.seed,
                               reporter))
    reporter(f"Split: {len(split.train)} train / {len(split.val)} val / {len(split.test)} test images; test images: "
             f"{split.test_source}")
    notes: list[str] = []
    with staged_dir(out, force=force) as tmp, tempfile.TemporaryDirectory(prefix="edgecls-transfer-") as scratch:
        embedder = cut_embedder(backbone, Path(scratch), options.threads, options.input_range)
        cut_bytes = read_model_bytes(embedder.classifier.path)  # the capped reader, like every model read
        features, views, embed_seconds = _embeddings(embedder, backbone, dataset, split, options, reporter)

        y = dataset.labels
        x_train = np.concatenate([features[split.train], views.reshape(-1, features.shape[1])])
        y_train = np.concatenate([y[split.train], np.repeat(y[split.train], options.views - 1)])
        fit_started = time.perf_counter()
        head, tries = _fit(x_train, y_train, features[split.val], y[split.val], len(dataset.class_names), options)
        fit_seconds = time.perf_counter() - fit_started
        reporter(f"Head ({options.head}) fitted on {len(x_train)} embeddings ({len(split.train)} images x "
                 f"{options.views} view(s)) in {fit_seconds:.1f} s: weight decay {head.l2:g} (lowest validation loss "
                 f"of {', '.join(format(t['l2'], 'g') for t in tries)}), best epoch {head.best_epoch} of "
                 f"{len(head.history)}")
        float_val = head.probabilities(features[split.val])
        quality = assess(float_val.argmax(1), y[split.val], dataset.class_names,
                         advice=useless_head_advice(options.head))
        # Here train is also the export: refuse before anything is written (staged_dir discards it).
        refuse_useless(quality, force, f"the head on {backbone.path.name}", reporter, verb="write")

        metadata_source = _source(out, backbone, dataset.source, options)
        model_bytes, mode = _grafted(cut_bytes, backbone, head, x_train)
        model_bytes = embed_metadata(model_bytes, _metadata(dataset, embedder, mode, backbone, metadata_source,
                                                            len(x_train)))
        model_bytes, open_set = calibrate_split(model_bytes, dataset.images, dataset.labels, split, options.open_set,
                                                options.unknown_data, model_file_name(mode), reporter, negatives,
                                                score_test=score_test)
        model_path = Path(scratch) / model_file_name(mode)  # checked as it will be written
        model_path.write_bytes(model_bytes)
        check = _check(model_path, head, features, dataset, split, options.threads,
                       ("val", "test") if score_test else ("val",))
        if check["agreement"] < DEFAULT_MIN_AGREEMENT:
            notes.append(f"warning: {model_path.name} agrees with the float head on only {check['agreement']:.4f} of "
                         f"the validation and test images (< {DEFAULT_MIN_AGREEMENT}): its 8-bit head is not "
                         "faithful to the fitted one ("
                         + ("try --head linear; " if options.head != "linear" else "") + "please report it)")

        if score_test:
            metrics = classification_metrics(head.probabilities(features[split.test]), y[split.test],
                                             dataset.class_names)
        else:  # the caller chooses on validation first: no test figure is computed here
            metrics = {"test_accuracy": None, "test_scored": False}
        metrics.update(
            val_accuracy=float(np.mean(float_val.argmax(1) == y[split.val])),
            reference="float head (numpy, on the embeddings)",
            tflite=check,
            epochs_run=len(head.history), best_epoch=head.best_epoch, l2=head.l2, l2_search=tries,
            counts={"train": len(split.train), "val": len(split.val), "test": len(split.test)},
            test_source=split.test_source,
            train_embeddings=int(len(x_train)), skipped_files=len(dataset.skipped),
            dedupe=dedupe_metrics(split.dedupe),
            seconds={"embed": round(embed_seconds, 2), "fit": round(fit_seconds, 2),
                     "total": round(time.perf_counter() - started, 2)},
            threads=embedder.classifier.num_threads,
            collapsed=quality["collapsed"], warnings=quality["warnings"], quality=quality,
            openset=open_set,
            **({"from": retrain.metrics()} if retrain is not None else {}),
        )
        if pyplot() is None:  # a device install: the run is complete without its curves
            notes.append(f"{CURVES_FILE} not drawn: matplotlib is not installed here (pip install matplotlib)")
        history = {k: [row[k] for row in head.history] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
        transfer = {
            "format": TRANSFER_FORMAT, "backbone": metadata_source.backbone,
            "head": {"kind": options.head, "hidden": options.hidden if options.head == "mlp" else None,
                     "layers": [list(wt.shape) for wt, _ in head.layers]},
            "views": {"per_image": options.views, "recipe": list(VIEW_RECIPE) if options.views > 1 else []},
            "input": {"pixel_range": list(embedder.spec.pixel_range), "dtype": backbone.input_dtype},
            "options": {k: v for k, v in asdict(options).items()},
        }
        metrics["seconds"]["total"] = round(time.perf_counter() - started, 2)
        metrics["notes"] = notes
        config = _config(options if retrain is None else replace(options, **retrain.options()), dataset, out, h)
        RunRecord(labels=list(dataset.class_names), config=config,
                  split=split.to_json(dataset, options.seed, (options.val_fraction, options.test_fraction)),
                  metrics=metrics, history={**history, "phase": ["head"] * len(head.history)},
                  transfer=transfer).write(tmp)
        write_export(tmp / EXPORT_DIR, {model_path.name: model_bytes}, dataset.class_names,
                     _export_index(model_path, mode, check, metadata_source))
    for note in notes:
        reporter(note)
    return TransferResult(out, out / EXPORT_DIR / model_path.name, metrics, time.perf_counter() - started, notes,
                          options.data, options.from_run)


# ---------------------------------------------------------------------- stages
def _embeddings(embedder: Embedder, backbone: Backbone, dataset, split, options: TransferOptions,
                reporter: Reporter) -> tuple[np.ndarray, np.ndarray, float]:
    """(features of every image, features of the extra training views (train, views-1, D), seconds)."""
    started = time.perf_counter()
    folder = default_cache_folder() if options.cache else None
    n, d = len(dataset.labels), embedder.size

    def embed(images: Any, count: int, what: str) -> np.ndarray:  # a cache miss: computed with a bar
        with reporter.task(what, count) as advance:
            return embedder(images, count, advance)

    with reporter.task("Embedding images", n) as advance:
        features, hit = embed_dataset(embedder, backbone, dataset, folder, advance)
    extra = options.views - 1
    train = np.asarray(split.train)
    if extra:
        keyed = {**dataset_cache_parts(backbone, embedder, dataset), "views": options.views,
                 "recipe": list(VIEW_RECIPE), "seed": options.seed, "train": _digest(train)}
        count = len(train) * extra
        flat, view_hit = cached(folder, keyed, (count, d), lambda: embed(
            augmented(dataset.images[train], options.views, options.seed), count, "Embedding views"))
    else:
        flat, view_hit = np.zeros((0, d), np.float32), True
    seconds = time.perf_counter() - started
    reporter(f"Embeddings: {n} images{f' + {len(train) * extra} augmented views' if extra else ''} "
             f"({'from the cache' if hit and view_hit else f'{seconds:.1f} s'}, {embedder.classifier.num_threads} "
             "threads)")
    return features, flat.reshape(len(train), extra, d), seconds


def _fit(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, classes: int,
         options: TransferOptions) -> tuple[Head, list[dict]]:
    """The head, with the weight decay given or the best of L2_GRID on the validation split."""
    settings = HeadOptions(options.head, options.hidden, options.epochs, options.patience, options.lr, 0.0,
                           options.batch_size, options.seed)
    return select_head(x, y, x_val, y_val, classes, settings, grid=L2_GRID if options.l2 is None else (options.l2,))


def _grafted(cut_bytes: bytes, backbone: Backbone, head: Head, x_train: np.ndarray) -> tuple[bytes, str]:
    """The cut backbone with the head on it, and its quantisation mode (float32, uint8 or int8)."""
    outputs = head.hidden(np.asarray(x_train, np.float64))
    layers = []
    for n, ((w, b), y) in enumerate(zip(head.layers, outputs)):
        low, high = float(y.min()), float(y.max())
        span = (high - low) * RANGE_MARGIN
        layers.append(graph.Layer(w, b, relu=n < len(head.layers) - 1, out_range=(low - span, high + span)))
    model = graph.load_model(cut_bytes, backbone.path.name)
    kind = backbone.embedding.dtype
    output = backbone.output_dtype if kind != "float32" else "float32"
    graph.graft(model, layers, output)
    mode = "float32" if kind == "float32" else backbone.input_dtype if backbone.input_dtype != "float32" else kind
    return graph.serialize(model), mode


def _check(model_path: Path, head: Head, features: np.ndarray, dataset, split, threads: Optional[int],
           parts: tuple[str, ...] = ("val", "test")) -> dict:
    """The written .tflite through the device runtime on `parts` (val and test): accuracy, and top-1
    agreement with the numpy float head on the same images."""
    classifier = Classifier(model_path, num_threads=threads)
    result: dict[str, Any] = {"file": f"{EXPORT_DIR}/{model_path.name}", "split": "+".join(parts)}
    agree = []
    for part in parts:
        indices = np.asarray(getattr(split, part))
        probabilities = classifier.probabilities(np.asarray(dataset.images[indices]))
        predicted = probabilities.argmax(1)
        reference = head.logits(features[indices]).argmax(1)
        result[f"{part}_accuracy"] = float(np.mean(predicted == dataset.labels[indices]))
        result[f"{part}_agreement"] = float(np.mean(predicted == reference))
        agree.append(predicted == reference)
    result["agreement"] = float(np.mean(np.concatenate(agree)))
    result["size_bytes"] = model_path.stat().st_size
    interpreter = classifier.interpreter
    result["io"] = {"input": _io(interpreter.get_input_details()[0]),
                    "output": _io(interpreter.get_output_details()[0])}
    return result


def _io(details: dict) -> dict[str, Any]:
    scale, zero_point = details["quantization"]
    quantised = details["dtype"] != np.float32
    return {"dtype": np.dtype(details["dtype"]).name, "scale": float(scale) if quantised else None,
            "zero_point": int(zero_point) if quantised else None}


# ---------------------------------------------------------------------- documents
def _source(out: Path, backbone: Backbone, data: str, options: TransferOptions) -> ModelSource:
    return ModelSource(run=str(out), model=str(backbone.path), model_sha256=backbone.sha256, data=data,
                       backbone={"file": backbone.path.name, "sha256": backbone.sha256,
                                 "input_dtype": backbone.input_dtype, "embedding": backbone.embedding.to_json()},
                       head=options.head, views=options.views)


def _metadata(dataset, embedder: Embedder, mode: str, backbone: Backbone, source: ModelSource,
              samples: int) -> ModelMetadata:
    """The edgecls metadata (format edgecls.model/1), as export writes it."""
    h, w = dataset.image_size
    interpreter = embedder.classifier
    return ModelMetadata(
        labels=list(dataset.class_names),
        # the backbone's own: what its quantised input takes pixel 0 and 255 to
        input=ModelInput(height=h, width=w, color=dataset.color,
                         pixel_range=[float(v) for v in interpreter.input_spec.pixel_range]),
        output="probabilities",
        quantization=Quantization(
            mode=mode, backend="edgecls.transfer",
            io={"input": backbone.input_dtype, "output": backbone.output_dtype if mode != "float32" else "float32"},
            # the head's output ranges come from the training embeddings (the backbone keeps its own)
            calibration=None if mode == "float32" else {"split": "train", "samples": samples, "of": "embeddings"}),
        versions=_versions(),
        source=source,
        created=created_timestamp(),
    )


def _versions() -> dict[str, str]:
    backend = find_backend()
    return {**device_versions(), "python": platform.python_version(), backend.name: backend.version}


def _export_index(model_path: Path, mode: str, check: dict, source: ModelSource) -> ExportIndex:
    """export.json, in export's format, so bench finds the model."""
    backend = find_backend()
    return ExportIndex(
        created=created_timestamp(), source=source,
        options={"modes": [mode], "quantizer": "edgecls.transfer"},
        check={"split": check["split"], "reference": "float head (numpy)", "agreement": check["agreement"],
               "interpreter": {"name": backend.name, "version": backend.version}},
        versions=_versions(),
        models=[ExportEntry(file=model_path.name, mode=mode, variant=mode, backend="edgecls.transfer",
                            size_bytes=check["size_bytes"], accuracy=check["val_accuracy"],
                            agreement=check["val_agreement"], input=check["io"]["input"],
                            output=check["io"]["output"], sha256=sha256_file(model_path))],
    )


def _config(o: TransferOptions, dataset, out: Path, size: int) -> RunConfig:
    """config.toml: the train options of this route (train.options.config_table), so that `train --config` of it
    trains the same head on the same backbone. (img_size and color are the backbone's: recorded for the run
    directory, and left out again by train.options.read_config.)"""
    data = o.data if not Path(o.data).expanduser().exists() else str(Path(o.data).expanduser().resolve())
    shared = {name: value for name, value in asdict(o).items() if name in TRAIN_FIELDS}
    train = TrainOptions(**{**shared, "data": data, "out": str(out), "img_size": size, "color": dataset.color,
                            "backbone": str(Path(o.backbone).resolve()),
                            "input_range": range_text(o.input_range) if o.input_range else None,
                            "accept": o.open_set.accept, "rule": o.open_set.rule, "add": list(o.add) or None})
    return RunConfig(config_table(train), _versions())


def _digest(indices: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()[:24]
