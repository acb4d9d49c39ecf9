"""What a bench measures, opened once and checked against each other (Inputs): the models (a run's
exports, .tflite files), each read once and opened as a Classifier with the bench's model settings,
and the test images (bench.testset: a run's held-out split or --data; bench.thirdparty: class folders
named by --labels, or any images for --latency-only).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from edgecls.artifacts import IncompleteRun
from edgecls.bench import testset, thirdparty
from edgecls.bench.plan import LABELLED, UNLABELLED, Sources
from edgecls.bench.results import BenchModel
from edgecls.bench.testset import TestSet
from edgecls.errors import EdgeclsError
from edgecls.rundir import RunDir, check_exported, export_listing, open_run
from edgecls.runtime.classify import Classifier
from edgecls.runtime.model import read_model_bytes

if TYPE_CHECKING:
    from edgecls.runtime.settings import ModelSettings


# ---------------------------------------------------------------------- models
def open_model(path: Path, settings: ModelSettings, listed: Optional[str] = None) -> tuple[BenchModel, Classifier]:
    """A .tflite to bench, read once: its Classifier (with the bench's model settings) and its size,
    digest and quantisation mode (its metadata's mode, else detected) from that same opening; `listed`,
    the digest a run's export.json records for the file, is checked against the bytes read."""
    from edgecls.runtime.inspect import describe_classifier

    content = read_model_bytes(path)
    if listed is not None:
        check_exported(path, listed, hashlib.sha256(content).hexdigest())
    classifier = settings.open(path, content=content)  # refuses what is not an image classifier
    info = describe_classifier(classifier, content)
    quant = info["quantization"]
    io = {side: {k: info[f"{side}s"][0][k] for k in ("dtype", "scale", "zero_point")} for side in ("input", "output")}
    mode = quant.get("declared") or quant["detected"]
    if ((info.get("metadata") or {}).get("quantization") or {}).get("kept_float"):
        mode += "-mixed"  # some ops kept in float by export --keep-float / --auto-fallback
    return BenchModel(name=path.name, kind="tflite", mode=mode, path=path,
                      size_bytes=info["size_bytes"], sha256=info["sha256"], io=io), classifier


def unique_names(models: list[BenchModel]) -> None:
    """Files of one name from different folders get as many of their folders in the name as tell them apart
    (runs/a/export/model_int8.tflite, runs/b/export/...: a/export/model_int8.tflite): a report, and the
    classifiers, are keyed by these names."""
    files = [m for m in models if m.kind == "tflite"]
    # the folders as given (no link followed, ".." collapsed), without the root
    folders = {id(m): Path(os.path.normpath(m.path.absolute())).parts[1:] for m in files}
    for depth in range(1, max((len(parts) for parts in folders.values()), default=1)):
        names = [m.name for m in models]
        clashing = [m for m in files if names.count(m.name) > 1]
        if not clashing:
            return
        for model in clashing:
            model.name = "/".join(folders[id(model)][-(depth + 1):])


# ---------------------------------------------------------------------- everything, checked together
@dataclass
class Inputs:
    """What a bench measures, opened once and checked against each other: the run (if any), the
    .tflite models, a loaded Classifier for each (by model name), the test images, the interpreter."""

    run: Optional[RunDir]
    models: list[BenchModel]
    classifiers: dict[str, Classifier]
    test: TestSet
    backend: Any  # runtime.interpreter's Backend: name and version


def open_inputs(sources: Sources, settings: ModelSettings, test: Optional[TestSet] = None) -> Inputs:
    """The inputs `sources` name (a run directory's exports and/or .tflite files), every model opened
    with `settings`; the test images as `sources.route` says (bench.testset, bench.thirdparty), or `test`
    when the caller has them in memory (export --target's validation images).

    Each source is read once, whole, in turn: the run (its records and export.json), then every model
    (its bytes read once: checked against export.json's digest, opened on the interpreter backend and
    described from that opening), then the test images."""
    try:
        run = open_run(sources.run_dir, sources.data) if sources.run_dir is not None else None
    except IncompleteRun as exc:
        raise EdgeclsError(f"{exc}{_exported_hint(sources.run_dir)}") from None
    listed = dict(export_listing(sources.run_dir)) if sources.run_dir is not None else {}
    paths = _unique([*listed, *sources.files])
    opened = [open_model(path, settings, listed.get(path)) for path in paths]
    models = [model for model, _ in opened]
    unique_names(models)  # renames in place, before the classifiers are keyed by name
    classifiers = {model.name: classifier for model, classifier in opened}
    # the backend every model runs on (split_paths and export_listing leave at least one model)
    backend = classifiers[models[0].name].backend
    if test is not None:  # the caller's own images (export --target: validation), with its own notes
        return Inputs(run, models, classifiers, testset.fit_to_models(test, models, classifiers), backend)
    if sources.route == UNLABELLED:
        test = thirdparty.unlabelled_test_set(sources.data, models, classifiers)
    elif sources.route == LABELLED:
        if sources.data is None:
            raise EdgeclsError("--labels needs --data FOLDER: class sub-folders named by the labels (or bench "
                               "with --latency-only)")
        test = thirdparty.labelled_test_set(sources.data, models, classifiers)
    else:
        test = testset.held_out_test_set(run, sources.data, models, classifiers)
    few = testset.few_images_note(test)
    if few:
        test.notes.insert(0, few)
    return Inputs(run, models, classifiers, test, backend)


def _exported_hint(folder: Path) -> str:
    """For a folder of exports without its run's records (the shipped reference, copied): bench the files."""
    import shlex

    exported = sorted(folder.glob("*.tflite"))
    if not exported:
        return ""
    images = folder / "test-images"
    data = shlex.quote(str(images)) if images.is_dir() else "IMAGES"
    return f"; to bench its exported models, name them: edgecls bench {shlex.quote(str(exported[0]))} --data {data}"


def _unique(paths: list[Path]) -> list[Path]:
    seen, kept = set(), []
    for path in paths:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            kept.append(path)
    return kept


