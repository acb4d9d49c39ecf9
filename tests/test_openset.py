"""Calibrated confidence and the "unknown" answer (edgecls.calibrate, edgecls.runtime.openset).

The fast tests calibrate the reference model (models/digits-seed, no training) on its 179 test
images; pictures of no digit are generated (scenes, textures, noise). Slow ones export a run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecls.calibrate import fit
from edgecls.calibrate import graph as surgery
from edgecls.calibrate.folder import calibrate_folder
from edgecls.calibrate.job import OpenSetOptions
from edgecls.calibrate.options import CalibrateOptions
from edgecls.errors import EdgeclsError
from edgecls.runtime import Classifier, ModelFileError
from edgecls.runtime.metadata import embed_metadata, parse_metadata_json, read_metadata
from edgecls.runtime.model import check_classifier
from edgecls.runtime.openset import OpenSetRule, answer
from edgecls.runtime.settings import UnknownAnswer
from edgecls.tflite import classifier as unwrap
from edgecls.tflite.graph import load_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "digits-seed" / "model_int8.tflite"
REFERENCE = SHIPPED  # the plain classifier these tests calibrate: set by plain_reference below
IMAGES = ROOT / "models" / "digits-seed" / "test-images"


@pytest.fixture(scope="module", autouse=True)
def plain_reference(tmp_path_factory) -> Path:
    """The shipped reference carries an unknown rule (since a8f5aac); these tests start from the classifier
    it was made from, as a model of an install before the field loop: the graph calibrate wrapped taken off,
    the metadata without "openset", under the shipped file's name."""
    global REFERENCE
    from edgecls.tflite.classifier import plain_bytes

    meta = read_metadata(SHIPPED.read_bytes())
    meta.pop("openset", None)
    REFERENCE = tmp_path_factory.mktemp("plain") / SHIPPED.name
    REFERENCE.write_bytes(embed_metadata(plain_bytes(SHIPPED.read_bytes()), meta))
    return REFERENCE


