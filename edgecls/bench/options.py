"""What `edgecls bench` is asked to do: BenchOptions, the single source of its options (edgecls.options:
each field's flag, type, default, bounds, help and panel), each field also marked as describing the
measurement or as the host's own; and its check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from edgecls.bench.profiles import load_profile
from edgecls.errors import EdgeclsError
from edgecls.options import OUTPUT, argument, check, option, with_spec
from edgecls.parsing import int_list
from edgecls.runtime.interpreter import MAX_THREADS
from edgecls.runtime.metadata import check_range
from edgecls.runtime.settings import (
    INPUT_RANGE_HELP,
    backend_option,
    fit_option,
    input_range_option,
    resize_option,
)
from edgecls.transport.device import RemoteOptions

# The help's panels, in the order `edgecls bench --help` shows them (edgecls.cli.helpview).
TEST_IMAGES, MEASUREMENT, ANALYSES = "Test images", "Measurement", "Analyses (workstation)"


# Each field says where it acts (bench.remote builds the device's command from these marks, and a
# test checks that every measurement field reaches the device):
#   measured(field): it describes the measurement, so the device's bench gets it (its own flag, or
#                    --no-x for a bool that is on by default); upload(value) -> the host file it names,
#                    which travels with the models;
#   host(why, field): it only concerns this host (where it writes, which devices it reaches, what it stages).
def measured(base: Any, upload: Optional[Callable[[Any], Path]] = None) -> Any:
    return with_spec(base, marks={"measure": True, "upload": upload})


def host(why: str, base: Any = None) -> Any:
    """`base` (an option) marked as the host's; without one, a field the command line does not give
    (a nested record's own fields are the options: BenchOptions.remote)."""
    return with_spec(base, marks={"host": why}) if base is not None else field(default=None, metadata={"host": why})


def parse_threads(text: Optional[str]) -> Optional[list[int]]:
    """'1,2,4' -> [1, 2, 4] (order kept, repeats dropped). One-line errors."""
    return int_list(text, "--threads", "1,2,4", unique=True)


def parse_sustain(text: str) -> float:
    from edgecls.bench.sustain import parse_duration

    return parse_duration(text)


@dataclass
class BenchOptions:
    paths: list[Path] = host("staged: the models are uploaded and named on the device's command line", argument(
        help="A run directory (its exports, as export.json lists them) and/or .tflite files"))
    # --- the test images
    data: Optional[str] = host("staged: the test images are uploaded as the device's --data", option(
        None, panel=TEST_IMAGES,
        help="A run directory: where its data now is (its saved test split is used). .tflite files: a folder of "
        "class sub-folders, IDX files or digits: its test part if it has one, else all of it; but when the model's "
        "metadata names a run that is here (its model.keras the one the file was exported from), with this data "
        "or no --data, that run's test split"))
    # third-party models (bench.thirdparty): a labels file for every .tflite, class folders named by its
    # labels; or latency only (no labelled data)
    labels: Optional[str] = measured(option(
        None, panel=TEST_IMAGES, kind=Path, show_default="none",
        help="Labels file for every .tflite (third-party models): --data is then a folder of class sub-folders "
        "named by these labels (exactly, case-insensitively, or by a comma part: 'Egyptian cat', 'tabby'); each "
        "model decodes the images at its own size"), upload=Path)
    latency_only: bool = measured(option(
        False, panel=TEST_IMAGES,
        help="No accuracy: latency, memory and size only, on the images under --data (any layout) or, without "
        "--data, random images"))
    save_test_images: Optional[Path] = host("a host folder for the test images", option(
        None, panel=TEST_IMAGES, show_default="none",
        help="Also write the test images as PNG files in class sub-folders: --data for a bench on a device"))
    # images of none of the classes (any layout): the share each model's unknown rule rejects (bench.calibration)
    unknown_data: Optional[str] = measured(option(
        None, panel=TEST_IMAGES, kind=Path, metavar="FOLDER", show_default="none",
        help="Images of none of the classes (any layout): the share each model's unknown rule rejects, in the "
        "Calibration and unknown section"), upload=Path)
    # how every model decodes (Classifier's): pixels 0 and 255 become, resize and fit
    input_range: Optional[tuple[float, float]] = measured(input_range_option(
        help=INPUT_RANGE_HELP + "; applies to every .tflite benched"))
    resize: Optional[str] = measured(resize_option())
    fit: Optional[str] = measured(fit_option())
    # --- how it measures
    # a profile name or .toml path; the device gets the very file this host resolved (a name from
    # $EDGECLS_DEVICES would not be found there)
    device: Optional[str] = measured(option(
        None, panel=MEASUREMENT, show_default="none: this machine as it is",
        help="Device profile (devices/NAME.toml, or a path): its threads and cores are applied and recorded"),
        upload=lambda spec: Path(load_profile(spec).path))
    threads: Optional[list[int]] = measured(option(
        None, panel=MEASUREMENT, low=1, high=MAX_THREADS, parse=parse_threads,
        show_default="the profile's, else 1 and every usable CPU",
        help="Comma list of interpreter thread counts to sweep, e.g. 1,2,4"))
    warmup: int = measured(option(
        10, panel=MEASUREMENT, help="Untimed invokes per model and thread count before timing"))
    runs: int = measured(option(
        200, panel=MEASUREMENT,
        help="Timed images per model and thread count (batch 1), in interleaved rounds"))
    batch_size: int = measured(option(32, panel=MEASUREMENT, help="Batch size for the throughput figure"))
    keras: bool = host("a device has no TensorFlow: its bench is always --no-keras", option(
        True, panel=MEASUREMENT,
        help="Score the run's Keras float model as the reference (needs TensorFlow; without it the float32 "
        ".tflite is the reference)"))
    memory: bool = measured(option(
        True, panel=MEASUREMENT, help="Measure peak memory of a device-side process per model"))
    # seconds of steady inference after the bench (bench.sustain); with remote, on the devices only
    sustain: Optional[float] = measured(option(
        None, panel=MEASUREMENT, metavar="DURATION", parse=parse_sustain, show_default="none",
        help="After the bench, run steady inference this long (10m, 90s, 1h), sampling latency, CPU temperature, "
        "clock and throttling once a second; with --remote, on the devices"))
    backend: Optional[str] = measured(backend_option())
    # --- real devices (edgecls.transport): which ones, and how to reach them
    remote: Optional[RemoteOptions] = host("which devices to reach")
    # --- where the host writes
    report_dir: Optional[Path] = host("where the host writes its reports", option(
        None, flags=("--report",), panel=OUTPUT, help="Folder for bench.json, bench.md and the plots",
        show_default="RUN_DIR/bench for a run directory, none for .tflite files"))
    json_path: Optional[Path] = host("where the host writes its JSON", option(  # checked before measuring
        None, flags=("--json",), panel=OUTPUT, help="Also write the JSON report here", show_default="none"))
    command: Optional[str] = host("the host's command line, for the report", option(None, command_line=False))


def device_flag(name: str) -> str:
    """The word of a measurement field on the device's command line: its flag (--no-x for a bool on
    by default)."""
    found = next(f for f in fields(BenchOptions) if f.name == name)
    spec = found.metadata["option"]
    return f"--no-{spec.flag(name)[2:]}" if found.default is True else spec.flag(name)


def validate(options: BenchOptions) -> None:
    """Each option's bounds and choices (edgecls.options.check), then what involves several."""
    check(options)
    if options.input_range is not None:
        options.input_range = check_range(options.input_range, "--input-range", EdgeclsError)
    if options.labels is not None or options.latency_only:
        what = "--labels" if options.labels is not None else "--latency-only"
        if any(Path(p).is_dir() for p in options.paths):
            raise EdgeclsError(f"{what} is for .tflite files, not a run directory (its exports know their labels "
                               "and test split)")
        if options.save_test_images is not None:
            raise EdgeclsError(f"--save-test-images is for a run's test split, not with {what}")
    if options.unknown_data is not None:
        if options.latency_only:
            raise EdgeclsError("--unknown-data measures the unknown rule: not with --latency-only")
        if not Path(options.unknown_data).is_dir():
            raise EdgeclsError(f"--unknown-data {options.unknown_data} is not a folder")


def default_report_dir(paths: list[Path]) -> Optional[Path]:
    """RUN_DIR/bench when a run directory is benched; None for bare .tflite files."""
    run_dir = next((Path(p) for p in paths if Path(p).is_dir()), None)
    return run_dir / "bench" if run_dir is not None else None
