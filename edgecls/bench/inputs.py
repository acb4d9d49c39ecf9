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

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls import jsonio
from edgecls.errors import EdgeclsError
from edgecls.files import read_capped
from edgecls.jsonio import JSONValueError, parse_json
from edgecls.provenance import sha256_file
from edgecls.rundir import EXPORT_DIR, EXPORT_REPORT, MAX_JSON_BYTES, SPLIT_FILE, TRANSFER_FILE, RunDir
from edgecls.runtime.labels import printable
from edgecls.runtime.metrics import few_images_warning

SAVED_TEST_IMAGES = "test-images.json"  # written by save_test_images: where the images came from
SAVED_FORMAT = "edgecls.test-images/1"


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


# ---------------------------------------------------------------------- models
def split_paths(paths: Sequence[Path]) -> tuple[Optional[Path], list[Path]]:
    """(the run directory, if one is given; the .tflite files). One-line errors."""
    if not paths:
        raise EdgeclsError("give a run directory (made by edgecls train and edgecls export) or .tflite files")
    runs, files = [], []
    for path in map(Path, paths):
        if path.is_dir():
            runs.append(path)
        elif not path.exists():
            raise EdgeclsError(f"{path} does not exist: give a run directory or .tflite files")
        elif path.suffix.lower() == ".tflite":
            files.append(path)
        elif path.suffix.lower() == ".json":
            raise EdgeclsError(f"{path} is a JSON file: to merge bench reports use edgecls bench compare A.json B.json")
        else:
            raise EdgeclsError(f"{path} is not a run directory or a .tflite file")
    if len(runs) > 1:
        raise EdgeclsError(f"give one run directory at a time (got {', '.join(map(str, runs))})")
    return (runs[0] if runs else None), files


def exported_files(run_dir: Path) -> list[Path]:
    """The .tflite files a run's export.json lists (stale files in the folder are ignored)."""
    report_path = run_dir / EXPORT_DIR / EXPORT_REPORT
    if not report_path.is_file():
        raise EdgeclsError(f"{run_dir} has no exported models ({report_path} is missing): "
                           f"run edgecls export {run_dir} first")
    again = f"run edgecls export {run_dir} again"
    try:
        doc = parse_json(read_capped(report_path, MAX_JSON_BYTES))
        entries = [(entry["file"], entry["sha256"]) for entry in doc["models"]]
    except JSONValueError as exc:
        raise EdgeclsError(f"{report_path} is malformed (not valid JSON: {exc}): {again}") from None
    except (KeyError, TypeError) as exc:
        raise EdgeclsError(f"{report_path} is malformed ({type(exc).__name__}): {again}") from None
    except OSError as exc:
        raise EdgeclsError(f"cannot read {report_path}: {exc.strerror or exc}") from None
    if not entries:
        raise EdgeclsError(f"{report_path} lists no models: {again}")
    files = []
    for name, _ in entries:
        # A plain file name inside the export folder: export.json must not point bench anywhere else.
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise EdgeclsError(f"{report_path} lists {printable(str(name))!r}, not a file name in its folder: {again}")
        files.append(report_path.parent / name)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise EdgeclsError(f"{report_path} lists {', '.join(missing)} but the file is missing: {again}")
    # An interrupted export (or a copy over it) can leave models of two trainings side by side:
    # the report's digests say which files belong to it.
    for path, (_, digest) in zip(files, entries):
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise EdgeclsError(f"cannot read {path}: {exc.strerror or exc}") from None
        if actual != digest:
            raise EdgeclsError(f"{path.name} does not match {report_path} (its SHA-256 differs): the export "
                               f"folder mixes files of different exports; {again}")
    return files


def describe_tflite(path: Path, backend: Optional[str] = None) -> BenchModel:
    """Size, digest and quantisation mode of a .tflite (its metadata's mode, else detected)."""
    from edgecls.runtime.inspect import inspect_model

    info = inspect_model(path, backend=backend)
    if not info["classifier"].get("image_classifier"):
        raise EdgeclsError(f"{path}: {info['classifier']['reason']}")
    quant = info["quantization"]
    io = {side: {k: info[f"{side}s"][0][k] for k in ("dtype", "scale", "zero_point")} for side in ("input", "output")}
    mode = quant.get("declared") or quant["detected"]
    if ((info.get("metadata") or {}).get("quantization") or {}).get("kept_float"):
        mode += "-mixed"  # some ops kept in float by export --keep-float / --auto-fallback
    return BenchModel(name=path.name, kind="tflite", mode=mode, path=path,
                      size_bytes=info["size_bytes"], sha256=info["sha256"], io=io)


