"""A trained model and its data, opened and checked: a run directory or a bare `.keras` file.

Export and bench start here. Opening reads the run's records once (edgecls.artifacts: labels,
config, split, metrics) and checks them without TensorFlow; what the model takes and which classes
it names are known from then on. The Keras model and the dataset are loaded (the model always in
Keras' safe mode) when first asked for. Images come back as uint8 arrays: calibration images from
the train split only (stratified by class, seeded), the validation and test splits for scoring.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.artifacts import EXPORT_DIR, EXPORT_REPORT, LABELS_FILE, MODEL_FILE, ExportIndex, RunRecord
from edgecls.data import SPLIT_NAMES, stratified_sample
from edgecls.errors import EdgeclsError
from edgecls.provenance import sha256_file
from edgecls.text import printable

DEFAULT_CALIB_SAMPLES = 500  # the peers' advice is >= 300 where the train split has them
# A .keras archive, unpacked: its config.json of a large model is a few MB; its weights are what a
# .tflite of it can hold (a flatbuffer stops at 2 GB).
MAX_KERAS_CONFIG_BYTES = 64 << 20
MAX_KERAS_BYTES = 2 << 30
MIN_CALIB_WARNING = 100  # fewer calibration images than this: ranges may be unstable


@dataclass
class Calibration:
    """Calibration images drawn from the train split: uint8 (N, H, W, C), their labels, the seed."""

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray  # into the dataset: all from the train split
    per_class: dict[str, int]
    seed: int
    requested: int
    available: int  # images in the train split
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What the metadata and export.json record about the calibration set."""
        return {"split": "train", "samples": int(len(self.images)), "requested": self.requested,
                "available": self.available, "per_class": self.per_class, "seed": self.seed,
                "stratified": True}


