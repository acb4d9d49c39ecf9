"""`edgecls calibrate MODEL --data FOLDER [--unknown-data FOLDER]`: calibrate any .tflite classifier
(edgecls' own or a third party's) on a folder of labelled images, with no TensorFlow, and write a
new .tflite beside it.

    FOLDER/<class>/...          the images of each class (folders named by the model's labels, as bench
                                --labels matches them); split in two halves, stratified and seeded:
                                the prototypes are fitted on one, the temperature and thresholds on the other
    FOLDER/train/<class>/..., FOLDER/val/<class>/...    that split instead
    --unknown-data FOLDER       images of none of the classes, any layout: they choose the rule

Images are decoded as the device decodes them for this model (its resize and fit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.atomic import check_file_writable, write_bytes_atomic
from edgecls.calibrate.job import MIN_VALIDATION, Calibrated, FitData, calibrate, validate
from edgecls.calibrate.options import CalibrateOptions
from edgecls.errors import EdgeclsError
from edgecls.provenance import created_timestamp, device_versions, sha256_bytes
from edgecls.reporter import SILENT, Reporter
from edgecls.runtime.classify import Classifier
from edgecls.runtime.labels import match_label, printable
from edgecls.runtime.metadata import METADATA_FORMAT
from edgecls.runtime.model import read_model_bytes
from edgecls.runtime.preprocess import ImageError
from edgecls.runtime.sources import read_images, walk_images

VAL_SHARE = 0.5  # of each class's images, when the folder has no train/ and val/ of its own
MAX_UNKNOWN = 5000  # unknown images decoded (a sample of a bigger folder, seeded)


@dataclass
class FolderResult:
    path: Path  # the calibrated .tflite written
    calibrated: Calibrated
    skipped: list[str]  # images that could not be read, with the reason


def calibrate_folder(options: CalibrateOptions, reporter: Reporter = SILENT) -> FolderResult:
    """Calibrate `options.model` on the images of `options.data` (see the module doc) and write the new
    .tflite atomically (options.target); `reporter` tells what it does (a bar while the images decode)."""
    open_set = options.open_set()
    validate(open_set)
    model, data, out, settings = Path(options.model), Path(options.data), options.target, options.settings
    unknown_data = options.unknown.unknown_data
    if out.resolve() == model.resolve():
        raise EdgeclsError(f"--out {out} is the model itself: write the calibrated model to a new file")
    if out.exists() and not options.force:
        raise EdgeclsError(f"{out} already exists: choose another --out or pass --force to replace it")
    check_file_writable("--out", out)  # a folder there, a file above it, a read-only folder: before any work
    content = read_model_bytes(model)
    classifier = settings.open(model, content=content, open_set=False)
    skipped: list[str] = []
    parts = _labelled(Path(data), classifier, skipped, reporter)
    rng = np.random.default_rng(open_set.seed)
    if "val" in parts:
        (fit_x, fit_y), (val_x, val_y) = parts["train"], parts["val"]
        where = {"fit": f"{data}/train", "val": f"{data}/val"}
    else:
        (fit_x, fit_y), (val_x, val_y) = _halves(*parts["all"], rng)
        where = {"fit": f"half of {data} (stratified, seed {open_set.seed})",
                 "val": f"the other half of {data}"}
    if len(val_y) < MIN_VALIDATION:
        raise EdgeclsError(f"{len(val_y)} validation images are too few to calibrate {model.name} on (at "
                           f"least {MIN_VALIDATION}; {'val/ has' if 'val' in parts else 'half of --data is'} "
                           f"{len(val_y)}): give more images")
    unknown = None
    if unknown_data is not None:
        unknown = read_images(Path(unknown_data), classifier.preprocess, seed=open_set.seed, skipped=skipped)
        where["unknown"] = str(unknown_data)
    reporter(f"Calibrating {model.name} on {len(fit_y)} + {len(val_y)} images of {len(set(val_y.tolist()))} "
             f"classes{f' and {len(unknown)} unknown images' if unknown is not None else ''}")
    metadata = classifier.metadata or _third_party_metadata(classifier, content)
    result = calibrate(content, FitData(fit_x, fit_y, val_x, val_y, unknown, where), open_set, metadata,
                       model.name, settings.input_range, reporter)
    return FolderResult(write_bytes_atomic(out, result.content), result, skipped)


def _labelled(root: Path, classifier: Classifier, skipped: list[str],
              reporter: Reporter) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not root.is_dir():
        raise EdgeclsError(f"--data {root} is not a folder: give a folder of class sub-folders")
    if (root / "train").is_dir() and (root / "val").is_dir():
        return {"train": _class_folders(root / "train", classifier, skipped, reporter),
                "val": _class_folders(root / "val", classifier, skipped, reporter)}
    return {"all": _class_folders(root, classifier, skipped, reporter)}


def _class_folders(root: Path, classifier: Classifier, skipped: list[str],
                   reporter: Reporter) -> tuple[np.ndarray, np.ndarray]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise EdgeclsError(f"{root} has no class sub-folders (one folder per class, named by the model's labels)")
    matched = [(folder, match_label(folder.name, classifier.labels)[0]) for folder in folders]  # before decoding
    files = [(path, index) for folder, index in matched for path in walk_images(folder)]
    images, labels = [], []
    for path, index in reporter.track(files, f"Decoding {root}"):
        pixels = _decode(classifier, path, skipped)
        if pixels is not None:
            images.append(pixels)
            labels.append(index)
    if not images:
        raise EdgeclsError(f"{root} has no readable images")
    return np.stack(images), np.asarray(labels, np.int64)


def _decode(classifier: Classifier, path: Path, skipped: list[str]) -> Optional[np.ndarray]:
    try:
        return classifier.preprocess(path)
    except ImageError as exc:
        skipped.append(f"{printable(str(path))}: {exc}")
        return None


def _halves(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator
            ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    fit_rows, val_rows = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < 2:
            raise EdgeclsError(f"class {label} has {len(members)} image: calibration needs at least 2 a class")
        cut = max(1, int(round(len(members) * VAL_SHARE)))
        val_rows.append(members[:cut])
        fit_rows.append(members[cut:])
    fit_idx, val_idx = np.sort(np.concatenate(fit_rows)), np.sort(np.concatenate(val_rows))
    return (images[fit_idx], labels[fit_idx]), (images[val_idx], labels[val_idx])


def _third_party_metadata(classifier: Classifier, content: bytes) -> dict[str, Any]:
    """The edgecls metadata a third-party model gets with its calibration: what it was run with here
    (labels, input size, pixel range, resize, fit), so the device needs nothing else."""
    spec = classifier.input_spec
    return {"format": METADATA_FORMAT, "labels": list(classifier.labels),
            "input": {"height": spec.height, "width": spec.width, "color": spec.color,
                      "pixel_range": [float(v) for v in spec.pixel_range], "resize": spec.resize, "fit": spec.fit},
            # unknown: the runtime decides per batch, as for the model itself
            **({"output": classifier.output_kind} if classifier.output_kind != "unknown" else {}),
            "source": {"model": classifier.path.name, "model_sha256": sha256_bytes(content),
                       "labels": classifier.labels_source},
            "versions": device_versions(), "created": created_timestamp()}
