"""CalibrateOptions: every setting of `edgecls calibrate` in one record (edgecls.options: the single
source of each option, its help, bounds and checks; the command line is made from it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from edgecls.calibrate.job import OpenSetOptions
from edgecls.options import OUTPUT, argument, check, option
from edgecls.runtime.settings import (
    INTERPRETER,
    PREPROCESSING,
    UNKNOWN,
    ModelSettings,
    UnknownAnswer,
    backend_option,
    fit_option,
    input_range_option,
    labels_option,
    resize_option,
    threads_option,
)

DATA = "Data"
PANELS = (DATA, UNKNOWN, OUTPUT, PREPROCESSING, INTERPRETER)  # the order of `edgecls calibrate --help`


@dataclass(frozen=True)
class CalibrateOptions:
    """What `edgecls calibrate` calibrates, on which images, and where it writes the new file."""

    model: Path = argument(kind=Path, help="A .tflite image classifier (edgecls' own, or any NHWC one)")
    data: Path = option(
        required=True, flags=("--data",), kind=Path, metavar="FOLDER", panel=DATA,
        help="Images of the model's classes: FOLDER/<class>/... (halved: prototypes on one half, temperature and "
        "thresholds on the other) or FOLDER/train/<class>/... and FOLDER/val/<class>/...")
    labels: Optional[Path] = labels_option(  # predict's model options, in calibrate's words where they differ
        panel=DATA, help="Labels file ('0 cat', '0: cat' or one name a line): FOLDER's class folders are "
        "named by these; overrides the model's own labels")
    seed: int = option(0, panel=DATA, help="Seeds the halving of FOLDER and the prototypes")
    unknown: UnknownAnswer = field(default_factory=UnknownAnswer)  # --accept, --unknown-data, --rule
    out: Optional[Path] = option(None, kind=Path, panel=OUTPUT, help="The calibrated .tflite to write",
                                 show_default="MODEL_calibrated.tflite beside MODEL")
    force: bool = option(False, panel=OUTPUT, help="Replace --out if it exists")
    resize: Optional[str] = resize_option()
    fit: Optional[str] = fit_option()
    input_range: Optional[tuple[float, float]] = input_range_option()
    threads: Optional[int] = threads_option()
    backend: Optional[str] = backend_option()

    @property
    def settings(self) -> ModelSettings:
        """How the model is opened to decode FOLDER's images (predict's model options)."""
        return ModelSettings(labels=self.labels, resize=self.resize, fit=self.fit, input_range=self.input_range,
                             threads=self.threads, backend=self.backend)

    @property
    def target(self) -> Path:
        """The file to write: --out, else MODEL_calibrated.tflite beside MODEL."""
        model = Path(self.model)
        return Path(self.out) if self.out is not None else model.with_name(f"{model.stem}_calibrated.tflite")

    def open_set(self) -> OpenSetOptions:
        """The calibration's own settings (edgecls.calibrate.job), as export and train --backbone give them."""
        check(self)
        return OpenSetOptions(accept=self.unknown.accept, rule=self.unknown.rule, seed=self.seed,
                              threads=self.threads, backend=self.backend)
