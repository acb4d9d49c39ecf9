"""The options records (edgecls.options) as the single source of each command's options: a number's
bounds have one home (edgecls.bounds), and what the records write (a TOML table, a command line) reads
back as the same options."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgecls.errors import EdgeclsError


def _records() -> list[type]:
    from edgecls.audit.options import CheckOptions
    from edgecls.bench.options import BenchOptions
    from edgecls.calibrate.options import CalibrateOptions
    from edgecls.explain.options import ExplainOptions, FlipsOptions
    from edgecls.export.options import ExportOptions, QuantAnalyses, TargetOptions
    from edgecls.runtime.settings import ModelSettings, UnknownAnswer
    from edgecls.search.options import SearchOptions
    from edgecls.serve.options import DeployOptions, LiveOptions, MqttOptions, ServeOptions
    from edgecls.train.options import TrainOptions
    from edgecls.transport.device import RemoteOptions

    return [BenchOptions, CalibrateOptions, CheckOptions, DeployOptions, ExplainOptions, ExportOptions, FlipsOptions,
            LiveOptions, ModelSettings, MqttOptions, QuantAnalyses, RemoteOptions, SearchOptions, ServeOptions,
            TargetOptions, TrainOptions, UnknownAnswer]


def test_a_numbers_bounds_have_one_home_in_edgecls_bounds():
    """An option edgecls.bounds bounds declares no bounds of its own, but those the command line's parser
    shows in --help (range_in_help), and those lie within the documented ones."""
    from edgecls.bounds import BOUNDS
    from edgecls.options import options_of

    seen = 0
    for record in _records():
        for f, spec in options_of(record):
            bound = BOUNDS.get(spec.flag(f.name))
            if bound is None:
                continue
            seen += 1
            where = f"{record.__name__}.{f.name}"
            if not spec.range_in_help:
                assert (spec.low, spec.high) == (None, None), f"{where}: its bounds are edgecls.bounds' alone"
            assert spec.low is None or spec.low >= bound.low, where
            assert spec.high is None or spec.high <= bound.high, where
    assert seen >= 30, "the records' bounded options were not found: the walk is broken"


@pytest.mark.parametrize("record, changes, flag", [
    ("LiveOptions", {"source": "camera:0", "min_stable": 0}, "--min-stable"),
    ("LiveOptions", {"source": "camera:0", "fps": float("nan")}, "--fps"),
    ("TrainOptions", {"epochs": 10**12}, "--epochs"),
    ("TrainOptions", {"accept": 1.0}, "--accept"),
    ("BenchOptions", {"paths": [], "runs": 10**400}, "--runs"),
    ("TrainOptions", {"teacher": "t.tflite", "distill_temperature": 0.0}, "--distill-temperature"),
    ("SearchOptions", {"data": "photos", "target": "host", "max_latency_ms": 0.0}, "--max-latency-ms"),
    ("SearchOptions", {"data": "photos", "target": "host", "max_latency_ms": 5.0, "students": 65}, "--students"),
    ("DeployOptions", {"model": "m.tflite", "to": "pi", "parallel": 0}, "--parallel"),
])
def test_check_refuses_a_value_outside_the_documented_bound_in_its_words(record, changes, flag):
    from edgecls.bounds import BOUNDS
    from edgecls.options import check

    cls = next(r for r in _records() if r.__name__ == record)
    with pytest.raises(EdgeclsError) as raised:
        check(cls(**changes))
    message = str(raised.value)
    assert message.startswith(f"{flag} must be ") and BOUNDS[flag].why in message, message


def test_calibrate_checks_its_nested_unknown_answer_before_any_work(tmp_path):
    from edgecls.calibrate.folder import calibrate_folder
    from edgecls.calibrate.options import CalibrateOptions
    from edgecls.runtime.settings import UnknownAnswer

    options = CalibrateOptions(tmp_path / "none.tflite", tmp_path, unknown=UnknownAnswer(accept=1.0))
    with pytest.raises(EdgeclsError, match=r"^--accept must be "):
        calibrate_folder(options)  # the bound, not the missing model: checked first
    assert CalibrateOptions("a/m.tflite", "photos").target == Path("a/m_calibrated.tflite")


def test_train_options_read_back_from_the_table_config_toml_keeps():
    from edgecls.options import from_table
    from edgecls.train.options import TrainOptions, options_table

    given = TrainOptions(data="photos", epochs=7, lr=0.003, augment="flip,zoom", backbone="b.tflite", head="mlp",
                         input_range="-1,1", accept=0.9, rule="top", unknown_data="other/", dedupe="exact")
    table = {key: value for key, value in options_table(given).items() if value is not None}  # TOML has no null
    again = TrainOptions(**from_table(TrainOptions, table, "config.toml"))
    assert again == given
    keras_run = options_table(TrainOptions(data="photos", accept=0.9))
    assert not {"accept", "rule", "unknown_data"} & set(keras_run)  # its export fits the unknown answer
    taught = TrainOptions(data="photos", arch="mobile", alpha=0.5, teacher="t.tflite", distill_alpha=0.3,
                          distill_temperature=2.0, unlabeled="more/", mixup=0.4)
    table = {key: value for key, value in options_table(taught).items() if value is not None}
    assert TrainOptions(**from_table(TrainOptions, table, "config.toml")) == taught


def test_the_systemd_units_command_line_reads_back_as_the_same_options(tmp_path):
    """ExecStart is generated from the records' fields (edgecls.options.argv): parsed by `edgecls serve`
    itself, it gives the options it was made from; the MQTT credentials file is not on it (a credential)."""
    import typer.main

    from edgecls.cli import app
    from edgecls.runtime.settings import CollectSettings, ModelSettings
    from edgecls.serve.options import LiveOptions, MqttOptions, ServeOptions
    from edgecls.serve.unit import serve_arguments

    ca = tmp_path / "ca.pem"
    options = ServeOptions(
        model=tmp_path / "m.tflite", port=9000, max_body_mb=2.5, settings=ModelSettings(resize="nearest"),
        live=LiveOptions(source="camera:1", every=2, on_change=True, capture="opencv", reconnect=0.5),
        mqtt=MqttOptions(url="mqtt://broker/home/feeder", credentials_file=tmp_path / "secret", ca_file=ca),
        collecting=CollectSettings(collect=str(tmp_path / "inbox"), collect_when=["unknown", "margin<0.2"],
                                   shadow_every=3), drift_window=100)
    words = serve_arguments(options)
    assert "--mqtt-credentials" not in words and str(tmp_path / "secret") not in words
    command = typer.main.get_command(app).commands["serve"]
    with command.make_context("serve", words[1:]) as ctx:
        params = {name: getattr(value, "value", value) for name, value in ctx.params.items()}
    assert Path(params["model"]) == options.model
    assert (params["port"], params["max_body_mb"], params["resize"]) == (9000, 2.5, "nearest")
    assert (params["source"], params["every"], params["on_change"], params["capture"], params["reconnect"]) == (
        "camera:1", 2, True, "opencv", 0.5)
    assert (params["url"], Path(params["ca_file"])) == ("mqtt://broker/home/feeder", ca)
    assert (Path(params["collect"]), ",".join(params["collect_when"]), params["shadow_every"]) == (
        tmp_path / "inbox", "unknown,margin<0.2", 3)
    assert params["drift_window"] == 100
    defaults = {f.name: f.default for f in dataclasses.fields(LiveOptions)}
    assert params["min_stable"] == defaults["min_stable"]  # left at its default: not on the command line
