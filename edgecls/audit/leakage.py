"""Leakage of a run's split: near-duplicate groups with members in two of its parts (train, val,
test), and its test accuracy recomputed without the test images that have a near-duplicate in
train or validation (the model has, in effect, seen them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.data import SPLIT_NAMES


@dataclass
class Leakage:
    groups: list[list[int]]  # groups spanning two or more parts
    parts: np.ndarray  # each dataset image's part ("" for none)
    leaked_test: list[int]  # test images with a member of their group in train or val
    accuracy: list[dict[str, Any]] = field(default_factory=list)  # per exported model: all vs without leaked
    note: str = ""  # why the accuracy could not be recomputed

    def pairs_of_parts(self) -> dict[str, int]:
        """How many spanning groups join each pair of parts, e.g. {"train+test": 3}."""
        counts: dict[str, int] = {}
        for group in self.groups:
            present = [p for p in SPLIT_NAMES if any(self.parts[i] == p for i in group)]
            key = "+".join(present)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def to_json(self, ids: list[Any]) -> dict[str, Any]:
        return {"groups": len(self.groups), "by_parts": self.pairs_of_parts(),
                "leaked_test_images": [ids[i] for i in self.leaked_test],
                "accuracy": self.accuracy, "note": self.note or None}


def find_leakage(groups: list[list[int]], parts: np.ndarray) -> Leakage:
    """The groups (dataset indices) that span parts, and the test images they leak."""
    spanning = [g for g in groups if len({parts[i] for i in g if parts[i]}) > 1]
    leaked = sorted(i for g in spanning if any(parts[j] in ("train", "val") for j in g)
                    for i in g if parts[i] == "test")
    return Leakage(spanning, parts, leaked)


def recompute_accuracy(leaked: list[int], models: list[Path], test_images: np.ndarray, test_labels: np.ndarray,
                       test_indices: np.ndarray, threads: Optional[int] = None) -> list[dict[str, Any]]:
    """Each model's test accuracy on all test images and without the `leaked` ones (dataset indices),
    through the device runtime: a row per model."""
    from edgecls.runtime import Classifier

    keep = ~np.isin(np.asarray(test_indices), leaked)
    rows = []
    for path in models:
        predicted = Classifier(path, num_threads=threads).probabilities(test_images).argmax(1)
        right = predicted == np.asarray(test_labels)
        rows.append({
            "model": path.name, "test_images": int(len(right)), "accuracy": round(float(right.mean()), 4),
            "without_leaked": int(keep.sum()),
            "accuracy_without_leaked": round(float(right[keep].mean()), 4) if keep.any() else None,
            "accuracy_on_leaked": round(float(right[~keep].mean()), 4) if (~keep).any() else None})
    return rows
