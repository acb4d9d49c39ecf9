"""`edgecls train`: a Keras classifier and its run directory, or a new head on a pretrained .tflite (--backbone).

Its options are the fields of `edgecls.train.options.TrainOptions` (edgecls.cli.records), and config.toml is
read and written from the same fields, so adding a train option is a TrainOptions field and nothing else.
"""

from __future__ import annotations

import typer

from edgecls.cli.common import Typer, echo_wrapped
from edgecls.cli.records import takes
from edgecls.reporter import Reporter
from edgecls.train.options import PANELS, TrainOptions

app = Typer()


@app.command(epilog="Examples:\n\n"
             "edgecls train --epochs 5\n\n"
             "edgecls train --data photos/ --arch mobile --img-size 96 --out runs/photos\n\n"
             "edgecls train --config runs/digits-seed/config.toml --out runs/again\n\n"
             "edgecls train --data photos/ --backbone mobilenet_v1_0.25_128_quant.tflite\n\n"
             "edgecls train --from runs/photos --add inbox/ --out runs/photos-2\n\n"
             "edgecls train --data photos/ --arch mobilenet_v2 --alpha 0.35  # internet once")
@takes(TrainOptions, panels=PANELS)
def train(options: TrainOptions, ctx: typer.Context) -> None:
    """Train a classifier and write a run directory (model.keras, labels, split, metrics, plots).

    With --backbone FILE.tflite: a new head on a pretrained .tflite, numpy and LiteRT only (also on a device).
    """
    from edgecls.train.options import with_config

    # --config FILE.toml: its values for the options not given here (given ones win), checked as they are
    given = {name for name in ctx.params if ctx.get_parameter_source(name).name != "DEFAULT"}
    options, from_config = with_config(options, given)
    given |= from_config
    reporter = Reporter(bars=False) if options.quiet else Reporter()  # lines on stderr; bars on a terminal
    if options.backbone is not None:  # before any TensorFlow import: this route never needs it
        from edgecls.transfer.job import train_from_options

        result = train_from_options(options, given, force=options.force, reporter=reporter,
                                    config=str(options.config) if options.config else None, from_config=from_config)
    else:
        from edgecls.train.job import train as run_training
        from edgecls.train.options import validate

        validate(options)
        result = run_training(options, force=options.force, reporter=reporter)
    echo_wrapped(result.summary())
    for warning in result.warnings():
        echo_wrapped(f"WARNING: {warning}", err=True)
