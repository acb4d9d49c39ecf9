"""The files a trained model is made of, as typed records with one writer each: what `edgecls train`
(both routes), `edgecls export` and `export --target` write, and what RunDir and bench read back.

    run directory  RunRecord: labels.txt, config.toml (RunConfig), split.json, metrics.json,
                   history.csv and curves.png, transfer.json (a .tflite backbone run); the route
                   writes its model itself: model.keras (Keras), or export/ (below)
    export folder  ExportIndex (export.json: what was made, from what, how each file scored) with the
                   .tflite files and labels.txt, all written by write_export
    each .tflite   its metadata: edgecls.runtime.metadata.ModelMetadata

Reading checks what a reader relies on and says what is wrong in one line; files written by older
versions still read, and a file read and written again is the same bytes. No TensorFlow here.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgecls import jsonio
from edgecls.atomic import write_set, write_text_atomic
from edgecls.errors import EdgeclsError
from edgecls.files import read_capped
from edgecls.records import Record, omitted
from edgecls.runtime.labels import MAX_LABELS_BYTES, labels_from_bytes, labels_text
from edgecls.runtime.metadata import ModelSource
from edgecls.tomlio import MAX_TOML_BYTES, parse_toml, path_from, toml_text

# The files of a run directory (edgecls train writes them, export and bench read them).
MODEL_FILE = "model.keras"
LABELS_FILE = "labels.txt"
CONFIG_FILE = "config.toml"
SPLIT_FILE = "split.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
CURVES_FILE = "curves.png"
# A run made by `edgecls train --backbone FILE.tflite` (edgecls.transfer) has this instead of a
# model.keras: its only model is the .tflite its export/export.json lists.
TRANSFER_FILE = "transfer.json"
EXPORT_DIR = "export"  # RUN_DIR/export: what edgecls export writes by default
EXPORT_REPORT = "export.json"  # its index of the files written, read by bench
EXPORT_FORMAT = "edgecls.export/1"  # export.json's format
# RUN_DIR/datacheck/datacheck.json: what `edgecls data check RUN` found (bench reads its leakage count).
DATACHECK_DIR = "datacheck"
DATACHECK_FILE = "datacheck.json"
RUN_FILES = (MODEL_FILE, LABELS_FILE, CONFIG_FILE, SPLIT_FILE)
SPLIT_PARTS = ("train", "val", "test")
MAX_JSON_BYTES = 256 << 20  # split.json of a million images is ~8 MB; this only stops /dev/zero
CONFIG_WHAT = "run configuration"
CONFIG_HEADER = "edgecls train options, resolved (edgecls train --config this-file reproduces the run)"


def model_file_name(variant: str) -> str:
    """An exported model's file name in the export folder: model_<variant>.tflite."""
    return f"model_{variant}.tflite"


def read_json(path: Path) -> dict:
    """A JSON object from a run's file (size-capped), or a one-line error naming the file."""
    return parse_json(_read(path), path)


def parse_json(data: bytes, path: Path) -> dict:
    """The bytes of the JSON file `path` as an object, or a one-line error naming the file (strict:
    NaN, Infinity or a 5,000-digit integer is refused with the field it is in, as jsonio does)."""
    try:
        doc = jsonio.parse_json(data)
    except jsonio.JSONValueError as exc:
        raise EdgeclsError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EdgeclsError(f"{path} is not a JSON object")
    return doc


def _read(path: Path, what: str = "", limit: int = MAX_JSON_BYTES) -> bytes:
    """A run file's bytes (regular files only, capped), or a one-line error naming it."""
    try:
        return read_capped(path, limit)
    except OSError as exc:
        raise EdgeclsError(f"cannot read {what + ' ' if what else ''}{path}: {exc.strerror or exc}") from None


class IncompleteRun(EdgeclsError):
    """A run directory with some of its records missing (a folder of exports alone, say)."""


