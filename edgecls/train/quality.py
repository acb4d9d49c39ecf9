"""Is a trained model any use? Validation accuracy against always answering the majority class, and collapse.

numpy and the standard library only: `edgecls train` records the verdict in metrics.json and
`edgecls export` refuses a useless model (without --force) from the same function.

"Clearly above the majority class" is a one-sided exact binomial test: a model that only knew
the class shares would score like Binomial(n, p0) / n on n validation images whose largest class
has share p0. The accuracy is clearly above it when so many correct answers would happen by such
luck less than 5 % of the time. A fixed margin would not do: on 40 images with p0 = 0.5, 0.6 is
luck 13 % of the time (it needs 0.65), while on 4,000 images 0.52 is already significant.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgecls.errors import EdgeclsError
from edgecls.reporter import Reporter
from edgecls.runtime.metrics import correct_count, few_images_warning

# The export gate: the least top-1 agreement of an 8-bit file with its float model on the validation split
# (edgecls export's --min-agreement default; the backbone route, which writes its own .tflite, applies it too).
DEFAULT_MIN_AGREEMENT = 0.95
SIGNIFICANCE = 0.05  # the chance a majority-class guesser scores at least as well
COLLAPSE_SHARE = 0.90  # one class taking this share of the predictions (or more) ...
COLLAPSE_EXCESS = 0.05  # ... and this much more than its true share: the model answers one class
ADVICE = ("train longer (more --epochs, a larger --patience), use a pretrained backbone (--arch mobilenet_v2 "
          "--weights imagenet, or edgecls train --backbone FILE.tflite), or lower --lr")


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (exact for any n)."""
    if k <= 0:
        return 1.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
            + (n - i) * math.log1p(-p) for i in range(k, n + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def assess(predicted: np.ndarray, truth: np.ndarray, class_names: list[str],
           advice: str = ADVICE) -> dict[str, Any]:
    """The verdict on validation predictions: figures, `warnings` (sentences) and `collapsed`, with
    `advice` (what to try instead) when it collapsed.

    The keys are the same in every case; figures that cannot be had (no images) are None.
    """
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    n = len(truth)
    verdict: dict[str, Any] = {"collapsed": False, "warnings": [], "majority_class": None, "majority_share": None,
                               "val_accuracy": None, "p_value_vs_majority": None, "top_predicted_class": None,
                               "top_predicted_share": None, "too_few_to_judge": n == 0, "advice": ""}
    if n == 0:
        verdict["warnings"].append("no validation images: the model could not be checked")
        return verdict
    k = len(class_names)
    true_share = np.bincount(truth, minlength=k) / n
    predicted_share = np.bincount(predicted, minlength=k) / n
    majority, top = int(np.argmax(true_share)), int(np.argmax(predicted_share))
    correct = int(np.sum(predicted == truth))
    p_value = binomial_tail(correct, n, float(true_share[majority]))
    # Even every answer right would be luck this often: too few images to judge, which is not "useless".
    too_few = float(true_share[majority]) ** n >= SIGNIFICANCE
    warnings = []
    if too_few:
        warnings.append(f"only {n} validation image(s): too few to tell this model from always answering "
                        f"{class_names[majority]!r} (a larger --val-fraction or more images checks it)")
    elif p_value >= SIGNIFICANCE:
        warnings.append(
            f"validation accuracy {correct / n:.3f} ({correct}/{n}) is not clearly above always answering "
            f"{class_names[majority]!r} ({true_share[majority]:.3f}; a guesser does as well with probability "
            f"{p_value:.2f}, the bar is {SIGNIFICANCE}): this model has not learned to tell the classes apart")
    one_class = predicted_share[top] >= COLLAPSE_SHARE and predicted_share[top] >= true_share[top] + COLLAPSE_EXCESS
    if one_class:  # said even when too few to judge, as information
        warnings.append(
            f"{predicted_share[top]:.0%} of the validation predictions are {class_names[top]!r} "
            f"(its true share is {true_share[top]:.0%}): the model collapsed to one class")
    collapsed = bool(warnings) and not too_few
    verdict.update(
        collapsed=collapsed, warnings=warnings, majority_class=class_names[majority],
        majority_share=round(float(true_share[majority]), 4), val_accuracy=round(correct / n, 4),
        p_value_vs_majority=round(p_value, 6), top_predicted_class=class_names[top],
        top_predicted_share=round(float(predicted_share[top]), 4), too_few_to_judge=too_few,
        advice=advice if collapsed else "")
    return verdict


def quality_warnings(metrics: dict[str, Any], shipped: str) -> list[str]:
    """The WARNING lines of a run's metrics.json: the checks' findings, a test split too small to say
    much (and where it came from), then "do not ship" with the advice when it collapsed. `shipped`
    says what happens to such a model on this route."""
    found = list(metrics.get("warnings", []))
    n = (metrics.get("counts") or {}).get("test", 0)
    accuracy = (metrics.get("tflite") or {}).get("test_accuracy", metrics.get("test_accuracy"))  # what is shipped
    few = few_images_warning(n, metrics.get("test_source") or "its source unrecorded",
                             None if accuracy is None else correct_count(accuracy, n))
    if few:
        found.append(few)
    if metrics.get("collapsed"):
        found.append(f"do not ship this model ({shipped}): {metrics['quality']['advice']}")
    return found


WEAK_PHOTO_ACCURACY = 0.85  # below this on validation, a from-scratch photo model is worth redoing on a backbone
BACKBONE_ADVICE = ("a network pretrained on photos does better with few images (catsdogs: 0.69-0.83 from scratch, "
                   "0.90-0.94 on a backbone): edgecls train --data {data} --backbone FILE.tflite (Coral's "
                   "mobilenet_v1_*_quant.tflite, see the README), or --arch mobilenet_v2 --weights imagenet")


def backbone_hint(val_accuracy: float, arch: str, color: str, data: str, from_scratch: bool) -> str | None:
    """The advice a weak from-scratch photo run ends with: a pretrained backbone (None when it does not apply)."""
    if not from_scratch or color != "rgb" or val_accuracy >= WEAK_PHOTO_ACCURACY:
        return None
    return (f"validation {val_accuracy:.2f} from scratch (--arch {arch}) is weak for photos; "
            + BACKBONE_ADVICE.format(data=data))


_GERUND = {"export": "exporting", "write": "writing"}


def refuse_useless(verdict: dict[str, Any], force: bool, name: str, reporter: Reporter,
                   verb: str = "export") -> None:
    """Stop (exit code 1) on a model no better than the majority class or collapsed to one class,
    unless --force (then say it loudly and go on). `verb`: what is refused, "export" or "write"."""
    if not verdict.get("collapsed"):
        return
    finding = "; ".join(verdict.get("warnings", [])) or "the model is no better than the majority class"
    if force:
        reporter(f"WARNING: {_GERUND[verb]} it anyway (--force): {finding}")
        return
    raise EdgeclsError(f"{name}: {finding}. Not {_GERUND[verb]} a useless model: "
                       f"{verdict.get('advice') or ADVICE}; or pass --force to {verb} it anyway", exit_code=1)
