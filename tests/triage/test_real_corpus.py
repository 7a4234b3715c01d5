"""Triage on what real clusters write: ~500 records from public bug reports, forums, mailing lists and other
GPU-health projects' own fixtures (tests/data/triage/real/, each with its source), scored per class.

The targets are the issue's: recall >= 0.95 on records that must alarm, class agreement >= 0.95 where triage
alarms, false alarms <= 0.03 on benign look-alikes. A signature change that drops any of them fails here, and
the per-class table (printed) says where.
"""

from __future__ import annotations

import pytest
from realcorpus import table

RECALL, AGREEMENT, FALSE_ALARMS, FIELDS = 0.95, 0.95, 0.03, 0.90


@pytest.fixture(scope="module")
def scored(real_corpus):  # type: ignore[no-untyped-def]
    return real_corpus


def test_per_class_table_is_printed(scored, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    text = table(scored[2])
    with capsys.disabled():  # in every CI log, passing or not
        print("\n" + text)
    assert "all alarm records" in text and all(cls in text for cls in scored[2].total)


def test_the_corpus_is_the_one_the_issue_asks_for(scored) -> None:  # type: ignore[no-untyped-def]
    outcomes, _, s = scored
    lines = sum(len(o.record.lines.splitlines()) for o in outcomes)
    sources = {o.record.source for o in outcomes}
    assert lines >= 800 and len(sources) >= 200 and s.benign >= 100
    assert sum(len(o.record.lines.splitlines()) for o in outcomes if not o.record.alarm) >= 200


def test_recall(scored) -> None:  # type: ignore[no-untyped-def]
    s = scored[2]
    assert s.recall >= RECALL, table(s)


def test_class_agreement(scored) -> None:  # type: ignore[no-untyped-def]
    s = scored[2]
    assert s.agreement >= AGREEMENT, table(s)


def test_false_alarms(scored) -> None:  # type: ignore[no-untyped-def]
    s = scored[2]
    assert s.false_alarm_rate <= FALSE_ALARMS, table(s)


def test_key_fields(scored) -> None:  # type: ignore[no-untyped-def]
    s = scored[2]
    assert s.field_agreement >= FIELDS, table(s)


def test_every_gpu_lost_event_carries_xid_79(scored) -> None:  # type: ignore[no-untyped-def]
    lost = [h for o in scored[0] for h in o.events if h.cls == "gpu_fell_off_bus"
            or (h.cls == "xid" and "fallen off the bus" in h.raw)]
    assert len(lost) >= 8
    assert all(h.fields.get("xid") == 79 for h in lost), [h.raw for h in lost if h.fields.get("xid") != 79]


def test_corrected_aer_alarms_only_at_a_rate(scored) -> None:  # type: ignore[no-untyped-def]
    corrected = [(o, h) for o in scored[0] for h in o.events if h.cls == "pcie_aer"
                 and h.fields.get("aer_kind") == "corrected"]
    quiet = [h for _, h in corrected if not h.alarm]
    loud = [h for _, h in corrected if h.alarm]
    assert quiet and loud
    assert all(h.lines < 2 for h in quiet) and all(h.lines >= 2 for h in loud)
    assert all(h.severity.name == "WARNING" for h in loud)
