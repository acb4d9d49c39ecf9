"""Fleet fan-out: the same work for many devices, a bounded number at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from edgecls.bounds import check_bound

DEFAULT_PARALLEL = 4  # devices reached at once: 500 hosts must not start 500 ssh processes
Item = TypeVar("Item")
Result = TypeVar("Result")


def check_parallel(parallel: int) -> int:
    check_bound("--parallel", parallel)  # edgecls.bounds: at least 1, and not 10**9 threads
    return parallel


def fan_out(items: Sequence[Item], work: Callable[[Item], Result], parallel: int = DEFAULT_PARALLEL) -> list[Result]:
    """work(item) for every item, at most `parallel` at a time (threads: the work waits on ssh), the
    results in the items' order. `work` reports its own failures in its result: an exception ends
    the fan-out."""
    check_parallel(parallel)
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(parallel, len(items))) as pool:
        return list(pool.map(work, items))
