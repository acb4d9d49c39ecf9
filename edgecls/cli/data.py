"""`edgecls data check`: audit a dataset or a run's data (near-duplicates, leakage, label mistakes,
outliers, odd files); numpy, Pillow and LiteRT only, so it runs on a device install too."""

from __future__ import annotations

import typer

from edgecls import jsonio
from edgecls.audit.options import CheckOptions
from edgecls.cli.common import Typer
from edgecls.cli.records import takes
from edgecls.reporter import Reporter

app = Typer(no_args_is_help=True, help="Audit a dataset before training on it.",
            epilog="Example:\n\nedgecls data check photos/ --backbone mobilenet_v1_0.5_160_quant.tflite")


@app.command(epilog="Examples:\n\n"
             "edgecls data check photos/\n\n"
             "edgecls data check photos/ --backbone mobilenet_v1_0.5_160_quant.tflite --review review/\n\n"
             "edgecls data check runs/photos-mobilenet_v1_0.5_160_quant   # its split: leakage, accuracy without it")
@takes(CheckOptions)
def check(options: CheckOptions) -> None:
    """Find near-duplicates, leakage across a split, likely label mistakes, outliers and odd image files."""
    from edgecls.audit.job import run_check

    result = run_check(options, Reporter(bars=False) if options.as_json else Reporter())
    if options.as_json:
        typer.echo(jsonio.dumps(result.document, indent=1))
    else:
        from edgecls.console import print_wrapped

        print_wrapped("\n".join(result.summary()))  # to the terminal's width; whole lines in a pipe
