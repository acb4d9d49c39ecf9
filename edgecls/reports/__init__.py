"""`edgecls bench` on top of the bench library (edgecls.bench): a report written (bench.json, bench.md,
plots) and printed, a bench on a fleet of devices, reports of several machines compared.

    from edgecls.bench import BenchOptions, measure
    from edgecls.reports import write_reports
    write_reports(measure(BenchOptions([Path("runs/digits")])), report_dir=Path("runs/digits/bench"))

Modules: job (the `edgecls bench` command: measure, analyses, advice, write, print), fleet (the same
on devices over SSH, their reports merged), report (the terminal table, Markdown, the files), plots,
compare (`edgecls bench compare`). Device side, like edgecls.bench: no TensorFlow.
"""

from edgecls.reports.compare import compare
from edgecls.reports.report import render_bench_table, write_reports

__all__ = ["compare", "render_bench_table", "write_reports"]
