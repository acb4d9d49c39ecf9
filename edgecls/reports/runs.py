"""`edgecls bench compare RUN RUN2 ...`: runs side by side on the first run's test split (or on --data).

Did the retrained run get better? Every .tflite each run exported (as its export.json lists them) is
scored through the device runtime on the same images — RUN's held-out test split, which a run made
with `train --from RUN` keeps (the same images by content digest) — with the figures the question is
decided by: the accuracy with its count and 95 % interval; against RUN's file of the same name, the
change and its exact McNemar p-value (paired: the same images, so a small test split still says
whether a gap is more than chance); calibration (ECE) and the unknown rule (the share accepted, the
accuracy on those, and with --unknown-data the share of other images rejected); the classes whose
accuracy moved. A run whose training split holds some of RUN's test images is said to be flattered.
`--data FOLDER` scores them on other labelled images instead (e.g. field pictures labelled and kept out
of training: where a retrained run should gain). Latency is not measured (`edgecls bench RUN2` does).

A form of `bench compare` rather than a command of its own: comparing is what that command does, and a
run directory cannot be mistaken for a bench.json. Unlike merging two bench reports, it guarantees
that both runs are scored on one set of images, the first run's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.atomic import write_text_atomic
from edgecls.bench import accuracy, calibration
from edgecls.bench.testset import run_test_set
from edgecls.data import image_digests, part_digest
from edgecls.errors import EdgeclsError
from edgecls.reporter import SILENT, Reporter
from edgecls.reports.compare import report_labels
from edgecls.reports.report import markup_cell, markup_lines, md_table
from edgecls.rundir import RunDir, exported_files, open_run
from edgecls.runtime.classify import Classifier
from edgecls.runtime.metrics import SIGNIFICANCE, interval_text, mcnemar_p, points_text

FORMAT = "edgecls.runs-compare/1"
COLUMNS = ("model", "run", "top-1", "95% CI", "correct", "Δ", "p", "ECE", "accepted", "acc. accepted", "rejected")
NARROW = ("run", "top-1", "correct", "Δ", "p", "ECE", "accepted")  # under a line naming the model
CHANGED_CLASSES = 5  # classes listed per pair whose accuracy moved most
LEGEND = ("top-1: the share of the test images answered right (correct: how many; 95% CI: Wilson); "
          "Δ: against the first run's file of the same name, in points; p: the exact McNemar test on the images "
          f"where the two differ (below {SIGNIFICANCE:g}: more than chance); ECE: calibration error; accepted: the "
          "share the model's unknown rule accepts, acc. accepted: the accuracy on those; rejected: the share of "
          "--unknown-data images answered unknown.")


def compare_runs(paths: Sequence[Path], unknown_data: Optional[str] = None, threads: Optional[int] = None,
                 data: Optional[str] = None, reporter: Reporter = SILENT) -> dict[str, Any]:
    """The comparison document: the runs, every model's figures on the first run's test split (or on `data`,
    labelled images of the same classes: its test part if it has one, else all of it), the pairs."""
    if len(paths) < 2:
        raise EdgeclsError("give two run directories or more: the first one's test split scores them all")
    runs = [open_run(path) for path in paths]
    first = runs[0]
    for run in runs[1:]:
        if list(run.labels) != list(first.labels):
            raise EdgeclsError(f"{run.name} has other classes than {first.name} ({', '.join(run.labels[:5])} ... "
                               f"against {', '.join(first.labels[:5])} ...): their models answer different questions")
    if data is None:
        test = run_test_set(first)
    else:  # e.g. newly labelled field pictures, kept out of training: where the retrained run should gain
        from edgecls.bench.testset import data_test_set, match_classes

        test = match_classes(data_test_set(data, (first.img_size, first.img_size), first.color), list(first.labels),
                             first.name, hint="")
    names = report_labels([Path(p) for p in paths])
    where = f"the {len(test.labels)} test images of {first.name}" if data is None else \
        f"{len(test.labels)} images of {data}"
    reporter(f"Scoring the models of {len(runs)} runs on {where}")
    digests = set(image_digests(test.images))
    unknown = None
    if unknown_data is not None:
        from edgecls.runtime.sources import read_images

        unknown_folder = Path(unknown_data)
    models, probabilities = [], {}
    for name, run in zip(names, runs):
        for path in exported_files(run.run_dir):
            classifier = Classifier(path, num_threads=threads)
            if tuple(classifier.input_spec.shape) != tuple(test.images.shape[1:]):
                raise EdgeclsError(f"{path} takes {'x'.join(map(str, classifier.input_spec.shape))} images, the test "
                                   f"images of {first.name} are {'x'.join(map(str, test.images.shape[1:]))}")
            probs, similarity = classifier.scores(test.images)
            if unknown_data is not None:
                unknown = read_images(unknown_folder, classifier.preprocess)
            scores = accuracy.model_accuracy(probs, test.labels, test.class_names)
            found = calibration.figures(classifier, probs, similarity, test.labels, unknown)
            correct = int(round(scores.top1 * scores.images))
            models.append({"run": name, "run_dir": str(run.run_dir), "model": path.name, "top1": scores.top1,
                           "correct": correct, "images": scores.images,
                           "interval": interval_text(correct, scores.images), "macro_f1": scores.macro_f1,
                           "per_class": {k: v.accuracy for k, v in scores.per_class.items()},
                           "ece": found["ece"], "rule": found["rule"], "accepted": found["accepted"],
                           "selective_accuracy": found["selective_accuracy"],
                           "rejected_unknown": found["rejected_unknown"], "sha256": _sha(path)})
            probabilities[(name, path.name)] = probs
    order = {name: i for i, name in enumerate(dict.fromkeys(m["model"] for m in models))}
    models.sort(key=lambda m: (order[m["model"]], names.index(m["run"])))  # each file's runs together
    pairs = _pairs(models, probabilities, names, test)
    digest = part_digest(test.images, np.arange(len(test.labels)))
    first_test = digest if data is None else _test_digest(first)
    return {"format": FORMAT, "test": {"run": first.name if data is None else None, "data": data,
                                       "images": int(len(test.labels)), "digest": digest, "notes": list(test.notes)},
            "runs": [_run_entry(name, run, i == 0, first_test, digests)
                     for i, (name, run) in enumerate(zip(names, runs))],
            "unknown_data": unknown_data, "columns": list(COLUMNS), "models": models, "pairs": pairs}


def _sha(path: Path) -> str:
    from edgecls.provenance import sha256_file

    return sha256_file(path)


def _run_entry(name: str, run: RunDir, is_first: bool, test_digest: str, test_images: set[str]) -> dict[str, Any]:
    """What a run is beside the first: whether its own test split is the first's (`test_digest`), and how
    many of the images scored (`test_images`, their digests) it trained on."""
    split = run.record.split if run.record is not None else {}
    origin = split.get("from") or {}
    entry: dict[str, Any] = {"name": name, "run_dir": str(run.run_dir), "from": origin.get("run"),
                             "train": len(split.get("train") or []), "added": (origin.get("added") or {}).get("train")}
    entry["test_images_in_train"] = sum(1 for d in image_digests(run.part("train").images) if d in test_images)
    if is_first:
        return entry
    entry["same_test"] = _test_digest(run) == test_digest
    return entry


def _test_digest(run: RunDir) -> str:
    """The content digest of a run's test split: split.json's, or computed (a run made before it was recorded)."""
    recorded = ((run.record.split if run.record is not None else {}).get("digests") or {}).get("test")
    if recorded:
        return recorded
    theirs = run.part("test")
    return part_digest(theirs.images, np.arange(len(theirs.labels)))


def _pairs(models: list[dict[str, Any]], probabilities: dict, names: list[str], test: Any) -> list[dict[str, Any]]:
    """Each later run's file against the first run's file of the same name, on the same images."""
    pairs = []
    for model in models:
        if model["run"] == names[0] or (names[0], model["model"]) not in probabilities:
            continue
        reference = probabilities[(names[0], model["model"])]
        probs = probabilities[(model["run"], model["model"])]
        paired = accuracy.paired(reference, probs, test.labels, test.ids, test.class_names, names[0])
        right_before, right_now = reference.argmax(1) == test.labels, probs.argmax(1) == test.labels
        only_before, only_now = int(np.sum(right_before & ~right_now)), int(np.sum(right_now & ~right_before))
        moved = sorted(paired.per_class_delta.items(), key=lambda item: -abs(item[1]))
        pair = {"model": model["model"], "run": model["run"], "reference": names[0], "delta": paired.delta_accuracy,
                "p": mcnemar_p(only_before, only_now), "fixed": only_now, "broken": only_before,
                "agreement": paired.agreement, "classes": {k: v for k, v in moved[:CHANGED_CLASSES] if v}}
        model["delta"], model["p"] = pair["delta"], pair["p"]
        next(m for m in models if m["run"] == names[0] and m["model"] == model["model"])["reference"] = True
        pairs.append(pair)
    return pairs


# ---------------------------------------------------------------------- showing it
def _cells(model: dict[str, Any]) -> dict[str, str]:
    ruled = model["rule"] is not None
    dash = "—"
    return {
        "model": model["model"], "run": model["run"], "top-1": f"{model['top1']:.4f}",
        "95% CI": model["interval"] or dash, "correct": f"{model['correct']}/{model['images']}",
        "Δ": points_text(model["delta"]) if "delta" in model else "ref" if model.get("reference") else dash,
        "p": p_text(model["p"]) if "p" in model else dash, "ECE": f"{model['ece']:.4f}",
        "accepted": f"{model['accepted']:.3f}" if ruled else dash,
        "acc. accepted": f"{model['selective_accuracy']:.4f}" if ruled and model["selective_accuracy"] is not None
        else dash,
        "rejected": f"{model['rejected_unknown']:.3f}" if model["rejected_unknown"] is not None else dash,
    }


def p_text(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else "<0.001"


def notes(doc: dict[str, Any]) -> list[str]:
    """The lines under the table: what each run is, what changed, what to make of it."""
    test = doc["test"]
    lines = ([f"Test images: the {test['images']} held-out test images of {test['run']}."] if test["run"]
             else [f"Test images: {test['images']} images of {test['data']}."] + test["notes"])
    first = doc["runs"][0]["name"]
    for run in doc["runs"]:
        what = []
        if "same_test" in run:
            what.append(f"its test split is {first}'s (the same images by content digest)" if run["same_test"]
                        else f"its own test split is not {first}'s")
        if run.get("from"):
            what.append(f"trained from {run['from']} with {run['added']} added images ({run['train']} in train)")
        if what:
            lines.append(f"{run['name']}: {'; '.join(what)}.")
        if run.get("test_images_in_train"):
            lines.append(f"warning: {run['test_images_in_train']} of these test images are in {run['name']}'s "
                         "training split: its figures on them are flattered.")
    for pair in doc["pairs"]:
        verdict = ("more than chance" if pair["p"] < SIGNIFICANCE else "within chance")
        moved = ", ".join(f"{name}: {points_text(delta, 1)}" for name, delta in pair["classes"].items())
        lines.append(f"{pair['model']}: {pair['run']} gets {pair['fixed']} right that {pair['reference']} got wrong "
                     f"and {pair['broken']} wrong that it got right ({verdict}: p {p_text(pair['p'])})"
                     + (f"; classes that moved: {moved}" if moved else "") + ".")
    return lines


def render(doc: dict[str, Any]) -> Any:
    """The table for the terminal: every column where it fits, else one table per model (NARROW), whose
    caption says where the columns it leaves out are."""
    from rich.console import Group
    from rich.text import Text

    from edgecls.tables import Fitted, data_table

    rows = [_cells(model) for model in doc["models"]]
    narrow = (*NARROW, "rejected") if doc["unknown_data"] else NARROW  # what --unknown-data asked for: shown
    left_out = [c for c in COLUMNS if c not in narrow and c != "model"]

    def table(columns: Sequence[str], members: list[dict[str, str]], title: Optional[str],
              caption: Optional[list[str]]) -> Any:
        return data_table(columns, [[markup_cell(member[c]) for c in columns] for member in members],
                          title=title, caption=markup_lines(caption) if caption else None, names=("model", "run"),
                          key=("model", "run"))

    groups: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault(row["model"], []).append(row)
    narrow_caption = notes(doc) + [LEGEND, f"{_and(left_out)}: compare.md (--report FOLDER) and --json."]
    per_model = Group("[bold]edgecls bench compare[/]",  # the caption under them all, as wide as the terminal
                      *(table(narrow, members, markup_cell(name), None) for name, members in groups.items()),
                      Text.from_markup(markup_lines(narrow_caption)))
    return Fitted(table(COLUMNS, rows, "edgecls bench compare", notes(doc) + [LEGEND]), per_model)


def _and(names: Sequence[str]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)


def markdown(doc: dict[str, Any]) -> str:
    lines = ["# edgecls bench compare", ""] + [f"- {line}" for line in notes(doc)] + ["", LEGEND, ""]
    lines += md_table(COLUMNS, [[_cells(m)[c] for c in COLUMNS] for m in doc["models"]]) + [""]
    return "\n".join(lines)


def write_outputs(doc: dict[str, Any], report_dir: Optional[Path], json_path: Optional[Path]) -> list[Path]:
    text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    written = []
    if report_dir is not None:
        written.append(write_text_atomic(report_dir / "compare.md", markdown(doc)))
        written.append(write_text_atomic(report_dir / "compare.json", text))
    if json_path is not None:
        written.append(write_text_atomic(json_path, text))
    return written
