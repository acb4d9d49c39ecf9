"""predict --collect: the pictures the device was unsure of, kept for the next training.

Real components: the reference model calibrated on its test images (no training), videos written
by OpenCV, a child process killed with SIGKILL mid-collection.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from livekit import digit_frame, no_digit
from livekit import write_video as write_frames
from PIL import Image

from edgecls.calibrate.folder import calibrate_folder
from edgecls.calibrate.options import CalibrateOptions
from edgecls.errors import EdgeclsError
from edgecls.runtime import Classifier
from edgecls.runtime.collect import Collector, parse_when

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "models" / "digits-seed" / "model_int8.tflite"
IMAGES = ROOT / "models" / "digits-seed" / "test-images"
SIDE = 56


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "digits_calibrated.tflite"
    calibrate_folder(CalibrateOptions(REFERENCE, IMAGES, out=out))
    return out


def plain_reference(folder: Path) -> Path:
    """The reference classifier without its unknown rule (the graph calibrate wrapped, the metadata
    without "openset"): a model as an install before the field loop made it."""
    from edgecls.runtime.metadata import embed_metadata, read_metadata
    from edgecls.tflite.classifier import plain_bytes

    meta = read_metadata(REFERENCE.read_bytes())
    meta.pop("openset")
    path = folder / "plain.tflite"
    path.write_bytes(embed_metadata(plain_bytes(REFERENCE.read_bytes()), meta))
    return path


def digit(name: str = "7", n: int = 0) -> np.ndarray:
    """An RGB picture of the n-th test image of digit `name` (the first: one the model gets right)."""
    if n == 0:
        return digit_frame(name, SIDE)
    path = sorted((IMAGES / name).iterdir())[n]
    return np.asarray(Image.open(path).convert("RGB").resize((SIDE, SIDE), Image.Resampling.NEAREST))


def scene(seed: int) -> np.ndarray:
    return no_digit(seed, SIDE)


def write_video(path: Path, pictures: list[np.ndarray], fps: float = 10.0) -> Path:
    pytest.importorskip("cv2")
    return write_frames(path, pictures, len(pictures), fps)


def kept(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".json" and not p.name.startswith("."))


def test_a_video_keeps_its_unknown_frames_and_a_static_stretch_once(model, cli, tmp_path):
    """Known digits, then 30 frames of one scene, digits again, then another scene: the unknown frames are
    kept, each scene once, each with a sidecar that says what the model answered and why it was kept."""
    frames = [digit("7")] * 5 + [scene(1)] * 30 + [digit("3")] * 5 + [scene(2)] * 4 + [digit("7")] * 3
    video = write_video(tmp_path / "mixed.avi", frames)
    inbox = tmp_path / "inbox"
    done = cli("predict", model, "--source", video, "--json", "--collect", inbox)
    assert done.code == 0, done.err
    rows = [json.loads(line) for line in done.out.splitlines()]
    unknown_frames = {r["frame"] for r in rows if r["unknown"]}
    assert unknown_frames == set(range(5, 35)) | set(range(40, 44))
    pictures = kept(inbox)
    assert [p.parent.name for p in pictures] == ["unknown", "unknown"]
    sidecars = sorted(json.loads(p.with_suffix(".json").read_text())["frame"] for p in pictures)
    assert sidecars == [5, 40]  # the first frame of each scene; the 29 and 3 after them are near-identical
    side = json.loads(pictures[0].with_suffix(".json").read_text())
    assert side["rule"] == "unknown" and side["answer"] == "unknown" and side["model"]["file"] == model.name
    assert side["source"] == str(video) and side["time"].endswith("Z") and side["classes"][0]["label"] in "0123456789"
    assert Image.open(pictures[0]).size == (SIDE, SIDE)  # the frame as captured, not the model's 28x28 input
    assert "collect: kept 2" in done.err and "32 near-identical" in done.err


def test_a_tiny_quota_stops_collecting_and_says_so_once(model, cli, tmp_path):
    video = write_video(tmp_path / "scenes.avi", [scene(s) for s in range(40)])
    inbox = tmp_path / "inbox"
    done = cli("predict", model, "--source", video, "--collect", inbox, "--collect-max-mb", "0.02")
    assert done.code == 0, done.err
    assert done.err.count("reached its 0.02 MB quota") == 1
    size = sum(p.stat().st_size for p in inbox.rglob("*") if p.is_file())
    assert 0 < size <= 20_000 and len(kept(inbox)) >= 1
    assert "not kept: the folder is full" in done.err.splitlines()[-1]


def test_files_are_kept_as_they_are_under_the_predicted_label(model, cli, tmp_path):
    inbox = tmp_path / "inbox"
    done = cli("predict", model, IMAGES / "4", "--collect", inbox, "--collect-when", "class=4", "--csv")
    assert done.code == 0, done.err
    pictures = kept(inbox)
    assert pictures and all(p.parent.name == "4" for p in pictures)
    for picture in pictures:
        side = json.loads(picture.with_suffix(".json").read_text())
        assert picture.read_bytes() == Path(side["file"]).read_bytes() and side["rule"] == "class=4"
    assert done.out.splitlines()[0].startswith("file,rank")  # the rows are predict's, unchanged


def test_margin_asks_for_two_classes_and_shows_only_the_top_k(model, cli, tmp_path):
    done = cli("predict", model, IMAGES / "8", "--json", "--collect", tmp_path / "inbox", "--collect-when", "margin<1")
    rows = [json.loads(line) for line in done.out.splitlines()]
    assert done.code == 0 and all(len(r["classes"]) == 1 for r in rows)
    side = json.loads(next((tmp_path / "inbox").rglob("*.json")).read_text())
    assert len(side["classes"]) == 2 and side["rule"] == "margin<1"


def test_the_lean_path_takes_the_collect_options():
    from edgecls.entry import predict_arguments

    found = predict_arguments(["predict", str(REFERENCE), "a.png", "--collect", "inbox", "--collect-when",
                               "unknown,sample=0.1", "--collect-max-mb", "5"])
    assert found["collect"] == "inbox" and found["collect_when"] == ["unknown,sample=0.1"]
    assert found["collect_max_mb"] == 5.0
    # repeated or odd values go to the Typer app, which answers the same (tests/test_entry.py)
    assert predict_arguments(["predict", str(REFERENCE), "a.png", "--collect-when", "a", "--collect-when", "b"]) is None
    assert predict_arguments(["predict", str(REFERENCE), "a.png", "--collect-max-mb", "1e3"]) is None


@pytest.mark.parametrize("rule", ["sometimes", "uncertain<2", "every=-5s", "sample=0", "class=seven"])
def test_bad_rules_are_one_line_errors(model, cli, tmp_path, rule):
    done = cli("predict", model, IMAGES / "1", "--collect", tmp_path / "inbox", "--collect-when", rule)
    assert done.code == 2 and len(done.err.strip().splitlines()) == 1 and rule.split("<")[0].split("=")[0] in done.err


def test_collect_options_without_a_folder_and_unknown_without_a_rule_are_refused(cli, tmp_path):
    done = cli("predict", REFERENCE, IMAGES / "1", "--collect-when", "unknown")
    assert done.code == 2 and "need --collect DIR" in done.err
    done = cli("predict", plain_reference(tmp_path), IMAGES / "1", "--collect", tmp_path / "inbox",
               "--collect-when", "unknown")
    assert done.code == 2 and "has no unknown rule" in done.err
    assert not (tmp_path / "inbox").exists()
    # A run that fails before it keeps a picture leaves no empty folder: no image; a source that does not open.
    done = cli("predict", REFERENCE, tmp_path / "nope", "--collect", tmp_path / "inbox")
    assert done.code == 2 and "no images to classify" in done.err
    done = cli("predict", REFERENCE, "--source", tmp_path / "nope.mp4", "--collect", tmp_path / "inbox")
    assert done.code == 2 and "nope.mp4" in done.err
    assert not (tmp_path / "inbox").exists()
    # ... nor does a run whose every picture the disk's reserve turned away; the summary says why.
    done = cli("predict", REFERENCE, IMAGES / "1", "--collect", tmp_path / "inbox", "--collect-when", "sample=1",
               "--collect-reserve-mb", "1e6")
    assert done.code == 0 and not (tmp_path / "inbox").exists()
    assert "kept none" in done.err and "not kept: the disk is down to its reserve" in done.err.splitlines()[-1]
    # A broken link where the folder should be is refused before any work, and called what it is.
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    done = cli("predict", REFERENCE, IMAGES / "1", "--collect", tmp_path / "link")
    assert done.code == 2 and done.out == "" and "is a broken link" in done.err


def test_rules_fire_as_written(model):
    classifier = Classifier(model)
    rules = parse_when(["every=10s", "sample=1"])
    collector = Collector("/tmp/unused-collect", rules, model, classifier.labels)
    answer = classifier.classify(digit("2"))
    assert collector.fired(answer, False, 100.0).text == "every=10s"
    collector._last_kept_at["every=10s"] = 100.0
    assert collector.fired(answer, False, 105.0).text == "sample=1"  # within the period: the next rule
    assert parse_when(["every=2m"])[0].value == 120.0 and parse_when(["uncertain<0.6, class=3"])[1].value == "3"
    with pytest.raises(EdgeclsError):
        Collector("/tmp/unused-collect", parse_when(["class=nope"]), model, classifier.labels)


def test_a_kill_mid_collection_leaves_no_half_written_picture(model, tmp_path):
    """SIGKILL a predict that is writing pictures: every picture it left is whole (it decodes) and its
    sidecar, when there, parses; the hidden temporaries a kill may leave go with the next run."""
    video = write_video(tmp_path / "long.avi", [scene(s) for s in range(400)], fps=25)
    inbox = tmp_path / "inbox"
    child = subprocess.Popen([sys.executable, "-m", "edgecls", "predict", str(model), "--source", str(video),
                              "--collect", str(inbox)], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    deadline = time.monotonic() + 60
    while len(kept(inbox)) < 20 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert len(kept(inbox)) >= 20
    for picture in kept(inbox):
        Image.open(picture).load()  # a truncated JPEG raises
        sidecar = picture.with_suffix(".json")
        if sidecar.exists():
            assert json.loads(sidecar.read_text())["rule"] == "unknown"
    Collector(inbox, parse_when(["unknown"]), model, Classifier(model).labels)  # the next run tidies up
    assert not [p for p in inbox.rglob(".*") if p.is_file()]


def test_disagree_keeps_what_a_second_model_answers_otherwise(model, cli, tmp_path):
    """The uncalibrated reference as the shadow agrees with the calibrated model on every 5 (no picture
    kept); one with other labels is refused; one whose last layer is negated disagrees on every image it
    runs on (every second one)."""
    inbox = tmp_path / "inbox"
    same = cli("predict", model, IMAGES / "5", "--collect", inbox, "--collect-when", "disagree", "--shadow", REFERENCE,
               "--shadow-every", "1")
    assert same.code == 0 and not kept(inbox) and "the second model ran on" in same.err
    from edgecls.runtime.metadata import embed_metadata, read_metadata

    meta = read_metadata(REFERENCE.read_bytes())
    other = tmp_path / "other" / "model.tflite"
    other.parent.mkdir()
    shifted = meta["labels"][1:] + meta["labels"][:1]
    other.write_bytes(embed_metadata(REFERENCE.read_bytes(), {**meta, "labels": shifted}))
    done = cli("predict", model, IMAGES / "5", "--collect", tmp_path / "in2", "--collect-when", "disagree",
               "--shadow", other, "--shadow-every", "2")
    assert done.code == 2 and "other labels" in done.err  # a shadow must answer in the same classes
    wrong = tmp_path / "wrong" / "model.tflite"  # same labels, its last layer's weights negated: it disagrees
    wrong.parent.mkdir()
    from edgecls.calibrate.graph import find_tail
    from edgecls.tflite.graph import load_model, producers, serialize

    plain = plain_reference(tmp_path)
    meta = read_metadata(plain.read_bytes())
    graph = load_model(plain.read_bytes())
    sub = graph.subgraphs[0]
    last = sub.operators[producers(sub)[find_tail(graph).logits]]  # the FULLY_CONNECTED that makes the logits
    buffer = graph.buffers[sub.tensors[int(last.inputs[1])].buffer]
    weights = np.asarray(buffer.data, np.uint8).view(np.int8).astype(np.int16)
    buffer.data = np.clip(-weights, -127, 127).astype(np.int8).view(np.uint8)
    wrong.write_bytes(embed_metadata(serialize(graph), meta))
    count = len(list((IMAGES / "5").iterdir()))
    done = cli("predict", model, IMAGES / "5", "--collect", tmp_path / "in3", "--collect-when", "disagree",
               "--shadow", wrong, "--shadow-every", "2")
    assert done.code == 0 and f"the second model ran on {(count + 1) // 2}" in done.err
    assert len(kept(tmp_path / "in3")) >= count // 2 - 1  # nearly every image it ran on
    assert all(json.loads(p.with_suffix(".json").read_text())["rule"] == "disagree" for p in kept(tmp_path / "in3"))


def test_a_full_folder_is_said_once_and_a_smaller_picture_that_fits_is_still_kept(model, tmp_path):
    """The quota's message says what happens from then on: a picture that does not fit is not kept, one that
    fits is (a server's disk may free up)."""
    import io

    def png(pixels: np.ndarray) -> bytes:
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="PNG")
        return out.getvalue()

    said: list[str] = []
    classifier = Classifier(model)
    collector = Collector(tmp_path / "inbox", parse_when(["sample=1"]), model, classifier.labels, max_mb=0.02,
                          log=said.append)
    noise = [np.random.default_rng(seed).integers(0, 256, (60, 60, 3), dtype=np.uint8) for seed in range(3)]
    small = png(scene(7)[:8, :8])
    assert len(png(noise[0])) > 10_000 and len(small) < 1_000
    answer = classifier.classify(digit("2"))
    for content in [png(noise[0]), png(noise[1]), small]:  # the second passes the quota; the third fits
        collector.consider(answer, False, None, "test", content=content)
    assert collector.counts.kept == 2 and collector.counts.over_quota == 1
    assert len(said) == 1 and "after 1 kept: a picture that does not fit is not kept" in said[0]
    assert "collect: kept 2 " in collector.summary()


