"""`edgecls search`: the most accurate model that fits a device's latency budget (edgecls.search.job).

Its parameters mirror edgecls.search.options.SearchOptions field for field; the body builds the record
and calls one library function.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgecls.cli.common import OUTPUT, Typer, echo_wrapped, plain
from edgecls.search.options import SCRATCH_ARCHS, VARIANTS, SearchOptions

app = Typer()
_D = SearchOptions(data="", target="", max_latency_ms=1.0)
_FIELDS = {f.name for f in fields(SearchOptions)}

_BUDGET, _SPACE, _STUDENTS, _DATA = "Budget", "Search space", "Students (distilled from the best backbone)", "Data"


@app.command(epilog="Examples:\n\n"
             "edgecls search --data photos/ --target rpi4 --max-latency-ms 5 --backbones models/ --budget-s 3600\n\n"
             "edgecls search --data photos/ --target pi@raspberrypi.local --max-latency-ms 20 --max-size-kb 500\n\n"
             "edgecls search --data digits --target host --max-latency-ms 0.05 --sizes 28 --widths 0.5,1")
def search(
    ctx: typer.Context,
    data: Annotated[str, typer.Option(
        rich_help_panel=_DATA, help="A folder of class sub-folders (or digits, an IDX folder, ...)")],
    target: Annotated[str, typer.Option(
        rich_help_panel=_BUDGET, metavar="DEVICE",
        help="Where latency is measured: host (this machine), a device profile (rpi4, rpi5, ...: this machine under "
             "its constraints) or user@host (the device itself, over SSH)")],
    max_latency_ms: Annotated[float, typer.Option(
        rich_help_panel=_BUDGET, metavar="MS", help="Latency budget: invoke p50 at batch 1 on the target")],
    max_size_kb: Annotated[Optional[float], typer.Option(
        rich_help_panel=_BUDGET, metavar="KB", help="Size budget of the .tflite file (1 KB = 1000 bytes)",
        show_default="no limit")] = None,
    budget_s: Annotated[Optional[float], typer.Option(
        rich_help_panel=_BUDGET, metavar="SECONDS", show_default="no limit",
        help="Time for the whole search: cheap candidates first; a candidate whose estimated time does not fit "
             "is skipped (listed with why); training stops at the end; 60 s are kept for the last timing")] = None,
    backbones: Annotated[Optional[Path], typer.Option(
        rich_help_panel=_SPACE, metavar="DIR",
        help="A folder of pretrained .tflite backbones (or one file): a new head on each; the best one teaches "
             "the students", show_default="none: from-scratch candidates only")] = None,
    heads: Annotated[str, typer.Option(rich_help_panel=_SPACE, help="Heads on each backbone: comma list of "
                                       "linear, mlp")] = _D.heads,
    views: Annotated[str, typer.Option(rich_help_panel=_SPACE, help="Views per training picture for the backbone "
                                       "heads: comma list")] = _D.views,
    archs: Annotated[str, typer.Option(rich_help_panel=_SPACE, help=f"From-scratch CNNs: comma list of "
                                       f"{', '.join(SCRATCH_ARCHS)}")] = _D.archs,
    sizes: Annotated[str, typer.Option(rich_help_panel=_SPACE, help="Input sizes of the from-scratch CNNs, px: "
                                       "comma list")] = _D.sizes,
    widths: Annotated[str, typer.Option(rich_help_panel=_SPACE, help="Width multipliers of the from-scratch "
                                        "CNNs (train's --alpha): comma list")] = _D.widths,
    epochs: Annotated[int, typer.Option(rich_help_panel=_SPACE, help="Epochs of a from-scratch candidate (early "
                                        "stopping on validation)")] = _D.epochs,
    variants: Annotated[str, typer.Option(
        rich_help_panel=_SPACE, help=f"The .tflite files made of each Keras candidate: comma list of "
        f"{', '.join(VARIANTS)} (a backbone candidate keeps its backbone's quantisation)")] = _D.variants,
    students: Annotated[int, typer.Option(
        rich_help_panel=_STUDENTS, help="How many from-scratch shapes within the budget are also distilled (the "
        "best from scratch first)")] = _D.students,
    student_epochs: Annotated[int, typer.Option(rich_help_panel=_STUDENTS, help="Epochs of a student")
                              ] = _D.student_epochs,
    student_patience: Annotated[int, typer.Option(rich_help_panel=_STUDENTS, help="Early-stopping patience of a "
                                                  "student, epochs")] = _D.student_patience,
    distill_alpha: Annotated[float, typer.Option(rich_help_panel=_STUDENTS, help="As train's --distill-alpha")
                             ] = _D.distill_alpha,
    distill_temperature: Annotated[float, typer.Option(rich_help_panel=_STUDENTS, help="As train's "
                                                       "--distill-temperature")] = _D.distill_temperature,
    mixup: Annotated[float, typer.Option(rich_help_panel=_STUDENTS, help="As train's --mixup")] = _D.mixup,
    seed: Annotated[int, typer.Option(rich_help_panel=_DATA, help="Seed of the split and of every candidate")
                    ] = _D.seed,
    val_fraction: Annotated[float, typer.Option(rich_help_panel=_DATA, help="Validation share: the choice is made "
                                                "on it")] = _D.val_fraction,
    test_fraction: Annotated[float, typer.Option(rich_help_panel=_DATA, help="Test share: scored only for the "
                                                 "chosen file, after the choice")] = _D.test_fraction,
    timing_runs: Annotated[int, typer.Option(rich_help_panel=_BUDGET, metavar="N", help="Timed images per file on "
                                             "the target (interleaved rounds)")] = _D.timing_runs,
    out: Annotated[Optional[Path], typer.Option(
        rich_help_panel=OUTPUT, help="The search folder; a search run again into it reuses its finished candidates",
        show_default="runs/<data>-search")] = None,
) -> None:
    """Search backbones, from-scratch CNN sizes and distilled students for the most accurate model within a latency
    (and size) budget on a device.

    Every candidate trains on one split; each .tflite is scored on the validation split and timed on the target;
    the choice is made on validation, and only the chosen file is scored on the test split. Writes OUT/search.json,
    OUT/search.md (the table), OUT/pareto.png and OUT/chosen/ (a run directory whose export/ holds the chosen
    file). Exit codes: 0 ok; 1 nothing fits the budget; 2 bad input.
    """
    from edgecls.reporter import Reporter
    from edgecls.search.job import search as run_search
    from edgecls.search.report import render_search_table

    options = SearchOptions(**{name: plain(value) for name, value in ctx.params.items() if name in _FIELDS})
    result = run_search(options, Reporter())
    from edgecls.reports.report import print_tables

    print_tables(render_search_table(result))
    echo_wrapped(f"Wrote {', '.join(p.name for p in result.written)} and chosen/ to {result.out_dir}\n"
                 f"Next: edgecls predict {result.chosen_file} IMAGES...\n"
                 f"Next: edgecls serve {result.chosen_file}")
