"""A trained model and its data, opened and checked: a run directory or a bare `.keras` file.

Export and bench start here. Opening checks the files without TensorFlow; the Keras model is
loaded (always in Keras' safe mode) only when asked for. Images come back as uint8 arrays:
calibration images from the train split only (stratified by class, seeded), the validation
and test splits for scoring.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.data import SPLIT_NAMES, stratified_sample
from edgecls.errors import EdgeclsError
from edgecls.files import read_capped
from edgecls.jsonio import JSONValueError, parse_json
from edgecls.provenance import sha256_file
from edgecls.runtime.labels import read_labels
from edgecls.tomlio import path_from, read_toml

# The files of a run directory (edgecls train writes them, export and bench read them).
MODEL_FILE = "model.keras"
LABELS_FILE = "labels.txt"
CONFIG_FILE = "config.toml"
SPLIT_FILE = "split.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
CURVES_FILE = "curves.png"
EXPORT_DIR = "export"  # RUN_DIR/export: what edgecls export writes by default
EXPORT_REPORT = "export.json"  # its index of the files written, read by bench
EXPORT_FORMAT = "edgecls.export/1"  # export.json's format (edgecls export and edgecls.transfer write it)
RUN_FILES = (MODEL_FILE, LABELS_FILE, CONFIG_FILE, SPLIT_FILE)
DEFAULT_CALIB_SAMPLES = 500  # the peers' advice is >= 300 where the train split has them
# A run made by `edgecls train --backbone FILE.tflite` (edgecls.transfer) has this instead of a
# model.keras: its only model is the .tflite its export/export.json lists.
TRANSFER_FILE = "transfer.json"
MAX_JSON_BYTES = 256 << 20  # split.json of a million images is ~8 MB; this only stops /dev/zero
# A .keras archive, unpacked: its config.json of a large model is a few MB; its weights are what a
# .tflite of it can hold (a flatbuffer stops at 2 GB).
MAX_KERAS_CONFIG_BYTES = 64 << 20
MAX_KERAS_BYTES = 2 << 30
MIN_CALIB_WARNING = 100  # fewer calibration images than this: ranges may be unstable


class RunMismatchError(EdgeclsError):
    """The run's own files disagree (its labels, its model, its data): no other data or device fixes that."""