def not_digits(count: int, seed: int = 0) -> list[np.ndarray]:
    """28x28 grayscale pictures of no digit: smooth noise, stripes, blobs and full frames."""
    rng = np.random.default_rng(seed)
    found = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            small = rng.integers(0, 256, (4, 4), dtype=np.uint8)
            found.append(np.asarray(Image.fromarray(small).resize((28, 28), Image.Resampling.BICUBIC)))
        elif kind == 1:
            x = np.arange(28)
            found.append(((np.sin(x[None, :] * rng.uniform(0.3, 1.5) + x[:, None] * rng.uniform(0, 1)) + 1) * 127)
                         .astype(np.uint8))
        elif kind == 2:
            picture = np.zeros((28, 28), np.uint8)
            cy, cx, r = rng.integers(6, 22, 2).tolist() + [int(rng.integers(3, 8))]
            yy, xx = np.mgrid[:28, :28]
            picture[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 255
            found.append(picture)
        else:
            found.append(np.full((28, 28), int(rng.integers(60, 256)), np.uint8))
    return found


@pytest.fixture(scope="module")
def unknown_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("not-digits")
    for i, picture in enumerate(not_digits(40, seed=1)):
        Image.fromarray(picture).save(folder / f"{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> Path:
    """The reference int8 model calibrated on its test images (halved), default options."""
    out = tmp_path_factory.mktemp("calibrated") / "digits_calibrated.tflite"
    calibrate_folder(CalibrateOptions(REFERENCE, IMAGES, out=out))
    return out


# ---------------------------------------------------------------------- the file
def test_a_calibrated_file_is_still_a_one_output_classifier_and_runs_as_before(calibrated):
    """What an install that predates the rule does: LiteRT's public API on subgraph 0 (its Classifier's
    only path) sees one input and one output, passes its checks, and gets the same answer."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(calibrated), num_threads=1)
    interpreter.allocate_tensors()
    inp, out = check_classifier(interpreter.get_input_details(), interpreter.get_output_details())
    ours = Classifier(calibrated, num_threads=1)
    assert ours._graph.index == 1  # the new install runs the scoring subgraph directly
    pixels = ours.preprocess(sorted((IMAGES / "7").iterdir())[0])
    interpreter.set_tensor(inp["index"], (pixels[None].astype(np.int16) - 128).astype(np.int8))
    interpreter.invoke()
    old = interpreter.get_tensor(out["index"])[0]
    ours.set_input(pixels[None])
    ours.invoke()
    assert np.array_equal((old.astype(np.float32) + 128) / 256, ours.output()[0])  # bit-identical probabilities
    # and the old metadata reader takes the document with its new key
    assert parse_metadata_json(json.dumps(read_metadata(calibrated.read_bytes())).encode())["labels"] == ours.labels


def test_the_uncalibrated_graph_comes_back_exactly(calibrated):
    """Re-calibration starts from the plain classifier: the IF wrapper, the tail and the temperature
    come off, and what remains computes what the model did before."""
    meta = read_metadata(calibrated.read_bytes())
    model = load_model(calibrated.read_bytes())
    assert unwrap.is_wrapped(model)
    unwrap.plain(model, meta["openset"]["temperature"]["beta_before"])
    assert not unwrap.is_wrapped(model) and len(model.subgraphs) == 1
    before, after = Classifier(REFERENCE), None
    path = calibrated.with_name("plain.tflite")
    from edgecls.tflite.graph import serialize

    path.write_bytes(embed_metadata(serialize(model), {k: v for k, v in meta.items() if k != "openset"}))
    after = Classifier(path)
    images = np.stack([before.preprocess(p) for p in sorted((IMAGES / "3").iterdir())[:8]])
    assert np.array_equal(before.probabilities(images), after.probabilities(images))


def test_calibrating_twice_gives_the_same_file_as_once(calibrated, tmp_path):
    again = tmp_path / "again.tflite"
    calibrate_folder(CalibrateOptions(calibrated, IMAGES, out=again))
    first, second = read_metadata(calibrated.read_bytes())["openset"], read_metadata(again.read_bytes())["openset"]
    for key in ("rule", "top", "embedding", "temperature"):
        assert first[key] == second[key], key
    assert abs(again.stat().st_size - calibrated.stat().st_size) < 64


def test_the_similarity_the_graph_computes_is_the_numpy_one(tmp_path):
    """The tail (dequantise, L2-normalise, an 8-bit prototype layer, max) against numpy on the same
    embeddings; int8 prototypes cost under 0.01 of cosine."""
    from edgecls.calibrate.job import _Probe

    model = load_model(REFERENCE.read_bytes())
    tail = surgery.find_tail(model)
    assert tail.dims == 64 and tail.softmax is not None
    (tmp_path / "probe.tflite").write_bytes(surgery.probe(model, tail))
    reference = Classifier(REFERENCE)
    images = np.stack([reference.preprocess(p) for p in sorted(IMAGES.rglob("*.png"))[:60]])
    _, _, embeddings = _Probe(tmp_path / "probe.tflite", reference.input_spec, 1)(images)
    prototypes = fit.fit_prototypes(embeddings, np.arange(len(images)) % 3, 3, per_class=4)
    path = tmp_path / "tail.tflite"
    path.write_bytes(embed_metadata(surgery.calibrated(model, tail, 1.0, prototypes),
                                    read_metadata(REFERENCE.read_bytes())))
    _, similarity = Classifier(path).scores(images)
    assert np.abs(similarity - fit.similarity(embeddings, prototypes)).max() < 0.01
    assert similarity.shape == (len(images),)


# ---------------------------------------------------------------------- the answer
def test_pictures_of_no_digit_are_unknown_and_digits_are_not(calibrated):
    classifier = Classifier(calibrated)
    digits = [classifier.classify(p) for p in sorted(IMAGES.rglob("*.png"))]
    others = [classifier.classify(p) for p in not_digits(40, seed=7)]
    accepted = np.mean([not a.unknown for a in digits])
    assert accepted >= 0.85  # set at 0.95 of half of these images
    assert np.mean([a.unknown for a in others]) >= 0.8
    unknown = next(a for a in others if a.unknown)
    assert isinstance(unknown, list) and unknown[0].label in classifier.labels  # the best guess is still there
    assert 0.0 <= unknown.typicality < 0.05 <= np.median([a.typicality for a in digits])


def test_no_unknown_gives_the_raw_answer(calibrated):
    picture = not_digits(1, seed=3)[0]
    with_rule, raw = Classifier(calibrated).classify(picture, 3), Classifier(calibrated, open_set=False).classify(
        picture, 3)
    assert list(with_rule) == list(raw)
    assert raw.unknown is False and raw.typicality is None
    assert Classifier(REFERENCE).classify(picture).typicality is None


def test_classify_many_gives_each_image_the_verdict_classify_gives(calibrated):
    classifier = Classifier(calibrated)
    sources = [*sorted((IMAGES / "4").iterdir())[:6], *not_digits(6, seed=2)]
    many = list(classifier.classify_many(sources, top_k=2))
    for source, prediction in zip(sources, many):
        one = classifier.classify(source, 2)
        assert prediction.unknown == one.unknown and prediction.classes == tuple(one)
        assert prediction.typicality == pytest.approx(one.typicality)


def test_the_temperature_changes_no_top1_and_lowers_validation_nll_and_ece(tmp_path):
    result = calibrate_folder(CalibrateOptions(REFERENCE, IMAGES, out=tmp_path / "m.tflite"))
    val = result.calibrated.figures["val"]
    assert result.calibrated.record["temperature"]["value"] != 1.0  # a temperature was kept: it lowered both
    assert val["nll_after"] < val["nll_before"] and val["ece_after"] < val["ece_before"]  # on the file written
    images = np.stack([Classifier(REFERENCE).preprocess(p) for p in sorted(IMAGES.rglob("*.png"))])
    assert np.array_equal(Classifier(REFERENCE).probabilities(images).argmax(1),
                          Classifier(result.path, open_set=False).probabilities(images).argmax(1))


def test_unknown_data_chooses_the_rule_that_rejects_it(unknown_folder, tmp_path):
    result = calibrate_folder(CalibrateOptions(REFERENCE, IMAGES, unknown=UnknownAnswer(unknown_data=unknown_folder),
                                               out=tmp_path / "m.tflite"))
    record = result.calibrated.record
    assert record["chosen"]["unknown_images"] == 40
    best = max(c["rejected_unknown"] for c in record["chosen"]["candidates"])
    chosen = next(c for c in record["chosen"]["candidates"] if c["rule"] == record["rule"])
    assert chosen["rejected_unknown"] >= best - fit.TIE and chosen["accepted"] >= 0.95


def test_the_top_rule_writes_no_second_subgraph(tmp_path):
    out = tmp_path / "top.tflite"
    calibrate_folder(CalibrateOptions(REFERENCE, IMAGES, unknown=UnknownAnswer(rule="top"), out=out))
    assert len(load_model(out.read_bytes()).subgraphs) == 1
    classifier = Classifier(out)
    assert classifier.open_set_rule.rule == "top" and classifier._graph.index == 0
    verdicts = [classifier.classify(p) for p in sorted((IMAGES / "1").iterdir())]
    assert all((a[0].score >= classifier.open_set_rule.top_threshold) != a.unknown for a in verdicts)


# ---------------------------------------------------------------------- the numbers (numpy)
def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 5))
    probabilities = fit.softmax(logits / 2.5)
    labels = np.array([rng.choice(5, p=p) for p in probabilities])
    assert fit.fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.08)


def test_a_temperature_is_kept_only_where_it_lowers_both_validation_nll_and_ece():
    from edgecls.runtime.metrics import calibration_figures

    def figures(logits, labels, t):
        return calibration_figures(fit.softmax(logits / t), labels)

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 5))  # overconfident by 2.5x: T lowers both, far
    labels = np.array([rng.choice(5, p=p) for p in fit.softmax(logits / 2.5)])
    t = fit.calibrating_temperature(logits, labels)
    assert t == pytest.approx(2.5, rel=0.08)
    assert figures(logits, labels, t)["ece"] < figures(logits, labels, 1.0)["ece"] / 3
    ece_raised = between = 0
    for seed in range(40):  # already calibrated, few images: the NLL optimum moves the ECE either way
        rng = np.random.default_rng(seed)
        logits = rng.normal(0, 4, (150, 2))
        labels = np.array([rng.choice(2, p=p) for p in fit.softmax(logits)])
        optimum, t = fit.fit_temperature(logits, labels), fit.calibrating_temperature(logits, labels)
        none, kept = figures(logits, labels, 1.0), figures(logits, labels, t)
        ece_raised += figures(logits, labels, optimum)["ece"] > none["ece"]
        if t != 1.0:
            assert kept["ece"] < none["ece"] and kept["nll"] < none["nll"], seed
            assert abs(np.log(t)) <= abs(np.log(optimum)) and np.sign(np.log(t)) == np.sign(np.log(optimum))
        between += t not in (1.0, optimum)
    assert ece_raised >= 3  # the case the guard is for did occur
    assert between >= 1  # and the way from the optimum towards 1 was taken, not only "optimum or none"


def test_the_summary_says_when_no_temperature_was_kept():
    from edgecls.calibrate.job import Calibrated

    candidate = {"rule": "top", "accepted": 0.955, "selective_accuracy": 0.99, "rejected_unknown": None}
    figures = {"val": {"images": 178, "accuracy": 0.98, "ece_before": 0.0408, "ece_after": 0.0409,
                       "nll_before": 0.259, "nll_after": 0.2587}}

    def summary(t: float, applied: str = "graph") -> str:
        record = {"rule": "top", "chosen": {"candidates": [candidate]}, "temperature": {"value": t, "applied": applied}}
        return Calibrated(b"", record, figures).summary()

    assert "no temperature (none lowered both the validation ECE, 0.0408, and NLL, 0.2590)" in summary(1.0)
    assert "no temperature (the model's output is neither a SOFTMAX nor logits)" in summary(1.0, "none")
    assert "temperature 0.900: validation ECE 0.0408 -> 0.0409" in summary(0.9)
    assert "temperature 1.00040: validation" in summary(1.0004)


def test_thresholds_accept_at_least_the_target_share():
    rng = np.random.default_rng(1)
    top, sim = rng.uniform(0.3, 1.0, 500), rng.uniform(0, 1, 500)
    correct = rng.random(500) < top
    for accept in (0.8, 0.9, 0.95, 0.99):
        for row in fit.rule_figures(accept, top, correct, sim):
            assert accept <= row.accepted < accept + 0.02, (row.rule, accept)


def test_the_rule_that_rejects_most_unknown_images_is_chosen_and_without_them_both():
    rows = [fit.RuleFigures("top", 0.9, None, 0.95, 0.99, 0.30),
            fit.RuleFigures("embedding", None, 0.8, 0.95, 0.97, 0.97),
            fit.RuleFigures("both", 0.85, 0.75, 0.95, 0.98, 0.968)]
    assert fit.choose(rows)[0].rule == "both"  # within TIE of the best, and more accurate on accepted images
    assert fit.choose([*rows[:2], fit.RuleFigures("both", 0.85, 0.75, 0.95, 0.98, 0.90)])[0].rule == "embedding"
    assert fit.choose([fit.RuleFigures(r.rule, r.top_threshold, r.similarity_threshold, r.accepted,
                                       r.selective_accuracy, None) for r in rows])[0].rule == "both"


def test_a_rule_decides_a_batch_as_it_decides_one_image():
    rule = OpenSetRule("both", 0.95, 0.6, 0.5, tuple(np.linspace(0.4, 1, 50)), tuple(np.linspace(0.2, 1, 50)),
                       1.0, True)
    top, sim = np.array([0.9, 0.55, 0.9, float("nan")]), np.array([0.9, 0.9, 0.3, 0.9])
    unknown, typicality = rule.decide(top, sim)
    assert unknown.tolist() == [False, True, True, True]
    for i in range(4):
        one = answer([], rule, float(top[i]), float(sim[i]))
        assert one.unknown == unknown[i] and one.typicality == pytest.approx(typicality[i])


@pytest.mark.parametrize("entry, message", [
    ({"rule": "maybe"}, "'rule' must be one of"),
    ({"rule": "top", "accept": 0.95}, "openset.top must be an object"),
    ({"rule": "top", "accept": 0.95, "top": {"threshold": "high", "scores": [0.5]}}, "top.threshold must be a finite"),
    ({"rule": "embedding", "accept": 0.95, "embedding": {"threshold": 0.5, "scores": []}}, "scores must be a list"),
    ({"rule": "top", "accept": True, "top": {"threshold": 0.5, "scores": [0.5]}}, "accept must be a finite"),
])
def test_a_malformed_rule_is_a_one_line_model_error(entry, message):
    with pytest.raises(ModelFileError, match=message):
        OpenSetRule.from_metadata({"openset": entry}, "m.tflite")


def test_a_rule_that_needs_a_similarity_the_file_lacks_is_refused(calibrated, tmp_path):
    meta = read_metadata(calibrated.read_bytes())
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(embed_metadata(REFERENCE.read_bytes(), meta))  # the rule, without the scoring subgraph
    with pytest.raises(ModelFileError, match="similarity output"):
        Classifier(broken)


# ---------------------------------------------------------------------- the commands
def test_predict_rows_answer_unknown_with_the_best_guess(calibrated, cli, tmp_path):
    picture = tmp_path / "noise.png"
    Image.fromarray(not_digits(1, seed=11)[0]).save(picture)
    seven = sorted((IMAGES / "7").iterdir())[0]
    done = cli("predict", calibrated, seven, picture, "--json")
    rows = [json.loads(line) for line in done.out.splitlines()]
    assert done.code == 0 and [r["unknown"] for r in rows] == [False, True]
    assert rows[1]["classes"][0]["label"] in Classifier(calibrated).labels and 0 <= rows[1]["typicality"] < 0.05
    assert "1 unknown" in done.err
    raw = [json.loads(line) for line in cli("predict", calibrated, seven, picture, "--json", "--no-unknown").out
           .splitlines()]
    assert all("unknown" not in r for r in raw) and raw[1]["classes"] == rows[1]["classes"]
    table = cli("predict", calibrated, seven, picture).out.splitlines()
    assert table[0].split()[:2] == ["answer", "typical"]
    assert table[1].split()[0] == "7" and table[2].split()[0] == "unknown"
    csv = cli("predict", calibrated, picture, "--csv").out.splitlines()
    assert csv[0].endswith(",unknown,typicality") and csv[1].split(",")[6] == "1"


def test_the_lean_predict_path_knows_no_unknown(calibrated):
    from edgecls.entry import predict_arguments

    arguments = predict_arguments(["predict", str(calibrated), "a.png", "--no-unknown"])
    assert arguments is not None and arguments["unknown"] is False
    assert predict_arguments(["predict", str(calibrated), "a.png"])["unknown"] is True


def test_calibrate_writes_a_new_file_and_says_what_it_chose(cli, tmp_path, unknown_folder):
    model = tmp_path / "model_int8.tflite"
    shutil.copy(REFERENCE, model)
    done = cli("calibrate", model, "--data", IMAGES, "--unknown-data", unknown_folder, "--accept", "0.9")
    assert done.code == 0, done.err
    written = tmp_path / "model_int8_calibrated.tflite"
    assert f"Wrote {written}" in done.out and "unknown rule" in done.out
    record = read_metadata(written.read_bytes())["openset"]
    assert record["accept"] == 0.9 and record["data"]["unknown"] == str(unknown_folder)
    assert model.read_bytes() == REFERENCE.read_bytes()  # the model itself is left alone
    again = cli("calibrate", model, "--data", IMAGES)
    assert again.code == 2 and "already exists" in again.err and len(again.err.strip().splitlines()) == 1


@pytest.mark.parametrize("problem", ["folder named by no label", "too few images", "out is the model", "accept"])
def test_calibrate_bad_input_is_one_line_and_exit_2(cli, tmp_path, problem):
    data = tmp_path / "data"
    args = ["--data", data]
    if problem == "folder named by no label":
        shutil.copytree(IMAGES / "1", data / "one")
    elif problem == "too few images":
        for digit in ("1", "2"):
            (data / digit).mkdir(parents=True)
            for path in sorted((IMAGES / digit).iterdir())[:4]:
                shutil.copy(path, data / digit)
    elif problem == "out is the model":
        args = ["--data", IMAGES, "--out", REFERENCE]
    else:
        args = ["--data", IMAGES, "--accept", "1.5"]
    done = cli("calibrate", REFERENCE, *args)
    assert done.code == 2 and len(done.err.strip().splitlines()) == 1, done.err
    assert "Traceback" not in done.err


def test_train_refuses_unknown_answer_options_without_a_backbone(cli, tmp_path):
    done = cli("train", "--accept", "0.9", "--out", tmp_path / "run")
    assert done.code == 2 and "edgecls export" in done.err


def test_bench_reports_calibration_and_the_unknown_rule(calibrated, cli, tmp_path, unknown_folder):
    pytest.importorskip("matplotlib")
    report = tmp_path / "report"
    done = cli("bench", calibrated, REFERENCE, "--data", IMAGES, "--unknown-data", unknown_folder, "--runs", "2",
               "--warmup", "0", "--no-memory", "--threads", "1", "--report", report)
    assert done.code == 0, done.err
    data = json.loads((report / "bench.json").read_text())
    section = next(s for s in data["sections"] if s["key"] == "calibration")
    rows = {row[0]: row for row in section["rows"]}
    ruled, plain = rows[calibrated.name], rows[REFERENCE.name]
    assert section["columns"] == ["model", "rule", "ECE", "accepted", "acc. accepted", "acc. all", "rejected"]
    assert ruled[1] in ("top", "embedding", "both") and plain[1] == "none" and plain[3] is None
    assert ruled[4] >= ruled[5]  # accuracy on accepted images >= on all
    assert ruled[6] >= 0.6 and plain[6] is None  # the share of --unknown-data rejected
    assert section["data"]["models"][calibrated.name]["nll"] > 0
    assert (report / "reliability.png").is_file() and "reliability.png" in (report / "bench.md").read_text()


# ---------------------------------------------------------------------- every route
def test_export_calibrates_every_file_on_the_runs_validation_split(make_digits_run):
    run = make_digits_run(epochs=2, seed=3, export_modes=("float32", "int8"))
    report = json.loads((run / "export" / "export.json").read_text())
    for row in report["models"]:
        meta = read_metadata((run / "export" / row["file"]).read_bytes())
        assert meta["openset"]["rule"] == row["openset"]["rule"] == "both"
        assert meta["openset"]["chosen"]["split"] == "val"
        assert row["openset"]["test"]["images"] > 0 and row["openset"]["val"]["nll_after"] <= \
            row["openset"]["val"]["nll_before"]
        assert Classifier(run / "export" / row["file"]).open_set_rule is not None


def test_too_few_validation_images_export_without_a_rule():
    from edgecls.calibrate.job import calibrate_split

    class Split:
        train, val, test = np.arange(0, 40), np.arange(40, 50), np.arange(50, 60)

    images = np.zeros((60, 28, 28, 1), np.uint8)
    notes = []
    content, report = calibrate_split(REFERENCE.read_bytes(), images, np.arange(60) % 10, Split(), OpenSetOptions(),
                                      None, "m.tflite", notes.append)
    assert content == REFERENCE.read_bytes() and report["rule"] is None and "too few" in notes[0]


def test_a_model_without_a_classifier_layer_gets_the_top_rule_and_embedding_is_refused(tmp_path):
    """Cut the reference model before its dense layers: its output is made by no classifier layer, so
    there is no embedding to read; auto falls back to the top score, a forced embedding rule is an error."""
    from edgecls.tflite.graph import cut, producers, serialize

    model = load_model(REFERENCE.read_bytes())
    tail = surgery.find_tail(model)
    graph = model.subgraphs[0]
    dense = graph.operators[producers(graph)[tail.embedding]]  # the Dense(64) that makes the embedding
    cut(model, int(dense.inputs[0]))  # its input: the flattened feature map, 1600 values; no softmax, no FC
    model.subgraphs[0].outputs = np.array([int(model.subgraphs[0].outputs[0])], np.int32)
    assert surgery.find_tail(model).embedding is None
    flat = tmp_path / "flat" / "m.tflite"
    flat.parent.mkdir()
    labels = [str(i) for i in range(1600)]
    flat.write_bytes(embed_metadata(serialize(model), {"labels": labels, "output": "logits",
                                                       "input": {"pixel_range": [0, 255]}}))
    data = tmp_path / "data"
    for label in ("0", "1"):
        (data / label).mkdir(parents=True)
        for i, picture in enumerate(not_digits(24, seed=int(label))):
            Image.fromarray(picture).save(data / label / f"{i}.png")
    with pytest.raises(EdgeclsError, match="no embedding"):
        calibrate_folder(CalibrateOptions(flat, data, unknown=UnknownAnswer(rule="embedding"),
                                          out=tmp_path / "x.tflite"))
    result = calibrate_folder(CalibrateOptions(flat, data, out=tmp_path / "y.tflite"))
    assert result.calibrated.record["rule"] == "top" and result.calibrated.record["temperature"]["applied"] == "runtime"


def test_live_rows_say_which_frames_are_unknown_and_the_summary_counts_them(calibrated, cli, tmp_path):
    """A video that alternates a digit and a picture of none: every second frame is unknown."""
    cv2 = pytest.importorskip("cv2")
    seven = np.asarray(Image.open(sorted((IMAGES / "7").iterdir())[0]).convert("RGB").resize((56, 56)))
    blob = np.repeat(not_digits(3, seed=5)[2][..., None], 3, axis=2)
    noise = np.asarray(Image.fromarray(blob).resize((56, 56)))
    video = tmp_path / "mixed.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (56, 56))
    for i in range(8):
        writer.write(cv2.cvtColor(seven if i % 2 == 0 else noise, cv2.COLOR_RGB2BGR))
    writer.release()
    done = cli("predict", calibrated, "--source", video, "--json")
    assert done.code == 0, done.err
    rows = [json.loads(line) for line in done.out.splitlines()]
    assert [r["unknown"] for r in rows] == [False, True] * 4
    assert all(0 <= r["typicality"] <= 1 for r in rows) and "4 unknown" in done.err.splitlines()[-1]
    raw = [json.loads(line) for line in cli("predict", calibrated, "--source", video, "--json", "--no-unknown")
           .out.splitlines()]
    assert all("unknown" not in r for r in raw) and len(raw) == 8


def test_train_with_a_backbone_writes_a_calibrated_file_and_its_figures(models, tmp_path, monkeypatch):
    from conftest import colour_folder

    from edgecls.transfer.job import TransferOptions, train_with_backbone

    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    data = colour_folder(tmp_path / "data", per_class=110)
    green = tmp_path / "green"
    green.mkdir()
    rng = np.random.default_rng(9)
    for i in range(30):  # neither bluish nor reddish
        pixels = rng.integers(0, 90, (16, 16, 3), dtype=np.uint8)
        pixels[..., 1] = rng.integers(150, 256, (16, 16), dtype=np.uint8)
        Image.fromarray(pixels).save(green / f"{i}.png")
    options = TransferOptions(data=str(data), backbone=str(models.rgb_int8), out=str(tmp_path / "run"), threads=1,
                              epochs=30, unknown_data=str(green))
    train_with_backbone(options)  # the reporter says nothing by default
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    report = metrics["openset"]
    assert report["rule"] in ("top", "embedding", "both") and report["test"]["images"] == metrics["counts"]["test"]
    chosen = next(c for c in report["candidates"] if c["rule"] == report["rule"])
    assert chosen["rejected_unknown"] is not None and chosen["accepted"] >= 0.95
    model = tmp_path / "run" / "export" / "model_int8.tflite"
    assert read_metadata(model.read_bytes())["openset"]["data"]["unknown"] == str(green)
    assert Classifier(model).open_set_rule.rule == report["rule"]
