"""Where edgecls keeps what it can make again (datasets decoded, embeddings, the device wheel):
$EDGECLS_CACHE, else $XDG_CACHE_HOME/edgecls, else ~/.cache/edgecls. Deleting it costs only time."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    if os.environ.get("EDGECLS_CACHE"):
        return Path(os.environ["EDGECLS_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # the XDG spec: an empty or relative $XDG_CACHE_HOME is ignored (it would put the cache under the cwd)
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "edgecls"
