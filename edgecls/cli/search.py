"""`edgecls search`: the most accurate model that fits a device's latency budget (edgecls.search.job).

Its options are the fields of edgecls.search.options.SearchOptions (edgecls.cli.records); the body calls one
library function.
"""

from __future__ import annotations

from edgecls.cli.common import Typer, echo_wrapped, fail
from edgecls.cli.records import takes
from edgecls.search.options import PANELS, SearchOptions

app = Typer()


@app.command(epilog="Examples:\n\n"
             "edgecls search --data photos/ --target rpi4 --max-latency-ms 5 --backbones models/ --budget-s 3600\n\n"
             "edgecls search --data photos/ --target pi@raspberrypi.local --max-latency-ms 20 --max-size-kb 500\n\n"
             "edgecls search --data digits --target host --max-latency-ms 0.05 --sizes 28 --widths 0.5,1")
@takes(SearchOptions, panels=PANELS)
def search(options: SearchOptions) -> None:
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

    result = run_search(options, Reporter())
    from edgecls.reports.report import print_tables

    print_tables(render_search_table(result))
    if result.chosen is None:
        fail(result.advice(), 1)
    echo_wrapped(f"Wrote {', '.join(p.name for p in result.written)} and chosen/ to {result.out_dir}\n"
                 f"Next: edgecls predict {result.chosen_file} IMAGES...\n"
                 f"Next: edgecls serve {result.chosen_file}")
