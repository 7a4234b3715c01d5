"""The incident bundle: what a person opening it after the fact needs to tell what happened and why.

Layout: summary.md (verdict, evidence, times, command, exit code), verdict.json, stacks/<pid>.txt,
output.log (the job's last lines), heartbeats.json and flight_recorder/ (NCCL trace dumps, when a rank
wrote any). Written to a hidden temporary directory beside the target, then renamed into place:
a half-written bundle is never seen.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coldaisle.guard.heartbeat import HeartbeatSnapshot
from coldaisle.guard.recent import RecentTelemetry
from coldaisle.guard.watch import Verdict


@dataclass(frozen=True, slots=True)
class Incident:
    """Everything a bundle holds, gathered by the supervisor."""

    verdict: Verdict
    command: tuple[str, ...]
    started: float  # UTC epoch seconds
    ended: float
    exit_code: int
    job_status: str  # "exited 3", "killed by SIGKILL", "still running" ...
    stacks: dict[int, str] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)
    heartbeats: HeartbeatSnapshot | None = None
    actions: list[str] = field(default_factory=list)  # what the supervisor did, in order
    flight_recorder: dict[str, bytes] = field(default_factory=dict)  # PyTorch NCCL trace dumps, by file name
    telemetry: RecentTelemetry | None = None  # the last minutes: job memory, heartbeat, the job's GPUs


def write_bundle(directory: Path, incident: Incident) -> Path:
    """Write the bundle to `directory` (which must not exist yet), atomically; returns it."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "stacks").mkdir(parents=True)
    try:
        _write_files(tmp, incident)
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _write_files(tmp: Path, incident: Incident) -> None:
    """Each file of the bundle."""
    for pid, text in incident.stacks.items():
        (tmp / "stacks" / f"{pid}.txt").write_text(text, encoding="utf-8")
    if incident.flight_recorder:
        (tmp / "flight_recorder").mkdir()
        for name, data in incident.flight_recorder.items():
            (tmp / "flight_recorder" / Path(name).name).write_bytes(data)
    (tmp / "output.log").write_text("".join(line + "\n" for line in incident.output), encoding="utf-8")
    (tmp / "heartbeats.json").write_text(_json(heartbeats_json(incident.heartbeats)), encoding="utf-8")
    (tmp / "verdict.json").write_text(_json(verdict_json(incident)), encoding="utf-8")
    (tmp / "summary.md").write_text(summary_markdown(incident), encoding="utf-8")
    if incident.telemetry is not None and incident.telemetry.rows:
        (tmp / "telemetry.csv").write_text(incident.telemetry.to_csv(), encoding="utf-8")
    from coldaisle.guard.bundle_html import bundle_report  # matplotlib: loaded only when a bundle is written

    (tmp / "report.html").write_text(bundle_report(incident), encoding="utf-8")


def verdict_json(incident: Incident) -> dict[str, Any]:
    """The decision as data, for scripts that sort many bundles."""
    v = incident.verdict
    return {"verdict": str(v.kind), "reason": v.reason, "evidence": v.evidence, "exit_code": incident.exit_code,
            "job_status": incident.job_status, "command": list(incident.command),
            "started": _iso(incident.started), "ended": _iso(incident.ended), "actions": incident.actions}


def heartbeats_json(snapshot: HeartbeatSnapshot | None) -> dict[str, Any]:
    """The last heartbeat read, NaN rates as null."""
    if snapshot is None:
        return {"ranks": [], "problems": []}
    ranks = [{k: (None if isinstance(x, float) and math.isnan(x) else x) for k, x in asdict(r).items()}
             for r in snapshot.ranks]
    return {"ranks": ranks, "problems": [asdict(p) for p in snapshot.problems]}


def summary_markdown(incident: Incident) -> str:
    """A short page for the person on call: what, why, when, what was done, where the rest is."""
    v = incident.verdict
    lines = [f"# coldaisle run: {v.kind}", "", v.reason, "",
             f"- Command: `{shlex.join(incident.command)}`",
             f"- Started: {_iso(incident.started)}; ended: {_iso(incident.ended)} "
             f"({incident.ended - incident.started:.1f} s)",
             f"- Job: {incident.job_status}; `coldaisle run` exit code: {incident.exit_code}", "", "## Evidence", ""]
    lines += [f"- {k}: `{json.dumps(val, default=str)}`" for k, val in v.evidence.items() if k != "ranks"] or [
        "- none recorded"]
    lines += _ranks_table(v.evidence.get("ranks"))
    lines += ["", "## Actions", ""] + ([f"- {a}" for a in incident.actions] or ["- none"])
    lines += ["", "## Files", "", f"- stacks/: {len(incident.stacks)} process(es)",
              f"- output.log: the job's last {len(incident.output)} output lines", "- heartbeats.json, verdict.json",
              "- telemetry.csv: the last minutes (job memory, heartbeat, the job's GPUs), one row a second",
              "- report.html: this page with the telemetry plotted (opens offline)"]
    if incident.output:
        lines += ["", "## Last output", "", "```", *incident.output[-10:], "```"]
    return "\n".join(lines) + "\n"


def _ranks_table(ranks: Any) -> list[str]:
    """Where each rank was when the verdict came (stacks/<pid>.txt holds the whole dump)."""
    if not ranks:
        return []
    rows = ["", "## Ranks", "", "| rank | pid | doing | at | last step | stack |",
            "| --- | --- | --- | --- | --- | --- |"]
    rows += [f"| {r['rank']} | {r['pid']} | {r['activity']}{' (D state)' if r.get('d_state') else ''} | "
             f"`{r['at']}` | {r.get('step') if r.get('step') is not None else '-'} | stacks/{r['pid']}.txt |"
             for r in ranks]
    return rows


def default_bundle_dir(now: float, base: Path | None = None) -> Path:
    """`./coldaisle-run-20250101T030400Z`: a timestamped folder when --bundle is not given."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    return (base or Path.cwd()) / f"coldaisle-run-{stamp}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"
