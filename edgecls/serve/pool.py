"""N interpreter threads behind a bounded queue.

Each thread owns one slot (0..N-1); a task is `task(slot)` and runs on that thread alone, so it may
use the slot's interpreter without a lock (an interpreter is not thread-safe). At most `queue` tasks
wait; one more is refused at once (QueueFull), never queued without bound: under overload an
accepted request waits for at most `queue / N` classifications.

A place can be reserved before its task exists (`reserve`) and held after the task has run, until
the request ends: the server takes one when a classification request starts (edgecls.serve.app.Guard)
and gives it back once the answer has gone, so that a request counts from the moment it is let in
until it is done. Counting only the pool's own tasks let the next request in while an answer that was
ready still waited for the event loop: under overload about one request more was in flight than the
queue allows (measured with scripts/bench_serve.py's open loop at 2x capacity, tiny model on one core:
the accepted requests' p99 4.0-4.6x the unloaded one that way, 2.9-3.3x with places held to the end).

The threads run at the event loop's priority. They ran 5 nice steps below it while the queue counted
only its tasks (the front door then answered its 503s first); with places held to the end, the same
measure gave the tiny model 2.4-2.6x at equal priority against 2.7-3.2x lowered, and Coral 0.5_160
2.4-2.5x either way.

The HTTP routes submit to it and so can a live loop; `submit` returns a concurrent.futures.Future
(asyncio.wrap_future awaits it).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

Task = Callable[[int], Any]
_STOP = object()


class QueueFull(Exception):
    """Every interpreter is busy and the queue is full; `retry_after` is a whole-seconds estimate."""

    def __init__(self, retry_after: int):
        super().__init__("every interpreter is busy and the queue is full")
        self.retry_after = retry_after


class ClassifierPool:
    def __init__(self, interpreters: int, queue_size: int, name: str = "edgecls-interpreter"):
        if interpreters < 1 or queue_size < 0:
            raise ValueError("interpreters >= 1 and queue_size >= 0")
        self.interpreters = interpreters
        self.queue_size = queue_size
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiting = 0
        self._running = 0
        self._reserved = 0  # places held by Reservations
        self._unsubmitted: dict[Reservation, None] = {}  # held ones with no task yet, oldest first (to expire)
        self._unreserved = 0  # tasks waiting or running that hold no reservation
        self._seconds = 0.0  # a moving average of a task's time, for Retry-After
        self._threads = [threading.Thread(target=self._work, args=(slot,), name=f"{name}-{slot}", daemon=True)
                         for slot in range(interpreters)]
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def running(self) -> int:
        return self._running

    def full(self) -> bool:
        """Whether a submit now would be refused (a cheap check before reading a large body)."""
        with self._lock:
            return not self._room()

    def reserve(self, expire_s: float) -> Reservation | None:
        """A place for a request's task, held until the request has ended (`Reservation.release`) and its
        task, if it has one, has run; None when there is none. A reservation with no task submitted
        after `expire_s` seconds (a body slow to come) gives its place up to a request that finds the pool
        full."""
        with self._lock:
            if not self._room():
                return None
            self._reserved += 1
            reservation = Reservation(self, time.monotonic() + expire_s)
            self._unsubmitted[reservation] = None
        return reservation

    def submit(self, task: Task, reservation: Reservation | None = None) -> Future:
        """Queue `task(slot)` (in the place `reservation` holds, if it still does); raises QueueFull at once
        when the queue is full."""
        future: Future = Future()
        with self._lock:
            placed = reservation is not None and reservation.held and not reservation.submitted
            if placed:
                reservation.submitted = True
                del self._unsubmitted[reservation]
            elif not self._room():
                raise QueueFull(self.retry_after())
            else:
                self._unreserved += 1
            self._waiting += 1
        self._jobs.put((task, future, reservation if placed else None))
        return future

    def _room(self) -> bool:
        """Whether a place is free, after giving up the place of the oldest reservation past its time
        when none is. (Under the lock.)"""
        if self._taken() < self.interpreters + self.queue_size:
            return True
        oldest = next(iter(self._unsubmitted), None)  # all wait the same time: the oldest expires first
        if oldest is None or oldest.expires > time.monotonic():
            return False
        self._free(oldest)
        return True

    def _free(self, reservation: Reservation) -> None:
        """(Under the lock.)"""
        if reservation.held:
            reservation.held = False
            self._reserved -= 1
            self._unsubmitted.pop(reservation, None)

    def _task_ended(self, reservation: Reservation | None) -> None:
        """A task has run or was cancelled: its place is free, unless its request has not ended yet.
        (Under the lock.)"""
        if reservation is None:
            self._unreserved -= 1
            return
        reservation.task_ended = True
        if reservation.request_ended:
            self._free(reservation)

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the queue's work spread over the interpreters, at least 1."""
        backlog = self._taken() / self.interpreters * self._seconds
        return max(1, int(backlog + 0.999))

    def _taken(self) -> int:
        return self._reserved + self._unreserved

    def _work(self, slot: int) -> None:
        while True:
            item = self._jobs.get()
            if item is _STOP:
                return
            task, future, reservation = item
            with self._lock:
                self._waiting -= 1
                self._running += 1
            started = time.perf_counter()
            ran, result, error = future.set_running_or_notify_cancel(), None, None
            if ran:
                try:
                    result = task(slot)
                except BaseException as exc:  # the caller's to handle: the thread goes on
                    error = exc
            seconds = time.perf_counter() - started
            with self._lock:  # before the answer goes out: a client that has it sees this task gone (/metrics)
                self._running -= 1
                self._task_ended(reservation)
                self._seconds = seconds if not self._seconds else 0.9 * self._seconds + 0.1 * seconds
            if ran:
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

    def stop(self, timeout: float = 5.0) -> int:
        """Cancel what still waits, let the running tasks end (up to `timeout` s), stop the threads.
        Returns how many waiting tasks were cancelled."""
        cancelled = 0
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                with self._lock:
                    self._waiting -= 1
                    self._task_ended(item[2])
                cancelled += item[1].cancel()
        for _ in self._threads:
            self._jobs.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        return cancelled


class Reservation:
    """A place in a ClassifierPool held for one request: taken before its task is submitted, given back
    once the request has ended (`release`, at most once) and its task, if it was submitted, has run."""

    def __init__(self, pool: ClassifierPool, expires: float):
        self.pool, self.expires = pool, expires
        self.held, self.submitted = True, False
        self.request_ended = self.task_ended = False

    def release(self) -> None:
        """The request has ended (answered, failed or cancelled)."""
        with self.pool._lock:
            self.request_ended = True
            if not self.submitted or self.task_ended:
                self.pool._free(self)
