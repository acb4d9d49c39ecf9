"""The typed records of what train, export and --target write (edgecls.artifacts, the metadata of
runtime.metadata): files of today's and of older versions read, and write back byte for byte; both
training routes write the run directory through the same record, and `train --config` reproduces
either route."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import colour_folder

from edgecls.artifacts import (
    ExportIndex,
    RunConfig,
    RunRecord,
    history_text,
    read_history,
    read_json,
    write_export,
)
from edgecls.errors import EdgeclsError
from edgecls.runtime.metadata import ModelMetadata, embed_metadata, read_metadata
from edgecls.train.options import read_config

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "models" / "digits-seed"


# ---------------------------------------------------------------------- the shipped reference model
def test_the_reference_models_files_read_and_write_back_byte_for_byte():
    config = REFERENCE / "config.toml"
    assert RunConfig.read(config).text() == config.read_text()
    index = REFERENCE / "export.json"
    record = ExportIndex.read(index, "")
    assert record.text() == index.read_text()
    assert [m.file for m in record.models] == ["model_float32.tflite", "model_int8.tflite"]
    metrics = REFERENCE / "metrics.json"
    assert json.dumps(read_json(metrics), indent=1) == metrics.read_text()
    for path in REFERENCE.glob("*.tflite"):
        content = path.read_bytes()
        document = read_metadata(content)
        metadata = ModelMetadata.from_json(document)
        assert metadata.to_json() == document and metadata.input.height == 28
        assert embed_metadata(content, metadata) == content


def test_export_json_of_every_route_keeps_its_own_keys_in_order(tmp_path):
    """export's (with calibration and versions), --target's (decision, candidates, no versions) and the
    backbone route's (no calibration): one record, each file as it was."""
    export = json.loads((REFERENCE / "export.json").read_text())
    target = {"format": "edgecls.export/1", "created": "t", "source": export["source"], "options": {"target": "host"},
              "check": {"split": "val"}, "decision": {"chosen": {"name": "int8"}},
              "models": [{"file": "model.tflite", "mode": "int8", "variant": "int8", "backend": "converter",
                          "size_bytes": 1, "accuracy": 1.0, "agreement": 1.0, "input": {}, "output": {},
                          "sha256": "0" * 64}],
              "candidates": [{"name": "int8"}], "seconds": 1.5, "later": {"a minor version's key": True}}
    for doc in (export, target):
        (tmp_path / "export.json").write_text(json.dumps(doc, indent=1) + "\n")
        again = ExportIndex.read(tmp_path / "export.json", "")
        assert again.text() == json.dumps(doc, indent=1) + "\n"
        assert list(again.to_json()) == list(doc)


def test_a_malformed_export_json_is_one_line_naming_the_file(tmp_path):
    for text in ("[1]", '{"models": 3}', '{"models": [{"file": "x.tflite"}]}', "{"):
        (tmp_path / "export.json").write_text(text)
        with pytest.raises(EdgeclsError, match="export.json is malformed .*: do it again"):
            ExportIndex.read(tmp_path / "export.json", "do it again")


def test_write_export_writes_the_index_last_and_every_file_it_lists(tmp_path):
    index = ExportIndex.read(REFERENCE / "export.json", "")
    files = {m.file: (REFERENCE / m.file).read_bytes() for m in index.models}
    written = write_export(tmp_path / "out", files, ["a", "b"], index)
    assert [p.name for p in written] == [*files, "labels.txt", "export.json"]
    assert (tmp_path / "out" / "export.json").read_text() == (REFERENCE / "export.json").read_text()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary left


# ---------------------------------------------------------------------- the run directory
def run_record() -> RunRecord:
    return RunRecord(labels=["cat", "dog"],
                     config=RunConfig({"data": "photos", "out": "runs/x", "img_size": 16, "color": "rgb", "seed": 3,
                                       "lr": 0.001}, {"edgecls": "0.1.0"}),
                     split={"format": "edgecls.split/1", "fingerprint": "f", "train": [0, 1], "val": [2],
                            "test": [3]},
                     metrics={"test_accuracy": 0.5, "best_epoch": 2, "counts": {"train": 2}},
                     history={"loss": [0.9, 0.5], "accuracy": [0.5, 0.75], "val_loss": [1.0, 0.7],
                              "val_accuracy": [0.5, 1.0], "phase": ["frozen", "fine-tune"]},
                     transfer={"format": "edgecls.transfer/1", "head": {"kind": "linear"}})


