"""Where edgecls keeps what it can make again (datasets decoded, embeddings, the device wheel):
$EDGECLS_CACHE, else $XDG_CACHE_HOME/edgecls, else ~/.cache/edgecls. Deleting it costs only time."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    base = os.environ.get("EDGECLS_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"),
                                                             "edgecls")
    return Path(base)
