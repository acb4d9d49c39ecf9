"""The interpreter pool's places: reservations taken as a request starts and held until its answer has gone
(edgecls.serve.pool), checked on the pool itself, with real threads and no server."""

from __future__ import annotations

import threading
import time

import pytest

from edgecls.serve.pool import ClassifierPool, QueueFull

LONG = 60.0  # a reservation's time for its body that no test waits out


@pytest.fixture
def pool():
    pool = ClassifierPool(interpreters=1, queue_size=1)
    pool.start()
    yield pool
    pool.stop()


def test_reservations_take_the_places_of_the_interpreters_and_the_queue(pool):
    first, second = pool.reserve(LONG), pool.reserve(LONG)
    assert first is not None and second is not None
    assert pool.full() and pool.reserve(LONG) is None
    with pytest.raises(QueueFull):
        pool.submit(lambda slot: slot)  # a task without a reservation finds no place either


def test_a_task_submitted_with_its_reservation_takes_no_second_place(pool):
    reservations = [pool.reserve(LONG), pool.reserve(LONG)]
    futures = [pool.submit(lambda slot: "done", r) for r in reservations]  # neither is refused
    assert [f.result(5) for f in futures] == ["done", "done"]


def test_the_place_is_held_after_the_task_until_the_request_releases_it(pool):
    reservation = pool.reserve(LONG)
    pool.reserve(LONG)
    assert pool.submit(lambda slot: 1, reservation).result(5) == 1
    assert pool.full()  # the answer has not gone yet: the place is still taken
    reservation.release()
    assert not pool.full() and pool.reserve(LONG) is not None
    reservation.release()  # a second release gives back nothing more
    assert pool.full()


def test_a_reservation_released_unused_gives_its_place_back(pool):
    unused = pool.reserve(LONG)
    pool.reserve(LONG)
    unused.release()
    assert pool.reserve(LONG) is not None


def test_a_reservation_whose_body_is_late_loses_its_place_to_a_request_that_finds_the_pool_full(pool):
    late = pool.reserve(0.05)
    pool.reserve(LONG)
    assert pool.reserve(LONG) is None  # not expired yet
    time.sleep(0.1)
    assert late.held  # expiry does nothing until a request finds the pool full ...
    taker = pool.reserve(LONG)
    assert taker is not None and not late.held  # ... and takes the late one's place
    with pytest.raises(QueueFull):  # the late request then needs a place of its own, and there is none
        pool.submit(lambda slot: slot, late)


def test_a_submitted_task_keeps_its_place_past_the_body_time(pool):
    started, go = threading.Event(), threading.Event()

    def slow(slot):
        started.set()
        go.wait(5)
        return "slow"

    running = pool.reserve(0.01)
    future = pool.submit(slow, running)
    started.wait(5)
    pool.reserve(LONG)
    time.sleep(0.05)
    assert pool.reserve(LONG) is None and running.held  # the running request is not expired
    go.set()
    assert future.result(5) == "slow"


def test_a_request_that_ends_before_its_task_keeps_the_place_until_the_task_has_run():
    pool = ClassifierPool(interpreters=1, queue_size=0)  # one place
    pool.start()
    started, go = threading.Event(), threading.Event()
    try:
        cancelled = pool.reserve(LONG)
        future = pool.submit(lambda slot: (started.set(), go.wait(5)), cancelled)
        started.wait(5)
        cancelled.release()  # the request was cancelled (a client gone, a shutdown) while its task runs
        assert pool.full() and pool.reserve(LONG) is None  # the interpreter is still busy with it
        go.set()
        future.result(5)
        deadline = time.monotonic() + 5
        while pool.full() and time.monotonic() < deadline:  # the worker frees it as the task ends
            time.sleep(0.01)
        assert not pool.full()
    finally:
        pool.stop()


def test_a_late_reservation_gives_way_to_a_submit_without_one_too(pool):
    """The live loop submits without a reservation, and a large upload is checked with full(): neither
    waits for a small request to come and expire a place held for a body that never came."""
    pool.reserve(0.05)
    pool.reserve(0.05)
    assert pool.full()
    time.sleep(0.1)
    assert not pool.full()  # one late place given up ...
    pool.submit(lambda slot: slot).result(5)  # ... and taken by a task without a reservation


def test_a_full_pool_gives_up_one_late_place_at_a_time(pool):
    late = [pool.reserve(0.05), pool.reserve(0.05)]
    time.sleep(0.1)
    assert pool.reserve(LONG) is not None
    assert [r.held for r in late] == [False, True]  # the oldest only
    assert pool.reserve(LONG) is not None and not late[1].held


def test_the_bookkeeping_of_reservations_does_not_grow_with_requests(pool):
    stuck = pool.reserve(LONG)  # a body that never comes, while others are served around it
    for _ in range(2000):
        reservation = pool.reserve(LONG)
        pool.submit(lambda slot: slot, reservation).result(5)
        reservation.release()
    assert list(pool._unsubmitted) == [stuck]
    stuck.release()
    assert not pool._unsubmitted and pool.waiting == 0 and pool.running == 0 and pool.reserve(LONG) is not None
