"""How a .tflite file becomes a Classifier: the model settings predict, serve, bench and explain share
(labels, resize, fit, input range, threads, backend), each declared once as an option (edgecls.options)
that those commands' records take, in their own words where they need them (bench's --labels).

ModelSettings gathers them for a library that opens models again and again (serve's reloads, a bench's
fresh loads per thread count): `settings.open(path)` is the Classifier they describe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from edgecls.errors import EdgeclsError
from edgecls.options import number_text, option
from edgecls.runtime.metadata import check_range
from edgecls.runtime.openset import DEFAULT_ACCEPT, RULE_CHOICES
from edgecls.runtime.preprocess import DEFAULT_FIT, DEFAULT_RESIZE, FITS, RESIZE_METHODS

if TYPE_CHECKING:
    from edgecls.runtime.classify import Classifier

# Their --help panels:
INTERPRETER = "Interpreter"
PREPROCESSING = "Preprocessing (default: what the model's metadata says)"
OUTPUT = "Output"

INPUT_RANGE_HELP = ("LO,HI: the input values pixels 0 and 255 become, for a model that does not scale inside: "
                    "-1,1 (MobileNet style), 0,1, ...; overrides the model's metadata")
INPUT_RANGE_DEFAULT = ("the metadata's range; else 0,255 for a float input (edgecls models scale inside), the raw "
                       "bytes for a quantised one")


def parse_range(text: str | None, option: str = "--input-range") -> tuple[float, float] | None:
    """'-1,1' -> (-1.0, 1.0): two finite, distinct numbers. One-line EdgeclsError otherwise."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        value = (float(parts[0]), float(parts[1]))
    except ValueError:
        raise EdgeclsError(f"{option} takes LO,HI, the values pixels 0 and 255 become, e.g. -1,1 or 0,1 "
                           f"(got {text!r})") from None
    return check_range(value, option, EdgeclsError)


def range_text(value: tuple[float, float]) -> str:
    """(-1.0, 1.0) -> '-1,1': what parse_range reads back exactly."""
    return ",".join(number_text(float(v)) for v in value)


def backend_option(**changes: Any) -> Any:
    return option(None, **{"help": "litert | tflite_runtime | tensorflow", "panel": INTERPRETER,
                           "show_default": "$EDGECLS_BACKEND, else the first one installed, in that order", **changes})


def threads_option(**changes: Any) -> Any:
    return option(None, **{"help": "Interpreter threads", "low": 1, "range_in_help": True,
                           "show_default": "the CPU count", "panel": INTERPRETER, **changes})


def input_range_option(**changes: Any) -> Any:
    return option(None, **{"flags": ("--input-range",), "metavar": "LO,HI", "help": INPUT_RANGE_HELP,
                           "show_default": INPUT_RANGE_DEFAULT, "panel": PREPROCESSING, "parse": parse_range,
                           "text": range_text, **changes})


def labels_option(**changes: Any) -> Any:
    return option(None, **{"help": "Labels file ('0 cat', '0: cat' or one name a line); overrides the model's own "
                                   "labels",
                           "show_default": "the model's own, else labels.txt beside it, else the class indices",
                           "panel": OUTPUT, **changes})


def resize_option(**changes: Any) -> Any:
    return option(None, **{"help": "How a picture is resized to the model's input: match what the model was trained "
                           "or evaluated with (Google's Coral MobileNets: nearest)", "choices": RESIZE_METHODS,
                           "what": "resize method", "show_default": f"the model's metadata, else {DEFAULT_RESIZE}",
                           "panel": PREPROCESSING, **changes})


def fit_option(**changes: Any) -> Any:
    return option(None, **{"help": "stretch: the whole picture, aspect ratio not kept; crop: its centre at the "
                           "model's aspect ratio", "choices": FITS, "what": "fit",
                           "show_default": f"the model's metadata, else {DEFAULT_FIT}", "panel": PREPROCESSING,
                           **changes})


# The unknown answer (edgecls.calibrate): export, train --backbone and calibrate choose an open-set rule.
UNKNOWN = "Unknown answer"


def accept_option(**changes: Any) -> Any:
    return option(DEFAULT_ACCEPT, **{"low": 0.5, "high": 0.999, "range_in_help": True, "metavar": "SHARE",
                                     "panel": UNKNOWN, "help": "The share of validation images of known classes the "
                                     "unknown rule accepts; below its thresholds an image is answered 'unknown'",
                                     **changes})