# ---------------------------------------------------------------------- config.toml
@dataclass
class RunConfig:
    """config.toml: the resolved options of the route that made the run (so `train --config`
    reproduces it) and the package versions. A .tflite backbone run names its backbone in [train];
    one made before that kept it in a [transfer] table, which is read and written back as it is."""

    train: dict[str, Any]
    versions: dict[str, str] = field(default_factory=dict)
    transfer: Optional[dict[str, Any]] = None

    @property
    def data(self) -> str:
        return self.train["data"]

    @property
    def img_size(self) -> int:
        return self.train["img_size"]

    @property
    def color(self) -> str:
        return self.train["color"]

    @property
    def seed(self) -> int:
        return self.train.get("seed", 0)

    @property
    def backbone(self) -> Optional[str]:
        """The .tflite backbone of a backbone run ([train], or an older run's [transfer] table)."""
        found = self.train.get("backbone") or (self.transfer or {}).get("backbone")
        return found if isinstance(found, str) else None

    def text(self) -> str:
        tables = {"train": self.train, **({"versions": self.versions} if self.versions else {})}
        if self.transfer is not None:
            tables["transfer"] = self.transfer
        return toml_text(tables, header=CONFIG_HEADER)

    @classmethod
    def read(cls, path: Path) -> RunConfig:
        return cls.parse(_read(path, CONFIG_WHAT, MAX_TOML_BYTES), path)

    @classmethod
    def parse(cls, data: bytes, path: Path) -> RunConfig:
        """config.toml's bytes, checked (one-line errors naming `path`)."""
        doc = parse_toml(data, path, CONFIG_WHAT)
        train = doc.get("train", {})
        if isinstance(train, dict):  # a path that is not UTF-8, as toml_text writes it ({fs_bytes = ...})
            train = {key: path_from(value) for key, value in train.items()}
        if not isinstance(train, dict) or not isinstance(train.get("data"), str):
            raise EdgeclsError(f"{path} has no [train] table naming the data")
        img_size, color, seed = train.get("img_size"), train.get("color"), train.get("seed", 0)
        if not (isinstance(img_size, int) and color in ("grayscale", "rgb") and isinstance(seed, int)):
            raise EdgeclsError(f"{path} is malformed: img_size, color or seed missing or wrong")
        versions, transfer = doc.get("versions", {}), doc.get("transfer")
        if isinstance(transfer, dict):
            transfer = {key: path_from(value) for key, value in transfer.items()}
        return cls(train, versions if isinstance(versions, dict) else {},
                   transfer if isinstance(transfer, dict) else None)


