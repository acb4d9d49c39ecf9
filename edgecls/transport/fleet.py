"""Fleet fan-out: the same work for many devices, a bounded number at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TypeVar

from edgecls.bounds import check_bound
from edgecls.options import option

DEFAULT_PARALLEL = 4  # devices reached at once: 500 hosts must not start 500 ssh processes
Item = TypeVar("Item")
Result = TypeVar("Result")


def parallel_option(**changes: Any) -> Any:
    """--parallel, the one option of every command that reaches many devices (bench --remote, deploy):
    its name, default and bounds, in each command's words (`changes`)."""
    return option(DEFAULT_PARALLEL, **{"low": 1, "range_in_help": True, **changes})


def check_parallel(parallel: int) -> int:
    check_bound("--parallel", parallel)  # edgecls.bounds: at least 1, and not 10**9 threads
    return parallel


def fan_out(items: Sequence[Item], work: Callable[[Item], Result], parallel: int = DEFAULT_PARALLEL) -> list[Result]:
    """work(item) for every item, at most `parallel` at a time (threads: the work waits on ssh), the
    results in the items' order. `work` reports its own failures in its result: an exception ends
    the fan-out."""
    results: dict[int, Result] = {}
    for index, result in as_finished(items, work, parallel):
        results[index] = result
    return [results[i] for i in range(len(items))]


def as_finished(items: Sequence[Item], work: Callable[[Item], Result],
                parallel: int = DEFAULT_PARALLEL) -> Iterator[tuple[int, Result]]:
    """(the item's index, work(item)) for every item, at most `parallel` at a time, as each finishes:
    for a command that says each device's answer when it comes (deploy)."""
    check_parallel(parallel)
    items = list(items)
    if len(items) <= 1:
        yield from ((i, work(item)) for i, item in enumerate(items))
        return
    with ThreadPoolExecutor(max_workers=min(parallel, len(items)), thread_name_prefix="edgecls-fan") as pool:
        futures = {pool.submit(work, item): i for i, item in enumerate(items)}
        for future in as_completed(futures):
            yield futures[future], future.result()
