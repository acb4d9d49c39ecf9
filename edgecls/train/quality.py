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


def assess(predicted: np.ndarray, truth: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """The verdict on validation predictions: figures, `warnings` (sentences) and `collapsed`."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    n = len(truth)
    if n == 0:
        return {"collapsed": False, "warnings": ["no validation images: the model could not be checked"]}
    k = len(class_names)
    true_share = np.bincount(truth, minlength=k) / n
    predicted_share = np.bincount(predicted, minlength=k) / n
    majority = int(np.argmax(true_share))
    correct = int(np.sum(predicted == truth))
    p_value = binomial_tail(correct, n, float(true_share[majority]))
    top = int(np.argmax(predicted_share))
    warnings = []
    if binomial_tail(n, n, float(true_share[majority])) >= SIGNIFICANCE:
        # Even every answer right would be luck this often: too few images to judge, which is not "useless".
        return {"collapsed": False, "warnings": [
            f"only {n} validation image(s): too few to tell this model from always answering "
            f"{class_names[majority]!r} (a larger --val-fraction or more images checks it)"],
            "val_accuracy": round(correct / n, 4), "majority_class": class_names[majority],
            "majority_share": round(float(true_share[majority]), 4), "advice": ""}
    if p_value >= SIGNIFICANCE:
        warnings.append(
            f"validation accuracy {correct / n:.3f} ({correct}/{n}) is not clearly above always answering "
            f"{class_names[majority]!r} ({true_share[majority]:.3f}; a guesser does as well with probability "
            f"{p_value:.2f}, the bar is {SIGNIFICANCE}): this model has not learned to tell the classes apart")
    if predicted_share[top] >= COLLAPSE_SHARE and predicted_share[top] >= true_share[top] + COLLAPSE_EXCESS:
        warnings.append(
            f"{predicted_share[top]:.0%} of the validation predictions are {class_names[top]!r} "
            f"(its true share is {true_share[top]:.0%}): the model collapsed to one class")
    return {
        "collapsed": bool(warnings),
        "warnings": warnings,
        "majority_class": class_names[majority],
        "majority_share": round(float(true_share[majority]), 4),
        "val_accuracy": round(correct / n, 4),
        "p_value_vs_majority": round(p_value, 6),
        "top_predicted_class": class_names[top],
        "top_predicted_share": round(float(predicted_share[top]), 4),
        "advice": ADVICE if warnings else "",
    }
