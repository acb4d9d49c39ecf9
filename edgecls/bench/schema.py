"""The bench report's JSON Schema (report.schema.json, shipped with the package), reading a
bench.json through it (read_report_file), and a small validator for the subset of JSON Schema it
uses, so that no dependency is needed to check a report: type, const, enum, required, properties,
additionalProperties, items, minItems, minimum, maximum, pattern, oneOf and local $ref.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from edgecls.bench.results import BenchReport
from edgecls.errors import EdgeclsError
from edgecls.files import read_capped
from edgecls.jsonio import JSONValueError, parse_json

FORMAT = "edgecls.bench/1"
SCHEMA_FILE = "report.schema.json"
MAX_REPORT_BYTES = 64 << 20  # a bench report is tens of kB
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The report schema, as shipped in the package."""
    return json.loads(resources.files("edgecls.bench").joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


def errors(doc: Any, root: dict[str, Any] | None = None) -> list[str]:
    """Every way `doc` breaks the schema, as 'path: problem' lines (empty: valid)."""
    root = root or schema()
    return list(_check(doc, root, root, "$"))


def check_report(doc: Any, name: str) -> None:
    """Raise a one-line EdgeclsError unless `doc` is a valid bench report."""
    if not isinstance(doc, dict) or not str(doc.get("format", "")).startswith("edgecls.bench/"):
        raise EdgeclsError(f"{name} is not an edgecls bench report (no \"format\": \"{FORMAT}\")")
    if doc["format"] != FORMAT:
        raise EdgeclsError(f"{name} is a bench report of format {doc['format']}; this edgecls reads {FORMAT}")
    found = errors(doc)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise EdgeclsError(f"{name} is not a valid bench report: {found[0]}{more}")


def read_report_file(path: Path, name: str | None = None) -> BenchReport:
    """The bench report in the file at `path` (size-capped, schema-checked); one-line errors naming
    `name` (default: the path)."""
    name = name or str(path)
    if not path.is_file():
        raise EdgeclsError(f"{name} does not exist" if not path.exists() else f"{name} is not a file")
    try:
        doc = parse_json(read_capped(path, MAX_REPORT_BYTES))
    except JSONValueError as exc:  # not JSON, or NaN, Infinity, an integer of 10,000 digits: named
        raise EdgeclsError(f"{name} is not an edgecls bench report (not valid JSON: {exc})") from None
    except OSError as exc:
        raise EdgeclsError(f"cannot read {name}: {exc.strerror or exc}") from None
    return read_report(doc, name)


def read_report(doc: Any, name: str) -> BenchReport:
    """A parsed bench.json, checked against the schema, as a BenchReport. One-line errors."""
    check_report(doc, name)
    return BenchReport.from_json(doc)


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref is supported: {ref}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _check(value: Any, rule: dict[str, Any], root: dict[str, Any], path: str) -> Iterator[str]:
    if "$ref" in rule:
        yield from _check(value, _resolve(rule["$ref"], root), root, path)
    if "type" in rule:
        kinds = rule["type"] if isinstance(rule["type"], list) else [rule["type"]]
        if not any(_TYPES[k](value) for k in kinds):
            yield f"{path}: expected {' or '.join(kinds)}, got {type(value).__name__}"
            return
    if "const" in rule and value != rule["const"]:
        yield f"{path}: must be {rule['const']!r}"
    if "enum" in rule and value not in rule["enum"]:
        yield f"{path}: {value!r} is not one of {rule['enum']}"
    if "oneOf" in rule:
        found = [list(_check(value, option, root, path)) for option in rule["oneOf"]]
        matches = sum(1 for problems in found if not problems)
        # Of the forms whose type fits, if just one: its own problems say more than "no form fits".
        fitting = [problems for problems in found if problems and not problems[0].startswith(f"{path}: expected ")]
        if matches == 0 and len(fitting) == 1:
            yield from fitting[0]
        elif matches != 1:
            yield f"{path}: matches {matches} of the allowed forms, not exactly one"
    if _TYPES["number"](value):
        if isinstance(value, float) and not math.isfinite(value):  # NaN passes every range check below
            yield f"{path}: {value} is not a finite number"
            return
        if "minimum" in rule and value < rule["minimum"]:
            yield f"{path}: {value} is below the minimum {rule['minimum']}"
        if "maximum" in rule and value > rule["maximum"]:
            yield f"{path}: {value} is above the maximum {rule['maximum']}"
    if isinstance(value, str) and "pattern" in rule and not re.search(rule["pattern"], value):
        yield f"{path}: {value!r} does not match {rule['pattern']}"
    if isinstance(value, list):
        if len(value) < rule.get("minItems", 0):
            yield f"{path}: needs at least {rule['minItems']} item(s)"
        if "items" in rule:
            for i, item in enumerate(value):
                yield from _check(item, rule["items"], root, f"{path}[{i}]")
    if isinstance(value, dict):
        for key in rule.get("required", ()):
            if key not in value:
                yield f"{path}: {key!r} is missing"
        properties = rule.get("properties", {})
        extra = rule.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                yield from _check(item, properties[key], root, f"{path}.{key}")
            elif extra is False:
                yield f"{path}: unexpected key {key!r}"
            elif isinstance(extra, dict):
                yield from _check(item, extra, root, f"{path}.{key}")