def model_file_name(variant: str) -> str:
    """An exported model's file name in the export folder: model_<variant>.tflite."""
    return f"model_{variant}.tflite"


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
    """A model to export or bench, with its labels, input spec and data.

    Use `open_source(path, data=...)`: it accepts a run directory (made by `edgecls train`) or a
    bare `.keras` file plus `data` naming its images.
    """

    def __init__(self, model_path: Path, labels: list[str], data: str, img_size: Optional[int],
                 color: Optional[str], seed: int, run_dir: Optional[Path] = None,
                 config: Optional[dict] = None, split_doc: Optional[dict] = None):
        self.model_path = model_path
        self.labels = labels
        self.data = data
        self.img_size = img_size
        self.color = color
        self.seed = seed
        self.run_dir = run_dir  # None for a bare .keras file
        self.config = config or {}
        self.split_doc = split_doc  # None: a seeded split is made from the data
        self._model = None
        self._num_classes: Optional[int] = None
        self._dataset = None
        self._split = None

    @property
    def name(self) -> str:
        return str(self.run_dir or self.model_path)

    def training_metrics(self) -> dict:
        """metrics.json of the run ({} for a bare .keras file or a run made before it existed)."""
        if self.run_dir is None or not (self.run_dir / METRICS_FILE).is_file():
            return {}
        return _read_json(self.run_dir / METRICS_FILE)

    def model_sha256(self) -> str:
        return sha256_file(self.model_path)

    # ------------------------------------------------------------------ model
    def model(self):
        """The Keras model, loaded once (safe mode), checked against the labels."""
        if self._model is None:
            model = load_keras_model(self.model_path)
            h, w, c = model_input_shape(model, self.model_path)
            self._num_classes = model_num_classes(model, self.model_path)
            self._check_classes()
            if self.img_size is None:
                self.img_size, self.color = h, "grayscale" if c == 1 else "rgb"
            elif (h, w) != (self.img_size, self.img_size) or c != (1 if self.color == "grayscale" else 3):
                raise EdgeclsError(f"{self.model_path} takes {h}x{w}x{c} images but the run says "
                                   f"{self.img_size}x{self.img_size} {self.color}")
            self._model = model
        return self._model

    def _check_classes(self) -> None:
        if self._num_classes is not None and self.labels and self._num_classes != len(self.labels):
            where = f"{self.run_dir / LABELS_FILE} names" if self.run_dir else f"its data {self.data} has"
            raise RunMismatchError(f"{self.model_path} has {self._num_classes} outputs but {where} "
                                   f"{len(self.labels)} classes")

    # ------------------------------------------------------------------ data
    def dataset(self):
        """The run's dataset as uint8 arrays, at the model's size and colour mode (loaded once)."""
        if self._dataset is None:
            from edgecls.data import load_dataset

            if self.img_size is None:
                self.model()  # a bare .keras file: the model says what size and colour it takes
            dataset = load_dataset(self.data, self.img_size, self.color, progress=False)
            if self.labels and len(dataset.class_names) != len(self.labels):
                where = self.run_dir / LABELS_FILE if self.run_dir else "the model"
                raise RunMismatchError(f"{where} names {len(self.labels)} classes but its data {self.data} has "
                                       f"{len(dataset.class_names)}")
            if not self.labels:  # a bare .keras file: the data names the classes
                self.labels = list(dataset.class_names)
            self._check_classes()
            self._dataset = dataset
        return self._dataset

    def split(self):
        """Indices of the train / val / test parts: the run's saved split, or a seeded one."""
        if self._split is None:
            from edgecls.data import load_split, make_split

            dataset = self.dataset()
            if self.split_doc is not None:
                self._split = load_split(self.split_doc, dataset)
            else:  # a bare .keras file: the same stratified, seeded split `edgecls train` makes
                self._split = make_split(dataset, 0.1, 0.1, self.seed)
        return self._split

    def images(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images (N, H, W, C) and int labels of one split part: train, val or test."""
        if part not in SPLIT_NAMES:
            raise ValueError(f"unknown split part {part!r}")
        indices = getattr(self.split(), part)
        dataset = self.dataset()
        return np.asarray(dataset.images[indices]), np.asarray(dataset.labels[indices])

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
    return RunDir(path, [], data, None, None, seed=0)


def open_run(path: str | os.PathLike, data: Optional[str] = None) -> RunDir:
    """Open and check a run directory; `data` overrides where its images are (e.g. moved)."""
    path = Path(path)
    if not path.is_dir():
        raise EdgeclsError(f"{path} is not a run directory")
    transfer = (path / TRANSFER_FILE).is_file()
    needed = [name for name in RUN_FILES if not (transfer and name == MODEL_FILE)]
    present = [name for name in needed if (path / name).is_file()]
    if not present:
        raise EdgeclsError(f"{path} is not a run directory (no {', '.join(RUN_FILES)}; make one with edgecls train)")
    missing = [name for name in needed if name not in present]
    if missing:
        raise EdgeclsError(f"run directory {path} is incomplete: {', '.join(missing)} missing")
    if not transfer:
        check_keras_file(path / MODEL_FILE)
    config = read_toml(path / CONFIG_FILE, "run configuration")
    train = config.get("train", {})
    if isinstance(train, dict):
        train = {**train, "data": path_from(train.get("data"))}  # a path that is not UTF-8, as written
    if not isinstance(train, dict) or not isinstance(train.get("data"), str):
        raise EdgeclsError(f"{path / CONFIG_FILE} has no [train] table naming the data")
    split_doc = _read_json(path / SPLIT_FILE)
    if not all(isinstance(split_doc.get(part), list) for part in SPLIT_NAMES):
        raise EdgeclsError(f"{path / SPLIT_FILE} is malformed: it needs train, val and test index lists")
    labels = read_labels(path / LABELS_FILE)
    img_size, color, seed = train.get("img_size"), train.get("color"), train.get("seed", 0)
    if not (isinstance(img_size, int) and color in ("grayscale", "rgb") and isinstance(seed, int)):
        raise EdgeclsError(f"{path / CONFIG_FILE} is malformed: img_size, color or seed missing or wrong")
    return RunDir(path / MODEL_FILE, labels, data or train["data"], img_size, color, seed,
                  run_dir=path, config=config, split_doc=split_doc)


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


# ---------------------------------------------------------------------- helpers


def _read_json(path: Path) -> dict:
    try:
        doc = parse_json(read_capped(path, MAX_JSON_BYTES))
    except JSONValueError as exc:  # not JSON, NaN, an integer of 5000 digits ...
        raise EdgeclsError(f"{path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise EdgeclsError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(doc, dict):
        raise EdgeclsError(f"{path} is not a JSON object")
    return doc
