"""`edgecls bench`: the whole measurement, from paths to a report dict.

    inputs (run dir's exports | .tflite files, test images) -> accuracy of every .tflite
      -> under the device profile's constraints: latency (interleaved), peak memory
      -> the Keras float model's accuracy (last: TensorFlow is never loaded while timing)
      -> paired comparisons with the float reference -> report (see report.schema.json)

TensorFlow is imported only for the Keras reference of a run directory, and only when it is
installed and --no-keras is not given.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.bench import accuracy, latency, memory
from edgecls.bench.inputs import (
    BenchModel,
    TestSet,
    data_test_set,
    describe_tflite,
    exported_files,
    match_classes,
    metadata_run,
    run_test_set,
    save_test_images,
    split_paths,
    unique_names,
)
from edgecls.bench.profiles import (
    constrained,
    describe_machine,
    load_profile,
    placement_notes,
    thread_sweep,
)
from edgecls.bench.report import check_writable, write_reports
from edgecls.bench.schema import FORMAT
from edgecls.errors import EdgeclsError
from edgecls.parsing import int_list
from edgecls.provenance import created_timestamp
from edgecls.rundir import RunDir, keras_probabilities, open_run
from edgecls.runtime.classify import Classifier
from edgecls.runtime.interpreter import find_backend
from edgecls.runtime.metadata import check_range
from edgecls.runtime.quant import is_distribution, softmax

KERAS_NAME = "keras"


@dataclass
class BenchOptions:
    paths: list[Path]
    data: Optional[str] = None
    device: Optional[str] = None  # a profile name or .toml path
    threads: Optional[list[int]] = None  # None: the profile's, else 1 and all usable CPUs
    warmup: int = 10
    runs: int = 200
    batch_size: int = 32
    keras: bool = True
    backend: Optional[str] = None
    input_range: Optional[tuple[float, float]] = None  # Classifier's: what pixels 0 and 255 become
    memory: bool = True
    save_test_images: Optional[Path] = None
    json_path: Optional[Path] = None  # checked for writability before measuring
    report_dir: Optional[Path] = None
    command: Optional[str] = None


def parse_threads(text: Optional[str]) -> Optional[list[int]]:
    """'1,2,4' -> [1, 2, 4] (order kept, repeats dropped). One-line errors."""
    return int_list(text, "--threads", "1,2,4", unique=True)


def validate(options: BenchOptions) -> None:
    if options.threads is not None and (not options.threads or min(options.threads) < 1):
        raise EdgeclsError(f"--threads must be at least 1 (got {options.threads})")
    if options.runs < 1:
        raise EdgeclsError(f"--runs must be at least 1 (got {options.runs})")
    if options.warmup < 0:
        raise EdgeclsError(f"--warmup must be 0 or more (got {options.warmup})")
    if options.batch_size < 1:
        raise EdgeclsError(f"--batch-size must be at least 1 (got {options.batch_size})")
    if options.input_range is not None:
        options.input_range = check_range(options.input_range, "--input-range", EdgeclsError)


def default_report_dir(paths: list[Path]) -> Optional[Path]:
    """RUN_DIR/bench when a run directory is benched; None for bare .tflite files."""
    run_dir = next((Path(p) for p in paths if Path(p).is_dir()), None)
    return run_dir / "bench" if run_dir is not None else None


# ---------------------------------------------------------------------- the job
Analysis = Callable[[dict, Optional[Path], Callable[[str], None]], None]  # (report, report_dir, log): adds sections


def bench(
    options: BenchOptions, analyses: Sequence[Analysis] = (), log: Callable[[str], None] = print
) -> dict[str, Any]:
    """The whole `edgecls bench` job: measure, let each analysis add its section, write the reports.

    Analyses that need TensorFlow (edgecls.export.analyses) are injected by the caller, so this
    package never imports the workstation side."""
    result = run_bench(options, log=log)
    for analysis in analyses:
        analysis(result, options.report_dir, log)
    write_reports(result, options.report_dir, options.json_path, log=log)
    return result


def run_bench(options: BenchOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure and return the report (not yet written: see report.write_reports)."""
    validate(options)
    profile = load_profile(options.device) if options.device else None
    check_writable(options.json_path, options.report_dir)
    backend = find_backend(options.backend)
    run, models, classifiers, test = _inputs(options, backend.name, log)

    log(f"Scoring {len(models)} .tflite model(s) on {len(test.labels)} images")
    probabilities = {m.name: classifiers[m.name].probabilities(test.images) for m in models}
    machine = describe_machine(backend)  # before the affinity change: the host as it is
    float_file = next((m.name for m in models if m.is_float), None)
    plan = latency.Plan(options.warmup, options.runs, options.batch_size)
    with constrained(profile) as cpus, tempfile.TemporaryDirectory(prefix="edgecls-bench-") as tmp:
        threads = options.threads or thread_sweep(profile, len(cpus) if cpus else machine["usable_cpus"])
        timing_files, file_source = latency.sample_files(test.files, test.images, Path(tmp))
        timings = latency.measure(models, threads, test.images, timing_files, file_source, plan,
                                  backend.name, float_file, log, options.input_range)
        memories, baseline = _memory(models, timing_files[0], threads[0], backend.name, options.memory, log)

    notes = list(test.notes)
    if options.input_range is not None:
        low, high = options.input_range
        notes.append(f"--input-range {low:g},{high:g}: every .tflite model was fed pixels 0..255 as {low:g}..{high:g}, "
                     "whatever its metadata says.")
    failed = next((m["error"] for m in [baseline or {}, *memories.values()] if m and "error" in m), None)
    if failed:
        notes.append(f"Peak memory not measured: {failed}")
    keras_model = _keras_reference(run, options.keras, test, notes, log)  # last: TensorFlow after timing
    entries = ([keras_model] if keras_model else []) + [(m, probabilities[m.name]) for m in models]
    reference = KERAS_NAME if keras_model is not None else float_file
    if reference is None:
        notes.append("No float model among the models: accuracy is reported without Δ and agreement.")
    is_device, device_notes = placement_notes(profile, machine, cpus, threads)
    return {
        "format": FORMAT,
        "created": created_timestamp(),
        "command": options.command,
        "machine": machine,
        "device": {"profile": profile.to_json() if profile else None, "cpus_used": cpus, "threads": threads,
                   "is_device": is_device, "notes": device_notes},
        "data": test.to_json(),
        "settings": {"warmup": plan.warmup, "runs": plan.runs, "rounds": plan.rounds, "per_round": plan.per_round,
                     "batch_size": plan.batch_size, "top_k": accuracy.top_k(len(test.class_names)),
                     "keras": keras_model is not None,
                     "input_range": list(options.input_range) if options.input_range is not None else None},
        "reference": reference,
        "latency_reference": float_file,
        "models": _model_entries(entries, reference, test, timings, threads, memories, float_file),
        "memory_baseline": baseline,
        "sections": [],
        "notes": notes,
    }


