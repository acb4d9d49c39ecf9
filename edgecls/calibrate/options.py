"""CalibrateOptions: every setting of `edgecls calibrate` in one record (edgecls.options: the single
source of each option, its help, bounds and checks; the command line is made from it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from edgecls.calibrate.job import OpenSetOptions
from edgecls.options import OUTPUT, argument, check, option
from edgecls.runtime.settings import INTERPRETER, PREPROCESSING, UNKNOWN, ModelSettings, UnknownAnswer

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
    unknown: UnknownAnswer = field(default_factory=UnknownAnswer)  # --accept, --unknown-data, --rule
    out: Optional[Path] = option(None, kind=Path, panel=OUTPUT, help="The calibrated .tflite to write",
                                 show_default="MODEL_calibrated.tflite beside MODEL")
    force: bool = option(False, panel=OUTPUT, help="Replace --out if it exists")
    settings: ModelSettings = field(default_factory=ModelSettings)  # predict's model options
    seed: int = option(0, panel=DATA, help="Seeds the halving of FOLDER and the prototypes")

    @property
    def target(self) -> Path:
        """The file to write: --out, else MODEL_calibrated.tflite beside MODEL."""
        model = Path(self.model)
        return Path(self.out) if self.out is not None else model.with_name(f"{model.stem}_calibrated.tflite")

    def open_set(self) -> OpenSetOptions:
        """The calibration's own settings (edgecls.calibrate.job), as export and train --backbone give them."""
        check(self)
        return OpenSetOptions(accept=self.unknown.accept, rule=self.unknown.rule, seed=self.seed,
                              threads=self.settings.threads)
