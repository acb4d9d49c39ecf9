"""A bench on a device over SSH (edgecls.transport): the device half of `bench.measure.measure`.

    the models and test images staged as files (models/, data/; a labels file or a device profile the
    options name, inputs/) -> `python -m edgecls bench --json` there, its command generated from the
    marks on BenchOptions' fields (device_command: no measurement option can be dropped) -> the
    device's report, read back here (bench.json), its flipped images given this host's ids
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import Field, dataclass
from pathlib import Path
from typing import Any, Optional

from edgecls.bench.inputs import Inputs
from edgecls.bench.options import BenchOptions
from edgecls.bench.results import BenchReport, RemoteRun
from edgecls.bench.testset import stage_test_images
from edgecls.options import argv
from edgecls.reporter import SILENT, Reporter
from edgecls.transport import Device
from edgecls.transport.device import OUT_DIR

REPORT_NAME = "bench.json"


@dataclass(frozen=True)
class Staged:
    """A bench's inputs as files for a device (`folder`, uploaded as it is), the device's command line,
    and — when the test images had to be written as PNG files — this host's id of each position."""

    folder: Path
    command: list[str]
    local_ids: Optional[list[Any]] = None


def stage(options: BenchOptions, inputs: Inputs, folder: Path) -> Staged:
    """The models, the test images (unless --latency-only made seeded random ones, which the device
    makes alike) and the files the options name, in `folder`, with the command that benches them."""
    folder.mkdir(parents=True, exist_ok=True)
    with_data = not (options.latency_only and options.data is None)
    names, local_ids = stage_inputs(inputs.models, inputs.test, folder, with_data)
    return Staged(folder, device_command(options, names, "data" if with_data else None, folder), local_ids)


def measure_on_device(options: BenchOptions, device: Device, inputs: Inputs, reporter: Reporter = SILENT,
                      staged: Optional[Staged] = None) -> BenchReport:
    """The device's report of the same bench (its inputs staged here unless `staged` is given, as a
    fleet stages them once); one-line errors naming the step that failed."""
    from edgecls.bench.schema import read_report_file

    spec = device.target.spec
    with tempfile.TemporaryDirectory(prefix="edgecls-device-") as work:
        staged = staged or stage(options, inputs, Path(work) / "payload")
        back = device.run_edgecls(staged.folder, staged.command, Path(work) / "back",
                                  lambda message: reporter(f"[{spec}] {message}"), complete=REPORT_NAME,
                                  what="the bench")
        report = read_report_file(back / REPORT_NAME, f"{spec}'s bench.json")
    if staged.local_ids is not None:
        remap_flipped(report, staged.local_ids)
    seconds = {**device.seconds, "total_s": sum(device.seconds.values())}
    report.remote = RemoteRun(target=spec, remote_dir=device.info["dir"], python=device.info["version"],
                              venv=device.kit.key, venv_reused=not device.made_venv,
                              seconds={k: round(v, 2) for k, v in seconds.items()})
    return report


def stage_inputs(models: list[Any], test: Any, folder: Path, with_data: bool = True
                 ) -> tuple[list[str], Optional[list[Any]]]:
    """Copy the models (models/) and the test images (data/: bench.testset.stage_test_images) into
    `folder`: the names the device's bench is given, and — when the images had to be written as PNG
    files — the local id of each position, to translate the device's flipped-image ids back. Without
    data (--latency-only on seeded random images) the device makes the same images itself."""
    names = []
    for model in models:  # under its name (bench.inputs.unique_names): two runs' export/model_int8.tflite stay two
        relative = Path("models") / model.name
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(model.path, folder / relative)
        names.append(relative.as_posix())
    return names, stage_test_images(test, folder / "data") if with_data else None


def device_command(options: BenchOptions, models: list[str], data: Optional[str], uploads: Path) -> list[str]:
    """The device's `edgecls bench` arguments, generated from BenchOptions' fields (edgecls.options.argv):
    every field marked as the measurement's (bench.options.measured) that differs from its default
    reaches the device; a host file it names (a labels file, a profile's .toml) is copied into `uploads`
    (the payload) and named there. `data` is the staged test folder (None: the device makes its own
    seeded images, as the host did)."""

    def on_device(spec: Field, value: Any) -> Any:
        if spec.metadata.get("upload") is None:
            return value
        source = spec.metadata["upload"](value)
        folder = uploads / "inputs" / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        if source.is_dir():  # a folder of images (--unknown-data)
            shutil.copytree(source, folder / source.name)
        else:
            shutil.copy2(source, folder / source.name)
        return f"inputs/{spec.name}/{source.name}"

    return ["bench", *models, "--json", f"{OUT_DIR}/{REPORT_NAME}", "--no-keras",
            *(["--data", data] if data is not None else []),
            *argv(options, skip=lambda spec: not spec.metadata.get("measure"), value_of=on_device)]


def remap_flipped(report: BenchReport, local_ids: list[Any]) -> None:
    """The device read the test images from PNG files named POSITION-ID.png: give its flipped images
    this host's index and id, so the lists compare one to one."""
    for model in report.models:
        for flip in model.vs_reference.flipped if model.vs_reference else []:
            found = re.match(r"(\d{5})-", Path(str(flip.id)).name)
            if found and int(found.group(1)) < len(local_ids):
                flip.index, flip.id = int(found.group(1)), local_ids[int(found.group(1))]


