"""`edgecls calibrate`: give any .tflite classifier calibrated scores and an "unknown" answer (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgecls.cli.common import (
    AcceptOption,
    FitOption,
    InputRange,
    ResizeOption,
    RuleOption,
    Threads,
    Typer,
    UnknownDataOption,
    echo_wrapped,
    plain,
)
from edgecls.reporter import Reporter
from edgecls.runtime.openset import DEFAULT_ACCEPT

app = Typer()


@app.command(epilog="Examples:\n\n"
             "edgecls calibrate model_int8.tflite --data photos/ --unknown-data other-photos/\n\n"
             "edgecls calibrate mobilenet_v1_0.5_160_quant.tflite --data photos/ --labels imagenet_labels.txt "
             "--resize nearest --out mobilenet_calibrated.tflite")
def calibrate(
    model: Annotated[Path, typer.Argument(help="A .tflite image classifier (edgecls' own, or any NHWC one)")],
    data: Annotated[Path, typer.Option(
        "--data", metavar="FOLDER",
        help="Images of the model's classes: FOLDER/<class>/... (halved: prototypes on one half, temperature and "
             "thresholds on the other) or FOLDER/train/<class>/... and FOLDER/val/<class>/...")],
    unknown_data: UnknownDataOption = None,
    accept: AcceptOption = DEFAULT_ACCEPT,
    rule: RuleOption = "auto",
    out: Annotated[Optional[Path], typer.Option(help="The calibrated .tflite to write",
                                                show_default="MODEL_calibrated.tflite beside MODEL")] = None,
    force: Annotated[bool, typer.Option(help="Replace --out if it exists", metavar="")] = False,
    labels: Annotated[Optional[Path], typer.Option(
        help="Labels file ('0 cat', '0: cat' or one name a line) for a model without its own")] = None,
    threads: Threads = None,
    input_range: InputRange = None,
    resize: ResizeOption = None,
    fit: FitOption = None,
    seed: Annotated[int, typer.Option(help="Seeds the halving of FOLDER and the prototypes")] = 0,
) -> None:
    """Fit a temperature and an open-set rule to a .tflite classifier and write a new .tflite that carries them.

    The temperature (fitted on the validation images' log-likelihood) is folded into the model's SOFTMAX; the rule (the calibrated top probability, the similarity of the image's embedding to the nearest class prototype, or both) and its thresholds go into the model's metadata, with how they were chosen. predict, Classifier.classify and bench then answer 'unknown' below the thresholds; edgecls versions that predate this run the new file as a plain classifier.

    Exit codes: 0 written; 2 bad input (a folder named by no label, too few images, an unreadable model).
    """  # noqa: E501  (one line a paragraph: Typer keeps a docstring's line breaks in --help)
    from edgecls.calibrate.folder import calibrate_folder
    from edgecls.calibrate.job import OpenSetOptions
    from edgecls.parsing import parse_range

    options = OpenSetOptions(accept=accept, rule=plain(rule), seed=seed, threads=threads)
    reporter = Reporter()
    result = calibrate_folder(model, data, options, unknown_data, out, force, str(labels) if labels else None,
                              parse_range(input_range), plain(resize), plain(fit), log=reporter)
    for line in result.skipped[:5]:
        reporter(f"skipped {line}")
    if len(result.skipped) > 5:
        reporter(f"... {len(result.skipped) - 5} more unreadable images skipped")
    echo_wrapped(f"Wrote {result.path}: {result.calibrated.summary()}\nNext: edgecls predict {result.path} IMAGES...")
