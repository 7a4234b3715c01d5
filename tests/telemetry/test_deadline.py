"""DeadlineRunner: real slow callables on real threads, short deadlines."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from coldaisle.telemetry.clock import SimClock
from coldaisle.telemetry.deadline import DeadlineRunner, Reason

DEADLINE_S = 0.05


@pytest.fixture
def runner() -> Iterator[DeadlineRunner]:
    r = DeadlineRunner(DEADLINE_S, name="test-deadline")
    yield r
    r.close()


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event the blocking callables wait on; always released so no test leaves a thread stuck."""
    event = threading.Event()
    yield event
    event.set()


def _threads(prefix: str) -> int:
    """Live threads whose name starts with `prefix` (robust against other tests' threads exiting)."""
    return sum(t.name.startswith(prefix) for t in threading.enumerate())


def _wait_until(predicate: object, timeout_s: float = 1.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def test_value_is_returned(runner: DeadlineRunner) -> None:
    result = runner.call(0, pow, 2, 10)
    assert result.ok
    assert result.value == 1024
    assert result.reason is None


def test_overrun_is_hung_quickly(runner: DeadlineRunner, gate: threading.Event) -> None:
    start = time.monotonic()
    result = runner.call(0, gate.wait)
    elapsed = time.monotonic() - start
    assert result.reason is Reason.HUNG
    assert "wait did not return within 0.05 s" in result.message
    assert DEADLINE_S <= elapsed < DEADLINE_S + 0.25
    assert runner.stuck(0)


def test_stuck_worker_answers_hung_at_once(runner: DeadlineRunner, gate: threading.Event) -> None:
    runner.call(0, gate.wait)
    calls = threading.Event()
    start = time.monotonic()
    result = runner.call(0, calls.set, deadline_s=1.0)
    assert time.monotonic() - start < 0.5, "answered without waiting for its own deadline"
    assert result.reason is Reason.HUNG
    assert "has been stuck for" in result.message
    assert not calls.is_set(), "a call queued behind a stuck one must not run"


def test_one_stuck_key_does_not_block_others(runner: DeadlineRunner, gate: threading.Event) -> None:
    runner.call("gpu0", gate.wait)
    result = runner.call("gpu1", int, "7")
    assert result.ok and result.value == 7


def test_recovers_after_the_stuck_call_returns(runner: DeadlineRunner, gate: threading.Event) -> None:
    assert runner.call(0, gate.wait).reason is Reason.HUNG
    gate.set()
    _wait_until(lambda: not runner.stuck(0))
    result = runner.call(0, str.upper, "ok")
    assert result.ok and result.value == "OK"


def test_exceptions_are_classified() -> None:
    def classify(exc: BaseException) -> Reason:
        return Reason.NOT_SUPPORTED if isinstance(exc, NotImplementedError) else Reason.GPU_LOST

    def unsupported() -> None:
        raise NotImplementedError("no fan on a passive card")

    r = DeadlineRunner(DEADLINE_S, classify=classify)
    try:
        result = r.call(0, unsupported)
        assert result.reason is Reason.NOT_SUPPORTED
        assert isinstance(result.error, NotImplementedError)
        assert "unsupported: NotImplementedError: no fan on a passive card" in result.message
        assert r.call(0, int, "x").reason is Reason.GPU_LOST
        assert r.call(0, int, "3").value == 3, "the worker survives an exception"
    finally:
        r.close()


def test_default_classifier_is_error(runner: DeadlineRunner) -> None:
    result = runner.call(0, int, "not a number")
    assert result.reason is Reason.ERROR
    assert isinstance(result.error, ValueError)


def test_a_failing_classifier_means_error() -> None:
    def broken(_exc: BaseException) -> Reason:
        raise RuntimeError("classifier bug")

    r = DeadlineRunner(DEADLINE_S, classify=broken)
    try:
        assert r.call(0, int, "x").reason is Reason.ERROR
    finally:
        r.close()


def test_no_thread_pile_up_after_many_hung_calls(gate: threading.Event) -> None:
    before = threading.active_count()
    r = DeadlineRunner(DEADLINE_S, name="pile-up")
    try:
        results = [r.call(key, gate.wait) for _ in range(50) for key in (0, 1)]
        assert all(res.reason is Reason.HUNG for res in results)
        assert _threads("pile-up-") == 2, "one worker per key, whatever the number of calls"
        assert threading.active_count() <= before + 2
    finally:
        gate.set()
        r.close()


def test_calls_reuse_one_worker_per_key(runner: DeadlineRunner) -> None:
    names = {runner.call(3, lambda: threading.current_thread().name).value for _ in range(20)}
    assert names == {"test-deadline-3"}


def test_durations_use_the_injected_clock() -> None:
    clock = SimClock()
    r = DeadlineRunner(DEADLINE_S, clock=clock)
    try:
        result = r.call(0, clock.sleep, 3.0)
        assert result.ok
        assert result.duration_s == pytest.approx(3.0)
    finally:
        r.close()


def test_per_call_deadline_overrides_the_default(runner: DeadlineRunner) -> None:
    result = runner.call(0, time.sleep, 0.08, deadline_s=1.0)
    assert result.ok


def test_close_stops_idle_workers_and_refuses_new_calls() -> None:
    r = DeadlineRunner(DEADLINE_S, name="closing")
    r.call(0, int)
    r.call(1, int)
    assert _threads("closing-") == 2
    r.close()
    assert _threads("closing-") == 0
    result = r.call(0, int)
    assert result.reason is Reason.ERROR
    assert "closed" in result.message


def test_a_stuck_worker_exits_once_released_after_close(gate: threading.Event) -> None:
    r = DeadlineRunner(DEADLINE_S, name="released")
    assert r.call(0, gate.wait).reason is Reason.HUNG
    r.close()
    assert _threads("released-") == 1
    gate.set()
    _wait_until(lambda: _threads("released-") == 0)


def test_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        DeadlineRunner(0)
