"""TOML files (train configs, run configs, device profiles): reading with one-line errors, and the
small writer of flat tables the standard library lacks."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from edgecls.errors import EdgeclsError
from edgecls.files import read_capped

MAX_TOML_BYTES = 16 << 20  # a config or profile is a few hundred bytes; this only stops /dev/zero


def read_toml(path: Path, what: str = "file") -> dict[str, Any]:
    """A TOML file as a dict, or a one-line error that names `what` it is (config file, profile ...)."""
    try:
        data = read_capped(path, MAX_TOML_BYTES)
    except FileNotFoundError:
        raise EdgeclsError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise EdgeclsError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    return parse_toml(data, path, what)


def parse_toml(data: bytes, path: Path, what: str = "file") -> dict[str, Any]:
    """The bytes of a TOML file as a dict, or a one-line error naming `what` it is and its `path`."""
    try:
        return tomllib.loads(data.decode("utf-8"))
    except RecursionError:
        raise EdgeclsError(f"{what} {path} is not valid TOML: nested too deeply") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise EdgeclsError(f"{what} {path} is not valid TOML: {str(exc).splitlines()[0]}") from None


# ---------------------------------------------------------------------- writing
# A path that is not valid UTF-8 (a folder name in Latin-1, say) has no TOML string: it is written as
# a one-key table, {fs_bytes = "caf\xe9"}, its bytes with \\ and \xNN escapes, which path_from reads back.
FS_BYTES = "fs_bytes"


def toml_text(tables: dict[str, dict[str, Any]], header: str = "") -> str:
    """TOML for {table: {key: value}} by tomli-w (quotes, backslashes and control characters escaped as
    TOML wants them), `header` as a comment first; None values are left out (TOML has no null), paths
    that are not UTF-8 go through path_value."""
    import tomli_w

    clean = {name: {key: _writable(value) for key, value in table.items() if value is not None}
             for name, table in tables.items()}
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + tomli_w.dumps(clean)


def _writable(value: Any) -> Any:
    if isinstance(value, str):
        return path_value(value)
    if isinstance(value, (list, tuple)):
        return [_writable(v) for v in value]
    if isinstance(value, dict):
        return {k: _writable(v) for k, v in value.items() if v is not None}
    return value


def path_value(text: str) -> str | dict[str, str]:
    """`text` itself when it is valid UTF-8, else {FS_BYTES: its bytes, escaped}."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        raw = os.fsencode(text).replace(b"\\", b"\\\\")
        return {FS_BYTES: raw.decode("utf-8", "backslashreplace")}


def path_from(value: Any) -> Any:
    """What path_value wrote, back as the str the path was (other values unchanged)."""
    if isinstance(value, dict) and set(value) == {FS_BYTES} and isinstance(value[FS_BYTES], str):
        raw = re.sub(rb"\\\\|\\x([0-9a-fA-F]{2})",
                     lambda m: bytes([int(m.group(1), 16)]) if m.group(1) else b"\\",
                     value[FS_BYTES].encode("utf-8"))
        return os.fsdecode(raw)
    return value