def test_a_picture_already_in_the_folder_is_not_kept_again(model, cli, tmp_path):
    """Collecting the same files twice keeps each once, also after a person sorted the first run's pictures
    into class folders: one picture under two labels would be trained as both."""
    inbox = tmp_path / "inbox"
    first = cli("predict", model, IMAGES / "4", "--collect", inbox, "--collect-when", "class=4")
    assert first.code == 0, first.err
    pictures = kept(inbox)
    assert len(pictures) > 3
    sorted_by_hand = inbox / "9"
    sorted_by_hand.mkdir()
    pictures[0].rename(sorted_by_hand / pictures[0].name)  # the picture moves, its sidecar stays behind
    again = cli("predict", model, IMAGES / "4", "--collect", inbox, "--collect-when", "class=4")
    assert again.code == 0, again.err
    assert len(kept(inbox)) == len(pictures)
    assert "collect: kept 0 " in again.err and f"{len(pictures)} already in the folder not kept again" in again.err


def test_pictures_that_only_hash_alike_are_both_kept(model, tmp_path, monkeypatch):
    """Small glyphs hash alike: two printed 2s in other strokes can be within the near-identical bits. The
    aligned pixels decide, so both are kept; the same picture again is still skipped."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from printed_digits import printed_digit

    from edgecls.runtime.collect import DEDUPE_BITS
    from edgecls.runtime.phash import aligned_similarity, hamming, phash

    rng = np.random.default_rng(0)
    pictures = [np.repeat(printed_digit(n % 10, rng)[..., None], 3, axis=2) for n in range(200)]
    hashes = phash(np.stack(pictures))
    pair = next(((a, b) for a in range(len(pictures)) for b in range(a + 1, len(pictures))
                 if hamming(hashes[a], hashes[b]) <= DEDUPE_BITS
                 and aligned_similarity(pictures[a], pictures[b]) < 0.8), None)
    assert pair is not None  # the case exists among printed digits (the field loop's walkthrough met it)
    classifier = Classifier(model)
    collector = Collector(tmp_path / "inbox", parse_when(["sample=1"]), model, classifier.labels)
    answer = classifier.classify(digit("2"))
    for index in (*pair, pair[1]):
        collector.consider(answer, False, None, "test", pixels=pictures[index])
    assert collector.counts.kept == 2 and collector.counts.similar == 1


def test_two_flat_pictures_of_one_level_are_near_identical(model, tmp_path):
    """A lens cap or a blank wall has no pattern for the aligned pixel check (it scores 0): two flat frames of one
    level are one picture, of another level two."""
    classifier = Classifier(model)
    collector = Collector(tmp_path / "inbox", parse_when(["sample=1"]), model, classifier.labels)
    answer = classifier.classify(digit("2"))
    for level in (20, 20, 200):
        collector.consider(answer, False, None, "test", pixels=np.full((SIDE, SIDE, 3), level, np.uint8))
    assert collector.counts.kept == 2 and collector.counts.similar == 1
