"""The test images of a bench (TestSet): pixels, labels in the models' class order, where they came
from; finding them, checked against the models and put in their class order; writing them as files a
device reads back exactly.

Where they come from, in order of preference (bench.thirdparty has the --labels and --latency-only sets):
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

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from edgecls import jsonio
from edgecls.artifacts import (
    EXPORT_DIR,
    EXPORT_REPORT,
    MAX_JSON_BYTES,
    MODEL_FILE,
    SPLIT_FILE,
    TRANSFER_FILE,
    ExportIndex,
)
from edgecls.data import ClassCountError
from edgecls.errors import EdgeclsError
from edgecls.files import read_capped
from edgecls.provenance import sha256_file
from edgecls.rundir import RunDir, open_run
from edgecls.runtime.metrics import few_images_warning

if TYPE_CHECKING:
    from edgecls.bench.results import BenchModel
    from edgecls.runtime.classify import Classifier

SAVED_TEST_IMAGES = "test-images.json"  # written by save_test_images: where the images came from
SAVED_FORMAT = "edgecls.test-images/1"


@dataclass
class TestSet:
    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # int (N,), in the models' class order
    class_names: list[str]
    ids: list[Any]  # per image: its file (relative to the data) or its index in the dataset
    files: Optional[list[Path]]  # the real files, when the data is a folder of them
    source: str  # the data, as named
    part: str  # "test" | "all"
    run: Optional[str] = None
    notes: list[str] = field(default_factory=list)
    # bench.thirdparty's sets: each model's own decoding of the images (its size, its resize), the
    # model's class index of each class (scored over all the model's classes), how folders matched
    per_model: dict[str, np.ndarray] = field(default_factory=dict)
    class_index: Optional[list[int]] = None
    label_map: Optional[list[dict[str, Any]]] = None
    latency_only: bool = False

    def images_for(self, model_name: str) -> np.ndarray:
        """The images as `model_name` takes them."""
        return self.per_model.get(model_name, self.images)

    def to_json(self) -> dict[str, Any]:
        doc = {"source": self.source, "part": self.part, "run": self.run, "images": int(len(self.labels)),
               "classes": self.class_names, "shape": list(self.images.shape[1:]),
               "files": self.files is not None, "content_sha256": self.content_digest()}
        if self.per_model:
            doc["shapes"] = {name: list(images.shape[1:]) for name, images in self.per_model.items()}
        if self.label_map is not None:
            doc["label_map"] = self.label_map
        return doc

    def content_digest(self) -> str:
        """The labelled pixels, whatever their order or file names: two reports scored the same test
        images exactly when their digests match (bench compare checks it)."""
        import hashlib

        per_image = sorted(hashlib.sha256(np.ascontiguousarray(image).tobytes() + int(label).to_bytes(4, "little"))
                           .hexdigest() for image, label in zip(self.images, self.labels))
        return hashlib.sha256("".join(per_image).encode()).hexdigest()


def match_classes(test: TestSet, labels: list[str], model_name: str,
                  hint: str = ", or give --labels FILE to match them loosely (a comma part of a label, its index)"
                  ) -> TestSet:
    """Put the test labels in the model's class order: the same names in another order, or some of the
    model's classes (field pictures rarely show every class), matched by name. A one-line error when the
    counts differ otherwise, ending with `hint` (what the command offers besides)."""
    if labels == test.class_names:
        return test
    named = set(test.class_names) <= set(labels)
    # by position only when no folder is named as a class (e.g. "a", "b" for the model's "cat", "dog")
    if not named and (len(labels) != len(test.class_names) or set(test.class_names) & set(labels)):
        shown = ", ".join(test.class_names[:4]) + (", ..." if len(test.class_names) > 4 else "")
        raise EdgeclsError(f"{model_name} has {len(labels)} classes but the test data ({test.source}) has "
                           f"{len(test.class_names)} ({shown}), not all of them a class of the model: name the class "
                           f"folders by the model's labels (some of them will do){hint}")
    if named:  # the same names or some of them, perhaps in another order
        if len(test.class_names) < len(labels):
            test.notes.append(f"{test.source} has {len(test.class_names)} of the model's {len(labels)} classes: its "
                              f"images are scored over all {len(labels)}")
        position = {name: i for i, name in enumerate(labels)}
        order = np.array([position[name] for name in test.class_names])
        test.labels = order[test.labels]
        test.class_names = list(labels)
        return test
    test.notes.append(f"the data's class names ({', '.join(test.class_names[:4])}...) differ from the model's "
                      f"({', '.join(labels[:4])}...): classes are matched by position")
    test.class_names = list(labels)
    return test


# ---------------------------------------------------------------------- finding them
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


def data_test_set(data: str, size: tuple[int, int], color: str) -> TestSet:
    """`--data` for bare models: its test part if it comes with one, else all of it."""
    from edgecls.data import load_dataset

    saved = read_saved_index(Path(data))  # written by --save-test-images: a run's held-out test split
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


def read_saved_index(folder: Path) -> Optional[dict[str, Any]]:
    """The test-images.json write_saved_index wrote in `folder`, or None (none there, or not ours)."""
    try:
        doc = jsonio.parse_json(read_capped(folder / SAVED_TEST_IMAGES, MAX_JSON_BYTES))
    except (OSError, jsonio.JSONValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == SAVED_FORMAT else None


def held_out_test_set(run: Optional[RunDir], data: Optional[str], models: list[BenchModel],
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
    return fit_to_models(test, models, classifiers)


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


def fit_to_models(test: TestSet, models: list[BenchModel], classifiers: dict[str, Classifier]) -> TestSet:
    """`test`, checked against the models' input and put in their class order."""
    spec = _one_input(models, classifiers)
    if tuple(test.images.shape[1:]) != spec.shape:
        raise EdgeclsError(f"{models[0].name} takes {_shape(spec.shape)} images but the test images ({test.source}) "
                           f"are {_shape(test.images.shape[1:])}")
    return match_classes(test, one_label_set(models, classifiers), models[0].name)


