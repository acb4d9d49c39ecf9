"""A bench as a library: `measure(options, where)` measures and returns the report
(bench.results.BenchReport) in memory — on this host as it is, on this host under a device
profile's constraints, or on a device over SSH. Writing it and printing it sit on top (reports.job).
`measure` resolves the options once (bench.plan.resolve_plan: a Plan), opens what they name
(bench.inputs.open_inputs) and hands both to `measure_inputs`, which callers holding their inputs
already (a fleet, export --target) call alone.

    the Plan, the inputs (bench.inputs: a run's exports | .tflite files, the test images)
      -> accuracy of every .tflite
      -> under the profile's constraints: latency (interleaved), peak memory, steady load (--sustain),
         every model opened with the plan's model settings
      -> the Keras float model's accuracy (last: TensorFlow is never loaded while timing)
      -> paired comparisons with the float reference -> the report, its advice the last section
    on a device: the same bench there (bench.remote), its report brought back

TensorFlow is imported only for the Keras reference of a run directory, and only when it is
installed and the plan asks for it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np

from edgecls.atomic import private_tempdir
from edgecls.bench import accuracy, advice, calibration, latency, memory, sustain, thirdparty
from edgecls.bench.inputs import Inputs, open_inputs
from edgecls.bench.options import BenchOptions
from edgecls.bench.plan import Plan, Where, resolve_plan
from edgecls.bench.profiles import constrained, placement_notes, thread_sweep
from edgecls.bench.results import (
    BenchModel,
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
from edgecls.bench.testset import TestSet
from edgecls.provenance import created_timestamp
from edgecls.reporter import SILENT, Reporter
from edgecls.rundir import RunDir
from edgecls.runtime.doctor import describe_machine

KERAS_NAME = "keras"


def measure(options: BenchOptions, where: Optional[Where] = None, reporter: Reporter = SILENT) -> BenchReport:
    """Measure what `options` name and return the report, in memory (reports.report writes it). `where`:
    this host as it is, under a device profile, or a device over SSH (default: as `options` say, this
    host under `options.device`'s profile if given)."""
    plan = resolve_plan(options, where)
    inputs = open_inputs(plan.sources, plan.settings)
    return measure_inputs(inputs, plan, reporter)


def measure_inputs(inputs: Inputs, plan: Plan, reporter: Reporter = SILENT) -> BenchReport:
    """The measurement of `inputs` (opened by bench.inputs.open_inputs, or made in memory by the caller,
    as export --target does) as `plan` says (bench.plan.resolve_plan), in memory."""
    if plan.where.device is not None:
        from edgecls.bench.remote import measure_on_device

        return measure_on_device(plan.options, plan.where.device, inputs, reporter)
    run, models, classifiers, test = inputs.run, inputs.models, inputs.classifiers, inputs.test
    profile, settings = plan.where.profile, plan.settings

    reporter(f"Scoring {len(models)} .tflite model(s) on {len(test.labels)} images" if not test.latency_only
        else f"Latency only: {len(models)} .tflite model(s), {len(test.labels)} images, no accuracy")
    images = {m.name: test.images_for(m.name) for m in models}  # each model's own decoding
    scored = {m.name: classifiers[m.name].scores(images[m.name]) for m in models}
    probabilities = {name: probs for name, (probs, _) in scored.items()}
    calibrated = None if test.latency_only else _calibration(models, classifiers, scored, test, plan.unknown_data,
                                                             reporter)
    full_space: dict[str, dict] = {}  # a labelled third-party set: top-1/top-k over all the model's classes
    if test.class_index is not None:
        for name in list(probabilities):
            probabilities[name], full_space[name] = thirdparty.scores(probabilities[name], test)
    machine = describe_machine(inputs.backend)  # before the affinity change: the host as it is (a dict, as doctor's)
    float_file = next((m.name for m in models if m.is_float), None)
    schedule = plan.schedule
    with constrained(profile) as cpus, private_tempdir("edgecls-bench") as tmp:
        threads = plan.threads or thread_sweep(profile, len(cpus) if cpus else machine["usable_cpus"])
        timing_files, file_source = latency.sample_files(test.files, test.images, Path(tmp))
        timings = latency.measure(models, threads, images, timing_files, file_source, schedule, settings, float_file,
                                  reporter)
        memories, baseline = ({m.name: None for m in models}, None)
        if plan.memory and memory.supported():
            memories, baseline = memory.peak_memory(models, timing_files[0], threads[0], inputs.backend.name,
                                                    settings, reporter)
        sustained = (sustain.run(models, images, plan.sustain, max(threads), settings, reporter)
                     if plan.sustain else None)

    notes = list(test.notes) + plan.notes
    failed = next((m.error for m in [baseline, *memories.values()] if m is not None and m.error), None)
    if failed:
        notes.append(f"Peak memory not measured: {failed}")
    keras_model = _keras_reference(run, plan.keras, test, notes, reporter)  # last: TensorFlow after timing
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
        command=plan.options.command,
        machine=Machine.from_json(machine),
        device=Device(profile=Profile.from_json(profile.to_json()) if profile else None, cpus_used=cpus,
                      threads=threads, is_device=is_device, notes=device_notes),
        data=TestData.from_json(test.to_json()),
        settings=Settings(warmup=schedule.warmup, runs=schedule.runs, rounds=schedule.rounds,
                          per_round=schedule.per_round, batch_size=schedule.batch_size,
                          top_k=accuracy.top_k(max(c.num_classes for c in classifiers.values()) if test.per_model
                                               else len(test.class_names)),
                          keras=keras_model is not None,
                          input_range=list(settings.input_range) if settings.input_range is not None else None,
                          latency_only=test.latency_only, labels=settings.labels,
                          preprocessing={m.name: {"resize": classifiers[m.name].input_spec.resize,
                                                  "fit": classifiers[m.name].input_spec.fit} for m in models}),
        reference=reference,
        latency_reference=float_file,
        models=_model_entries(entries, reference, test, timings, threads, memories, float_file, full_space),
        memory_baseline=baseline,
        sections=[],
        notes=notes,
    )
    if calibrated is not None:
        calibration.add_section(report, calibrated, plan.unknown_data)
    if sustained is not None:
        sustain.add_section(report, sustained)
    advice.add_advice(report)
    return report


def _keras_reference(run: Optional[RunDir], wanted: bool, test: TestSet, notes: list[str],
                     reporter: Reporter) -> Optional[tuple[BenchModel, np.ndarray]]:
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
    reporter("Scoring the Keras float model (TensorFlow)")
    probabilities = run.probabilities(test.images)
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


def _calibration(models: list[BenchModel], classifiers: dict, scored: dict[str, tuple], test: TestSet,
                 unknown_data: Optional[str], reporter: Reporter) -> dict[str, dict]:
    """Each model's calibration and unknown-rule figures on the test images (bench.calibration); with
    --unknown-data, each model decodes those images at its own size and resize."""
    from edgecls.runtime.sources import read_images

    found, count = {}, 0
    for m in models:
        classifier = classifiers[m.name]
        probs, similarity = scored[m.name]
        labels = test.labels if test.class_index is None else np.asarray(test.class_index)[test.labels]
        unknown = None
        if unknown_data is not None:
            unknown = read_images(Path(unknown_data), classifier.preprocess)
            count = len(unknown)
        found[m.name] = calibration.figures(classifier, probs, similarity, labels, unknown)
    if unknown_data is not None:
        reporter(f"Scored the unknown rules on {count} images of --unknown-data {unknown_data}")
    return found
