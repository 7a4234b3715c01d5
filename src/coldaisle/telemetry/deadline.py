"""The choke point for driver calls: run a callable on a per-key worker thread under a deadline.

A driver call can block forever (a wedged GPU holds a kernel lock). Each key (a device
index) gets one long-lived worker thread; a call that overruns its deadline is reported
as HUNG and leaves that worker stuck, so later calls for the same key answer HUNG at once
until the stuck call returns. One hung GPU never blocks the others and never piles up threads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from coldaisle.telemetry.clock import Clock, RealClock


class Reason(StrEnum):
    """Why a call produced no value."""

    NOT_SUPPORTED = "not_supported"
    GPU_LOST = "gpu_lost"
    HUNG = "hung"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class CallResult:
    """A value, or a typed absence (reason, message, the exception if one was raised)."""

    value: Any = None
    reason: Reason | None = None
    message: str = ""
    error: BaseException | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the call returned a value."""
        return self.reason is None


Classifier = Callable[[BaseException], Reason]


def always_error(_exc: BaseException) -> Reason:
    """The default classifier: every exception is a plain ERROR."""
    return Reason.ERROR


def call_name(fn: Callable[..., Any]) -> str:
    """A readable name for `fn`, looking through functools.partial."""
    inner = getattr(fn, "func", fn)
    return str(getattr(inner, "__name__", repr(inner)))


class _Job:
    __slots__ = ("abandoned", "args", "done", "error", "fn", "started", "value")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], started: float) -> None:
        self.fn, self.args, self.started = fn, args, started
        self.done = threading.Event()
        self.abandoned = False
        self.value: Any = None
        self.error: BaseException | None = None


class _Worker:
    """One daemon thread running jobs in order; `current` is the job last handed to it."""

    def __init__(self, name: str) -> None:
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.current: _Job | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def stuck(self) -> bool:
        """True while the last job overran its deadline and has not returned yet."""
        job = self.current
        return job is not None and job.abandoned and not job.done.is_set()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                job.value = job.fn(*job.args)
            except BaseException as exc:  # a driver binding may raise anything; the caller classifies it
                job.error = exc
            finally:
                job.done.set()


class DeadlineRunner:
    """Runs calls on one worker thread per key, each under a deadline, and never raises."""

    def __init__(
        self,
        deadline_s: float = 2.0,
        classify: Classifier = always_error,
        clock: Clock | None = None,
        name: str = "coldaisle-deadline",
    ) -> None:
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be positive, got {deadline_s}")
        self.deadline_s = deadline_s
        self._classify, self._clock, self._name = classify, clock or RealClock(), name
        self._workers: dict[Hashable, _Worker] = {}
        self._lock = threading.Lock()
        self._closed = False

    def call(self, key: Hashable, fn: Callable[..., Any], *args: Any,
             deadline_s: float | None = None) -> CallResult:
        """Run `fn(*args)` on `key`'s worker; HUNG if it overruns or an earlier call is still stuck."""
        worker = self._worker(key)
        if worker is None:
            return CallResult(reason=Reason.ERROR, message="the deadline runner is closed")
        limit = self.deadline_s if deadline_s is None else deadline_s
        with worker.lock:
            stuck = worker.current if worker.stuck() else None
            if stuck is not None:
                age = self._clock.monotonic() - stuck.started
                return CallResult(reason=Reason.HUNG,
                              message=f"{call_name(stuck.fn)} has been stuck for {age:.1f} s")
            job = _Job(fn, args, self._clock.monotonic())
            worker.current = job
            worker.jobs.put(job)
            job.abandoned = not job.done.wait(limit)
            duration = self._clock.monotonic() - job.started
        return self._result(job, limit, duration)

    def stuck(self, key: Hashable) -> bool:
        """True while `key`'s worker is still inside a call that overran its deadline."""
        with self._lock:
            worker = self._workers.get(key)
        return worker is not None and worker.stuck()

    def close(self) -> None:
        """Stop the workers; a stuck one exits when its call finally returns (threads are daemons)."""
        with self._lock:
            self._closed = True
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            worker.jobs.put(None)
        for worker in workers:
            if not worker.stuck():
                worker.thread.join(timeout=1.0)

    def _worker(self, key: Hashable) -> _Worker | None:
        with self._lock:
            if self._closed:
                return None
            worker = self._workers.get(key)
            if worker is None:
                worker = self._workers[key] = _Worker(f"{self._name}-{key}")
            return worker

    def _result(self, job: _Job, limit: float, duration: float) -> CallResult:
        if not job.done.is_set():
            return CallResult(reason=Reason.HUNG, duration_s=duration,
                          message=f"{call_name(job.fn)} did not return within {limit:g} s")
        if job.error is None:
            return CallResult(value=job.value, duration_s=duration)
        try:
            reason = self._classify(job.error)
        except Exception:
            reason = Reason.ERROR
        message = f"{call_name(job.fn)}: {type(job.error).__name__}: {job.error}"
        return CallResult(reason=reason, message=message, error=job.error, duration_s=duration)
