"""The candidates of a search: what each one trains, its name (its folder), and how costly it is.

Three kinds, in the order a search tries them — cheap first:
- backbone: a new head on a pretrained .tflite (edgecls.transfer): seconds, from cached embeddings;
- scratch: a from-scratch CNN (edgecls.train) of one shape (architecture, input size, width): minutes;
- student: the same shapes distilled from the best backbone candidate (--teacher): the longest schedule.
A candidate's `settings` are the training options that define it; a resumed search reuses a finished
candidate only when they are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgecls.search.options import SearchOptions

KINDS = ("backbone", "scratch", "student")
REFERENCE_SIZE = 96  # px: a shape's cost is counted relative to a 96 px input


@dataclass(frozen=True)
class Shape:
    """A from-scratch network: architecture, square input size, width multiplier."""

    arch: str
    size: int
    width: float

    @property
    def key(self) -> str:
        return f"{self.arch}-{self.size}-a{self.width:g}"

    @property
    def work(self) -> float:
        """Training cost of one picture, relative to the mobile CNN at 96 px and width 1: pixels, and partly the
        width (at small widths the fixed costs of a step dominate)."""
        return (self.size / REFERENCE_SIZE) ** 2 * (0.5 + 0.5 * self.width) * (0.6 if self.arch == "seed" else 1.0)


@dataclass(frozen=True)
class Plan:
    name: str  # also its folder under SEARCH/candidates/
    kind: str  # backbone | scratch | student
    what: str  # one line for the log and the table
    settings: dict[str, Any] = field(hash=False)  # the train options that define it
    shape: Optional[Shape] = None  # scratch and student
    backbone: Optional[Path] = None  # backbone
    teacher: Optional[Path] = None  # student: the teacher's file (settings name it by candidate and SHA-256)

    @property
    def epochs(self) -> int:
        return int(self.settings.get("epochs", 0))


def backbone_plans(options: SearchOptions, files: list[Path]) -> list[Plan]:
    """Each backbone × head × views; one view first (the extra views cost their embedding)."""
    plans = []
    for views in sorted(options.view_list):
        for path in files:
            for head in options.head_list:
                name = f"{_safe(path.stem)}-{head}-v{views}"
                what = f"{head} head on {path.name}, {views} view{'s' if views > 1 else ''} per training picture"
                plans.append(Plan(name, "backbone", what, {"backbone": str(path.resolve()), "head": head,
                                                           "views": views, **_common(options)}, backbone=path))
    return plans


def shapes(options: SearchOptions) -> list[Shape]:
    """Every from-scratch shape of the grid, cheapest first."""
    found = [Shape(arch, size, width) for arch in options.arch_list for size in options.size_list
             for width in options.width_list]
    return sorted(found, key=lambda s: (s.work, s.key))


def scratch_plan(options: SearchOptions, shape: Shape) -> Plan:
    settings = {"arch": shape.arch, "img_size": shape.size, "alpha": shape.width, "epochs": options.epochs,
                **_common(options)}
    return Plan(shape.key, "scratch", f"{shape.arch} CNN from scratch, {shape.size} px, width {shape.width:g}",
                settings, shape=shape)


def student_plan(options: SearchOptions, shape: Shape, teacher: Path, teacher_name: str, teacher_sha256: str) -> Plan:
    """A student of `shape` taught by `teacher` (the file of the backbone candidate `teacher_name`): named in
    the settings by candidate and digest, not by path, so a search folder moved elsewhere still resumes."""
    settings = {"arch": shape.arch, "img_size": shape.size, "alpha": shape.width, "epochs": options.student_epochs,
                "patience": options.student_patience, "teacher": teacher_name, "teacher_sha256": teacher_sha256,
                "distill_alpha": options.distill_alpha, "distill_temperature": options.distill_temperature,
                "mixup": options.mixup, **_common(options)}
    return Plan(f"student-{shape.key}", "student",
                f"{shape.arch} CNN, {shape.size} px, width {shape.width:g}, distilled from {teacher_name}", settings,
                shape=shape, teacher=teacher)


def _common(options: SearchOptions) -> dict[str, Any]:
    return {"seed": options.seed, "val_fraction": options.val_fraction, "test_fraction": options.test_fraction}


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