def one_label_set(models: Sequence[Any], classifiers: dict[str, Classifier]) -> list[str]:
    """The labels every model shares: the test images have one class order, and each model's scores are
    read in it. A one-line error when two differ (give --labels FILE to match folders to a model's own)."""
    labels = classifiers[models[0].name].labels
    for model in models[1:]:
        if classifiers[model.name].labels != labels:
            raise EdgeclsError(f"{model.name} and {models[0].name} have different labels: bench models of one label "
                               "set together")
    return labels


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


def few_images_note(test: TestSet) -> Optional[str]:
    """A warning for the report when the scored images are too few to say much (see runtime.metrics), with
    where they came from; None for enough images, or a --latency-only set (no accuracy)."""
    if test.latency_only:
        return None
    where = (f"the held-out test split of {test.run}" if test.run else
             f"the test part of {test.source}" if test.part == "test" else f"all of {test.source}")
    few = few_images_warning(len(test.labels), where)
    return f"Warning: {few}." if few else None


def _shape(shape: tuple) -> str:
    return "x".join(map(str, shape))


# ---------------------------------------------------------------------- as files
def save_test_images(test: TestSet, folder: Path) -> Path:
    """Write the test images as PNG files in class sub-folders (a folder --data reads back exactly):
    how the test split of a run travels to a device without the training data or scikit-learn."""
    from edgecls.atomic import staged_dir

    if folder.exists() and any(folder.iterdir()):
        raise EdgeclsError(f"--save-test-images {folder} exists and is not empty: choose a new folder")
    with staged_dir(folder, force=True) as tmp:
        _write_png_files(test, tmp)
        write_saved_index(test, tmp)
    return folder


def stage_test_images(test: TestSet, folder: Path) -> Optional[list[Any]]:
    """The test images as files a device's bench reads as --data (`folder`), with test-images.json: the
    real files when there are some (the device decodes what this host decoded), else PNG files as
    save_test_images writes them; for PNG files, this host's id of each position (the device's flipped
    images name their position), else None."""
    folder.mkdir(parents=True, exist_ok=True)
    if test.files is not None:
        for image_id, path in zip(test.ids, test.files):
            target = folder / str(image_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    else:
        _write_png_files(test, folder)
    write_saved_index(test, folder)
    return None if test.files is not None else list(test.ids)


def _write_png_files(test: TestSet, folder: Path) -> None:
    """Each test image as FOLDER/CLASS/POSITION-ID.png."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    for position, (pixels, label) in enumerate(zip(test.images, test.labels)):
        target = folder / _safe_folder(test.class_names[int(label)])
        target.mkdir(parents=True, exist_ok=True)
        image_id = test.ids[position]
        stem = Path(str(image_id)).stem if not isinstance(image_id, int) else f"{image_id:06d}"
        image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        # The id in a text chunk keeps two identical pictures two files: the folder loader
        # drops byte-identical duplicates, and the device must score every test image.
        info = PngInfo()
        info.add_text("edgecls-test-image", f"{test.source}:{image_id}")
        image.save(target / f"{position:05d}-{stem}.png", pnginfo=info)


def write_saved_index(test: TestSet, folder: Path) -> None:
    """test-images.json in `folder`: where its test images came from (bench --data reads it back: a run's
    held-out split, not "all")."""
    (folder / SAVED_TEST_IMAGES).write_text(jsonio.dumps({
        "format": SAVED_FORMAT, "source": test.source, "run": test.run, "part": test.part,
        "images": int(len(test.labels)), "classes": test.class_names}, indent=1) + "\n", encoding="utf-8")


def _safe_folder(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_. " else "_" for c in name).strip(". ") or "class"