def _inputs(options: BenchOptions, backend: str, log: Callable[[str], None]
            ) -> tuple[Optional[RunDir], list[BenchModel], dict[str, Classifier], TestSet]:
    """The run (if any), the .tflite models, a loaded Classifier for each (by model name) and the
    test images, all checked against each other."""
    run_dir, files = split_paths(options.paths)
    run = open_run(run_dir, options.data) if run_dir else None
    if run_dir is not None:
        files = _unique(exported_files(run_dir) + files)
    models = [describe_tflite(path, backend) for path in files]
    unique_names(models)
    classifiers = {m.name: Classifier(m.path, backend=backend, input_range=options.input_range) for m in models}
    test = _test_set(run, options.data, models, classifiers)
    if options.save_test_images is not None:
        save_test_images(test, options.save_test_images)
        log(f"Wrote the {len(test.labels)} test images to {options.save_test_images} (bench on a device with "
            f"--data {options.save_test_images})")
    return run, models, classifiers, test


def _unique(paths: list[Path]) -> list[Path]:
    seen, kept = set(), []
    for path in paths:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            kept.append(path)
    return kept


def _test_set(run: Optional[RunDir], data: Optional[str], models: list[BenchModel],
              classifiers: dict[str, Classifier]) -> TestSet:
    """The test images, checked against every model's input and class count."""
    if not models:
        raise EdgeclsError("no .tflite models to bench")
    first = classifiers[models[0].name]
    spec = first.input_spec
    for model in models[1:]:
        other = classifiers[model.name].input_spec
        if other.shape != spec.shape:
            raise EdgeclsError(f"{model.name} takes {_shape(other.shape)} images but {models[0].name} takes "
                               f"{_shape(spec.shape)}: bench models of one input size together")
    named_by_metadata, problem = False, None
    if run is None:
        # An edgecls model names its run: when that run is here (its model.keras the one the file was
        # exported from, and --data, if given, its data), its saved test split is the honest choice,
        # not every image of the dataset.
        run, problem = _metadata_run(models[0].path, data)
        named_by_metadata = run is not None
        if run is None and data is None:
            reason = problem or f"{models[0].name} does not name a run directory that is here"
            raise EdgeclsError(f"name the test images with --data (a folder of class sub-folders, a folder of IDX "
                               f"files, digits, ...): {reason}")
    if run is None:
        test = data_test_set(data, spec.size, spec.color)
    else:
        try:
            test = run_test_set(run)
        except EdgeclsError as exc:  # e.g. digits without scikit-learn, on a device
            raise EdgeclsError(
                f"{exc}; on a device, bench the .tflite files with --data FOLDER instead (made "
                f"on the workstation by edgecls bench {run.run_dir} --save-test-images FOLDER)"
            ) from None
    if problem:
        test.notes.append(f"{problem}; the test images are --data {data}.")
    if named_by_metadata:
        test.notes.append(f"Test images: the held-out test split of {run.run_dir}, the run named in "
                          f"{models[0].name}'s metadata.")
    if tuple(test.images.shape[1:]) != spec.shape:
        raise EdgeclsError(f"{models[0].name} takes {_shape(spec.shape)} images but the test images ({test.source}) "
                           f"are {_shape(test.images.shape[1:])}")
    for model in models:
        test = match_classes(test, classifiers[model.name].labels, model.name)
    return test


