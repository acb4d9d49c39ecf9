"""`edgecls bench`: quantised against float, on the device runtime — accuracy, agreement,
latency, size, memory — with reports, device profiles and a merge of reports across machines.

    from edgecls.bench import BenchOptions, run_bench, write_reports
    report = run_bench(BenchOptions([Path("runs/digits")], threads=[1, 2]))  # a BenchReport
    print(report.models[-1].latency[0].invoke_ms.p50)
    write_reports(report, report_dir=Path("runs/digits/bench"))

Modules, one concern each: inputs (models and test images), accuracy, latency (interleaved
timing), memory (peak RSS of a device-side process), profiles (device profiles, the host,
emulation), results (the report as typed records: BenchReport, ModelResult, ...; `to_json()` is
bench.json, `from_json()` reads one), schema (the report's JSON Schema and a validator), report
(table, Markdown, files), plots, compare (merging reports), sustain (steady load sampled once a second: latency,
temperature, clock, throttling), advice (plain advice from a report's rows), remote (the same
bench on devices over SSH, merged), run (the whole job: `bench(options, analyses)`). Importing this
package never imports TensorFlow, and nothing here imports edgecls.train or edgecls.export:
analyses that need them (--diagnose, --calib-sweep, edgecls.export.analyses) are passed in.
"""

from edgecls.bench.compare import compare
from edgecls.bench.job import BenchOptions, parse_threads, run_bench
from edgecls.bench.report import add_section, render_bench_table, write_reports
from edgecls.bench.results import BenchReport, ModelResult
from edgecls.bench.schema import check_report, schema
from edgecls.bench.schema import errors as schema_errors

__all__ = ["BenchOptions", "BenchReport", "ModelResult", "add_section", "check_report", "compare", "parse_threads",
           "render_bench_table", "run_bench", "schema", "schema_errors", "write_reports"]
