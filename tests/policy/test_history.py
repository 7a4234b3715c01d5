"""History and the windowed functions: exact values on known series, window edges, few samples, ring wrap."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from policy_frames import Cluster

from coldaisle.policy.compiler import Compiler
from coldaisle.policy.context import EvalContext, Jobs, Nodes
from coldaisle.policy.history import History, time_to, windowed
from coldaisle.policy.schema import Scope

NAN = float("nan")


def feed(history: History, times: list[float] | np.ndarray, f: Callable[[float], list[float]],
         cluster: Cluster | None = None) -> EvalContext:
    """Append temperature_c = f(t) (one value per GPU) at each time; return the last context."""
    c = cluster or Cluster(nodes=("n1",), gpus_per_node=2)
    ctx = None
    for t in times:
        ctx = c.context(c.frame(float(t), temperature_c=f(float(t))), history=history)
    assert ctx is not None
    return ctx


def num(text: str, ctx: EvalContext) -> list[float]:
    return [float(x) for x in Compiler(Scope.DEVICE).compile(text, want="num").fn(ctx)]


def test_capacity_covers_the_longest_window_at_the_interval() -> None:
    assert History({"temperature_c": 10.0}).capacity >= 11
    assert History({"temperature_c": 10.0, "power_w": 60.0}, interval_s=2.0).capacity >= 31
    assert History({"temperature_c": 10.0}, interval_s=0.5).capacity >= 21


def test_linear_series_gives_exact_rate_delta_average_and_max() -> None:
    h = History({"temperature_c": 30.0})
    ctx = feed(h, range(0, 41), lambda t: [2 * t + 5, 40 - 0.5 * t])
    assert num("rate(temperature_c, 10)", ctx) == [2.0, -0.5]
    assert num("rate(temperature_c, 30)", ctx) == [2.0, -0.5]
    assert num("delta(temperature_c, 10)", ctx) == [20.0, -5.0]
    assert num("avg_over(temperature_c, 10)", ctx) == [2 * 35 + 5, 40 - 0.5 * 35]
    assert num("max_over(temperature_c, 10)", ctx) == [2 * 40 + 5, 40 - 0.5 * 30]


def test_quadratic_series_rate_and_time_to_are_exact() -> None:
    h = History({"temperature_c": 10.0})
    ctx = feed(h, range(0, 21), lambda t: [t * t, 500 - t * t])
    # (20^2 - 10^2) / 10: the secant over the window, not the tangent at its end
    assert num("rate(temperature_c, 10)", ctx) == [30.0, -30.0]
    # least-squares slope of t^2 over t = 10..20 is 2 * mean(t) = 30; (700 - 400) / 30 = 10 s
    assert num("time_to(temperature_c, 700, 10)", ctx) == pytest.approx([10.0, np.inf])
    assert num("time_to(temperature_c, 400, 10)", ctx)[0] == 0.0  # already there
    assert num("time_to(temperature_c, 100, 10)", ctx) == [0.0, 0.0]  # at or past the limit
    assert num("time_to(temperature_c, 1000, 10)", ctx)[1] == np.inf  # falling: never reaches it


def test_time_to_takes_a_per_gpu_limit_and_matches_the_free_function() -> None:
    h = History({"memory_used_bytes": 10.0})
    c = Cluster(nodes=("n1",), gpus_per_node=2)
    ctx = None
    for t in range(0, 11):
        f = c.frame(float(t), memory_used_bytes=[1e9 * t, 2e9 * t], memory_total_bytes=[20e9, 40e9])
        ctx = c.context(f, history=h)
    assert ctx is not None
    # GPU 0: 10 GB used, +1 GB/s, 10 GB left -> 10 s; GPU 1: 20 GB used, +2 GB/s, 20 GB left -> 10 s
    got = [float(x) for x in Compiler(Scope.DEVICE).compile(
        "time_to(memory_used_bytes, memory_total_bytes, 10)", want="num").fn(ctx)]
    assert got == pytest.approx([10.0, 10.0])
    t, x = h.window("memory_used_bytes", 10.0, 10.0)
    assert list(time_to(t, x, np.array([20e9, 40e9]))) == pytest.approx([10.0, 10.0])


def test_the_window_includes_the_sample_exactly_at_its_start_and_nothing_older() -> None:
    h = History({"temperature_c": 10.0})
    feed(h, [0.0, 4.999, 5.0, 7.5, 15.0], lambda t: [t, t])
    t, x = h.window("temperature_c", 10.0, 15.0)
    assert list(t) == [5.0, 7.5, 15.0]
    assert x.shape == (3, 2)
    assert list(windowed("delta", t, x)) == [10.0, 10.0]
    assert list(windowed("rate", t, x)) == [1.0, 1.0]


def test_irregular_sampling_uses_the_real_sample_times() -> None:
    h = History({"temperature_c": 20.0})
    ctx = feed(h, [0.0, 0.3, 1.9, 2.0, 7.1, 13.4, 20.0], lambda t: [3 * t, 100.0])
    assert num("rate(temperature_c, 20)", ctx) == pytest.approx([3.0, 0.0])
    assert num("rate(temperature_c, 7)", ctx) == pytest.approx([3.0, 0.0])  # 13.4 .. 20
    assert num("delta(temperature_c, 7)", ctx) == pytest.approx([3 * 6.6, 0.0])


@pytest.mark.parametrize("times", [[], [0.0], [0.0, 0.5]])
def test_rate_and_delta_need_two_samples_in_the_window(times: list[float]) -> None:
    h = History({"temperature_c": 10.0})
    c = Cluster(nodes=("n1",), gpus_per_node=2)
    for t in times:
        c.context(c.frame(t, temperature_c=[50 + t, 60 + t]), history=h)
    ctx = c.context(c.frame(20.0, temperature_c=[70, 80]), history=h)  # older samples fell out of a 10 s window
    for fn in ("rate", "delta"):
        assert np.isnan(num(f"{fn}(temperature_c, 10)", ctx)).all(), fn
    assert num("avg_over(temperature_c, 10)", ctx) == [70.0, 80.0]
    ctx = c.context(c.frame(21.0, temperature_c=[72, 81]), history=h)
    assert num("rate(temperature_c, 10)", ctx) == [2.0, 1.0]
    assert num("delta(temperature_c, 10)", ctx) == [2.0, 1.0]


def test_average_and_max_of_one_sample_are_that_sample_and_of_none_are_nan() -> None:
    h = History({"temperature_c": 10.0})
    ctx = feed(h, [0.0], lambda t: [50, 60])
    assert num("avg_over(temperature_c, 10)", ctx) == [50.0, 60.0]
    assert num("max_over(temperature_c, 10)", ctx) == [50.0, 60.0]
    assert num("rate(temperature_c, 10)", ctx) == pytest.approx([NAN, NAN], nan_ok=True)
    t, x = h.window("temperature_c", 10.0, 100.0)  # everything is older than the window
    assert t.size == 0
    assert np.isnan(windowed("avg_over", t, x)).all()
    assert np.isnan(windowed("max_over", t, x)).all()


def test_a_window_with_no_samples_gives_nan_per_gpu_through_the_context() -> None:
    h = History({"temperature_c": 10.0})
    c = Cluster(nodes=("n1",), gpus_per_node=3)
    feed(h, [0.0, 1.0, 2.0], lambda t: [t, t, t], c)
    later = c.frame(100.0, temperature_c=50)
    ctx = EvalContext(later, Nodes(["n1"], c.node_of), Jobs(), h)  # nothing appended at 100 s
    for fn in ("rate", "delta", "avg_over", "max_over"):
        out = num(f"{fn}(temperature_c, 10)", ctx)
        assert len(out) == 3 and np.isnan(out).all(), fn
    assert num("time_to(temperature_c, 80, 10)", ctx) == [np.inf] * 3


def test_time_to_needs_three_samples() -> None:
    h = History({"temperature_c": 10.0})
    ctx = feed(h, [0.0, 1.0], lambda t: [10 * t, 10 * t])
    assert num("time_to(temperature_c, 80, 10)", ctx) == [np.inf, np.inf]
    ctx = feed(h, [2.0], lambda t: [10 * t, 10 * t])
    assert num("time_to(temperature_c, 80, 10)", ctx) == pytest.approx([6.0, 6.0])


def test_nan_readings_in_the_window() -> None:
    h = History({"temperature_c": 10.0})
    ctx = feed(h, range(0, 11), lambda t: [NAN if t == 5 else t, NAN if t == 10 else t])
    assert num("avg_over(temperature_c, 10)", ctx) == [5.0, 4.5]  # unknown samples are skipped
    assert num("max_over(temperature_c, 10)", ctx) == [10.0, 9.0]
    assert num("rate(temperature_c, 10)", ctx)[0] == 1.0
    assert np.isnan(num("rate(temperature_c, 10)", ctx)[1])  # the latest reading is unknown


def test_the_ring_wraps_around_and_keeps_the_newest_samples() -> None:
    h = History({"temperature_c": 10.0})
    ctx = feed(h, range(0, 100), lambda t: [3 * t, 1000 - t])
    cap = h.capacity
    assert h.count == cap < 100
    t, x = h.window("temperature_c", 1e9, 99.0)  # everything kept: the newest `cap` samples, oldest first
    assert list(t) == [float(s) for s in range(100 - cap, 100)]
    assert list(x[:, 0]) == [3.0 * s for s in range(100 - cap, 100)]
    assert num("rate(temperature_c, 10)", ctx) == [3.0, -1.0]
    assert num("delta(temperature_c, 10)", ctx) == [30.0, -10.0]
    assert num("max_over(temperature_c, 10)", ctx) == [297.0, 911.0]


def test_a_long_window_at_a_fast_interval_still_covers_the_whole_window() -> None:
    """A rule may ask for up to 3600 s; sampling every 0.5 s must not silently shorten that window."""
    h = History({"temperature_c": 3600.0}, interval_s=0.5)
    c = Cluster(nodes=("n1",), gpus_per_node=1)
    for k in range(0, 2 * 4000):
        t = 0.5 * k
        ctx = c.context(c.frame(t, temperature_c=t), history=h)
    assert num("delta(temperature_c, 3600)", ctx) == pytest.approx([3600.0])


def test_a_change_in_the_number_of_gpus_resets_the_history() -> None:
    h = History({"temperature_c": 10.0})
    feed(h, range(0, 10), lambda t: [t, t])
    assert h.count == 10
    three = Cluster(nodes=("n1",), gpus_per_node=3)
    ctx = feed(h, [10.0], lambda t: [t, 2 * t, 3 * t], three)
    assert h.count == 1
    assert h.data["temperature_c"].shape == (h.capacity, 3)
    assert np.isnan(num("rate(temperature_c, 10)", ctx)).all()
    ctx = feed(h, [11.0, 12.0], lambda t: [t, 2 * t, 3 * t], three)
    assert num("rate(temperature_c, 10)", ctx) == [1.0, 2.0, 3.0]


def test_a_history_with_no_columns_stores_nothing() -> None:
    h = History({})
    feed(h, range(5), lambda t: [t, t])
    assert h.count == 0 and h.columns == []


@pytest.mark.parametrize("jitter", [0.0, 0.2, 3.0])
def test_the_window_starts_where_a_plain_search_puts_it_on_time_late_or_irregular(jitter: float) -> None:
    """The window's first sample is guessed from the interval and checked; late or irregular samples (and a
    wrapped ring) must give what searching every sample gives."""
    rng = np.random.default_rng(7)
    h = History({"temperature_c": 30.0}, interval_s=1.0)
    c = Cluster(nodes=("n1",), gpus_per_node=1)
    t = 0.0
    for _ in range(200):
        t += max(1.0 + rng.uniform(-0.3, 1.0) * jitter, 0.05)  # a monotonic clock: never backwards
        c.context(c.frame(t, temperature_c=[t]), history=h)
        kept = [h.t[h._slot(j)] for j in range(h.count)]
        for seconds in (0.5, 1.0, 5.0, 29.9, 30.0, 60.0):
            t0 = t - seconds - 1e-9
            want = next((j for j, x in enumerate(kept) if x >= t0), h.count)
            assert h._first_at(t0) == want, (t, seconds)
