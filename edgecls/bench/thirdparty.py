"""Bench any classifier: test images in folders named by the model's own labels (`--labels`), or no
labelled data at all (`--latency-only`). Each model decodes the images itself, at its own input
size and with its own resize, so models of different input sizes are benched together.

Folder names are matched to labels by edgecls.runtime.labels.match_label: exactly, case-insensitively,
by a label's first comma part (ImageNet's "tabby, tabby cat" for a folder "tabby"), by any comma part
("tabby cat"), or by the class index ("286"). top-1/top-k are scored over every class of the model; the
confusion matrix and the per-class table keep the matched classes and put the rest in OTHER.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.bench.testset import TestSet, one_label_set
from edgecls.errors import EdgeclsError
from edgecls.runtime.classify import Classifier
from edgecls.runtime.labels import match_label
from edgecls.runtime.preprocess import ImageError, is_image_file
from edgecls.runtime.sources import walk_images
from edgecls.text import printable

OTHER = "(other classes)"  # the confusion matrix's column for every class without a folder
RANDOM_IMAGES = 32  # --latency-only without --data: this many seeded random pictures per model
MAX_SHOWN = 8  # folder matches named in the note (all of them are in the JSON)


@dataclass(frozen=True)
class FolderMatch:
    folder: str
    index: int
    label: str
    how: str  # exact | case-insensitive | first comma part | comma part | index
    images: int

    def to_json(self) -> dict[str, Any]:
        return {"folder": self.folder, "index": self.index, "label": self.label, "match": self.how,
                "images": self.images}


def labelled_test_set(data: str, models: Sequence[Any], classifiers: dict[str, Classifier]) -> TestSet:
    """The images of `data`'s class sub-folders, each folder mapped to one of the models' labels."""
    root = _folder(data)
    labels = one_label_set(models, classifiers)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        loose = any(is_image_file(p) for p in root.iterdir())
        raise EdgeclsError(f"{data} has no class sub-folders{' (its images are loose: no labels)' if loose else ''}: "
                           "put the images in sub-folders named by the model's labels, or bench with --latency-only")
    matches, files, truth = [], [], []
    for folder in folders:
        index, how = match_label(folder.name, labels)
        found = list(walk_images(folder))
        matches.append(FolderMatch(folder.name, index, labels[index], how, len(found)))
        files += found
        truth += [index] * len(found)
    if not files:
        raise EdgeclsError(f"{data}'s class sub-folders hold no images")
    class_index = sorted(set(truth))  # two folders of one label are one class
    position = {index: i for i, index in enumerate(class_index)}
    test = _decoded(root, files, np.array([position[t] for t in truth]), models, classifiers, data, "all")
    test.class_names = [labels[i] for i in class_index] + [OTHER]
    test.class_index = class_index
    test.label_map = [m.to_json() for m in matches]
    test.notes.insert(0, _match_note(matches, len(labels)))
    test.notes.insert(1, f"{data} is scored whole (make sure the models were not trained on it). top-1 and top-k are "
                      f"over all {len(labels)} classes of the model; the confusion matrix and per-class table keep "
                      f"the {len(class_index)} classes named by the folders, every other class is '{OTHER}'.")
    return test


def unlabelled_test_set(data: Optional[str], models: Sequence[Any], classifiers: dict[str, Classifier]) -> TestSet:
    """--latency-only: the images under `data` (any layout), or seeded random pictures, no labels."""
    if data is None:
        per_model = {}
        for model in models:
            shape = classifiers[model.name].input_spec.shape
            per_model[model.name] = np.random.default_rng(0).integers(0, 256, (RANDOM_IMAGES, *shape), dtype=np.uint8)
        first = per_model[models[0].name]
        # (the report's headline says "Latency only: N unlabelled images (SOURCE), no accuracy": no note here)
        return TestSet(first, np.zeros(len(first), int), [], list(range(len(first))), None,
                       f"seeded random images, {RANDOM_IMAGES} per model at its own size", "unlabelled",
                       per_model=per_model, latency_only=True)
    root = _folder(data)
    files = list(walk_images(root))
    if not files:
        raise EdgeclsError(f"{data} holds no images")
    test = _decoded(root, files, np.zeros(len(files), int), models, classifiers, data, "unlabelled")
    test.class_names, test.latency_only = [], True
    return test


def scores(probabilities: np.ndarray, test: TestSet) -> tuple[np.ndarray, dict[str, Any]]:
    """(the probabilities of the test's classes and OTHER, the best of the rest; top-1 and top-k over
    every class of the model) of a labelled test set."""
    index = np.asarray(test.class_index)
    rest = np.delete(probabilities, index, axis=1)
    other = rest.max(axis=1, keepdims=True) if rest.shape[1] else np.zeros((len(probabilities), 1), np.float32)
    truth = index[test.labels]
    k = min(5, probabilities.shape[1])
    best_k = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    full = {"top1": float(np.mean(best_k[:, 0] == truth)), "topk": float(np.mean(np.any(best_k == truth[:, None], 1))),
            "k": k}
    return np.concatenate([probabilities[:, index], other], axis=1), full


def _folder(data: str) -> Path:
    root = Path(data)
    if not root.is_dir():
        raise EdgeclsError(f"--data {data} is not a folder: with --labels or --latency-only give a folder of images")
    return root


def _decoded(root: Path, files: list[Path], truth: np.ndarray, models: Sequence[Any],
             classifiers: dict[str, Classifier], data: str, part: str) -> TestSet:
    """Decode every file for every model with its own preprocessing; unreadable files are left out
    (noted), for every model alike."""
    first = classifiers[models[0].name]
    kept, skipped, pixels = [], [], []
    for i, path in enumerate(files):
        try:
            pixels.append(first.preprocess(path))
            kept.append(i)
        except ImageError as exc:
            skipped.append(f"{printable(str(path.relative_to(root)))}: {exc}")
    if not kept:
        raise EdgeclsError(f"no readable image in {data} ({skipped[0]})")
    files = [files[i] for i in kept]
    per_model = {models[0].name: np.stack(pixels)}
    for model in models[1:]:
        per_model[model.name] = np.stack([classifiers[model.name].preprocess(f) for f in files])
    notes = [f"{len(skipped)} unreadable image file(s) in {data} were skipped ({'; '.join(skipped[:3])})"] if skipped \
        else []
    ids = [str(f.relative_to(root)) for f in files]
    return TestSet(per_model[models[0].name], truth[kept], [], ids, files, data, part, notes=notes,
                   per_model=per_model)


def _match_note(matches: list[FolderMatch], num_labels: int) -> str:
    kinds: dict[str, int] = {}
    for m in matches:
        kinds[m.how] = kinds.get(m.how, 0) + 1
    summary = ", ".join(f"{n} {how}" for how, n in kinds.items())
    shown = "; ".join(f"{printable(m.folder)!r} → {m.index} {m.label!r} ({m.how}, {m.images} "
                      f"image{'' if m.images == 1 else 's'})" for m in matches[:MAX_SHOWN])
    more = f"; … {len(matches) - MAX_SHOWN} more in the JSON" if len(matches) > MAX_SHOWN else ""
    return (f"{len(matches)} class folder(s) matched labels of the model ({num_labels} classes): {summary}. "
            f"{shown}{more}")
