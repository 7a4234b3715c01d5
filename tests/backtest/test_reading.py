"""Reading history: the range-query decoder against a real Prometheus answer, the array rules for gaps, counter
resets and Xid gauges, and the command line's times, durations and selectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from promdata import T0, om_text

from coldaisle.backtest.prom import Prometheus, PrometheusError, decode_matrix, matchers, selector
from coldaisle.backtest.samples import ffill, reset_corrected, xid_events
from coldaisle.backtest.times import duration, instant, window
from coldaisle.errors import ColdaisleError

NAN = np.nan


@pytest.mark.prometheus
def test_range_answers_decode_without_json_per_sample_labels_and_special_values_intact(
        tmp_path: Path, prometheus_with) -> None:
    odd = {"Hostname": 'n"1]]', "gpu": "0", "note": "a,b\\c"}
    om = tmp_path / "odd.om"
    om.write_text(om_text({"DCGM_FI_DEV_GPU_TEMP": [
        (odd, [(T0, 40.5), (T0 + 15, float("nan")), (T0 + 30, float("inf")), (T0 + 45, -0.25)]),
        ({"Hostname": "n2", "gpu": "1"}, [(T0 + 30, 1e-9)])]}))
    server = prometheus_with(om)
    got = Prometheus(server.url).query_range("DCGM_FI_DEV_GPU_TEMP", T0, T0 + 60, 15.0)
    by_node = {s.labels["Hostname"]: s for s in got}
    first = by_node['n"1]]']
    assert first.labels == {"__name__": "DCGM_FI_DEV_GPU_TEMP", **odd}
    assert np.array_equal(first.times, T0 + np.array([0.0, 15, 30, 45, 60]))
    assert np.array_equal(first.values, [40.5, NAN, np.inf, -0.25, -0.25], equal_nan=True)  # 60: the lookback
    assert by_node["n2"].values.tolist() == [1e-9, 1e-9, 1e-9]


def test_an_answer_that_is_not_a_matrix_is_an_error_naming_it() -> None:
    with pytest.raises(PrometheusError, match="not a range-query answer"):
        decode_matrix(b'{"status":"success","data":{"resultType":"vector","result":[]}}')
    assert decode_matrix(b'{"status":"success","data":{"resultType":"matrix","result":[]}}') == []


def test_an_unreachable_prometheus_is_named_with_a_hint() -> None:
    with pytest.raises(PrometheusError, match=r"cannot reach Prometheus at http://127.0.0.1:9") as err:
        Prometheus("http://127.0.0.1:9", timeout_s=2).series("up", T0, T0 + 1)
    assert "--prometheus" in (err.value.hint or "")
    with pytest.raises(ColdaisleError, match="not an http"):
        Prometheus("prometheus:9090")


def test_gaps_take_the_last_value_and_the_carry_leads() -> None:
    x = np.array([[NAN, 1.0], [2.0, NAN], [NAN, NAN], [5.0, 3.0]])
    assert np.array_equal(ffill(x, np.array([9.0, NAN])), [[9, 1], [2, 1], [2, 1], [5, 3]])


def test_counter_resets_count_as_prometheus_increase_does_across_chunks() -> None:
    raw = np.array([[10.0], [12], [NAN], [3], [4], [1], [8]])  # resets after 12 (to 3) and after 4 (to 1)
    whole, _, _ = reset_corrected(raw, np.array([NAN]), np.zeros(1))
    assert whole[:, 0].tolist()[:2] == [10, 12] and np.isnan(whole[2, 0])
    assert whole[3:, 0].tolist() == [15, 16, 17, 24]  # 12 + 3, then 16 + 1 ...: the increases, never a drop
    head, last, off = reset_corrected(raw[:4], np.array([NAN]), np.zeros(1))
    tail, _, _ = reset_corrected(raw[4:], last, off)
    assert np.array_equal(np.vstack([head, tail]), whole, equal_nan=True)


def test_a_new_value_of_the_last_xid_gauge_is_an_event_and_the_first_one_seen_is_history() -> None:
    x = np.array([[79.0, 0.0], [79, 0], [79, 48], [NAN, 48], [63, 48]])
    events, last = xid_events(x, np.array([NAN, NAN]))
    assert np.array_equal(events, [[NAN, NAN], [NAN, NAN], [NAN, 48], [NAN, NAN], [63, NAN]], equal_nan=True)
    assert last.tolist() == [63, 48]
    again, _ = xid_events(np.array([[63.0, 13.0]]), last)  # the next chunk: only what changed
    assert np.array_equal(again, [[NAN, 13]], equal_nan=True)


def test_times_and_durations_in_the_forms_people_write() -> None:
    assert duration("15s", "--step") == duration("15 s", "--step") == 15.0
    assert duration("1h30m", "--step") == 5400.0 and duration("7d", "--x") == 7 * 86400.0
    assert instant("2024-05-21T03:00:00Z", "--start") == T0 == instant(str(T0), "--start")
    assert instant("2024-05-21T03:00:00", "--start") == T0  # no zone: UTC
    assert instant("now-1h", "--start", now=T0 + 3600) == T0
    for bad, option in (("15", "--step"), ("soon", "--step"), ("-5s", "--step")):
        with pytest.raises(ColdaisleError, match=f"{option} '{bad}' is not a duration") as err:
            duration(bad, option)
        assert err.value.exit_code == 2
    with pytest.raises(ColdaisleError, match="--start 'yesterday' is not a time"):
        instant("yesterday", "--start")
    with pytest.raises(ColdaisleError, match="is not after --start"):
        window("2024-05-21T04:00:00Z", "2024-05-21T03:00:00Z", "15s")


def test_selectors_are_checked_and_merged_with_a_series_own_matchers() -> None:
    assert matchers('{cluster="a", Hostname=~"node-.*"}') == 'cluster="a", Hostname=~"node-.*"'
    assert selector("DCGM_FI_DEV_GPU_TEMP", 'cluster="a"', (("name", 'In"let'),)) == \
        'DCGM_FI_DEV_GPU_TEMP{cluster="a",name="In\\"let"}'
    assert selector("up") == "up"
    for bad in ('{cluster=a}', 'cluster="a"; drop', '{="a"}'):
        with pytest.raises(ColdaisleError, match="is not a list of PromQL label matchers"):
            matchers(bad)
