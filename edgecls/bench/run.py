"""`edgecls bench`: the whole measurement, from paths to a report (bench.results.BenchReport).

    inputs (run dir's exports | .tflite files, test images) -> accuracy of every .tflite
      -> under the device profile's constraints: latency (interleaved), peak memory
      -> the Keras float model's accuracy (last: TensorFlow is never loaded while timing)
      -> paired comparisons with the float reference -> report (see report.schema.json)

TensorFlow is imported only for the Keras reference of a run directory, and only when it is
installed and --no-keras is not given.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from edgecls.atomic import private_tempdir
from edgecls.bench import accuracy, advice, latency, memory, sustain, thirdparty
from edgecls.bench.inputs import (
    BenchModel,
    TestSet,
    data_test_set,
    describe_tflite,
    exported_files,
    few_images_note,
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
from edgecls.bench.report import check_writable, print_tables, render_bench_table, render_sections, write_reports
from edgecls.bench.results import (
    BenchReport,
    Device,
    Latency,
    Machine,
    Memory,
    ModelResult,
    Profile,
    Settings,
    TestData,
)
from edgecls.bench.schema import FORMAT
from edgecls.bounds import check_bound
from edgecls.console import print_wrapped
from edgecls.errors import EdgeclsError
from edgecls.parsing import int_list
from edgecls.provenance import created_timestamp
from edgecls.rundir import RunDir, RunMismatchError, keras_probabilities, open_run
from edgecls.runtime.classify import Classifier
from edgecls.runtime.interpreter import MAX_THREADS, find_backend
from edgecls.runtime.metadata import check_range
from edgecls.runtime.preprocess import DEFAULT_FIT, DEFAULT_RESIZE, check_preprocessing
from edgecls.runtime.quant import is_distribution, softmax

if TYPE_CHECKING:
    from edgecls.bench.remote import RemoteOptions

KERAS_NAME = "keras"


# Each field of BenchOptions says where it acts (bench.remote builds the device's command from these
# marks, and a test checks that every measurement field reaches the device):
#   measure(flag): it describes the measurement, so the device's bench gets it as `flag`;
#                  upload(value) -> the host file it names, which travels with the models;
#   host(why):     it only concerns this host (where it writes, which devices it reaches, what it stages).
def measure(flag: str, upload: Optional[Callable[[Any], Path]] = None, **kwargs) -> Any:
    return field(metadata={"measure": flag, "upload": upload}, **kwargs)


def host(why: str, **kwargs) -> Any:
    return field(metadata={"host": why}, **kwargs)


@dataclass
class BenchOptions:
    paths: list[Path] = host("staged: the models are uploaded and named on the device's command line")
    data: Optional[str] = host("staged: the test images are uploaded as the device's --data", default=None)
    # a profile name or .toml path; the device gets the very file this host resolved (a name from
    # $EDGECLS_DEVICES would not be found there)
    device: Optional[str] = measure("--device", upload=lambda spec: Path(load_profile(spec).path), default=None)
    threads: Optional[list[int]] = measure("--threads", default=None)  # None: the profile's, else 1 and all CPUs
    warmup: int = measure("--warmup", default=10)
    runs: int = measure("--runs", default=200)
    batch_size: int = measure("--batch-size", default=32)
    keras: bool = host("a device has no TensorFlow: its bench is always --no-keras", default=True)
    backend: Optional[str] = measure("--backend", default=None)
    input_range: Optional[tuple[float, float]] = measure("--input-range", default=None)  # pixels 0 and 255 become
    memory: bool = measure("--no-memory", default=True)  # the flag says False
    save_test_images: Optional[Path] = host("a host folder for the test images", default=None)
    json_path: Optional[Path] = host("where the host writes its JSON", default=None)  # checked before measuring
    report_dir: Optional[Path] = host("where the host writes its reports", default=None)
    command: Optional[str] = host("the host's command line, for the report", default=None)
    # seconds of steady inference after the bench (bench.sustain); with remote, on the devices only
    sustain: Optional[float] = measure("--sustain", default=None)
    remote: Optional[RemoteOptions] = host("which devices to reach", default=None)  # bench.remote
    # third-party models (bench.thirdparty): a labels file for every .tflite, class folders named by its
    # labels; or latency only (no labelled data); resize and fit for every model (Classifier's)
    labels: Optional[str] = measure("--labels", upload=Path, default=None)
    latency_only: bool = measure("--latency-only", default=False)
    resize: Optional[str] = measure("--resize", default=None)
    fit: Optional[str] = measure("--fit", default=None)


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


def default_report_dir(paths: list[Path]) -> Optional[Path]:
    """RUN_DIR/bench when a run directory is benched; None for bare .tflite files."""
    run_dir = next((Path(p) for p in paths if Path(p).is_dir()), None)
    return run_dir / "bench" if run_dir is not None else None


# ---------------------------------------------------------------------- the job
# (report, report_dir, log): adds its sections to the report
Analysis = Callable[[BenchReport, Optional[Path], Callable[[str], None]], None]


def bench(
    options: BenchOptions, analyses: Sequence[Analysis] = (), log: Callable[[str], None] = print
) -> BenchReport:
    """The whole `edgecls bench` job: measure, let each analysis add its section, end with the
    advice, write the reports and print the tables; returns this host's report.

    Analyses that need TensorFlow (edgecls.export.analyses) are injected by the caller, so this
    package never imports the workstation side. With `options.remote` the same bench also runs on
    those devices over SSH (bench.remote), and the reports are merged."""
    if options.remote is not None:
        if analyses:
            raise EdgeclsError("--diagnose and --calib-sweep run on the workstation (TensorFlow): "
                               "run them without --remote")
        from edgecls.bench.remote import bench_remote

        return bench_remote(options, log=log)
    result = run_bench(options, log=log)
    for analysis in analyses:
        analysis(result, options.report_dir, log)
    if analyses:
        advice.add_advice(result)  # again, so that the advice stays the last section
    write_reports(result, options.report_dir, options.json_path, log=log)
    print_tables(render_bench_table(result), *render_sections(result))
    if options.report_dir is not None:
        print_wrapped(f"Reports in {options.report_dir}: {', '.join(result.report_files or [])}")
    if options.json_path is not None:
        print_wrapped(f"JSON report: {options.json_path}")
    print_wrapped(next_command(result, options))
    return result


def next_command(result: BenchReport, options: BenchOptions) -> str:
    """The commands a user runs next, as train and export end with theirs: predict with the file the
    advice chose, with the options that decide what it answers (--labels, --resize, --fit,
    --input-range: without them a third-party model gives class indices or a skewed resize); with a
    saved report, how to set it beside another machine's."""
    import shlex

    chosen = advice.choice(result)
    model = chosen.path if chosen is not None else result.models[-1].path
    flags = [("--labels", options.labels), ("--resize", options.resize), ("--fit", options.fit),
             ("--input-range", ",".join(f"{v:g}" for v in options.input_range) if options.input_range else None)]
    words = ["edgecls", "predict", str(model), "IMAGES..."] + [w for flag, value in flags if value is not None
                                                              for w in (flag, str(value))]
    lines = ["Next: " + " ".join(shlex.quote(w) if w != "IMAGES..." else w for w in words)
             + ("  # the file the advice takes" if chosen is not None else "")]
    saved = options.json_path or (options.report_dir / "bench.json" if options.report_dir is not None else None)
    if saved:
        lines.append(f"Next: edgecls bench compare {shlex.quote(str(saved))} OTHER/bench.json  # beside another "
                     "machine's report")
    return "\n".join(lines)


