"""Reading TOML files (train configs, run configs, device profiles) with one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from edgecls.errors import EdgeclsError


def read_toml(path: Path, what: str = "file") -> dict[str, Any]:
    """A TOML file as a dict, or a one-line error that names `what` it is (config file, profile ...)."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise EdgeclsError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise EdgeclsError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise EdgeclsError(f"{what} {path} is not valid TOML: {str(exc).splitlines()[0]}") from None
