"""TOML files (train configs, run configs, device profiles): reading with one-line errors, and the
small writer of flat tables the standard library lacks."""

from __future__ import annotations

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


def toml_text(tables: dict[str, dict[str, Any]], header: str = "") -> str:
    """Flat tables as TOML (tomllib reads it back): `# header`, then each [table] and its keys, a blank
    line between tables; None values are left out (TOML has no null)."""
    lines = [f"# {header}"] if header else []
    for n, (name, table) in enumerate(tables.items()):
        lines += ([""] if n else []) + [f"[{name}]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items() if value is not None]
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
