"""Every catalog class is exercised by real-format lines; benign look-alikes never alarm; bad files are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from coldaisle.errors import ConfigError
from coldaisle.telemetry.events import Severity
from coldaisle.triage.catalog import Catalog, Matcher, load_catalog
from coldaisle.triage.scanner import ReMatcher

DATA = Path(__file__).resolve().parents[1] / "data" / "triage"

CASES = yaml.safe_load((DATA / "lines.yaml").read_text())
BENIGN = [ln for ln in (DATA / "benign.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def _nvsmi_classes() -> set[str]:
    """Classes the nvidia-smi -q dump in tests/data exercises (flattened section/key lines)."""
    import itertools

    from coldaisle.triage.interface import FileContext, ReadStats
    from coldaisle.triage.sources.nvsmi import NvidiaSmiSource

    path = DATA / "nvsmi" / "node-gpu-88.nvidia-smi-q.txt"
    ctx = FileContext(str(path), "node-gpu-88", load_catalog().matcher(), ReadStats())
    return {h.cls for h in itertools.chain(NvidiaSmiSource().hits(iter([path.read_bytes()]), ctx))}


def _real_corpus_classes(matcher: Matcher) -> set[str]:
    """Classes the real-world corpus's lines (tests/data/triage/real/) get, line by line."""
    from realcorpus import load_records

    lines = (line for rec in load_records() for line in rec.lines.splitlines())
    return {m.cls for line in lines if (m := matcher.first(line)) is not None}


def test_every_class_has_real_lines(matcher: Matcher) -> None:
    covered = {c["class"] for c in CASES} | _nvsmi_classes() | _real_corpus_classes(matcher)
    missing = set(load_catalog().classes) - covered
    assert not missing, f"catalog classes without a test line: {sorted(missing)}"


@pytest.mark.parametrize("case", CASES, ids=[f"{c['class']}-{i}" for i, c in enumerate(CASES)])
def test_line_classified(case: dict, matcher: Matcher) -> None:
    m = matcher.first(case["line"])
    assert m is not None, "no signature matched"
    assert m.cls == case["class"]
    if "severity" in case:
        assert m.severity == Severity[case["severity"].upper()]
    for key, want in case.get("fields", {}).items():
        assert m.fields.get(key) == want, f"{key}: {m.fields.get(key)!r} != {want!r}"


@pytest.mark.parametrize("line", BENIGN)
def test_benign_never_alarms(line: str, matcher: Matcher) -> None:
    m = matcher.first(line)
    assert m is None or m.severity <= Severity.INFO, f"{m.cls} ({m.severity.name}) on a benign line"


def test_xid_meaning_comes_from_the_code_table(matcher: Matcher) -> None:
    m79 = matcher.first("NVRM: Xid (PCI:0000:b1:00): 79, pid=12855, name=python3, GPU has fallen off the bus.")
    m13 = matcher.first("NVRM: Xid (PCI:0000:b1:00): 13, pid=1, name=python3, Graphics SM Warp Exception")
    m999 = matcher.first("NVRM: Xid (PCI:0000:b1:00): 999, pid=1, name=python3, something new")
    assert (m79.severity, m79.fields["xid_name"]) == (Severity.CRITICAL, "GPU has fallen off the bus")
    assert "Drain" in m79.action
    assert m13.severity == Severity.WARNING and "application" in m13.meaning
    assert m999.severity == Severity.ERROR and "xid_name" not in m999.fields  # unknown code: the signature's own


def test_match_lists_all_and_first_respects_precedence(matcher: Matcher) -> None:
    line = "node-gpu-44:1:2 [0] misc/socket.cc:484 NCCL WARN socketStartConnect: Connect to 10.0.0.45<1> failed : x"
    classes = [m.cls for m in matcher.match(line)]
    assert classes[0] == "nccl_connection_failure" and "nccl_error" in classes[1:]  # generic NCCL WARN after
    assert matcher.first(line).cls == "nccl_connection_failure"


