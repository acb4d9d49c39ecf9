"""Typed JSON records: dataclasses whose fields are a JSON document's keys, in the order they are
written — the bench report (bench.results), the model metadata (runtime.metadata), the export
index and the run directory's records (artifacts) are all made of them.

`from_json(doc)` reads a document; keys no field names — a later minor version's — are kept in
`extra` and written back last, so a document read and written again loses nothing. A field marked
`omitted()` is left out of the JSON while it is None (optional, not nullable); every other field is
always written, None as null — but for a key the document read did not have (an older version's
file), which stays absent while it keeps its default: a file read and written again is the same JSON.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar, Union

R = TypeVar("R", bound="Record")
_OMIT = "omit_when_none"
_BOOKKEEPING = ("extra", "_absent")


def omitted() -> Any:
    """A field that is absent from the JSON while None (optional, not nullable, in the schema)."""
    return field(default=None, metadata={_OMIT: True})


@dataclass(kw_only=True)
class Record:
    """to_json/from_json from the dataclass fields; unknown keys kept in `extra`."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    # Keys the JSON read had no value for (an older file): still left out while they are None.
    # Underscored, as no JSON key is, so that no record's own field can take its name.
    _absent: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """This record as the JSON object bench.json holds (fresh containers: safe to change)."""
        doc: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in _BOOKKEEPING:
                continue
            value = getattr(self, f.name)
            if value is None and f.metadata.get(_OMIT):
                continue
            if f.name in self._absent and value == _default(f):  # still what the file did not have
                continue
            doc[f.name] = as_json(value)
        doc.update(as_json(self.extra))
        return doc

    @classmethod
    def from_json(cls: type[R], doc: dict[str, Any]) -> R:
        """The record of a JSON object; a missing key takes the field's default (an error if it has none)."""
        if not isinstance(doc, dict):
            raise TypeError(f"{cls.__name__}: expected a JSON object, got {type(doc).__name__}")
        hints = _hints(cls)
        known = {f.name for f in dataclasses.fields(cls) if f.name not in _BOOKKEEPING}
        values = {name: _load(hints[name], doc[name]) for name in known if name in doc}
        extra = {key: copy.deepcopy(value) for key, value in doc.items() if key not in known}
        missing = [f.name for f in dataclasses.fields(cls) if f.name in known and f.name not in values
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"{cls.__name__}: {', '.join(map(repr, missing))} missing")
        return cls(**values, extra=extra, _absent=frozenset(known - set(doc)))


def _default(f: dataclasses.Field) -> Any:
    """The value a field takes when the JSON read lacks its key."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def as_json(value: Any) -> Any:
    """A value with records in it (a record, a list or dict of them, a plain value) as plain JSON."""
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def _load(hint: Any, value: Any) -> Any:
    """A JSON value as the field's type says: records, lists and dicts of records; the rest copied as is."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        kinds = [a for a in typing.get_args(hint) if a is not type(None)]
        return _load(kinds[0], value) if len(kinds) == 1 else copy.deepcopy(value)
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value)
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(hint)
        return [_load(item, v) for v in value]
    if origin is dict and isinstance(value, dict):
        _, item = typing.get_args(hint)
        return {k: _load(item, v) for k, v in value.items()}
    return copy.deepcopy(value)