# ---------------------------------------------------------------------- the run directory
@dataclass
class RunRecord:
    """A run directory's files but the model, as every training route writes them."""

    labels: list[str]
    config: RunConfig
    split: dict[str, Any]  # split.json (edgecls.data.Split.to_json; load_split checks it against the data)
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics.json: the route's figures
    history: dict[str, list] = field(default_factory=dict)  # history.csv: a list per column; "phase" per epoch
    transfer: Optional[dict[str, Any]] = None  # transfer.json: a .tflite backbone run's backbone and head
    # datacheck/datacheck.json's leakage, when `edgecls data check RUN` has looked (read, never written here)
    datacheck_leakage: Optional[dict[str, Any]] = None

    @property
    def best_epoch(self) -> Optional[int]:
        return self.metrics.get("best_epoch")

    def leaked_test_images(self) -> Optional[int]:
        """How many test images have a near-duplicate in the train part, as the run's records say:
        `edgecls data check`'s finding (which counts the validation part too), else the groups train
        recorded with its split (those it could not keep on one side: too large, or across the parts
        the data came with); None when nothing looked (a split made with --dedupe off, or before it)."""
        found = (self.datacheck_leakage or {}).get("leaked_test_images")
        if isinstance(found, list):
            return len(found)
        dedupe = self.split.get("dedupe")
        if not isinstance(dedupe, dict) or dedupe.get("mode") in (None, "off"):
            return None
        train, test = set(self.split["train"]), set(self.split["test"])
        groups = [group for key in ("groups", "oversized") for group in dedupe.get(key) or []
                  if isinstance(group, list)]
        return len({i for group in groups if train.intersection(group) for i in group if i in test})

    def write(self, folder: Path) -> list[str]:
        """Every file into `folder` (a staged run directory); returns notes (curves.png not drawn)."""
        from edgecls.plotting import plot_history

        write_text_atomic(folder / LABELS_FILE, labels_text(self.labels))
        write_text_atomic(folder / CONFIG_FILE, self.config.text())
        write_text_atomic(folder / SPLIT_FILE, jsonio.dumps(self.split))
        write_text_atomic(folder / HISTORY_FILE, history_text(self.history))
        if self.transfer is not None:
            write_text_atomic(folder / TRANSFER_FILE, jsonio.dumps(self.transfer, indent=1))
        write_text_atomic(folder / METRICS_FILE, jsonio.dumps(self.metrics, indent=1))
        if plot_history(self.history, folder / CURVES_FILE, self.best_epoch) is None:
            return [f"{CURVES_FILE} not drawn: matplotlib is not installed here (pip install matplotlib)"]
        return []

    @classmethod
    def read(cls, folder: Path) -> RunRecord:
        """The records of a run directory, checked (one-line errors); history.csv is not read (no reader
        needs it: read_history reads it back)."""
        if not folder.is_dir():
            raise EdgeclsError(f"{folder} is not a run directory")
        transfer = (folder / TRANSFER_FILE).is_file()
        needed = [name for name in RUN_FILES if not (transfer and name == MODEL_FILE)]
        present = [name for name in needed if (folder / name).is_file()]
        if not present:
            raise EdgeclsError(f"{folder} is not a run directory (no {', '.join(RUN_FILES)}; make one with "
                               "edgecls train)")
        missing = [name for name in needed if name not in present]
        if missing:
            raise IncompleteRun(f"run directory {folder} is incomplete: {', '.join(missing)} missing")
        # Every file read once, as bytes (capped, regular files only), then each parsed by its format.
        caps = {CONFIG_FILE: (CONFIG_WHAT, MAX_TOML_BYTES), LABELS_FILE: ("labels file", MAX_LABELS_BYTES)}
        wanted = [CONFIG_FILE, SPLIT_FILE, LABELS_FILE, METRICS_FILE, TRANSFER_FILE]
        raw = {name: _read(folder / name, *caps.get(name, ("", MAX_JSON_BYTES))) for name in wanted
               if (folder / name).is_file()}
        split = parse_json(raw[SPLIT_FILE], folder / SPLIT_FILE)
        if not all(isinstance(split.get(part), list) for part in SPLIT_PARTS):
            raise EdgeclsError(f"{folder / SPLIT_FILE} is malformed: it needs train, val and test index lists")
        metrics = parse_json(raw[METRICS_FILE], folder / METRICS_FILE) if METRICS_FILE in raw else {}
        extra = parse_json(raw[TRANSFER_FILE], folder / TRANSFER_FILE) if transfer else None
        config = RunConfig.parse(raw[CONFIG_FILE], folder / CONFIG_FILE)
        labels = labels_from_bytes(raw[LABELS_FILE], folder / LABELS_FILE)
        return cls(labels, config, split, metrics, transfer=extra, datacheck_leakage=_datacheck_leakage(folder))


def _datacheck_leakage(folder: Path) -> Optional[dict[str, Any]]:
    """The leakage finding of the run's data check, if one is there and reads (a courtesy: never an error)."""
    path = folder / DATACHECK_DIR / DATACHECK_FILE
    if not path.is_file():
        return None
    try:
        found = parse_json(_read(path), path).get("leakage")
    except EdgeclsError:
        return None
    return found if isinstance(found, dict) else None


def history_text(history: dict[str, list]) -> str:
    """history.csv: one row per epoch over all phases — epoch (from 1, as the log and best_epoch count), its
    phase, then the metrics (sorted)."""
    keys = ["epoch", "phase"] + sorted(k for k in history if k != "phase")
    rows = [",".join(keys)]
    for i, phase in enumerate(history.get("phase", [])):
        rows.append(",".join([str(i + 1), phase] + [repr(history[k][i]) if i < len(history[k]) else ""
                                                    for k in keys[2:]]))
    return "\n".join(rows) + "\n"