def test_re_fallback_agrees_with_hyperscan(matcher: Matcher) -> None:
    fallback = ReMatcher(matcher.catalog)
    for case in CASES:
        a, b = matcher.first(case["line"]), fallback.first(case["line"])
        assert (a.cls, a.fields) == (b.cls, b.fields)
    block = "\n".join(c["line"] for c in CASES).encode()
    hs_ends, re_ends = [], []
    matcher.scan_block(block, lambda i, f, t, fl, c: hs_ends.append((t, i)))
    fallback.scan_block(block, lambda i, f, t, fl, c: re_ends.append((t, i)))
    assert sorted(set(hs_ends)) == sorted(set(re_ends))


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "mine.yaml"
    p.write_text(text)
    return p


def test_user_signatures_come_first_and_replace_by_id(tmp_path: Path) -> None:
    p = _write(tmp_path, """signatures:
  - id: xid
    class: my_xid
    severity: warning
    pattern: 'NVRM: Xid \\(PCI:(?P<pci>[^)]+)\\): (?P<xid>\\d+)'
    meaning: ours
  - id: site-fence
    class: fence
    severity: critical
    pattern: 'FENCE TRIPPED on (?P<node>\\S+)'
    meaning: the site's own fence
""")
    cat = load_catalog([p])
    m = cat.matcher()
    assert m.first("FENCE TRIPPED on node-gpu-7").fields == {"node": "node-gpu-7"}
    assert m.first("NVRM: Xid (PCI:0000:b1:00): 48, x").cls == "my_xid"
    assert sum(1 for s in cat.signatures if s.id == "xid") == 1


@pytest.mark.parametrize(("body", "field", "line"), [
    ("signatures:\n  - id: a\n    class: x\n    severity: loud\n    pattern: 'a'\n    meaning: m\n", "severity", 4),
    ("signatures:\n  - id: a\n    class: x\n    severity: error\n    pattern: '(unclosed'\n    meaning: m\n",
     "pattern", 5),
    ("signatures:\n  - id: a\n    class: x\n    severity: error\n    pattern: 'a'\n    meaning: m\n    colour: red\n",
     "colour", 7),
    ("signatures:\n  - id: a\n    class: x\n    severity: error\n    pattern: 'a(?P<b>c)'\n    meaning: m\n"
     "    group_by: [nope]\n", "group_by", 7),
    ("signatures:\n  - id: a\n    class: x\n    severity: error\n    pattern: 'a(?!b)'\n    meaning: m\n",
     "pattern", 5),
    ("signatures:\n  - id: a\n    class: x\n    severity: error\n    pattern: 'a'\n    meaning: m\n"
     "    alarm_rate: {field: k, value: v, lines: 0, window_s: 60}\n", "alarm_rate", 7),
])
def test_bad_signature_file_names_file_line_field(tmp_path: Path, body: str, field: str, line: int) -> None:
    p = _write(tmp_path, body)
    with pytest.raises(ConfigError) as exc:
        load_catalog([p])
    assert exc.value.file == str(p) and exc.value.line == line and field in (exc.value.field or "")


def test_duplicate_user_ids_rejected(tmp_path: Path) -> None:
    one = "  - id: same\n    class: x\n    severity: error\n    pattern: 'a'\n    meaning: m\n"
    p = _write(tmp_path, "signatures:\n" + one + one)
    with pytest.raises(ConfigError, match="already defined"):
        load_catalog([p])


def test_catalog_is_reusable_per_line_api() -> None:
    cat = load_catalog()
    assert isinstance(cat, Catalog)
    kernel = {s.spec.cls for s in cat.signatures if s.spec.source == "kernel"}
    # the agent's kernel watch counts these classes; the catalog must emit them under the same names
    assert {"xid", "gpu_fell_off_bus", "hung_task", "oom_kill", "kernel_panic", "pcie_aer"} <= kernel
