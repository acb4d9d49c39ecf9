"""`edgecls calibrate`: give any .tflite classifier calibrated scores and an "unknown" answer (no TensorFlow)."""

from __future__ import annotations

from edgecls.calibrate.options import PANELS, CalibrateOptions
from edgecls.cli.common import Typer, echo_wrapped
from edgecls.cli.records import takes
from edgecls.reporter import Reporter

app = Typer()


@app.command(epilog="Examples:\n\n"
             "edgecls calibrate model_int8.tflite --data photos/ --unknown-data other-photos/\n\n"
             "edgecls calibrate mobilenet_v1_0.5_160_quant.tflite --data photos/ --labels imagenet_labels.txt "
             "--resize nearest --out mobilenet_calibrated.tflite")
@takes(CalibrateOptions, panels=PANELS)
def calibrate(options: CalibrateOptions) -> None:
    """Fit a temperature and an open-set rule to a .tflite classifier and write a new .tflite that carries them.

    The temperature (fitted on the validation images' log-likelihood, kept where it lowers their calibration error too) is folded into the model's SOFTMAX; the rule (the calibrated top probability, the similarity of the image's embedding to the nearest class prototype, or both) and its thresholds go into the model's metadata, with how they were chosen. predict, Classifier.classify and bench then answer 'unknown' below the thresholds; edgecls versions that predate this run the new file as a plain classifier.

    Exit codes: 0 written; 2 bad input (a folder named by no label, too few images, an unreadable model).
    """  # noqa: E501  (one line a paragraph: Typer keeps a docstring's line breaks in --help)
    from edgecls.calibrate.folder import calibrate_folder

    reporter = Reporter()
    result = calibrate_folder(options, reporter)
    for line in result.skipped[:5]:
        reporter(f"skipped {line}")
    if len(result.skipped) > 5:
        reporter(f"... {len(result.skipped) - 5} more unreadable images skipped")
    echo_wrapped(f"Wrote {result.path}: {result.calibrated.summary()}\nNext: edgecls predict {result.path} IMAGES...")