def run_bench(options: BenchOptions, log: Callable[[str], None] = print,
              on_inputs: Optional[Callable[[list[BenchModel], TestSet], None]] = None) -> BenchReport:
    """Measure and return the report (not yet written: see report.write_reports).

    `on_inputs(models, test)` is called once the models and test images are known, before any
    timing (bench.remote stages them for a device there)."""
    validate(options)
    profile = load_profile(options.device) if options.device else None
    check_writable(options.json_path, options.report_dir)
    backend = find_backend(options.backend)
    run, models, classifiers, test = _inputs(options, backend.name, log)
    if on_inputs is not None:
        on_inputs(models, test)

    log(f"Scoring {len(models)} .tflite model(s) on {len(test.labels)} images" if not test.latency_only
        else f"Latency only: {len(models)} .tflite model(s), {len(test.labels)} images, no accuracy")
    probabilities = {m.name: classifiers[m.name].probabilities(test.images_for(m.name)) for m in models}
    full_space: dict[str, dict] = {}  # a labelled third-party set: top-1/top-k over all the model's classes
    if test.class_index is not None:
        for name in list(probabilities):
            probabilities[name], full_space[name] = thirdparty.scores(probabilities[name], test)
    machine = describe_machine(backend)  # before the affinity change: the host as it is (a dict, as doctor's)
    float_file = next((m.name for m in models if m.is_float), None)
    plan = latency.Plan(options.warmup, options.runs, options.batch_size)
    with constrained(profile) as cpus, private_tempdir("edgecls-bench") as tmp:
        threads = options.threads or thread_sweep(profile, len(cpus) if cpus else machine["usable_cpus"])
        timing_files, file_source = latency.sample_files(test.files, test.images, Path(tmp))
        timings = latency.measure(models, threads, {m.name: test.images_for(m.name) for m in models}, timing_files,
                                  file_source, plan, backend.name, float_file, log, options.input_range,
                                  {"resize": options.resize, "fit": options.fit})
        memories, baseline = _memory(models, timing_files[0], threads[0], backend.name, options.memory, log)
        sustained = (sustain.run(models, test.images, options.sustain, max(threads), log, backend.name,
                                 options.input_range) if options.sustain else None)

    notes = list(test.notes)
    if options.input_range is not None:
        low, high = options.input_range
        notes.append(f"--input-range {low:g},{high:g}: every .tflite model was fed pixels 0..255 as {low:g}..{high:g}, "
                     "whatever its metadata says.")
    failed = next((m.error for m in [baseline, *memories.values()] if m is not None and m.error), None)
    if failed:
        notes.append(f"Peak memory not measured: {failed}")
    keras_model = _keras_reference(run, options.keras, test, notes, log)  # last: TensorFlow after timing
    entries = ([keras_model] if keras_model else []) + [(m, probabilities[m.name]) for m in models]
    reference = KERAS_NAME if keras_model is not None else float_file
    if test.latency_only:
        reference = None  # no accuracy to compare
    elif reference is None:
        notes.append("No float model among the models: accuracy is reported without Δ and agreement.")
    is_device, device_notes = placement_notes(profile, machine, cpus, threads)
    report = BenchReport(
        format=FORMAT,
        created=created_timestamp(),
        command=options.command,
        machine=Machine.from_json(machine),
        device=Device(profile=Profile.from_json(profile.to_json()) if profile else None, cpus_used=cpus,
                      threads=threads, is_device=is_device, notes=device_notes),
        data=TestData.from_json(test.to_json()),
        settings=Settings(warmup=plan.warmup, runs=plan.runs, rounds=plan.rounds, per_round=plan.per_round,
                          batch_size=plan.batch_size,
                          top_k=accuracy.top_k(max(c.num_classes for c in classifiers.values()) if test.per_model
                                               else len(test.class_names)),
                          keras=keras_model is not None,
                          input_range=list(options.input_range) if options.input_range is not None else None,
                          latency_only=test.latency_only, labels=options.labels,
                          preprocessing={m.name: {"resize": classifiers[m.name].input_spec.resize,
                                                  "fit": classifiers[m.name].input_spec.fit} for m in models}),
        reference=reference,
        latency_reference=float_file,
        models=_model_entries(entries, reference, test, timings, threads, memories, float_file, full_space),
        memory_baseline=baseline,
        sections=[],
        notes=notes,
    )
    if sustained is not None:
        sustain.add_section(report, sustained)
    advice.add_advice(report)
    return report


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
    classifiers = {m.name: Classifier(m.path, backend=backend, input_range=options.input_range, labels=options.labels,
                                      resize=options.resize, fit=options.fit) for m in models}
    if options.latency_only:
        test = thirdparty.unlabelled_test_set(options.data, models, classifiers)
    elif options.labels is not None:
        if options.data is None:
            raise EdgeclsError("--labels needs --data FOLDER: class sub-folders named by the labels (or bench "
                               "with --latency-only)")
        test = thirdparty.labelled_test_set(options.data, models, classifiers)
    else:
        test = _test_set(run, options.data, models, classifiers)
    few = few_images_note(test)
    if few:
        test.notes.insert(0, few)
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
                               f"{_shape(spec.shape)}: bench models of one input size together, or give --labels "
                               "FILE with a --data folder (each model then decodes the images at its own size)")
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
        except RunMismatchError:  # the run's own files disagree: the hint below would not help
            raise
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
            log: Callable[[str], None]) -> tuple[dict[str, Optional[Memory]], Optional[Memory]]:
    if not enabled or not memory.supported():
        return {m.name: None for m in models}, None
    log("Measuring peak memory in fresh device-side processes")
    baseline = Memory.from_json(memory.peak_rss(None, None, threads, backend))
    found = {}
    for model in models:
        measured = Memory.from_json(memory.peak_rss(model.path, image, threads, backend))
        found[model.name] = replace(measured, threads=threads) if measured.measured else measured
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
                   timings: dict[tuple[str, int], Latency], threads: list[int], memories: dict[str, Optional[Memory]],
                   float_file: Optional[str], full_space: Optional[dict[str, dict]] = None) -> list[ModelResult]:
    by_name = {model.name: probs for model, probs in entries}
    float_size = next((m.size_bytes for m, _ in entries if m.name == float_file), None)
    result = []
    for model, probs in entries:
        paired = None
        if reference is not None and model.name != reference:
            paired = accuracy.paired(by_name[reference], probs, test.labels, test.ids, test.class_names, reference)
        scores = None
        if not test.latency_only:  # a labelled third-party set: top-1/top-k over all the model's classes
            scores = replace(accuracy.model_accuracy(probs, test.labels, test.class_names),
                             **(full_space or {}).get(model.name, {}))
        result.append(ModelResult(
            **model.to_json(),
            size_ratio=model.size_bytes / float_size if float_size and model.kind == "tflite" else None,
            accuracy=scores,
            vs_reference=paired,
            latency=[timings[(model.name, t)] for t in threads if (model.name, t) in timings],
            memory=memories.get(model.name),
        ))
    return result