class RunDir:
    """A model to export or bench: its labels, input size and colour, data and seed are settled when
    it is opened (use `open_source(path, data=...)`: a run directory made by `edgecls train`, or a
    bare `.keras` file plus `data` naming its images); the model, dataset and split load once, on demand.
    """

    def __init__(self, model_path: Path, labels: list[str], data: str, img_size: int, color: str, seed: int,
                 run_dir: Optional[Path] = None, record: Optional[RunRecord] = None, model: Any = None,
                 dataset: Any = None):
        self.model_path = model_path
        self.labels = labels
        self.data = data
        self.img_size = img_size
        self.color = color
        self.seed = seed
        self.run_dir = run_dir  # None for a bare .keras file
        self.record = record  # the run directory's records; None for a bare .keras file
        self._model = model
        self._dataset = dataset  # a bare .keras file's, loaded when opened (it names the labels)
        self._loaded = None

    @property
    def name(self) -> str:
        return str(self.run_dir or self.model_path)

    def training_metrics(self) -> dict:
        """metrics.json of the run ({} for a bare .keras file or a run made before it existed)."""
        return self.record.metrics if self.record is not None else {}

    def model_sha256(self) -> str:
        return sha256_file(self.model_path)

    # ------------------------------------------------------------------ model
    def model(self):
        """The Keras model, loaded once (safe mode), checked against the labels and the input spec."""
        if self._model is None:
            self._model = load_keras_model(self.model_path)
            check_model(self._model, self.model_path, self.labels, (self.img_size, self.color),
                        LABELS_FILE if self.run_dir else self.data)
        return self._model

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """The Keras float model's class probabilities on uint8 images (a softmax over the outputs of a
        model that ends in logits)."""
        from edgecls.runtime.quant import is_distribution, softmax

        outputs = keras_probabilities(self.model(), images)
        return outputs if is_distribution(outputs) else softmax(outputs)

    # ------------------------------------------------------------------ data
    def data_and_split(self):
        """The dataset at the model's size and colour and its split (the run's saved one, checked; a
        seeded one for a bare .keras file), loaded once."""
        if self._loaded is None:
            from edgecls.data import split_data
            from edgecls.retraining import load_grown

            # its data, then the folders a run trained with --from RUN --add added (a bare .keras file's
            # dataset was loaded when it was opened)
            dataset = self._dataset or load_grown(self.data, self.added, self.img_size, self.color, self.labels)
            self._loaded = dataset, split_data(dataset, self.labels,
                                               self.record.split if self.record is not None else None, self.seed,
                                               str(self.run_dir / LABELS_FILE) if self.run_dir else "the model")
        return self._loaded

    @property
    def added(self) -> list[str]:
        """The folders of new images a `train --from RUN --add` run added to its data, in order ([]: none)."""
        return list(self.record.config.train.get("add") or []) if self.record is not None else []

    def negatives(self) -> Optional[np.ndarray]:
        """The images of the unknown/ sub-folders of the folders this run added (negatives for the unknown
        answer's rule, as --unknown-data's), at the model's size and colour; None without any."""
        if not self.added:
            return None
        from edgecls.retraining import negative_files, read_negatives

        return read_negatives(negative_files(self.added, self.labels), self.img_size, self.color, self.seed)

    def dataset(self):
        return self.data_and_split()[0]

    def split(self):
        """Indices of the train / val / test parts."""
        return self.data_and_split()[1]

    def part(self, name: str):
        """One split part — train, val or test — as edgecls.data.Part: images, labels, ids and files."""
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split part {name!r}")
        dataset, split = self.data_and_split()
        return dataset.take(getattr(split, name))

    def images(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images (N, H, W, C) and int labels of one split part: train, val or test."""
        found = self.part(part)
        return found.images, found.labels

    def calibration(self, samples: Optional[int] = DEFAULT_CALIB_SAMPLES, seed: Optional[int] = None) -> Calibration:
        """Up to `samples` train-split images (all of them if None or fewer), stratified by class, seeded."""
        if samples is not None and samples < 1:
            raise EdgeclsError(f"--calib-samples must be at least 1 (got {samples})")
        seed = self.seed if seed is None else seed
        dataset = self.dataset()
        train = self.split().train
        chosen = stratified_sample(dataset.labels[train], samples, seed)
        indices = train[chosen]
        labels = np.asarray(dataset.labels[indices])
        counts = np.bincount(labels, minlength=len(self.labels))
        per_class = {name: int(n) for name, n in zip(self.labels, counts)}
        warnings = []
        if len(indices) < MIN_CALIB_WARNING:
            warnings.append(f"only {len(indices)} calibration images (fewer than {MIN_CALIB_WARNING}): "
                            "int8 ranges may be unstable")
        missing = [name for name, n in per_class.items() if n == 0]
        if missing:
            warnings.append(f"{len(missing)} class(es) missing from the calibration images: "
                            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        return Calibration(np.asarray(dataset.images[indices]), labels, indices, per_class, seed,
                           samples if samples is not None else len(train), len(train), warnings)



def check_model(model, path: Path, labels: list[str], spec: tuple[int, str], where: str) -> None:
    """The Keras model takes the run's input and answers its classes (`where` names the labels' source)."""
    h, w, c = model_input_shape(model, path)
    size, color = spec
    if (h, w) != (size, size) or c != (1 if color == "grayscale" else 3):
        raise EdgeclsError(f"{path} takes {h}x{w}x{c} images but the run says {size}x{size} {color}")
    classes = model_num_classes(model, path)
    if classes != len(labels):
        raise EdgeclsError(f"{path} has {classes} outputs but there are {len(labels)} classes ({where})")


# ---------------------------------------------------------------------- opening
def open_source(path: str | os.PathLike, data: Optional[str] = None) -> RunDir:
    """A run directory, or a bare `.keras` file (then `data` names its images). One-line errors."""
    path = Path(path)
    if not path.exists():
        raise EdgeclsError(f"{path} does not exist: give a run directory (made by edgecls train) or a .keras file")
    if path.is_dir():
        return open_run(path, data)
    if path.suffix.lower() != ".keras":
        raise EdgeclsError(f"{path} is not a run directory or a .keras file")
    check_keras_file(path)
    if not data:
        raise EdgeclsError(f"{path} is a bare model: name its images with --data (digits, a folder, ...) "
                           "for calibration and the check")
    # A bare model says what it takes only when loaded, and its data names the classes: both now, once.
    model = load_keras_model(path)
    h, _, c = model_input_shape(model, path)
    color = "grayscale" if c == 1 else "rgb"
    from edgecls.data import load_dataset

    dataset = load_dataset(data, h, color)
    labels = list(dataset.class_names)
    check_model(model, path, labels, (h, color), data)
    return RunDir(path, labels, data, h, color, seed=0, model=model, dataset=dataset)


def open_run(path: str | os.PathLike, data: Optional[str] = None) -> RunDir:
    """Open and check a run directory; `data` overrides where its images are (e.g. moved)."""
    path = Path(path)
    record = RunRecord.read(path)
    if record.transfer is None:
        check_keras_file(path / MODEL_FILE)
    config = record.config
    return RunDir(path / MODEL_FILE, record.labels, data or config.data, config.img_size, config.color, config.seed,
                  run_dir=path, record=record)


def exported_files(run_dir: Path) -> list[Path]:
    """The .tflite files a run's export.json lists (stale files in the folder are ignored), each checked
    against the digest export.json records."""
    files = []
    for path, digest in export_listing(run_dir):
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise EdgeclsError(f"cannot read {path}: {exc.strerror or exc}") from None
        check_exported(path, digest, actual)
        files.append(path)
    return files


def export_listing(run_dir: Path) -> list[tuple[Path, str]]:
    """(file, the SHA-256 export.json records for it) of every .tflite a run's export.json lists, each there;
    the files themselves are not read (check_exported checks a digest taken where the file is read)."""
    report_path = run_dir / EXPORT_DIR / EXPORT_REPORT
    if not report_path.is_file():
        raise EdgeclsError(f"{run_dir} has no exported models ({report_path} is missing): "
                           f"run edgecls export {run_dir} first")
    again = f"run edgecls export {run_dir} again"
    entries = [(entry.file, entry.sha256) for entry in ExportIndex.read(report_path, again).models]
    if not entries:
        raise EdgeclsError(f"{report_path} lists no models: {again}")
    listing = []
    for name, digest in entries:
        # A plain file name inside the export folder: export.json must not point bench anywhere else.
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise EdgeclsError(f"{report_path} lists {printable(str(name))!r}, not a file name in its folder: {again}")
        listing.append((report_path.parent / name, digest))
    missing = [path.name for path, _ in listing if not path.is_file()]
    if missing:
        raise EdgeclsError(f"{report_path} lists {', '.join(missing)} but the file is missing: {again}")
    return listing


def check_exported(path: Path, listed: str, actual: str) -> None:
    """An exported file (RUN/export/NAME) has the digest (`actual`) its export.json records (`listed`). An
    interrupted export (or a copy over it) can leave models of two trainings side by side: the digests say
    which files belong to it."""
    if actual != listed:
        raise EdgeclsError(f"{path.name} does not match {path.parent / EXPORT_REPORT} (its SHA-256 differs): the "
                           f"export folder mixes files of different exports; run edgecls export "
                           f"{path.parent.parent} again")


def check_keras_file(path: Path) -> None:
    """Cheap checks (no TensorFlow) that `path` is a Keras v3 archive."""
    if not path.is_file():
        raise EdgeclsError(f"{path} is missing")
    try:
        if path.stat().st_size == 0:
            raise EdgeclsError(f"{path} is empty (0 bytes)")
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a zip archive"
        raise EdgeclsError(f"{path} is corrupt or not a Keras .keras file ({reason})") from None
    sizes = {m.filename: m.file_size for m in members}
    if "config.json" not in sizes:
        raise EdgeclsError(f"{path} is corrupt or not a Keras .keras file (no config.json inside)")
    # Keras reads config.json whole and parses it: a 4 MB file can inflate it to gigabytes. Zip members
    # decompress to no more than their declared size (a lie fails the CRC), so the declared sizes bound it.
    for name, size in sizes.items():
        limit = MAX_KERAS_CONFIG_BYTES if name.endswith(".json") else MAX_KERAS_BYTES
        if size > limit:
            raise EdgeclsError(f"{path} is not a Keras model edgecls can load: its {name} inflates to {_mib(size)} "
                               f"(over the {_mib(limit)} a {'Keras config' if name.endswith('.json') else 'model'} "
                               "needs; a zip bomb?)")
    if sum(sizes.values()) > MAX_KERAS_BYTES:
        raise EdgeclsError(f"{path} is not a Keras model edgecls can load: it inflates to {_mib(sum(sizes.values()))} "
                           f"(over {_mib(MAX_KERAS_BYTES)})")


def _mib(size: int) -> str:
    return f"{size / (1 << 30):.1f} GiB" if size >= 1 << 30 else f"{size / (1 << 20):.0f} MiB"


def load_keras_model(path: str | os.PathLike):
    """Load a .keras model in Keras' safe mode; unsafe content is refused with a one-line error.

    Safe mode is never switched off: a Lambda layer holding Python bytecode could run anything.
    """
    from edgecls.errors import require_tensorflow

    path = Path(path)
    check_keras_file(path)
    require_tensorflow("loading a Keras model")
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError, TypeError, KeyError, OSError for bad files
        text = " ".join(str(exc).split())
        if "safe_mode" in text or "unsafe" in text.lower() or "arbitrary code" in text:
            kind = "a Lambda layer" if "Lambda" in text else "content"
            raise EdgeclsError(f"{path} needs unsafe deserialisation ({kind} that can run arbitrary Python code); "
                               "edgecls loads models in Keras' safe mode only: rebuild it without Lambda layers "
                               "or custom Python functions") from None
        raise EdgeclsError(f"cannot load {path}: {type(exc).__name__}: {text[:200]}") from None

def keras_probabilities(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The Keras float model's outputs on uint8 images, a batch at a time (no float copy of all)."""
    from keras import ops

    rows = [ops.convert_to_numpy(model(images[i:i + batch_size].astype(np.float32), training=False))
            for i in range(0, len(images), batch_size)]
    return np.concatenate(rows)


def model_input_shape(model, path: Path) -> tuple[int, int, int]:
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape is None or len(shape) != 4 or shape[3] not in (1, 3) or not all(isinstance(d, int) for d in shape[1:]):
        raise EdgeclsError(f"{path}: input shape {model.input_shape} is not one image (None, H, W, 1|3)")
    return int(shape[1]), int(shape[2]), int(shape[3])


def model_num_classes(model, path: Path) -> int:
    shape = model.output_shape
    if isinstance(shape, list) or len(shape) != 2 or not isinstance(shape[1], int):
        raise EdgeclsError(f"{path}: output shape {shape} is not class scores (None, N)")
    return int(shape[1])
