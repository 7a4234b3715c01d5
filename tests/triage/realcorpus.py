"""The real-world corpus (tests/data/triage/real/): its records, one triage run over all of them, the score.

Each record is written to its own file (one host per record) and the whole directory goes through
`coldaisle triage` once, as a user would run it. A record with `alarm: true` is recalled when triage raises an
alarm on its file; its predicted class is the worst alarming event's (the first on ties); class agreement is
counted over recalled records; a benign record (`alarm: false`) on which triage alarms is a false alarm.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from coldaisle.triage.analyze import TriageResult, triage
from coldaisle.triage.interface import Hit

REAL = Path(__file__).resolve().parents[1] / "data" / "triage" / "real"


@dataclass(frozen=True)
class Record:
    """One corpus record as the README defines it."""

    id: str
    source: str
    lines: str
    cls: str
    alarm: bool
    fields: dict[str, Any]


@dataclass
class Outcome:
    """What triage made of one record."""

    record: Record
    events: list[Hit]

    @property
    def alarms(self) -> list[Hit]:
        """The record's events that raise an alarm."""
        return [h for h in self.events if h.alarm]

    @property
    def primary(self) -> Hit | None:
        """The worst alarming event (the first of equals): the record's predicted class."""
        return min(self.alarms, key=lambda h: (-h.severity, h.order), default=None)


@dataclass
class Score:
    """Recall, class agreement and false alarms, per class and overall."""

    total: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    recalled: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    agreed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    benign: int = 0
    false_alarms: list[Outcome] = field(default_factory=list)
    missed: list[Outcome] = field(default_factory=list)
    disagreed: list[Outcome] = field(default_factory=list)
    fields_expected: int = 0
    fields_found: int = 0

    @property
    def recall(self) -> float:
        """Alarm records on which triage alarmed."""
        return sum(self.recalled.values()) / max(sum(self.total.values()), 1)

    @property
    def agreement(self) -> float:
        """Recalled records whose predicted class is the labelled one."""
        return sum(self.agreed.values()) / max(sum(self.recalled.values()), 1)

    @property
    def false_alarm_rate(self) -> float:
        """Benign records on which triage alarmed."""
        return len(self.false_alarms) / max(self.benign, 1)

    @property
    def field_agreement(self) -> float:
        """Expected key fields (xid, pci, pid, device ...) of recalled records that triage extracted equal."""
        return self.fields_found / max(self.fields_expected, 1)


def load_records(root: Path = REAL) -> list[Record]:
    """Every record of every YAML file in the corpus folder, with a stable id (file stem and index)."""
    out = []
    for path in sorted(root.glob("*.yaml")):
        for i, rec in enumerate(yaml.safe_load(path.read_text(encoding="utf-8"))):
            out.append(Record(f"{path.stem}-{i:03d}", rec["source"], rec["lines"], rec.get("class", "benign"),
                              bool(rec.get("alarm", True)), dict(rec.get("fields") or {})))
    return out


def run(records: list[Record], folder: Path) -> tuple[list[Outcome], TriageResult]:
    """Write each record to its own file and triage the folder once."""
    names = {}
    for rec in records:
        name = f"r{rec.id}.log"
        (folder / name).write_text(rec.lines, encoding="utf-8")
        names[name] = rec
    result = triage([folder])
    events: dict[str, list[Hit]] = defaultdict(list)
    for h in result.hits:
        events[Path(h.file).name].append(h)
    return [Outcome(rec, events[name]) for name, rec in names.items()], result


def score(outcomes: list[Outcome]) -> Score:
    """Score every outcome against its label."""
    s = Score()
    for o in outcomes:
        rec, primary = o.record, o.primary
        if not rec.alarm:
            s.benign += 1
            if primary is not None:
                s.false_alarms.append(o)
            continue
        s.total[rec.cls] += 1
        if primary is None:
            s.missed.append(o)
            continue
        s.recalled[rec.cls] += 1
        if primary.cls == rec.cls:
            s.agreed[rec.cls] += 1
        else:
            s.disagreed.append(o)
        s.fields_expected += len(rec.fields)
        s.fields_found += sum(1 for k, v in rec.fields.items() if _found(primary, k, v))
    return s


def _found(h: Hit, key: str, want: Any) -> bool:
    """Whether the event carries the expected field (a `node` is the host the event is reported on)."""
    return h.fields.get(key) == want or (key == "node" and h.host == want)


def table(s: Score) -> str:
    """The per-class table the test prints."""
    rows = [f"{'class':<26} {'records':>7} {'recall':>7} {'agree':>7}"]
    for cls in sorted(s.total):
        rec = s.recalled[cls]
        rows.append(f"{cls:<26} {s.total[cls]:>7} {rec / s.total[cls]:>7.2f} {s.agreed[cls] / max(rec, 1):>7.2f}")
    rows.append(f"{'all alarm records':<26} {sum(s.total.values()):>7} {s.recall:>7.3f} {s.agreement:>7.3f}")
    rows.append(f"false alarms: {len(s.false_alarms)} of {s.benign} benign records ({s.false_alarm_rate:.3f}); "
                f"key fields: {s.fields_found} of {s.fields_expected} ({s.field_agreement:.3f})")
    rows += [f"missed {o.record.id} ({o.record.cls}): {o.record.source}" for o in s.missed]
    rows += [f"class {o.record.id}: {o.primary.cls if o.primary else '-'} != {o.record.cls}" for o in s.disagreed]
    rows += [f"false alarm {o.record.id}: {[h.cls for h in o.alarms]}" for o in s.false_alarms]
    return "\n".join(rows)
