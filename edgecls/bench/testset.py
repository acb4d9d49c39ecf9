"""The test images of a bench (TestSet): pixels, labels in the models' class order, where they came
from; putting them in a model's class order; writing them as PNG files a device reads back exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls import jsonio
from edgecls.errors import EdgeclsError

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
        write_saved_index(test, tmp)
    return folder


def write_saved_index(test: TestSet, folder: Path) -> None:
    """test-images.json in `folder`: where its test images came from (bench --data reads it back: a run's
    held-out split, not "all")."""
    (folder / SAVED_TEST_IMAGES).write_text(jsonio.dumps({
        "format": SAVED_FORMAT, "source": test.source, "run": test.run, "part": test.part,
        "images": int(len(test.labels)), "classes": test.class_names}, indent=1) + "\n", encoding="utf-8")


def _safe_folder(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_. " else "_" for c in name).strip(". ") or "class"
    return cleaned