def test_a_run_record_written_reads_back_equal_and_writes_the_same_bytes(tmp_path):
    record = run_record()
    (tmp_path / "a").mkdir()
    record.write(tmp_path / "a")
    again = RunRecord.read(tmp_path / "a")
    again.history = read_history(tmp_path / "a" / "history.csv")
    assert again == record
    assert (tmp_path / "a" / "history.csv").read_text().splitlines()[:2] == [
        "epoch,phase,accuracy,loss,val_accuracy,val_loss", "1,frozen,0.5,0.9,0.5,1.0"]
    (tmp_path / "b").mkdir()
    again.write(tmp_path / "b")
    for name in ("labels.txt", "config.toml", "split.json", "metrics.json", "history.csv", "transfer.json"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes(), name
    assert (tmp_path / "a" / "curves.png").is_file()
    assert read_history(tmp_path / "a" / "history.csv") == record.history
    assert history_text(record.history) == (tmp_path / "a" / "history.csv").read_text()


def test_the_records_say_how_many_test_images_leak_and_when_nothing_looked(tmp_path):
    """bench's leak note reads the run's records: train's recorded groups (an oversized one spans train and
    test here), and edgecls data check's finding when it has looked; None when the split did not group."""
    from dataclasses import replace

    record = run_record()
    assert record.leaked_test_images() is None  # a split made before --dedupe: nothing looked
    grouped = {**record.split, "dedupe": {"mode": "near", "groups": [[2, 3]], "oversized": [[0, 3]]}}
    assert replace(record, split=grouped).leaked_test_images() == 1  # image 3 (test) with 0 (train)
    apart = {**record.split, "dedupe": {"mode": "near", "groups": [[0, 1]], "oversized": []}}
    assert replace(record, split=apart).leaked_test_images() == 0
    off = {**record.split, "dedupe": {"mode": "off", "groups": [], "oversized": []}}
    assert replace(record, split=off).leaked_test_images() is None
    record.split = off
    record.write(tmp_path)
    (tmp_path / "datacheck").mkdir()
    (tmp_path / "datacheck" / "datacheck.json").write_text(json.dumps({"leakage": {"leaked_test_images": ["a", "b"]}}))
    assert RunRecord.read(tmp_path).leaked_test_images() == 2  # data check's finding
    (tmp_path / "datacheck" / "datacheck.json").write_text("{broken")
    assert RunRecord.read(tmp_path).leaked_test_images() is None  # a courtesy: never an error


def test_a_backbone_runs_config_gives_train_its_route_back_in_both_formats(tmp_path):
    """Today's config.toml names the backbone in [train]; one written before kept it in [transfer]: both
    give `train --config` the backbone and its head options, and not the input size and colour (the
    backbone fixes them: an option given with --backbone is refused)."""
    new = tmp_path / "new.toml"
    new.write_text(RunConfig({"data": "photos", "out": "runs/x", "img_size": 128, "color": "rgb", "epochs": 200,
                              "seed": 0, "backbone": "/m/mobilenet.tflite", "head": "mlp", "views": 2}).text())
    old = tmp_path / "old.toml"
    old.write_text('# edgecls train options, resolved (edgecls train --config this-file reproduces the run)\n'
                   '[train]\ndata = "photos"\nout = "runs/x"\nimg_size = 128\ncolor = "rgb"\nepochs = 200\nseed = 0\n'
                   '\n[versions]\nedgecls = "0.1.0"\n\n[transfer]\nbackbone = "/m/mobilenet.tflite"\nhead = "mlp"\n'
                   'hidden = 128\nviews = 2\n')
    for path in (new, old):
        values = read_config(path)
        assert values["backbone"] == "/m/mobilenet.tflite" and values["head"] == "mlp" and values["views"] == 2
        assert "img_size" not in values and "color" not in values and values["epochs"] == 200
    assert RunConfig.read(old).text() == old.read_text()  # an older file writes back as it was
    cnn = read_config(REFERENCE / "config.toml")
    assert cnn["img_size"] == 28 and cnn["arch"] == "seed" and "backbone" not in cnn


@pytest.mark.slow
def test_train_config_of_a_backbone_run_trains_the_same_head(models, cli, tmp_path):
    """Before: `train --config` read [train] only and silently trained a from-scratch CNN."""
    data = colour_folder(tmp_path / "data")
    first = cli("train", "--data", data, "--backbone", models.rgb_int8, "--out", tmp_path / "first", "--epochs", 20,
                "--threads", 1, "--views", 2, "--quiet")
    assert first.code == 0, first.err
    again = cli("train", "--config", tmp_path / "first" / "config.toml", "--out", tmp_path / "again", "--quiet")
    assert again.code == 0, again.err
    one, two = RunRecord.read(tmp_path / "first"), RunRecord.read(tmp_path / "again")
    assert two.transfer is not None and not (tmp_path / "again" / "model.keras").exists()
    assert two.config.train["backbone"] == one.config.train["backbone"] == str(Path(models.rgb_int8).resolve())
    assert two.config.train["views"] == 2 and two.transfer["options"]["threads"] == 1
    assert two.split == {**one.split}  # the same seed, the same split
    assert two.metrics["tflite"]["test_accuracy"] == one.metrics["tflite"]["test_accuracy"]
    assert two.metrics["epochs_run"] == one.metrics["epochs_run"]


def test_a_copied_run_directory_still_opens_through_the_records(tmp_path):
    """Files written by the code before the records (models/digits-seed's config and metrics, a split
    and labels as train wrote them) open as a run."""
    from edgecls.rundir import open_run

    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.toml", "metrics.json", "labels.txt"):
        shutil.copy(REFERENCE / name, run / name)
    (run / "split.json").write_text(json.dumps({"train": [0], "val": [1], "test": [2]}))
    (run / "transfer.json").write_text("{}")  # no model.keras: a backbone run
    opened = open_run(run)
    assert (opened.img_size, opened.color, opened.seed, opened.data) == (28, "grayscale", 0, "digits")
    assert opened.training_metrics()["test_accuracy"] == read_json(REFERENCE / "metrics.json")["test_accuracy"]
