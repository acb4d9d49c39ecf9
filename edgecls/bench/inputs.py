"""What a bench measures: the models (a run's exports, .tflite files) and the test images.

Test images, in order of preference:
- a run directory's held-out test split (through edgecls.rundir; `--data` says where the run's
  data now is);
- `--data` for bare .tflite files: its test part when it comes with one (IDX t10k files, a
  test/ sub-folder, Keras' test set), else every image in it;
- for a bare edgecls .tflite without --data, the run named in its metadata, if it is here and its
  model.keras has the SHA-256 the metadata records (else --data is needed).

Without TensorFlow all of this works except the `digits` dataset (it ships inside scikit-learn):
on a device, bench with `--data` pointing at the folder `--save-test-images` wrote.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from edgecls.artifacts import (
    EXPORT_DIR,
    EXPORT_REPORT,
    MAX_JSON_BYTES,
    MODEL_FILE,
    SPLIT_FILE,
    TRANSFER_FILE,
    ExportIndex,
)
from edgecls.bench import thirdparty
from edgecls.bench.plan import LABELLED, UNLABELLED, Sources
from edgecls.bench.testset import SAVED_FORMAT, SAVED_TEST_IMAGES, TestSet, match_classes
from edgecls.data import ClassCountError
from edgecls.errors import EdgeclsError
from edgecls.files import read_capped
from edgecls.jsonio import JSONValueError, parse_json
from edgecls.provenance import sha256_file
from edgecls.rundir import RunDir, check_exported, export_listing, open_run
from edgecls.runtime.classify import Classifier
from edgecls.runtime.metrics import few_images_warning
from edgecls.runtime.model import read_model_bytes

if TYPE_CHECKING:
    from edgecls.runtime.settings import ModelSettings


@dataclass
class BenchModel:
    """One model to bench: an exported .tflite, or the run's Keras float model."""

    name: str  # shown in tables
    kind: str  # "tflite" | "keras"
    mode: str  # float32, int8, ... (keras: float32)
    path: Path
    size_bytes: int
    sha256: Optional[str] = None
    io: dict[str, Any] = field(default_factory=dict)  # input/output dtype, scale, zero point

    @property
    def is_float(self) -> bool:
        return self.mode == "float32"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "mode": self.mode, "path": str(self.path),
                "size_bytes": self.size_bytes, "sha256": self.sha256, "io": self.io}


# ---------------------------------------------------------------------- models
def open_model(path: Path, settings: ModelSettings, listed: Optional[str] = None) -> tuple[BenchModel, Classifier]:
    """A .tflite to bench, read once: its Classifier (with the bench's model settings) and its size,
    digest and quantisation mode (its metadata's mode, else detected) from that same opening; `listed`,
    the digest a run's export.json records for the file, is checked against the bytes read."""
    from edgecls.runtime.inspect import describe_classifier

    content = read_model_bytes(path)
    if listed is not None:
        check_exported(path, listed, hashlib.sha256(content).hexdigest())
    classifier = settings.open(path, content=content)  # refuses what is not an image classifier
    info = describe_classifier(classifier, content)
    quant = info["quantization"]
    io = {side: {k: info[f"{side}s"][0][k] for k in ("dtype", "scale", "zero_point")} for side in ("input", "output")}
    mode = quant.get("declared") or quant["detected"]
    if ((info.get("metadata") or {}).get("quantization") or {}).get("kept_float"):
        mode += "-mixed"  # some ops kept in float by export --keep-float / --auto-fallback
    return BenchModel(name=path.name, kind="tflite", mode=mode, path=path,
                      size_bytes=info["size_bytes"], sha256=info["sha256"], io=io), classifier


def unique_names(models: list[BenchModel]) -> None:
    """Two files called model_int8.tflite from different folders get their folder in the name."""
    counts: dict[str, int] = {}
    for model in models:
        counts[model.name] = counts.get(model.name, 0) + 1
    for model in models:
        if counts[model.name] > 1 and model.kind == "tflite":
            model.name = f"{model.path.parent.name}/{model.path.name}"


