"""`edgecls bench ... --remote [user@]host[:port],...`: the same bench, run on real devices over SSH
(edgecls.transport), brought back and merged with this host's report.

    the kit (this checkout's wheel) -> probe every device (--parallel at a time)
      -> this host's bench, which stages the models and test images it found into the payload
      -> each device: the payload up, `python -m edgecls bench --json` there with this bench's
         measurement options (device_command: generated from BenchOptions' marks), its report back,
         re-rendered here (plots need matplotlib, which a device lacks)
Then the host's report, each device's and a `bench compare` of them all are moved into --report.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

from edgecls.bench.results import BenchReport, RemoteRun
from edgecls.errors import EdgeclsError
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
__all__ = ["DEVICES_DIR", "RemoteOptions", "bench_remote", "device_command", "stage_inputs"]


@dataclass
class Outcome:
    target: Target
    device: Optional[Device] = None  # probed
    report: Optional[BenchReport] = None
    files: Optional[Path] = None  # the device's report folder, brought back
    error: Optional[str] = None


def stage_inputs(models: list[Any], test: Any, folder: Path, with_data: bool = True
                 ) -> tuple[list[str], Optional[list[Any]]]:
    """Copy the models and the labelled test images into `folder` (models/, data/): the names the
    device's bench is given, and — when the images had to be written as PNG files — the local id of
    each position, to translate the device's flipped-image ids back. Without data (--latency-only
    on seeded random images) the device makes the same images itself."""
    from edgecls.bench.inputs import SAVED_FORMAT, SAVED_TEST_IMAGES, save_test_images

    names = []
    for model in models:
        relative = Path("models") / (model.path.parent.name or "model") / model.path.name
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(model.path, folder / relative)
        names.append(relative.as_posix())
    if not with_data:
        return names, None
    data = folder / "data"
    if test.files is not None:  # the real files: the device decodes what this host decoded
        for image_id, path in zip(test.ids, test.files):
            target = data / str(image_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        (data / SAVED_TEST_IMAGES).write_text(json.dumps({
            "format": SAVED_FORMAT, "source": test.source, "run": test.run, "part": test.part,
            "images": int(len(test.labels)), "classes": test.class_names}, indent=1) + "\n", encoding="utf-8")
        return names, None
    save_test_images(test, data)
    return names, list(test.ids)


def device_command(options: Any, models: list[str], data: Optional[str], uploads: Path) -> list[str]:
    """The device's `edgecls bench` arguments, generated from the marks on BenchOptions' fields
    (bench.job.measure / host): every measurement field that differs from its default reaches the
    device; a host file it names (a labels file, a profile's .toml) is copied into `uploads` (the
    payload) and named there. `data` is the staged test folder (None: the device makes its own
    seeded images, as the host did)."""
    args = ["bench", *models, "--json", "out/bench.json", "--report", "out", "--no-keras"]
    if data is not None:
        args += ["--data", data]
    for spec in fields(options):
        flag = spec.metadata.get("measure")
        value = getattr(options, spec.name)
        if flag is None or value is None or value == spec.default:
            continue
        if isinstance(value, bool):  # the flag says the non-default value (--latency-only, --no-memory)
            args.append(flag)
            continue
        if spec.metadata.get("upload") is not None:
            source = spec.metadata["upload"](value)
            folder = uploads / "inputs" / spec.name
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / source.name)
            value = f"inputs/{spec.name}/{source.name}"
        args += [flag, _argument(value)]
    return args


def _argument(value: Any) -> str:
    """One option value as the device's command line reads it back: lists comma-joined, floats exact."""
    if isinstance(value, (list, tuple)):
        return ",".join(_argument(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------- one device
def check_device(target: Target, remote: RemoteOptions, kit: Kit, log: Callable[[str], None]) -> Outcome:
    """Reach the device and check its Python (before the host's bench, so a wrong name or a
    refused key is said at once); the outcome carries the probed device or the error."""
    outcome = Outcome(target)
    try:
        outcome.device = probe(target, remote, kit)
    except EdgeclsError as exc:
        outcome.error = str(exc)
        return outcome
    log(f"[{target.spec}] {outcome.device.describe()}")
    return outcome


def bench_device(outcome: Outcome, payload: Path, command: list[str], out: Path,
                 log: Callable[[str], None]) -> Outcome:
    """Everything after the probe for one device; the error of a failed step is the outcome's one line."""
    if outcome.error:
        return outcome
    device, target = outcome.device, outcome.target
    say = lambda message: log(f"[{target.spec}] {message}")  # noqa: E731
    try:
        outcome.files = device.run_edgecls(payload, command, out / target.label, say, what="the bench",
                                           keep=lambda line: not line.startswith("note: plots skipped"),
                                           complete="bench.json")  # plots: drawn here from the JSON instead
        from edgecls.bench.compare import read_report_file

        outcome.report = read_report_file(outcome.files / "bench.json", f"{target.spec}'s bench.json")
        seconds = {**device.seconds, "total_s": sum(device.seconds.values())}
        outcome.report.remote = RemoteRun(target=target.spec, remote_dir=device.info["dir"],
                                          python=device.info["version"], venv=device.kit.key,
                                          venv_reused=device.ready,
                                          seconds={k: round(v, 2) for k, v in seconds.items()})
    except EdgeclsError as exc:
        outcome.error = str(exc)
    return outcome


# ---------------------------------------------------------------------- the whole job
def bench_remote(options: Any, log: Callable[[str], None] = print) -> BenchReport:
    """Bench here and on every device of `options.remote`; write the host's, each device's and the
    merged report into --report (all or nothing); print the merged table; return the host's report.
    One device that fails is a one-line error; a device of a fleet that fails is an error row, and
    the run ends with a one-line error (exit 1) once everything else is written."""
    from dataclasses import replace

    from edgecls.bench.job import run_bench

    remote: RemoteOptions = options.remote
    targets = parse_targets(remote.targets)
    check_parallel(remote.parallel)
    if options.report_dir is None:
        raise EdgeclsError("--remote needs --report DIR for the devices' reports (a run directory has RUN/bench)")
    from edgecls.bench.report import check_writable

    check_writable(options.json_path, options.report_dir)
    options.report_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".edgecls-remote-", dir=options.report_dir.parent))
    try:
        payload = work / "payload"
        payload.mkdir()
        # --latency-only without --data: seeded random images, made alike on the device
        staged: dict[str, Any] = {"data": None if options.latency_only and options.data is None else "data"}

        def stage(models: list[Any], test: Any) -> None:  # called by run_bench before the host's timing
            staged["names"], staged["ids"] = stage_inputs(models, test, payload, with_data=staged["data"] is not None)

        kit = make_kit(work / "kit", remote)
        log(f"Checking {len(targets)} device(s) over SSH: {', '.join(t.spec for t in targets)}")
        outcomes = fan_out(targets, lambda t: check_device(t, remote, kit, log), remote.parallel)
        if len(targets) == 1 and outcomes[0].error:
            raise EdgeclsError(outcomes[0].error, 1)
        for outcome in outcomes:
            if outcome.error:
                log(f"warning: {outcome.error}; the other devices go on")
        # the host first (the devices' runs do not load it); the steady load runs on the devices only
        report = run_bench(replace(options, sustain=None), log=log, on_inputs=stage)
        command = device_command(options, staged["names"], staged["data"], payload)
        out = work / "out"
        (out / DEVICES_DIR).mkdir(parents=True)
        outcomes = fan_out(outcomes, lambda o: bench_device(o, payload, command, out / DEVICES_DIR, log),
                           remote.parallel)
        if len(targets) == 1 and outcomes[0].error:
            raise EdgeclsError(outcomes[0].error, 1)
        merged = _write(report, outcomes, staged["ids"], options, out, log)
        _publish(out, options.report_dir)
        if options.json_path is not None:
            from edgecls.atomic import write_text_atomic

            write_text_atomic(options.json_path, json.dumps(merged, indent=1, ensure_ascii=False) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _show(report, outcomes, merged, options.report_dir)
    failed = [o.target.spec for o in outcomes if o.error]
    if failed:
        raise EdgeclsError(f"{len(failed)} of {len(outcomes)} devices failed ({', '.join(failed)}): see their error "
                           f"rows; the other reports are in {options.report_dir}", exit_code=1)
    return report


def remap_flipped(report: BenchReport, local_ids: list[Any]) -> None:
    """The device read the test images from PNG files named POSITION-ID.png: give its flipped images
    this host's index and id, so the lists compare one to one."""
    for model in report.models:
        for flip in model.vs_reference.flipped if model.vs_reference else []:
            found = re.match(r"(\d{5})-", Path(str(flip.id)).name)
            if found and int(found.group(1)) < len(local_ids):
                flip.index, flip.id = int(found.group(1)), local_ids[int(found.group(1))]


def _write(report: BenchReport, outcomes: list[Outcome], local_ids: Optional[list[Any]], options: Any,
           out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """The host's report, each device's (re-rendered here) and the merged compare, into `out`."""
    from edgecls.bench.compare import compare, write_outputs
    from edgecls.bench.report import write_reports

    write_reports(report, out, log=log)
    paths = [out / "bench.json"]
    for outcome in outcomes:
        if outcome.report is None:
            continue
        if local_ids is not None:
            remap_flipped(outcome.report, local_ids)
        outcome.report.notes = [n for n in outcome.report.notes if not n.startswith("plots skipped")]
        for stale in outcome.files.glob("*.png"):
            stale.unlink()
        write_reports(outcome.report, outcome.files, log=log)
        paths.append(outcome.files / "bench.json")
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
    from edgecls.bench.compare import report_labels

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
    from edgecls.bench.compare import render_compare_table
    from edgecls.bench.report import print_tables, render_sections

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
