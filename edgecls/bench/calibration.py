"""Bench's "Calibration and unknown" section: how well each model's scores are calibrated (ECE, NLL),
and what its open-set rule does on the test images (the share accepted, the accuracy on those beside
the accuracy on all) and, with --unknown-data, on images of none of its classes (the share rejected);
and the reliability diagram (reliability.png), drawn from the section's data so that a device's
JSON is plotted on the workstation too.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgecls.bench.results import BenchReport, Section
from edgecls.bench.results import add_section as add
from edgecls.runtime.classify import Classifier
from edgecls.runtime.metrics import nll_floor, open_set_figures

SECTION = "calibration"
PLOT_NAME = "reliability.png"


def figures(classifier: Classifier, probabilities: np.ndarray, similarity: Optional[np.ndarray], labels: np.ndarray,
            unknown_images: Optional[np.ndarray]) -> dict[str, Any]:
    """One model's figures on the test images (and the unknown ones): its rule's, or calibration alone."""
    rule = classifier.open_set_rule
    if rule is None:
        flags = np.zeros(len(labels), bool)
        rejected = None
    else:
        flags = rule.decide(probabilities.max(1), similarity)[0]
        rejected = None
        if unknown_images is not None:
            probs, sim = classifier.scores(unknown_images)
            rejected = rule.decide(probs.max(1), sim)[0]
    found = open_set_figures(probabilities, labels, flags, rejected, nll_floor(classifier.output_step))
    found["rule"] = rule.rule if rule is not None else None
    found["temperature"] = rule.temperature if rule is not None else None
    return found


def add_section(report: BenchReport, by_model: dict[str, dict[str, Any]], unknown_source: Optional[str]) -> Section:
    rows = []
    for name, f in by_model.items():  # rounded for the table; the section's data keeps every digit
        ruled = f["rule"] is not None
        rows.append([name, f["rule"] or "none", _round(f["ece"], 4), _round(f["accepted"], 3) if ruled else None,
                     _round(f["selective_accuracy"], 4) if ruled else None, _round(f["accuracy"], 4),
                     _round(f["rejected_unknown"], 3)])
    notes = ["ECE: the gap between confidence and accuracy over 15 equal-width bins of the top probability "
             "(0 is perfectly calibrated); the NLL of each model is in bench.json (an 8-bit output's 0 taken as "
             "half its step, 1/512).",
             "accepted: the share of test images the model's unknown rule accepts (set on the validation split by "
             "edgecls calibrate, export or train --backbone); acc. accepted: the accuracy on them, acc. all: on "
             "every test image."]
    if unknown_source is not None:
        count = next(iter(by_model.values()))["unknown_images"] if by_model else 0
        notes.append(f"rejected: the share of the {count} images of --unknown-data {unknown_source} (none of the "
                     "classes) the rule answers unknown.")
    if not any(f["rule"] for f in by_model.values()):
        notes.append("No model here has an unknown rule: give one with edgecls calibrate MODEL --data FOLDER "
                     "(or export the run again).")
    return add(report, SECTION, "Calibration and unknown (test split)",
               ["model", "rule", "ECE", "accepted", "acc. accepted", "acc. all", "rejected"], rows,
               notes=notes, data={"models": by_model, "unknown_data": unknown_source})


def _round(value: Optional[float], digits: int) -> Optional[float]:
    return None if value is None else round(float(value), digits)


FEW = 5  # a bin with fewer test images than this is drawn faint: its accuracy says little


def plot(plt: Any, data: dict[str, Any]) -> Any:
    """Reliability diagram: each model's accuracy per confidence bin as bars beside the diagonal a
    perfectly calibrated model would follow (faint: bins of fewer than FEW images), and below it how
    many test images each bin holds."""
    from edgecls.plotting import legend_outside, short_label, swatch

    models = data["models"]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True, height_ratios=[3, 1],
                                         layout="constrained")
    diagonal = top.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1)[0]
    first = next(iter(models.values()))["bins"]
    step = (first[0]["high"] - first[0]["low"]) if first else 1.0
    width = step / (len(models) + 1)
    handles, labels = [diagonal], ["perfectly calibrated"]
    for i, (name, f) in enumerate(models.items()):
        color = f"C{i % 10}"
        handles.append(swatch(color))
        labels.append(f"{short_label(name)} (ECE {f['ece']:.3f})")
        for b in f["bins"]:
            x = b["low"] + (i + 1) * width
            if b["count"]:
                top.bar(x, b["accuracy"], width=width, color=color, alpha=1.0 if b["count"] >= FEW else 0.3)
            bottom.bar(x, b["count"], width=width, color=color)
    top.set_ylabel("accuracy in the bin")
    top.set_xlim(0, 1.0)
    top.set_ylim(0, 1.02)
    top.set_title(f"Reliability on the test split (faint: bins of fewer than {FEW} images)")
    top.grid(alpha=0.3)
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("images")
    bottom.set_yscale("symlog", linthresh=1)
    bottom.grid(alpha=0.3)
    legend_outside(figure, handles, labels, fontsize=8)  # under the plots: the bars of a confident model sit
    # where a legend inside would go
    return figure