def _transfer_run(run: Path, model: BenchModel) -> tuple[Optional[Path], Optional[str]]:
    """A run made by edgecls.transfer is this model's when its export.json lists this very file."""
    try:
        listed = {m.sha256 for m in ExportIndex.read(run / EXPORT_DIR / EXPORT_REPORT, "").models}
    except EdgeclsError:
        listed = set()
    if model.sha256 in listed:
        return run, None
    return None, (f"{model.path.name}'s metadata names the run {run}, but its {EXPORT_DIR}/{EXPORT_REPORT} does "
                  "not list this file: it is not this model's run, so its test split is not used")


# ---------------------------------------------------------------------- test images
def run_test_set(run: RunDir) -> TestSet:
    """The run's held-out test split, with image ids (file or dataset index) and files."""
    test = run.part("test")
    if len(test.labels) == 0:
        raise EdgeclsError(f"{run.name} has no test images (its split's test part is empty)")
    source = run.training_metrics().get("test_source")  # how train drew them, in its words
    notes = [f"Test images: the held-out test split of {run.name}: {source}."] if source else []
    found = TestSet(test.images, test.labels, list(run.labels), test.ids, test.files, run.data, "test",
                    run=str(run.run_dir), notes=notes)
    found.notes += _leak_notes(run, found)
    return found


def _leak_notes(run: RunDir, test: TestSet) -> list[str]:
    """A note when test images have a near-duplicate in the run's train part, as its records say (train's
    split, edgecls data check); for a folder of files whose split did not look, how to find out."""
    if test.files is None:  # built-in and IDX data: small glyphs hash alike (edgecls.duplicates.default_dedupe)
        return []
    leaked = run.record.leaked_test_images() if run.record is not None else None
    if leaked is None:
        return [f"The run's split did not keep near-duplicates apart (--dedupe off, or an earlier edgecls): "
                f"edgecls data check {run.run_dir} says whether test images have one in the train part."]
    if not leaked:
        return []
    return [f"{leaked} of the {len(test.labels)} test images have a near-duplicate in the run's train part (or, "
            f"as edgecls data check counts, its validation part): the split did not keep them apart, so their "
            f"accuracy is flattered; edgecls data check {run.run_dir} lists them and gives the accuracy without them."]


def few_images_note(test: TestSet) -> Optional[str]:
    """A warning for the report when the scored images are too few to say much (see runtime.metrics), with
    where they came from; None for enough images, or a --latency-only set (no accuracy)."""
    if test.latency_only:
        return None
    where = (f"the held-out test split of {test.run}" if test.run else
             f"the test part of {test.source}" if test.part == "test" else f"all of {test.source}")
    few = few_images_warning(len(test.labels), where)
    return f"Warning: {few}." if few else None


def data_test_set(data: str, size: tuple[int, int], color: str) -> TestSet:
    """`--data` for bare models: its test part if it comes with one, else all of it."""
    from edgecls.data import load_dataset

    saved = _saved_from(Path(data))  # written by --save-test-images: a run's held-out test split
    dataset = load_dataset(data, size[0] if size[0] == size[1] else None, color)
    if dataset.image_size != size:
        raise EdgeclsError(f"the models take {size[0]}x{size[1]} images; {data} gives {dataset.image_size[0]}x"
                           f"{dataset.image_size[1]}")
    given = dataset.given_split or {}
    part = "test" if len(given.get("test", ())) else "all"
    indices = np.asarray(given["test"]) if part == "test" else np.arange(len(dataset.labels))
    if len(indices) == 0:
        raise EdgeclsError(f"{data} has no images")
    taken = dataset.take(indices)
    if saved is not None:  # a run's test split, written by --save-test-images: held out, not "all"
        part = "test"
        notes = [f"Test images: the held-out test split of {saved.get('run') or saved.get('source')}, "
                 f"saved by edgecls bench --save-test-images."]
    elif part == "all":
        notes = [f"{data} comes with no test part: every one of its {len(indices)} images is scored "
                 "(make sure the models were not trained on them)"]
    else:
        notes = []
    unreadable = [(path, why) for path, why in dataset.skipped if not why.startswith("duplicate")]
    if unreadable:  # said in the report, as train says it: a silently smaller test set flatters nobody
        first = "; ".join(f"{path}: {why}" for path, why in unreadable[:3])
        notes.append(f"{len(unreadable)} unreadable image file(s) in {data} were skipped ({first})")
    duplicates = len(dataset.skipped) - len(unreadable)
    if duplicates:
        notes.append(f"{duplicates} byte-identical duplicate file(s) in {data} were scored once")
    return TestSet(taken.images, taken.labels, list(dataset.class_names), taken.ids, taken.files, data, part,
                   notes=notes)


