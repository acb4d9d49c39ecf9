"""`edgecls bench`: quantised against float, on the device runtime — accuracy, agreement, latency,
size, memory — as a library (`measure`), with reports, device profiles and a merge across machines.

    from edgecls.bench import BenchOptions, measure
    from edgecls.reports import write_reports
    report = measure(BenchOptions([Path("runs/digits")], threads=[1, 2]))  # a BenchReport, in memory
    print(report.models[-1].latency[0].invoke_ms.p50)
    write_reports(report, report_dir=Path("runs/digits/bench"))

`measure` is `resolve_plan` (bench.plan: the options checked and resolved once into a Plan, each
step's values), `open_inputs` (bench.inputs: what the plan names, opened once and checked) then
`measure_inputs` (the measurement, here or where the plan's `Where` says): callers that hold inputs
already — a fleet, export --target's validation images in memory — call the last alone.

Its modules, one concern each, are listed in the README's Layout. Writing and printing a report, a
fleet's bench and the `edgecls bench` command sit on top, in edgecls.reports.
Importing this package never imports TensorFlow, and nothing here imports edgecls.train or edgecls.export.
"""

from edgecls.bench.inputs import Inputs, open_inputs
from edgecls.bench.measure import measure, measure_inputs
from edgecls.bench.options import BenchOptions, parse_threads
from edgecls.bench.plan import Plan, Where, resolve_plan
from edgecls.bench.results import BenchReport, ModelResult, add_section
from edgecls.bench.schema import check_report, schema
from edgecls.bench.schema import errors as schema_errors

__all__ = ["BenchOptions", "BenchReport", "Inputs", "ModelResult", "Plan", "Where", "add_section", "check_report",
           "measure", "measure_inputs", "open_inputs", "parse_threads", "resolve_plan", "schema", "schema_errors"]
