"""What `edgecls bench` is asked to do: BenchOptions (the measurement and where the host writes),
each field marked as describing the measurement or as the host's own, and its checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from edgecls.bench.profiles import load_profile
from edgecls.bounds import check_bound
from edgecls.errors import EdgeclsError
from edgecls.parsing import int_list
from edgecls.runtime.interpreter import MAX_THREADS
from edgecls.runtime.metadata import check_range
from edgecls.runtime.preprocess import DEFAULT_FIT, DEFAULT_RESIZE, check_preprocessing

if TYPE_CHECKING:
    from edgecls.transport import RemoteOptions


# Each field says where it acts (bench.remote builds the device's command from these marks, and a
# test checks that every measurement field reaches the device):
#   measured(flag): it describes the measurement, so the device's bench gets it as `flag`;
#                  upload(value) -> the host file it names, which travels with the models;
#   host(why):     it only concerns this host (where it writes, which devices it reaches, what it stages).
def measured(flag: str, upload: Optional[Callable[[Any], Path]] = None, **kwargs) -> Any:
    return field(metadata={"measure": flag, "upload": upload}, **kwargs)


def host(why: str, **kwargs) -> Any:
    return field(metadata={"host": why}, **kwargs)


@dataclass
class BenchOptions:
    paths: list[Path] = host("staged: the models are uploaded and named on the device's command line")
    data: Optional[str] = host("staged: the test images are uploaded as the device's --data", default=None)
    # a profile name or .toml path; the device gets the very file this host resolved (a name from
    # $EDGECLS_DEVICES would not be found there)
    device: Optional[str] = measured("--device", upload=lambda spec: Path(load_profile(spec).path), default=None)
    threads: Optional[list[int]] = measured("--threads", default=None)  # None: the profile's, else 1 and all CPUs
    warmup: int = measured("--warmup", default=10)
    runs: int = measured("--runs", default=200)
    batch_size: int = measured("--batch-size", default=32)
    keras: bool = host("a device has no TensorFlow: its bench is always --no-keras", default=True)
    backend: Optional[str] = measured("--backend", default=None)
    input_range: Optional[tuple[float, float]] = measured("--input-range", default=None)  # pixels 0 and 255 become
    memory: bool = measured("--no-memory", default=True)  # the flag says False
    save_test_images: Optional[Path] = host("a host folder for the test images", default=None)
    json_path: Optional[Path] = host("where the host writes its JSON", default=None)  # checked before measuring
    report_dir: Optional[Path] = host("where the host writes its reports", default=None)
    command: Optional[str] = host("the host's command line, for the report", default=None)
    # seconds of steady inference after the bench (bench.sustain); with remote, on the devices only
    sustain: Optional[float] = measured("--sustain", default=None)
    remote: Optional[RemoteOptions] = host("which devices to reach", default=None)  # bench.remote, edgecls.transport
    # third-party models (bench.thirdparty): a labels file for every .tflite, class folders named by its
    # labels; or latency only (no labelled data); resize and fit for every model (Classifier's)
    labels: Optional[str] = measured("--labels", upload=Path, default=None)
    latency_only: bool = measured("--latency-only", default=False)
    resize: Optional[str] = measured("--resize", default=None)
    fit: Optional[str] = measured("--fit", default=None)
    # images of none of the classes (any layout): the share each model's unknown rule rejects (bench.calibration)
    unknown_data: Optional[str] = measured("--unknown-data", upload=Path, default=None)


def parse_threads(text: Optional[str]) -> Optional[list[int]]:
    """'1,2,4' -> [1, 2, 4] (order kept, repeats dropped). One-line errors."""
    return int_list(text, "--threads", "1,2,4", unique=True)


def validate(options: BenchOptions) -> None:
    if options.threads is not None and (not options.threads or min(options.threads) < 1
                                        or max(options.threads) > MAX_THREADS):
        raise EdgeclsError(f"--threads must be between 1 and {MAX_THREADS} (got {options.threads})")
    for option, value in (("--runs", options.runs), ("--warmup", options.warmup),
                          ("--batch-size", options.batch_size)):
        check_bound(option, value)
    if options.input_range is not None:
        options.input_range = check_range(options.input_range, "--input-range", EdgeclsError)
    if options.labels is not None or options.latency_only:
        what = "--labels" if options.labels is not None else "--latency-only"
        if any(Path(p).is_dir() for p in options.paths):
            raise EdgeclsError(f"{what} is for .tflite files, not a run directory (its exports know their labels "
                               "and test split)")
        if options.save_test_images is not None:
            raise EdgeclsError(f"--save-test-images is for a run's test split, not with {what}")
    if options.resize is not None or options.fit is not None:
        check_preprocessing(options.resize or DEFAULT_RESIZE, options.fit or DEFAULT_FIT)
    if options.unknown_data is not None:
        if options.latency_only:
            raise EdgeclsError("--unknown-data measures the unknown rule: not with --latency-only")
        if not Path(options.unknown_data).is_dir():
            raise EdgeclsError(f"--unknown-data {options.unknown_data} is not a folder")


def default_report_dir(paths: list[Path]) -> Optional[Path]:
    """RUN_DIR/bench when a run directory is benched; None for bare .tflite files."""
    run_dir = next((Path(p) for p in paths if Path(p).is_dir()), None)
    return run_dir / "bench" if run_dir is not None else None
