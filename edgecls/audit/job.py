"""`edgecls data check FOLDER | RUN [--backbone X.tflite]`: the audit, TF-free (numpy, Pillow, LiteRT).

    target (a folder, a built-in or IDX dataset, or a run directory) -> the images (edgecls.data,
    the runtime's decoding, the dataset cache) -> the same pictures at 64 px -> [embeddings through
    the backbone, cached with the transfer route's cache] -> duplicates (identical, near; groups,
    label conflicts) -> [label-issue candidates (out-of-fold head), outliers] -> image facts and
    class balance -> [a run, or a folder's own train/val/test: leakage across its parts; a run: its
    test accuracy without the leaked images] -> report (terminal, JSON, Markdown, contact sheets,
    --review links)
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.artifacts import CONFIG_FILE, DATACHECK_DIR, SPLIT_FILE, TRANSFER_FILE
from edgecls.atomic import check_folder_writable
from edgecls.audit import report
from edgecls.audit.facts import Facts, dataset_facts
from edgecls.audit.labels import FOLDS, LabelIssues, find_label_issues, out_of_fold
from edgecls.audit.leakage import Leakage, find_leakage, recompute_accuracy
from edgecls.audit.options import CheckOptions, validate
from edgecls.audit.outliers import Outliers, find_outliers
from edgecls.data import BUILTIN_DATASETS, Dataset, load_dataset, native_format
from edgecls.duplicates import (
    HASH_IMAGE_SIZE,
    IMPLAUSIBLE_SHARE,
    Duplicates,
    class_folder,
    default_dedupe,
    find_duplicates,
    hash_images,
)
from edgecls.errors import EdgeclsError
from edgecls.reporter import SILENT, Reporter
from edgecls.rundir import RunDir, exported_files, open_run


@dataclass
class Check:
    """Everything the check found, before it is written (report.py turns it into files and lines)."""

    source: str
    dataset: Dataset
    ids: list[Any]  # per image: its file (relative to the folder) or its index
    duplicates: Duplicates
    copies: list[dict[str, Any]]  # byte-identical files the loader dropped: {"kept", "copies", "classes"}
    facts: Facts
    run: Optional[RunDir] = None
    backbone: Optional[str] = None  # its file name, when embeddings were used
    backbone_note: str = ""
    parts: Optional[np.ndarray] = None  # each image's part, for a run or a folder with its own split
    parts_source: str = ""
    leakage: Optional[Leakage] = None
    label_issues: Optional[LabelIssues] = None
    outliers: Optional[Outliers] = None
    input_side: Optional[int] = None  # the model's input side (a run's or the backbone's)
    # whether `edgecls train` keeps these groups on one side of a split it makes (split_rule)
    train_groups: str = "kept"  # kept | not_by_default | not_used
    run_dedupe: Optional[str] = None  # the --dedupe the run's split was made with (None: not recorded, no run)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class CheckResult:
    check: Check
    document: dict[str, Any]
    report_dir: Path
    files: list[Path]
    review_dir: Optional[Path] = None

    def summary(self) -> list[str]:
        return report.summary_lines(self.document, self.report_dir, self.files, self.review_dir)


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / CONFIG_FILE).is_file() or (path / SPLIT_FILE).is_file())


def default_report_dir(options: CheckOptions, run: Optional[RunDir]) -> Path:
    if run is not None:
        return Path(run.run_dir) / DATACHECK_DIR
    return Path("runs") / f"{Path(options.data.rstrip('/')).name or 'data'}-datacheck"


def run_check(options: CheckOptions, reporter: Reporter = SILENT) -> CheckResult:
    """The whole check per `options`; the report is written and the result returned."""
    started = time.perf_counter()
    validate(options)
    run = _open_target(options.data)
    report_dir = Path(options.report_dir) if options.report_dir else default_report_dir(options, run)
    _check_report_dir(report_dir)
    review_dir = Path(options.review) if options.review else None
    if review_dir is not None:
        report.check_review_dir(review_dir)
        _check_apart(report_dir, review_dir)
    backbone_path, backbone_note = _backbone_path(options, run)
    check = _inspect(options, run, backbone_path, backbone_note, reporter)
    check.seconds = time.perf_counter() - started
    document = report.document(check)
    files = report.write(check, document, report_dir, options.max_pages)
    linked = report.link_review(check, review_dir) if review_dir is not None else None
    return CheckResult(check, document, report_dir, files, linked)


def _open_target(target: str) -> Optional[RunDir]:
    """The run directory `target` names, or None for data (a folder, a built-in name)."""
    path = Path(target).expanduser()
    if target in BUILTIN_DATASETS and not path.exists():
        return None
    if not path.exists():
        raise EdgeclsError(f"{target} not found: give a folder of class sub-folders, a folder of IDX files, "
                           f"a run directory (made by edgecls train) or one of {', '.join(BUILTIN_DATASETS)}")
    if not path.is_dir():
        raise EdgeclsError(f"{target} is a file: give a folder of class sub-folders or a run directory")
    if is_run_dir(path):
        return open_run(path)  # one-line errors for an incomplete run (e.g. no split.json)
    return None


def _check_apart(report_dir: Path, review_dir: Path) -> None:
    """--review is made whole at the end (a staged folder renamed into place): inside --report, or around
    it, it would replace the report just written."""
    ours, theirs = report_dir.resolve(), review_dir.resolve()
    if ours == theirs or ours in theirs.parents or theirs in ours.parents:
        raise EdgeclsError(f"--review {review_dir} and --report {report_dir} overlap: give the review links a "
                           "folder of their own, outside the report's")


def _check_report_dir(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise EdgeclsError(f"cannot write to --report {folder}: it is a file, not a folder")
    check_folder_writable("--report", folder, folder)


def _backbone_path(options: CheckOptions, run: Optional[RunDir]) -> tuple[Optional[str], str]:
    """The backbone to use and, when it is the run's own, a sentence saying so."""
    if options.backbone:
        return options.backbone, ""
    if run is None or not (Path(run.run_dir) / TRANSFER_FILE).is_file():
        return None, ""
    backbone = run.record.config.backbone
    if isinstance(backbone, str) and Path(backbone).is_file():
        return backbone, "the run's own: give --backbone to use another"
    return None, ""