def _metadata_run(model: Path, data: Optional[str]) -> tuple[Optional[RunDir], Optional[str]]:
    """(the run the model's metadata names, if it is here, verified and fits --data; else None and
    why not, when a run of that name is here but is not this model's)."""
    found, problem = metadata_run(model)
    if found is None:
        return None, problem
    try:
        run = open_run(found)
    except EdgeclsError:  # a broken run is no better than none: --data decides
        return None, None
    if data is not None and data != run.data and Path(data).resolve() != Path(run.data).resolve():
        return None, None
    return run, None


def _shape(shape: tuple) -> str:
    return "x".join(map(str, shape))


def _memory(models: list[BenchModel], image: Path, threads: int, backend: str, enabled: bool,
            log: Callable[[str], None]) -> tuple[dict[str, Optional[dict]], Optional[dict]]:
    if not enabled or not memory.supported():
        return {m.name: None for m in models}, None
    log("Measuring peak memory in fresh device-side processes")
    baseline = memory.peak_rss(None, None, threads, backend)
    found = {}
    for model in models:
        found[model.name] = {**memory.peak_rss(model.path, image, threads, backend), "threads": threads}
        if "error" in found[model.name]:
            found[model.name].pop("threads")
    return found, baseline


def _keras_reference(run: Optional[RunDir], wanted: bool, test: TestSet, notes: list[str],
                     log: Callable[[str], None]) -> Optional[tuple[BenchModel, np.ndarray]]:
    """(the Keras float model, its probabilities), or None (noted when it could have been)."""
    if run is None or not wanted:
        return None
    if not run.model_path.is_file():  # a run on a .tflite backbone (edgecls.transfer): no Keras model
        notes.append(f"{run.name} has no Keras model (trained on a .tflite backbone): no Keras float reference.")
        return None
    if importlib.util.find_spec("tensorflow") is None:
        notes.append("TensorFlow is not installed here: the float reference is the float32 .tflite, "
                     "not the Keras model.")
        return None
    log("Scoring the Keras float model (TensorFlow)")
    probabilities = keras_probabilities(run.model(), test.images)
    if not is_distribution(probabilities):  # a model that ends in logits
        probabilities = softmax(probabilities)
    model = BenchModel(name=KERAS_NAME, kind="keras", mode="float32", path=run.model_path,
                       size_bytes=run.model_path.stat().st_size, sha256=run.model_sha256())
    return model, probabilities


def _model_entries(entries: list[tuple[BenchModel, np.ndarray]], reference: Optional[str], test: TestSet,
                   timings: dict, threads: list[int], memories: dict, float_file: Optional[str]) -> list[dict]:
    by_name = {model.name: probs for model, probs in entries}
    float_size = next((m.size_bytes for m, _ in entries if m.name == float_file), None)
    result = []
    for model, probs in entries:
        paired = None
        if reference is not None and model.name != reference:
            paired = accuracy.paired(by_name[reference], probs, test.labels, test.ids, test.class_names, reference)
        result.append({
            **model.to_json(),
            "size_ratio": model.size_bytes / float_size if float_size and model.kind == "tflite" else None,
            "accuracy": accuracy.model_accuracy(probs, test.labels, test.class_names),
            "vs_reference": paired,
            "latency": [timings[(model.name, t)] for t in threads if (model.name, t) in timings],
            "memory": memories.get(model.name),
        })
    return result