def unique_names(models: list[BenchModel]) -> None:
    """Two files called model_int8.tflite from different folders get their folder in the name."""
    counts: dict[str, int] = {}
    for model in models:
        counts[model.name] = counts.get(model.name, 0) + 1
    for model in models:
        if counts[model.name] > 1 and model.kind == "tflite":
            model.name = f"{model.path.parent.name}/{model.path.name}"


def metadata_run(path: Path) -> tuple[Optional[Path], Optional[str]]:
    """(the run directory an edgecls .tflite says it came from, if it is here and really is that run;
    else None and, when a run of that name is here but is another one, a sentence saying so).

    The path in the metadata is only a name (often relative, and reused by every `edgecls train
    --out runs/x`): the run is accepted only when its model.keras has the SHA-256 the export recorded.
    """
    from edgecls.rundir import MODEL_FILE
    from edgecls.runtime.metadata import read_metadata
    from edgecls.runtime.model import read_model_bytes

    content = read_model_bytes(path)
    source = (read_metadata(content) or {}).get("source") or {}
    run = source.get("run")
    if not run or not (Path(run) / SPLIT_FILE).is_file():
        return None, None
    if (Path(run) / TRANSFER_FILE).is_file():  # trained on a .tflite backbone: no model.keras to check
        return _transfer_run(Path(run), path, content)
    expected = source.get("model_sha256")
    try:
        actual = sha256_file(Path(run) / MODEL_FILE)
    except OSError:
        actual = None
    if expected and actual == expected:
        return Path(run), None
    why = ("records no model digest to check it by" if not expected
           else f"has no readable {MODEL_FILE}" if actual is None
           else f"has another {MODEL_FILE} (SHA-256 {actual[:12]}…, the file was exported from {expected[:12]}…)")
    return None, (f"{path.name}'s metadata names the run {run}, but the run there {why}: "
                  "it is not this model's run, so its test split is not used")


