"""`--watch`: notice when the model (or labels) file changes on disk, and say so once it has settled.

Polling stat() once a second: no inotify dependency, works on any file system, costs nothing. A
change is reported only when two polls in a row agree, so a file still being copied is not loaded
half-written (one copied in place, not renamed, may still be caught mid-way: the model check then
refuses it, and the finished file is a change again).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

WATCH_INTERVAL_S = 1.0
Signature = tuple[tuple[int, int, int] | None, ...]


def signature(paths: Sequence[Path]) -> Signature:
    """(mtime_ns, size, inode) of each path, None where it is missing: any change of content or a rename changes it."""
    found = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            found.append(None)
        else:
            found.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(found)


async def watch_files(paths: Sequence[Path], on_change: Callable[[], Awaitable[None]],
                      interval: float = WATCH_INTERVAL_S) -> None:
    """Await `on_change()` after each settled change of `paths` (runs until cancelled)."""
    seen = signature(paths)
    while True:
        await asyncio.sleep(interval)
        now = signature(paths)
        if now == seen:
            continue
        await asyncio.sleep(interval)
        if signature(paths) != now or None in now[:1]:  # still changing, or the model is gone (mid-rename)
            continue
        seen = now
        await on_change()
