"""`edgecls data check`: audit a dataset or a run's data (near-duplicates, leakage, label mistakes,
outliers, odd files); numpy, Pillow and LiteRT only, so it runs on a device install too."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgecls import jsonio
from edgecls.cli.common import Threads, Typer
from edgecls.reporter import Reporter

app = Typer(no_args_is_help=True, help="Audit a dataset before training on it.",
            epilog="Example: edgecls data check photos/ --backbone mobilenet_v1_0.5_160_quant.tflite")


@app.command(epilog="Examples:\n\n"
             "edgecls data check photos/\n\n"
             "edgecls data check photos/ --backbone mobilenet_v1_0.5_160_quant.tflite --review review/\n\n"
             "edgecls data check runs/photos-mobilenet_v1_0.5_160_quant   # its split: leakage, accuracy without it")
def check(
    data: Annotated[str, typer.Argument(
        help="A folder of class sub-folders (or of IDX files), digits, or a run directory (then its split is "
             "checked for leakage too)")],
    backbone: Annotated[Optional[Path], typer.Option(
        help="A pretrained .tflite image classifier or feature extractor: its embeddings add label-issue "
             "candidates, outliers and look-alike duplicates (cached with train --backbone's)",
        show_default="a run's own backbone, else none")] = None,
    embedding_tensor: Annotated[Optional[str], typer.Option(
        help="With --backbone: the tensor to read", show_default="the input of the last FULLY_CONNECTED")] = None,
    report: Annotated[Optional[Path], typer.Option(
        help="Folder for datacheck.md, datacheck.json and the contact sheets",
        show_default="RUN/datacheck, or runs/<folder>-datacheck")] = None,
    review: Annotated[Optional[Path], typer.Option(
        help="A new folder to link the flagged images into, a folder per finding (your files are never moved)")] = None,
    threads: Threads = None,
    seed: Annotated[int, typer.Option(help="Seed of the label check's folds")] = 0,
    max_pages: Annotated[int, typer.Option(help="Contact-sheet pages per finding (12 rows a page)")] = 5,
    json_out: Annotated[bool, typer.Option("--json", help="Print the JSON report on stdout instead of the summary",
                                           metavar="")] = False,
) -> None:
    """Find near-duplicates, leakage across a split, likely label mistakes, outliers and odd image files."""
    from edgecls.audit.job import CheckOptions, run_check

    options = CheckOptions(target=data, backbone=str(backbone) if backbone else None,
                           embedding_tensor=embedding_tensor, report_dir=str(report) if report else None,
                           review=str(review) if review else None, threads=threads, seed=seed, max_pages=max_pages)
    result = run_check(options, Reporter(bars=False) if json_out else Reporter())
    if json_out:
        typer.echo(jsonio.dumps(result.document, indent=1))
    else:
        typer.echo("\n".join(result.summary()))