def _transfer_run(run: Path, path: Path, content: bytes) -> tuple[Optional[Path], Optional[str]]:
    """A run made by edgecls.transfer is this model's when its export.json lists this very file."""
    import hashlib

    digest = hashlib.sha256(content).hexdigest()
    try:
        listed = {m.get("sha256") for m in parse_json(read_capped(run / EXPORT_DIR / EXPORT_REPORT,
                                                                  MAX_JSON_BYTES))["models"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        listed = set()
    if digest in listed:
        return run, None
    return None, (f"{path.name}'s metadata names the run {run}, but its {EXPORT_DIR}/{EXPORT_REPORT} does not list "
                  "this file: it is not this model's run, so its test split is not used")


# ---------------------------------------------------------------------- test images
def run_test_set(run: RunDir) -> TestSet:
    """The run's held-out test split, with image ids (file or dataset index) and files."""
    dataset = run.dataset()
    indices = np.asarray(run.split().test)
    if len(indices) == 0:
        raise EdgeclsError(f"{run.name} has no test images (its split's test part is empty)")
    images, labels = run.images("test")
    ids, files = _ids_and_files(dataset, indices)
    source = run.training_metrics().get("test_source")  # how train drew them, in its words
    notes = [f"Test images: the held-out test split of {run.name}: {source}."] if source else []
    return TestSet(images, labels, list(run.labels), ids, files, run.data, "test", run=str(run.run_dir),
                   notes=notes + _leak_notes(run))


def _leak_notes(run: RunDir) -> list[str]:
    """A note when test images have a near-duplicate in the run's train part (edgecls.audit.duplicates)."""
    from edgecls.audit.duplicates import train_test_leaks

    try:
        leaked = train_test_leaks(run.dataset(), run.split())
    except EdgeclsError:  # the check is a courtesy: a cache that cannot be written must not stop the bench
        return []
    if not leaked:
        return []
    return [f"{len(leaked)} of the {len(run.split().test)} test images have a near-duplicate in the run's train "
            f"part (its split did not keep them apart): their accuracy is flattered; edgecls data check "
            f"{run.run_dir} lists them and gives the accuracy without them."]


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

    dataset = load_dataset(data, size[0] if size[0] == size[1] else None, color, progress=False)
    if dataset.image_size != size:
        raise EdgeclsError(f"the models take {size[0]}x{size[1]} images; {data} gives {dataset.image_size[0]}x"
                           f"{dataset.image_size[1]}")
    given = dataset.given_split or {}
    part = "test" if len(given.get("test", ())) else "all"
    indices = np.asarray(given["test"]) if part == "test" else np.arange(len(dataset.labels))
    if len(indices) == 0:
        raise EdgeclsError(f"{data} has no images")
    ids, files = _ids_and_files(dataset, indices)
    saved = _saved_from(Path(data))
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
    return TestSet(np.asarray(dataset.images[indices]), np.asarray(dataset.labels[indices]),
                   list(dataset.class_names), ids, files, data, part, notes=notes)


def _saved_from(folder: Path) -> Optional[dict[str, Any]]:
    try:
        doc = parse_json(read_capped(folder / SAVED_TEST_IMAGES, MAX_JSON_BYTES))
    except (OSError, JSONValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == SAVED_FORMAT else None


def _ids_and_files(dataset: Any, indices: np.ndarray) -> tuple[list[Any], Optional[list[Path]]]:
    if dataset.paths is None:
        return [int(i) for i in indices], None
    root = Path(dataset.source)
    relative = [dataset.paths[i] for i in indices]
    return relative, [root / p for p in relative]


def match_classes(test: TestSet, labels: list[str], model_name: str) -> TestSet:
    """Put the test labels in the model's class order. One-line error when the counts differ."""
    if len(labels) != len(test.class_names):
        raise EdgeclsError(f"{model_name} has {len(labels)} classes but the test data ({test.source}) has "
                           f"{len(test.class_names)}: bench a model with the data it was trained on, or, for "
                           "class folders named by some of the model's labels, give --labels FILE")
    if labels == test.class_names:
        return test
    if sorted(labels) == sorted(test.class_names):  # same names, another order (folder sorting)
        position = {name: i for i, name in enumerate(labels)}
        order = np.array([position[name] for name in test.class_names])
        test.labels = order[test.labels]
        test.class_names = list(labels)
        return test
    test.notes.append(f"the data's class names ({', '.join(test.class_names[:4])}...) differ from the model's "
                      f"({', '.join(labels[:4])}...): classes are matched by position")
    test.class_names = list(labels)
    return test


def save_test_images(test: TestSet, folder: Path) -> Path:
    """Write the test images as PNG files in class sub-folders (a folder --data reads back exactly):
    how the test split of a run travels to a device without the training data or scikit-learn."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from edgecls.atomic import staged_dir

    if folder.exists() and any(folder.iterdir()):
        raise EdgeclsError(f"--save-test-images {folder} exists and is not empty: choose a new folder")
    with staged_dir(folder, force=True) as tmp:
        for position, (pixels, label) in enumerate(zip(test.images, test.labels)):
            name = test.class_names[int(label)]
            target = tmp / _safe_folder(name)
            target.mkdir(exist_ok=True)
            image_id = test.ids[position]
            stem = Path(str(image_id)).stem if not isinstance(image_id, int) else f"{image_id:06d}"
            image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
            # The id in a text chunk keeps two identical pictures two files: the folder loader
            # drops byte-identical duplicates, and the device must score every test image.
            info = PngInfo()
            info.add_text("edgecls-test-image", f"{test.source}:{image_id}")
            image.save(target / f"{position:05d}-{stem}.png", pnginfo=info)
        (tmp / SAVED_TEST_IMAGES).write_text(jsonio.dumps({
            "format": SAVED_FORMAT, "source": test.source, "run": test.run, "part": test.part,
            "images": int(len(test.labels)), "classes": test.class_names}, indent=1) + "\n", encoding="utf-8")
    return folder


def _safe_folder(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_. " else "_" for c in name).strip(". ") or "class"
    return cleaned
