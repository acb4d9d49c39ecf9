"""`edgecls bench ... --remote [user@]host[:port],...`: the same bench on this host and on a fleet of
devices over SSH (edgecls.transport, --parallel at a time), the reports merged.

    the kit (this checkout's wheel) -> probe every device (a wrong name or a refused key is said
      before anything is measured) -> this host's bench (bench.measure) -> the inputs staged once
      -> each device's bench (bench.remote) -> into --report, all or nothing: the host's report, each
      device's (re-rendered here: plots need matplotlib, which a device lacks) and a `bench compare`
      of them all
One device that fails is a one-line error; a device of a fleet that fails is an error row, and the run
ends with a one-line error (exit 1) once everything else is written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from edgecls import jsonio
from edgecls.bench.inputs import Inputs
from edgecls.bench.measure import measure_inputs
from edgecls.bench.options import BenchOptions
from edgecls.bench.plan import Plan
from edgecls.bench.remote import measure_on_device, stage
from edgecls.bench.results import BenchReport
from edgecls.errors import EdgeclsError
from edgecls.reporter import SILENT, Reporter
from edgecls.transport import (
    Device,
    Kit,
    RemoteOptions,
    Target,
    check_parallel,
    fan_out,
    make_kit,
    parse_targets,
    probe,
)

DEVICES_DIR = "devices"


@dataclass
class Outcome:
    target: Target
    device: Optional[Device] = None  # probed
    report: Optional[BenchReport] = None
    error: Optional[str] = None


def bench_fleet(plan: Plan, inputs: Inputs, reporter: Reporter = SILENT) -> BenchReport:
    """Bench here and on every device of the plan's `options.remote`; write the host's, each device's and
    the merged report into --report (all or nothing); print the merged table; return the host's report."""
    options = plan.options
    remote: RemoteOptions = options.remote
    targets = parse_targets(remote.targets)
    check_parallel(remote.parallel)
    if options.report_dir is None:
        raise EdgeclsError("--remote needs --report DIR for the devices' reports (a run directory has RUN/bench)")
    options.report_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".edgecls-remote-", dir=options.report_dir.parent))
    try:
        kit = make_kit(work / "kit", remote)
        reporter(f"Checking {len(targets)} device(s) over SSH: {', '.join(t.spec for t in targets)}")
        outcomes = fan_out(targets, lambda t: _probe(t, remote, kit, reporter), remote.parallel)
        if len(targets) == 1 and outcomes[0].error:
            raise EdgeclsError(outcomes[0].error, 1)
        for outcome in outcomes:
            if outcome.error:
                reporter(f"warning: {outcome.error}; the other devices go on")
        # the host first (the devices' runs do not load it); the steady load runs on the devices only
        report = measure_inputs(inputs, replace(plan, sustain=None), reporter)
        staged = stage(options, inputs, work / "payload")
        outcomes = fan_out(outcomes, lambda o: _bench(o, options, inputs, staged, reporter), remote.parallel)
        if len(targets) == 1 and outcomes[0].error:
            raise EdgeclsError(outcomes[0].error, 1)
        out = work / "out"
        merged = _write(report, outcomes, out, reporter)
        _publish(out, options.report_dir)
        if options.json_path is not None:
            from edgecls.atomic import write_text_atomic

            write_text_atomic(options.json_path, jsonio.dumps(merged, indent=1, ensure_ascii=False) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _show(report, outcomes, merged, options.report_dir)
    failed = [o.target.spec for o in outcomes if o.error]
    if failed:
        raise EdgeclsError(f"{len(failed)} of {len(outcomes)} devices failed ({', '.join(failed)}): see their error "
                           f"rows; the other reports are in {options.report_dir}", exit_code=1)
    return report


def _probe(target: Target, remote: RemoteOptions, kit: Kit, reporter: Reporter) -> Outcome:
    outcome = Outcome(target)
    try:
        outcome.device = probe(target, remote, kit)
    except EdgeclsError as exc:
        outcome.error = str(exc)
        return outcome
    reporter(f"[{target.spec}] {outcome.device.describe()}")
    return outcome


def _bench(outcome: Outcome, options: BenchOptions, inputs: Inputs, staged: Any,
           reporter: Reporter) -> Outcome:
    if outcome.error is None:
        try:
            outcome.report = measure_on_device(options, outcome.device, inputs, reporter, staged)
        except EdgeclsError as exc:
            outcome.error = str(exc)
    return outcome


def _write(report: BenchReport, outcomes: list[Outcome], out: Path, reporter: Reporter) -> dict[str, Any]:
    """The host's report, each device's (re-rendered here) and the merged compare, into `out`."""
    from edgecls.reports.compare import compare, write_outputs
    from edgecls.reports.report import write_reports

    write_reports(report, out, reporter=reporter)
    paths = [out / "bench.json"]
    for outcome in outcomes:
        if outcome.report is None:
            continue
        folder = out / DEVICES_DIR / outcome.target.label
        write_reports(outcome.report, folder, reporter=reporter)
        paths.append(folder / "bench.json")
    merged = compare(paths)
    merged["reports"][0]["name"] = "host"
    for entry, outcome in zip(merged["reports"][1:], [o for o in outcomes if o.report is not None]):
        entry["name"] = outcome.target.spec
    _rename_rows(merged, ["host"] + [o.target.spec for o in outcomes if o.report is not None])
    for outcome in outcomes:
        if outcome.error:
            merged["reports"].append({"file": None, "name": outcome.target.spec, "measured_on": "not measured",
                                      "is_device": True, "emulated": None, "created": "—", "cpu": "—",
                                      "arch": "—", "profile": None, "notes": [outcome.error], "error": outcome.error})
            merged["rows"].append([outcome.target.spec, "error", outcome.error] + ["—"] * (len(merged["columns"]) - 3))
    write_outputs(merged, out, None)
    merged.pop("_reports", None)
    return merged


def _rename_rows(merged: dict[str, Any], names: list[str]) -> None:
    """compare names reports by file stem (all are bench.json): name them host / the device."""
    from edgecls.reports.compare import report_labels

    files = [Path(r["file"]) for r in merged["reports"]]
    old = dict(zip(report_labels(files), names))
    for row in merged["rows"]:
        row[0] = old.get(row[0], row[0])


def _publish(out: Path, report_dir: Path) -> None:
    """Move the finished files into --report (replacing the previous ones of the same names)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    for entry in sorted(out.iterdir()):
        final = report_dir / entry.name
        if entry.is_dir():
            if final.exists():
                old = report_dir / f".{entry.name}.old-{os.getpid()}"
                os.replace(final, old)
                os.replace(entry, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(entry, final)
        else:
            os.replace(entry, final)


def _show(report: BenchReport, outcomes: list[Outcome], merged: dict[str, Any], report_dir: Path) -> None:
    from edgecls.reports.compare import render_compare_table
    from edgecls.reports.report import print_tables, render_sections

    tables = [render_compare_table(merged)]
    for name, doc in [("host", report)] + [(o.target.spec, o.report) for o in outcomes if o.report]:
        for table in render_sections(doc):
            table.title = f"{name}: {table.title}"
            tables.append(table)
    print_tables(*tables)
    for outcome in outcomes:
        if outcome.report:
            r = outcome.report.remote
            print(f"{outcome.target.spec}: venv {'reused' if r.venv_reused else 'made'}; "
                  + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in r.seconds.items()))
        else:
            print(f"error: {outcome.error}")
    print(f"Reports in {report_dir}: bench.md (host), {DEVICES_DIR}/<device>/bench.md, compare.md")