def _inspect(options: CheckOptions, run: Optional[RunDir], backbone_path: Optional[str], backbone_note: str,
             reporter: Reporter) -> Check:
    source = run.data if run is not None else options.data
    backbone = None
    if backbone_path:
        from edgecls.tflite.backbone import open_backbone

        backbone = open_backbone(backbone_path, options.embedding_tensor)
        h, w, c = backbone.input_shape
        if h != w:
            raise EdgeclsError(f"--backbone {backbone.path.name} takes {h}x{w} images: only square inputs are "
                               "supported")
        dataset = load_dataset(source, h, "grayscale" if c == 1 else "rgb", reporter=reporter)
    elif run is not None:
        dataset = run.dataset()
    else:
        size, color = native_format(source)
        dataset = load_dataset(source, size or HASH_IMAGE_SIZE, color, reporter=reporter)
    if options.review and dataset.paths is None:  # before the work: there are no files to link
        raise EdgeclsError(f"--review needs a folder of image files; {source} is not one")
    ids: list[Any] = list(dataset.paths) if dataset.paths is not None else list(range(len(dataset.labels)))
    # what was loaded is said once, in the summary's first line (report.summary_lines)
    reporter(f"Checking {source}" + (f" (run {run.run_dir})" if run is not None else "") + " ...")
    pictures = hash_images(dataset, reporter)
    features = _embeddings(backbone, dataset, options, reporter) if backbone is not None else None
    duplicates = find_duplicates(pictures, features)
    share = sum(len(g.members) for g in duplicates.groups) / max(1, len(dataset.labels))
    notes = []
    if share > IMPLAUSIBLE_SHARE:
        notes.append(f"{share:.0%} of the images fall into near-duplicate groups, far more than photo folders hold: "
                     "the pictures are likely small and alike (glyphs), where a hash and a pixel check cannot tell "
                     "copies from look-alikes; look at duplicates*.png before acting (train does not keep these "
                     "groups together: --dedupe near, too, finds more than half of the images in groups and makes "
                     "the plain split)")
    check = Check(source, dataset, ids, duplicates, _copies(dataset),
                  dataset_facts(dataset, pictures if dataset.color == "rgb" else None), run,
                  backbone.path.name if backbone is not None else None, backbone_note, notes=notes,
                  train_groups=train_groups(dataset, share))
    if run is not None:
        check.input_side = int(run.img_size) if run.img_size else None
    elif backbone is not None:
        check.input_side = int(backbone.input_shape[0])
    if features is not None:
        _embedding_findings(check, features, options, reporter)
    _leakage(check, options)
    return check


def train_groups(dataset: Dataset, share: float) -> str:
    """What `edgecls train` does with groups like these (edgecls.duplicates.split_grouping's rule): not_used
    (more than IMPLAUSIBLE_SHARE of the images in groups: the plain split, whatever --dedupe), not_by_default
    (built-in and IDX data: the plain split unless --dedupe near), or kept (a folder: --dedupe near, its default)."""
    if share > IMPLAUSIBLE_SHARE:
        return "not_used"
    return "kept" if default_dedupe(dataset.source, dataset) == "near" else "not_by_default"