def read_history(path: Path) -> dict[str, list]:
    """history.csv back as columns (epoch left out: it is the row's position)."""
    rows = list(csv.DictReader(io.StringIO(read_capped(path, MAX_JSON_BYTES).decode("utf-8"))))
    columns: dict[str, list] = {}
    for row in rows:
        for key, value in row.items():
            if key == "epoch":
                continue
            columns.setdefault(key, []).append(value if key == "phase" else float(value))
    return columns


# ---------------------------------------------------------------------- export.json
@dataclass(kw_only=True)
class ExportEntry(Record):
    """One file an export wrote, and how it scored on its check."""

    file: str
    mode: Optional[str] = None
    variant: Optional[str] = None
    backend: Optional[str] = None
    size_bytes: Optional[int] = None
    kept_float: Optional[dict[str, Any]] = omitted()  # a mixed model: what stayed float
    ratio_to_float32: Optional[float] = omitted()
    accuracy: Optional[float] = None
    agreement: Optional[float] = None
    convert_seconds: Optional[float] = omitted()
    input: Optional[dict[str, Any]] = None  # dtype, scale, zero point
    output: Optional[dict[str, Any]] = None
    sha256: str
    openset: Optional[dict[str, Any]] = omitted()  # its temperature and unknown rule, figures on val and test


@dataclass(kw_only=True)
class ExportIndex(Record):
    """export.json: the files an export wrote (bench reads exactly these, checked by digest), what
    they were made from and with, and each file's check. The route's own parts (options, check,
    decision, candidates) are its free-form JSON."""

    format: str = EXPORT_FORMAT
    created: Optional[str] = None
    source: Optional[ModelSource] = None
    options: Optional[dict[str, Any]] = None
    calibration: Optional[dict[str, Any]] = omitted()  # the calibration set's summary, when one was used
    check: Optional[dict[str, Any]] = None
    decision: Optional[dict[str, Any]] = omitted()  # export --target: why the file was chosen
    versions: Optional[dict[str, str]] = omitted()
    models: list[ExportEntry]
    candidates: Optional[list[dict[str, Any]]] = omitted()  # export --target: every candidate's row
    seconds: Optional[float] = omitted()

    def text(self) -> str:
        return jsonio.dumps(self.to_json(), indent=1) + "\n"

    @classmethod
    def read(cls, path: Path, again: str) -> ExportIndex:
        """export.json, checked as far as bench relies on it; `again` is the advice a malformed file gets."""
        try:
            doc = jsonio.parse_json(read_capped(path, MAX_JSON_BYTES))
            if not isinstance(doc, dict) or not isinstance(doc.get("models"), list) or not all(
                    isinstance(m, dict) for m in doc["models"]):
                raise TypeError("models is not a list of objects")
            return cls.from_json(doc)
        except jsonio.JSONValueError as exc:
            raise EdgeclsError(f"{path} is malformed (not valid JSON: {exc}): {again}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgeclsError(f"{path} is malformed ({type(exc).__name__}): {again}") from None
        except OSError as exc:
            raise EdgeclsError(f"cannot read {path}: {exc.strerror or exc}") from None


def write_export(folder: Path, files: dict[str, bytes], labels: list[str], index: ExportIndex) -> list[Path]:
    """The .tflite files (by file name; other files of the set too, a plot), labels.txt and export.json
    into `folder` as one set (atomic.write_set): all written and synced under a staging folder, then
    renamed into place, export.json last; the previous export's files this one lacks are removed (a
    user's own files stay). Callers hold atomic.folder_lock, so two exports never interleave."""
    return write_set(folder, {**files, LABELS_FILE: labels_text(labels).encode("utf-8"),
                              EXPORT_REPORT: index.text().encode("utf-8")}, listed_models(folder / EXPORT_REPORT))


def listed_models(index: Path) -> list[str]:
    """The files an export.json lists (none when it is missing or unreadable)."""
    try:
        doc = jsonio.parse_json(read_capped(index, MAX_JSON_BYTES))
        return [m["file"] for m in doc["models"] if isinstance(m.get("file"), str)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
