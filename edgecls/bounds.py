"""The documented range of every numeric option: what a machine can do in its memory and in a day.

A small number must never start unbounded work (10**12 epochs, masks or timed runs; a batch that
cannot fit in memory), and NaN or infinity must never pass a range check (every comparison with
NaN is false). Each job's validate() calls `check_bound` for its options before any work; the
table is printed in docs/reliability.md by `bounds_table()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edgecls.errors import EdgeclsError


@dataclass(frozen=True)
class Bound:
    low: float
    high: float
    why: str  # why the limit is where it is, in a few words
    open_low: bool = False  # low itself is not allowed (a rate, a duration: more than 0)
    open_high: bool = False  # high itself is not allowed (a fraction below 1)


DAY_S = 86_400.0
BOUNDS: dict[str, Bound] = {
    # train (CNN and --backbone)
    "--seed": Bound(0, 2**32 - 1, "numpy's and Keras' seeds are unsigned 32-bit"),
    "--img-size": Bound(8, 512, "pixels a side; larger inputs do not fit a Pi-class device"),
    "--kernel-size": Bound(1, 11, "pixels; the seed CNN's maps are small"),
    "--dropout": Bound(0, 1, "a fraction of the units", open_high=True),
    "--label-smoothing": Bound(0, 1, "a fraction of the target", open_high=True),
    "--val-fraction": Bound(0, 0.5, "of the images; the rest trains", open_low=True, open_high=True),
    "--test-fraction": Bound(0, 0.5, "of the images; the rest trains", open_low=True, open_high=True),
    "--alpha": Bound(0, 2, "the width multiplier of the MobileNets, seed and mobile", open_low=True),
    "--epochs": Bound(1, 10_000, "early stopping ends real runs long before"),
    "--batch-size": Bound(1, 4_096, "a larger batch of images does not fit a workstation's memory"),
    "--patience": Bound(0, 10_000, "at most --epochs"),
    "--fine-tune-epochs": Bound(0, 10_000, "early stopping ends real runs long before"),
    "--lr": Bound(0, 10, "a larger step diverges", open_low=True),
    "--fine-tune-lr": Bound(0, 10, "a larger step diverges", open_low=True),
    "--views": Bound(1, 64, "each view is one more pass of the backbone over the training images"),
    # train --teacher (distillation) and search's students
    "--distill-alpha": Bound(0, 1, "the labels' share of the loss; the teacher has the rest"),
    "--distill-temperature": Bound(0.1, 100, "softer than 100 every class is equally likely"),
    "--mixup": Bound(0, 10, "Beta(A, A) weights; past 10 every mix is nearly half and half"),
    # search
    "--max-latency-ms": Bound(0, 3_600_000, "milliseconds a picture: an hour", open_low=True),
    "--max-size-kb": Bound(0, 2_097_152, "a .tflite flatbuffer stops at 2 GB", open_low=True),
    "--students": Bound(0, 64, "each is a long training run"),
    "--student-epochs": Bound(1, 10_000, "early stopping ends real runs long before"),
    "--student-patience": Bound(0, 10_000, "at most --student-epochs"),
    # export and export --target
    "--min-agreement": Bound(0, 1, "a fraction of the validation images"),
    "--calib-samples": Bound(1, 100_000, "calibration images are held in memory; 300-1,000 is plenty"),
    "--auto-fallback": Bound(0, 256, "ops kept in float, one conversion each"),
    "--max-fallback": Bound(0, 64, "one conversion and one timing per candidate"),
    "--max-drop": Bound(0, 100, "top-1 accuracy points"),
    "--budget-s": Bound(0, 7 * DAY_S, "a week", open_low=True),
    "--timing-runs": Bound(1, 100_000, "timed images per candidate, in a day"),
    # explain
    "--masks": Bound(1, 100_000, "one model run each; 100,000 runs of a 1 ms model take minutes"),
    "--worst": Bound(1, 1_000, "images on one contact sheet"),
    # bench
    "--runs": Bound(1, 1_000_000, "timed images per model and thread count, in a day"),
    "--warmup": Bound(0, 100_000, "untimed runs per model and thread count"),
    "--explain-flips": Bound(0, 10_000, "least-confident agreements mapped, two models each"),
    "--explain-threshold": Bound(-200, 200, "an SNR in dB"),
    "--calib-sweep": Bound(1, 100_000, "calibration images, held in memory"),
    # data check
    "--max-pages": Bound(0, 1_000, "contact-sheet pages per finding"),
    # predict --source
    "--every": Bound(1, 1_000_000, "frames"),
    "--fps": Bound(0, 1_000, "frames a second", open_low=True),
    "--duration": Bound(0, 366 * DAY_S, "a year", open_low=True),
    "--timeout": Bound(0.1, DAY_S, "a day"),
    "--reconnect": Bound(0, 366 * DAY_S, "a year"),
    # the open-set rule, and predict --collect (the field loop)
    "--accept": Bound(0.5, 1, "the share of known-class images the unknown rule accepts", open_high=True),
    "--collect-max-mb": Bound(0, 1_000_000, "megabytes of kept images: a terabyte at most", open_low=True),
    "--collect-reserve-mb": Bound(0, 1_000_000, "megabytes of the disk left free"),
    "--shadow-every": Bound(1, 1_000_000, "images between two runs of the second model"),
    # serve and deploy
    "--port": Bound(0, 65_535, "a TCP port; 0 picks a free one"),
    "--interpreters": Bound(1, 64, "one thread and one copy of the model's tensors each"),
    "--queue": Bound(0, 10_000, "requests held in memory, each with its image"),
    "--max-connections": Bound(1, 10_000, "open sockets; the process has about 1,024 file descriptors"),
    "--max-body-mb": Bound(0, 1_024, "a request body is held in memory", open_low=True),
    "--max-model-mb": Bound(0, 2_048, "a .tflite flatbuffer stops at 2 GB", open_low=True),
    "--max-megapixels": Bound(0, 1_000, "decoded pixels, 3 bytes each, in memory", open_low=True),
    "--header-timeout-s": Bound(0, 3_600, "an hour", open_low=True),
    "--body-timeout-s": Bound(0, DAY_S, "a day", open_low=True),
    "--grace-s": Bound(0, 3_600, "an hour"),
    "--drift-window": Bound(1, 1_000_000, "answers held in memory, a few bytes each"),
    # serve --source (the live service)
    "--min-stable": Bound(1, 100_000, "frames a new class must hold before it is a change"),
    "--frame-max-side": Bound(16, 8_192, "pixels a side of the frame /v1/frame.jpg sends (predict's input limit)"),
    "--parallel": Bound(1, 256, "devices or servers reached at once, a thread each"),
}


def check_bound(option: str, value: Any) -> None:
    """Refuse `value` for `option` unless it is a finite number in BOUNDS[option]: one line, exit 2."""
    bound = BOUNDS[option]
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond any float
        number = math.inf
    low_ok = number > bound.low if bound.open_low else number >= bound.low
    high_ok = number < bound.high if bound.open_high else number <= bound.high
    if not (math.isfinite(number) and low_ok and high_ok):
        raise EdgeclsError(f"{option} must be {_span(bound)} ({bound.why}; got {_shown(value)})")


def _span(b: Bound) -> str:
    if not (b.open_low or b.open_high):
        return f"between {_num(b.low)} and {_num(b.high)}"
    if b.open_low and b.open_high:
        return f"strictly between {_num(b.low)} and {_num(b.high)}"
    return (f"{'more than' if b.open_low else 'at least'} {_num(b.low)} and "
            f"{'less than' if b.open_high else 'at most'} {_num(b.high)}")


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def bounds_table() -> str:
    """The table as Markdown, for the documentation."""
    rows = ["| option | range | why |", "| --- | --- | --- |"]
    for option, b in BOUNDS.items():
        rows.append(f"| `{option}` | {'(' if b.open_low else '['}{_num(b.low)}, {_num(b.high)}"
                    f"{')' if b.open_high else ']'} | {b.why} |")
    return "\n".join(rows)