def unknown_data_option(**changes: Any) -> Any:
    return option(None, **{"kind": Path, "metavar": "FOLDER", "panel": UNKNOWN, "show_default": "none",
                           "help": "Images of none of the classes (any layout): the rule that rejects most of them is "
                           "chosen", **changes})


def rule_option(**changes: Any) -> Any:
    return option("auto", **{"choices": RULE_CHOICES, "what": "rule", "panel": UNKNOWN,
                             "help": "top: the calibrated top probability; embedding: the similarity to the nearest "
                             "class prototype; both: either low; auto: both where the model has an embedding, or the "
                             "best on --unknown-data", **changes})


@dataclass(frozen=True)
class UnknownAnswer:
    """How the unknown answer is chosen: the options of every command that calibrates."""

    accept: float = accept_option()
    unknown_data: Optional[str] = unknown_data_option()
    rule: str = rule_option()


# What `predict --collect` and `serve --collect` keep (edgecls.runtime.collect).
COLLECT = "Collect for the next training"


@dataclass(frozen=True)
class CollectSettings:
    """The --collect options as given; `options()` is the checked CollectOptions (None without --collect)."""

    collect: Optional[str] = option(
        None, kind=Path, metavar="DIR", panel=COLLECT, show_default="none: keep nothing",
        help="Keep the images or frames a --collect-when rule picks as DIR/<answer>/NAME (the answer: a label or "
        "unknown) with a JSON sidecar; move each file into the right class folder, then train with them")
    collect_when: Optional[list[str]] = option(
        None, multiple=True, metavar="RULES", panel=COLLECT,
        show_default="unknown for a model with an unknown rule, else uncertain<0.6",
        help="unknown, uncertain<0.6 (calibrated top score), margin<0.2 (top minus second), class=NAME, sample=0.01, "
        "every=600s, disagree (with --shadow): a comma list, or repeat the option; the first rule that fires is "
        "recorded")
    collect_max_mb: Optional[float] = option(
        None, metavar="MB", panel=COLLECT, show_default="no cap",
        help="Keep nothing more once DIR holds this many MB (said once, and counted in the summary)")
    collect_reserve_mb: Optional[float] = option(
        None, metavar="MB", panel=COLLECT, show_default="200",
        help="Keep nothing that would leave less than this much free space on DIR's disk")
    shadow: Optional[str] = option(
        None, kind=Path, metavar="OTHER.tflite", panel=COLLECT, show_default="none",
        help="A second model with the same labels (e.g. the float32 file beside the int8 one) for --collect-when "
        "disagree: it classifies every --shadow-every-th image too")
    shadow_every: Optional[int] = option(
        None, low=1, range_in_help=True, metavar="N", panel=COLLECT, show_default="5",
        help="Run the --shadow model on every Nth image or frame offered (1: all)")

    def options(self) -> Any:
        """edgecls.runtime.collect's CollectOptions of these (None without --collect); one-line errors."""
        from edgecls.runtime.collect import collect_options

        return collect_options(self.collect, self.collect_when, self.collect_max_mb, self.collect_reserve_mb,
                               self.shadow, self.shadow_every)


@dataclass(frozen=True)
class ModelSettings:
    """How a model file becomes Classifiers: `edgecls predict`'s model options."""

    labels: Optional[Path] = labels_option()
    resize: Optional[str] = resize_option()
    fit: Optional[str] = fit_option()
    input_range: Optional[tuple[float, float]] = input_range_option()
    threads: Optional[int] = threads_option()
    backend: Optional[str] = backend_option()

    def open(self, path: str | Path, threads: Optional[int] = None, content: Optional[bytes] = None,
             open_set: bool = True) -> Classifier:
        """The Classifier of `path` with these settings (`threads` instead of the settings' own, if given;
        `content`: the file's bytes, already read and checked; `open_set=False`: never 'unknown')."""
        from edgecls.runtime.classify import Classifier

        return Classifier(path, num_threads=threads if threads is not None else self.threads, open_set=open_set,
                          content=content, **self.classifier_args())

    def classifier_args(self) -> dict[str, Any]:
        """The Classifier's keyword arguments these settings give (threads aside), as JSON values: what
        a fresh process opens a model with (bench's peak-memory probe) to open it as this one does."""
        return {"labels": None if self.labels is None else str(self.labels), "backend": self.backend,
                "input_range": None if self.input_range is None else list(self.input_range),
                "resize": self.resize, "fit": self.fit}
