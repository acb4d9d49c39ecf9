"""A useless model is never shipped silently: the majority-class verdict, the train warning, the export refusal;
and the log says where the test images came from."""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data import make_folder

from edgecls.data import load_dataset, make_split
from edgecls.train.quality import assess, binomial_tail

CLASSES = ["cats", "dogs"]


def test_binomial_tail_matches_the_exact_sum():
    for n, p, k in ((10, 0.5, 7), (40, 0.5, 26), (25, 0.8, 23), (6, 0.3, 0)):
        exact = sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
        assert binomial_tail(k, n, p) == pytest.approx(exact, rel=1e-9)
    assert binomial_tail(3000, 4000, 0.5) < 1e-100  # log space: no underflow to an error


def test_majority_class_answers_are_flagged_and_a_learned_model_is_not():
    truth = np.array([0] * 20 + [1] * 20)
    verdict = assess(np.zeros(40, int), truth, CLASSES)
    assert verdict["collapsed"] and len(verdict["warnings"]) == 2  # no better than 0.5, and 100 % 'cats'
    assert "'cats'" in verdict["warnings"][1] and "--patience" in verdict["advice"]
    learned = truth.copy()
    learned[:6] = 1  # 34/40 correct: far beyond luck
    assert not assess(learned, truth, CLASSES)["collapsed"]


def test_clearly_above_means_beyond_luck_not_a_fixed_margin():
    truth = np.array([0] * 20 + [1] * 20)
    def answers(correct: int) -> np.ndarray:
        predicted = truth.copy()
        predicted[: 40 - correct] = 1 - predicted[: 40 - correct]  # wrong ones on both classes
        return predicted
    # 24/40 = 0.6 happens by luck 13 % of the time; 27/40 only 1 %.
    assert assess(answers(24), truth, CLASSES)["collapsed"]
    assert not assess(answers(27), truth, CLASSES)["collapsed"]


def test_imbalanced_data_predicted_in_proportion_is_not_called_collapsed():
    truth = np.array([0] * 95 + [1] * 5)
    predicted = truth.copy()  # 95 % 'cats' because 95 % are cats, and every answer right
    verdict = assess(predicted, truth, CLASSES)
    assert not verdict["collapsed"]
    verdict = assess(np.zeros(100, int), truth, CLASSES)  # always the majority: 0.95 is no better than 0.95
    assert verdict["collapsed"] and "not clearly above" in verdict["warnings"][0]


def test_too_few_validation_images_to_judge_is_said_not_called_useless():
    truth = np.array([0, 1, 0])
    verdict = assess(truth.copy(), truth, CLASSES)  # all right, but a guesser (p0 = 2/3) gets 3/3 30 % of the time
    assert not verdict["collapsed"] and "too few" in verdict["warnings"][0]
    one_class = assess(np.zeros(3, int), truth, CLASSES)  # one class, but no evidence either way: said, not judged
    assert not one_class["collapsed"] and "collapsed to one class" in one_class["warnings"][-1]
    assert set(one_class) == set(verdict) == set(assess(np.array([], int), np.array([], int), CLASSES))
    six = np.array([0, 1, 0, 1, 0, 1])  # 0.5 ** 6 < 0.05: six images can already be judged
    assert assess(np.zeros(6, int), six, CLASSES)["collapsed"]


def _split_folders(root: Path, parts: tuple[str, ...], per_class: int = 6) -> Path:
    for i, part in enumerate(parts):  # a size per part: make_folder's pixels repeat, and duplicates are dropped
        make_folder(root / part, per_class=per_class, size=(12 + i, 12), formats=("png",))
    return root