def _embeddings(backbone, dataset: Dataset, options: CheckOptions, reporter: Reporter) -> np.ndarray:
    from edgecls.transfer.embed import cut_embedder, default_cache_folder, embed_dataset

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecls-datacheck-") as scratch:
        embedder = cut_embedder(backbone, Path(scratch), options.threads)
        features, hit = embed_dataset(embedder, backbone, dataset, default_cache_folder() if options.cache else None)
    reporter(f"Embeddings of {backbone.path.name} ({backbone.embedding.name}): "
        + ("from the cache" if hit else f"{time.perf_counter() - started:.1f} s"))
    return features


def _embedding_findings(check: Check, features: np.ndarray, options: CheckOptions,
                        reporter: Reporter) -> None:
    dataset = check.dataset
    classes = len(dataset.class_names)
    counts = np.bincount(dataset.labels, minlength=classes)
    if counts.min() >= FOLDS:
        started = time.perf_counter()
        probabilities, l2 = out_of_fold(features, dataset.labels, classes, options.seed)
        check.label_issues = find_label_issues(probabilities, dataset.labels, l2)
        reporter(f"Label check: {FOLDS}-fold out-of-fold probabilities in {time.perf_counter() - started:.1f} s")
    else:
        small = dataset.class_names[int(counts.argmin())]
        check.notes.append(f"label check skipped: class {small!r} has {counts.min()} images, fewer than the "
                           f"{FOLDS} folds it needs")
    check.outliers = find_outliers(features, dataset.labels, classes, [g.members for g in check.duplicates.groups])


def _copies(dataset: Dataset) -> list[dict[str, Any]]:
    """Byte-identical files the loader dropped, by the file it kept: their classes say whether the same
    picture is filed under two classes (then train keeps it under the class met first)."""
    kept: dict[str, list[str]] = {}
    for path, why in dataset.skipped:
        if why.startswith("duplicate of "):
            kept.setdefault(why[len("duplicate of "):], []).append(path)
    rows = []
    for first, copies in kept.items():
        classes = sorted({class_folder(p) for p in [first, *copies]})
        rows.append({"kept": first, "copies": copies, "classes": classes})
    return rows


def _leakage(check: Check, options: CheckOptions) -> None:
    """Parts and leakage: a run's split, or the parts a folder brings (train/, val/, test/)."""
    dataset, run = check.dataset, check.run
    groups = [g.members for g in check.duplicates.groups]
    if run is None:
        given = dataset.given_split or {}
        if dataset.paths is None or len(given) < 2:
            return
        parts = np.full(len(dataset.labels), "", dtype=object)
        for name, indices in given.items():
            parts[np.asarray(indices, dtype=np.int64)] = name
        check.parts, check.parts_source = parts, "the folder's own parts (" + ", ".join(f"{n}/" for n in given) + ")"
        check.leakage = find_leakage(groups, parts)
        return
    run_dataset = run.dataset()
    split = run.split()
    check.run_dedupe = ((run.record.split if run.record is not None else {}).get("dedupe") or {}).get("mode")
    to_run = _index_map(dataset, run_dataset)
    run_parts = split.part_of(len(run_dataset.labels))
    check.parts = np.array([run_parts[j] if j >= 0 else "" for j in to_run], dtype=object)
    check.parts_source = f"the split of {run.run_dir} ({SPLIT_FILE})"
    check.leakage = find_leakage(groups, check.parts)
    models = _exported(run)
    if not models:
        check.leakage.note = (f"{run.run_dir} has no exported .tflite: edgecls export {run.run_dir}, then check again "
                              "to see its test accuracy without the leaked images")
        return
    leaked_in_run = [int(to_run[i]) for i in check.leakage.leaked_test if to_run[i] >= 0]
    images, labels = run.images("test")
    check.leakage.accuracy = recompute_accuracy(leaked_in_run, models, images, labels, np.asarray(split.test),
                                                options.threads)


def _index_map(dataset: Dataset, run_dataset: Dataset) -> np.ndarray:
    """For each image of `dataset`, its index in `run_dataset` (the same data, maybe at another size), or -1."""
    if dataset is run_dataset:
        return np.arange(len(dataset.labels))
    if dataset.paths is not None and run_dataset.paths is not None:
        at = {p: i for i, p in enumerate(run_dataset.paths)}
        return np.array([at.get(p, -1) for p in dataset.paths], dtype=np.int64)
    if len(dataset.labels) != len(run_dataset.labels):
        raise EdgeclsError(f"{dataset.source} gives {len(dataset.labels)} images at the backbone's size and "
                           f"{len(run_dataset.labels)} at the run's: cannot line them up")
    return np.arange(len(dataset.labels))


def _exported(run: RunDir) -> list[Path]:
    try:
        return exported_files(Path(run.run_dir))
    except EdgeclsError:
        return []