def _saved_from(folder: Path) -> Optional[dict[str, Any]]:
    try:
        doc = parse_json(read_capped(folder / SAVED_TEST_IMAGES, MAX_JSON_BYTES))
    except (OSError, JSONValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == SAVED_FORMAT else None


# ---------------------------------------------------------------------- everything, checked together
@dataclass
class Inputs:
    """What a bench measures, opened once and checked against each other: the run (if any), the
    .tflite models, a loaded Classifier for each (by model name), the test images, the interpreter."""

    run: Optional[RunDir]
    models: list[BenchModel]
    classifiers: dict[str, Classifier]
    test: TestSet
    backend: Any  # runtime.interpreter's Backend: name and version


def open_inputs(sources: Sources, settings: ModelSettings, test: Optional[TestSet] = None) -> Inputs:
    """The inputs `sources` name (a run directory's exports and/or .tflite files), every model opened
    with `settings`; the test images are found as the module doc says, or `test` when the caller has
    them in memory (export --target's validation images).

    Each source is read once, whole, in turn: the run (its records and export.json), then every model
    (its bytes read once: checked against export.json's digest, opened on the interpreter backend and
    described from that opening), then the test images."""
    run = open_run(sources.run_dir, sources.data) if sources.run_dir is not None else None
    listed = dict(export_listing(sources.run_dir)) if sources.run_dir is not None else {}
    opened = [open_model(path, settings, listed.get(path)) for path in _unique([*listed, *sources.files])]
    models = [model for model, _ in opened]
    unique_names(models)  # renames in place, before the classifiers are keyed by name
    classifiers = {model.name: classifier for model, classifier in opened}
    # the backend every model runs on (split_paths and export_listing leave at least one model)
    backend = classifiers[models[0].name].backend
    if test is not None:  # the caller's own images (export --target: validation), with its own notes
        return Inputs(run, models, classifiers, _fitting(test, models, classifiers), backend)
    if sources.route == UNLABELLED:
        test = thirdparty.unlabelled_test_set(sources.data, models, classifiers)
    elif sources.route == LABELLED:
        if sources.data is None:
            raise EdgeclsError("--labels needs --data FOLDER: class sub-folders named by the labels (or bench "
                               "with --latency-only)")
        test = thirdparty.labelled_test_set(sources.data, models, classifiers)
    else:
        test = _test_set(run, sources.data, models, classifiers)
    few = few_images_note(test)
    if few:
        test.notes.insert(0, few)
    return Inputs(run, models, classifiers, test, backend)


def _unique(paths: list[Path]) -> list[Path]:
    seen, kept = set(), []
    for path in paths:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            kept.append(path)
    return kept


def _test_set(run: Optional[RunDir], data: Optional[str], models: list[BenchModel],
              classifiers: dict[str, Classifier]) -> TestSet:
    """The test images, checked against every model's input and class count."""
    spec = _one_input(models, classifiers)
    named_by_metadata, problem = False, None
    if run is None:
        # An edgecls model names its run: when that run is here (its model.keras the one the file was
        # exported from, and --data, if given, its data), its saved test split is the honest choice,
        # not every image of the dataset.
        run, problem = _metadata_run(models[0], classifiers[models[0].name].metadata, data)
        named_by_metadata = run is not None
        if run is None and data is None:
            reason = problem or f"{models[0].name} does not name a run directory that is here"
            raise EdgeclsError(f"name the test images with --data (a folder of class sub-folders, a folder of IDX "
                               f"files, digits, ...): {reason}")
    if run is None:
        test = data_test_set(data, spec.size, spec.color)
    else:
        try:
            test = run_test_set(run)
        except ClassCountError:  # the run's own files disagree: the hint below would not help
            raise
        except EdgeclsError as exc:  # e.g. digits without scikit-learn, on a device
            raise EdgeclsError(
                f"{exc}; on a device, bench the .tflite files with --data FOLDER instead (made "
                f"on the workstation by edgecls bench {run.run_dir} --save-test-images FOLDER)"
            ) from None
    if problem:
        test.notes.append(f"{problem}; the test images are --data {data}.")
    if named_by_metadata:
        test.notes.append(f"Test images: the held-out test split of {run.run_dir}, the run named in "
                          f"{models[0].name}'s metadata.")
    return _fitting(test, models, classifiers)


def _one_input(models: list[BenchModel], classifiers: dict[str, Classifier]) -> Any:
    """The input spec every model shares (one-line errors: no models, two input sizes)."""
    if not models:
        raise EdgeclsError("no .tflite models to bench")
    spec = classifiers[models[0].name].input_spec
    for model in models[1:]:
        other = classifiers[model.name].input_spec
        if other.shape != spec.shape:
            raise EdgeclsError(f"{model.name} takes {_shape(other.shape)} images but {models[0].name} takes "
                               f"{_shape(spec.shape)}: bench models of one input size together, or give --labels "
                               "FILE with a --data folder (each model then decodes the images at its own size)")
    return spec


def _fitting(test: TestSet, models: list[BenchModel], classifiers: dict[str, Classifier]) -> TestSet:
    """`test`, checked against the models' input and put in their class order."""
    spec = _one_input(models, classifiers)
    if tuple(test.images.shape[1:]) != spec.shape:
        raise EdgeclsError(f"{models[0].name} takes {_shape(spec.shape)} images but the test images ({test.source}) "
                           f"are {_shape(test.images.shape[1:])}")
    for model in models:
        test = match_classes(test, classifiers[model.name].labels, model.name)
    return test


def _metadata_run(model: BenchModel, metadata: Optional[dict[str, Any]], data: Optional[str]
                  ) -> tuple[Optional[RunDir], Optional[str]]:
    """(the run directory an edgecls .tflite says it came from — from its metadata, already read when
    the model was opened — if it is here, really is that run and fits --data; else None and, when a run
    of that name is here but is another one, a sentence saying so).

    The path in the metadata is only a name (often relative, and reused by every `edgecls train
    --out runs/x`): the run is accepted only when its model.keras has the SHA-256 the export recorded.
    """
    source = (metadata or {}).get("source") or {}
    named = source.get("run")
    if not named or not (Path(named) / SPLIT_FILE).is_file():
        return None, None
    if (Path(named) / TRANSFER_FILE).is_file():  # trained on a .tflite backbone: no model.keras to check
        found, problem = _transfer_run(Path(named), model)
    else:
        found, problem = _keras_run(named, model, source.get("model_sha256"))
    if found is None:
        return None, problem
    try:
        run = open_run(found)
    except EdgeclsError:  # a broken run is no better than none: --data decides
        return None, None
    if data is not None and data != run.data and Path(data).resolve() != Path(run.data).resolve():
        return None, None
    return run, None


def _keras_run(run: str, model: BenchModel, expected: Optional[str]) -> tuple[Optional[Path], Optional[str]]:
    """A run made by edgecls train is this model's when its model.keras has the digest the export recorded."""
    try:
        actual = sha256_file(Path(run) / MODEL_FILE)
    except OSError:
        actual = None
    if expected and actual == expected:
        return Path(run), None
    why = ("records no model digest to check it by" if not expected
           else f"has no readable {MODEL_FILE}" if actual is None
           else f"has another {MODEL_FILE} (SHA-256 {actual[:12]}…, the file was exported from {expected[:12]}…)")
    return None, (f"{model.path.name}'s metadata names the run {run}, but the run there {why}: "
                  "it is not this model's run, so its test split is not used")


def _shape(shape: tuple) -> str:
    return "x".join(map(str, shape))