def test_the_test_images_source_is_stated(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    carved = make_split(load_dataset(str(_split_folders(tmp_path / "a", ("train", "val"), 10)), 12),
                        0.1, 0.2, 0)
    assert len(carved.test) == 4 and "carved from the 20 of train/" in carved.test_source
    assert "--test-fraction 0.2" in carved.test_source
    given = make_split(load_dataset(str(_split_folders(tmp_path / "b", ("train", "val", "test"))), 12), 0.1, 0.2, 0)
    assert given.test_source == "12 images of the test/ folder"
    flat = make_split(load_dataset(str(make_folder(tmp_path / "c", per_class=10, size=(12, 12))), 12), 0.1, 0.1, 0)
    assert "drawn from all 20" in flat.test_source


@pytest.mark.slow
def test_a_collapsed_model_is_flagged_and_export_refuses_it_without_force(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    # Labels that are noise (both classes drawn from one distribution) and a learning rate that blows
    # the weights up: the model answers one class for every image, deterministically.
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (tmp_path / "noise" / name).mkdir(parents=True)
        for i in range(20):
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "noise" / name / f"{i}.png")
    run = tmp_path / "run"
    trained = cli("train", "--data", tmp_path / "noise", "--img-size", "16", "--epochs", "2", "--lr", "10",
                  "--out", run, "--quiet", "--augment", "none", "--val-fraction", "0.3")
    assert trained.code == 0, trained.err[-2000:]
    assert "WARNING: do not ship this model" in trained.err and "collapsed to one class" in trained.err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["collapsed"] is True and metrics["warnings"]
    assert metrics["quality"]["top_predicted_share"] == 1.0

    refused = cli("export", run)
    assert refused.code == 1
    assert "Not exporting a useless model" in refused.err and "--force" in refused.err
    assert "--patience" in refused.err and "backbone" in refused.err and "--lr" in refused.err
    assert len(refused.err.strip().splitlines()) == 1 and not (run / "export").exists()


# ---------------------------------------------------------------------- an accuracy with its weight (issue 22)
def test_wilson_interval_matches_the_textbook_values_and_the_text_carries_count_and_interval():
    from edgecls.runtime.metrics import accuracy_text, interval_text, points_text, wilson_interval

    # Wilson (1927) / Newcombe (1998), table I: 81/263 -> 0.2553-0.3662; 15/148 -> 0.0624-0.1605; 0/10 -> 0-0.2775
    for (k, n), (low, high) in {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605),
                                (0, 10): (0.0, 0.2775)}.items():
        got = wilson_interval(k, n)
        assert abs(got[0] - low) < 5e-4 and abs(got[1] - high) < 5e-4, (k, n, got)
    assert accuracy_text(23, 24) == "0.9583 (23/24; 95% CI 0.80–0.99)"
    assert accuracy_text(9850, 10000) == "0.9850 (9850/10000)"  # narrower than a point: the count alone
    assert interval_text(9850, 10000) == "" and interval_text(158, 179) == "0.83–0.92"
    assert points_text(-0.0) == points_text(-1e-12) == "0.00 pt"  # never "-0.00 pt"
    assert points_text(1 / 179) == "+0.56 pt" and points_text(-2 / 179) == "-1.12 pt"


def test_a_small_test_split_is_warned_about_with_where_it_came_from():
    from edgecls.train.quality import quality_warnings

    source = "24 images carved from the 398 of train/ (--test-fraction 0.1, stratified, seeded)"
    small = {"counts": {"test": 24}, "test_source": source, "test_accuracy": 0.9583, "warnings": []}
    [warning] = quality_warnings(small, "refused")
    assert warning.startswith("only 24 test images (24 images carved from the 398 of train/")
    assert "23/24 right" in warning and "0.80 to 0.99" in warning and "--test-fraction" in warning
    backbone = {**small, "tflite": {"test_accuracy": 22 / 24}}  # the written .tflite's figure is the one shipped
    assert "22/24 right" in quality_warnings(backbone, "refused")[0]
    assert quality_warnings({**small, "counts": {"test": 179}}, "refused") == []


def test_a_weak_from_scratch_photo_run_points_to_a_backbone():
    from edgecls.train.quality import backbone_hint

    hint = backbone_hint(0.71, "mobile", "rgb", "photos/", from_scratch=True)
    assert "validation 0.71" in hint and "--backbone" in hint and "--data photos/" in hint
    assert "--arch mobilenet_v2 --weights imagenet" in hint
    assert backbone_hint(0.93, "mobile", "rgb", "photos/", True) is None  # good enough
    assert backbone_hint(0.71, "seed", "grayscale", "digits", True) is None  # not photos
    assert backbone_hint(0.71, "mobilenet_v2", "rgb", "photos/", False) is None  # already on a backbone


def test_train_summary_gives_counts_intervals_and_the_test_source():
    from edgecls.train.job import TrainResult
    from edgecls.train.options import resolve_options

    metrics = {"counts": {"train": 300, "val": 40, "test": 24}, "best_epoch": 2, "test_accuracy": 23 / 24,
               "test_source": "24 images of the test/ folder"}
    options = resolve_options({"data": "photos/", "arch": "mobile", "color": "rgb"})
    result = TrainResult(Path("runs/photos"), 23 / 24, 29 / 40, 14, 60.0, metrics, "photos/", options)
    text = result.summary()
    assert "Test accuracy 0.9583 (23/24; 95% CI 0.80–0.99). Test images: 24 images of the test/ folder." in text
    assert "Validation 0.7250 (29/40; 95% CI" in text and "best epoch 2 of 14" in text
    assert "Next: edgecls export runs/photos" in text
    assert "Or: validation 0.72 from scratch (--arch mobile) is weak for photos" in text
