"""Where and when a log line says it happened: the timestamp prefixes real software prints, and its host.

Recognised (first match wins): dmesg `[ 1234.567890]` (uptime), `dmesg -T` `[Tue May 21 03:04:00 2024]`,
BSD syslog `May 21 03:04:00 host ident[pid]: ` (no year; a following `[uptime]` ties boot time to wall time),
RFC 3339 / `journalctl -o short-iso(-precise)` / `dmesg --time-format=iso` `2024-05-21T03:04:00[.,frac]+00:00
host ident: `, RFC 5424 `<PRI>1 TIMESTAMP HOST ...`, Slurm and DeepSpeed `[2024-05-21T03:00:00.000]`, NCCL
2.26+ `[2024-05-21 03:04:00] `, Python logging `2024-05-21 03:04:00,123`, glog `E0521 03:04:00.123456` and
PyTorch 2.4+ `[rank0]:[E321 02:07:08.408271257` (month unpadded; no year) and vLLM `ERROR 05-21 03:04:00`
(no year). NCCL's `host:pid:tid [dev]` prefix names the host; `ipmitool sel elist` rows carry
`| 05/21/2024 | 04:30:00 |`. Times without a zone are read as UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from coldaisle.triage.interface import StampClock

_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                       "Nov", "Dec"), start=1)}
_ISO = r"(?P<date>\d{4}-\d\d-\d\d)[T ](?P<time>\d\d:\d\d:\d\d)(?:[.,](?P<frac>\d+))?(?P<tz>Z|[+-]\d\d:?\d\d)?"
_DMESG = re.compile(r"\[\s*(?P<up>\d+\.\d+)\]")
_DMESG_T = re.compile(r"\[\w{3} (?P<mon>\w{3}) +(?P<day>\d+) (?P<time>\d\d:\d\d:\d\d) (?P<year>\d{4})\]")
_SYSLOG = re.compile(r"(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d)(?:\.(?P<frac>\d+))? "
                     r"(?P<host>[\w.-]+) (?P<ident>[^\s:\[]+)(?:\[\d+\])?: (?:\[\s*(?P<up>\d+\.\d+)\] )?")
_ISO_HOST = re.compile(_ISO + r"\s+(?:(?P<host>[\w.-]+) (?P<ident>[^\s:\[]+)(?:\[\d+\])?: "
                       r"(?:\[\s*(?P<up>\d+\.\d+)\] )?)?")
_RFC5424 = re.compile(r"<\d{1,3}>1 " + _ISO + r" (?P<host>\S+) ")
_BRACKET_ISO = re.compile(r"\[" + _ISO + r"\]")
_GLOG = re.compile(r"(?:\[rank\d+\]:\[)?[IWEF](?P<mon>1[0-2]|0?[1-9])(?P<day>[0-3]\d) "
                   r"(?P<time>\d\d:\d\d:\d\d)(?:\.(?P<frac>\d+))? ")
_VLLM = re.compile(r"(?:INFO|WARNING|ERROR|DEBUG|CRITICAL) (?P<mon>\d\d)-(?P<day>\d\d) (?P<time>\d\d:\d\d:\d\d)")
_ANY_ISO = re.compile(_ISO)
_SEL = re.compile(r"\s*[0-9a-fA-F]+ \| (?P<mon>\d\d)/(?P<day>\d\d)/(?P<year>\d{4}) \| (?P<time>\d\d:\d\d:\d\d) \|")
_NCCL_HOST = re.compile(r"(?P<host>[A-Za-z][\w.-]*):\d+:\d+ \[\d+\] ")
_NO_HOST = frozenset({"localhost", "(none)", "-", "kernel"})


@dataclass(frozen=True, slots=True)
class Stamp:
    """A line's time (UTC epoch or uptime), its host if it names one, and whether the year was guessed."""

    clock: StampClock = StampClock.NONE
    time: float | None = None
    uptime: float | None = None
    host: str = ""
    year_guessed: bool = False


def _seconds(hms: str, frac: str | None) -> float:
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + int(s) + (float("0." + frac) if frac else 0.0)


def _epoch(year: int, month: int, day: int, hms: str, frac: str | None, tz: str | None = None) -> float | None:
    try:
        base = datetime(year, month, day, tzinfo=UTC).timestamp()
    except ValueError:
        return None
    offset = 0
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60)
    return base + _seconds(hms, frac) - offset


def _iso(m: re.Match[str]) -> float | None:
    y, mo, d = (int(x) for x in m["date"].split("-"))
    return _epoch(y, mo, d, m["time"], m["frac"], m["tz"])


def _host(name: str | None) -> str:
    return name if name and name not in _NO_HOST else ""


def _nccl_host(line: str, at: int) -> str:
    m = _NCCL_HOST.match(line, at)
    return m["host"] if m else ""


def parse(line: str, year: int) -> Stamp:
    """The stamp at the start of `line` (`year` fills formats that print none)."""
    if line.startswith("["):
        return _bracketed(line, year)
    if (m := _SYSLOG.match(line)) and m["mon"] in _MONTHS:
        t = _epoch(year, _MONTHS[m["mon"]], int(m["day"]), m["time"], m["frac"])
        return Stamp(StampClock.UTC, t, float(m["up"]) if m["up"] else None, _host(m["host"]), True)
    if m := _ISO_HOST.match(line):
        up = float(m["up"]) if m["up"] else None
        return Stamp(StampClock.UTC, _iso(m), up, _host(m["host"]) or _nccl_host(line, m.end()))
    if m := _RFC5424.match(line):
        return Stamp(StampClock.UTC, _iso(m), None, _host(m["host"]))
    return _other(line, year)


def _other(line: str, year: int) -> Stamp:
    if m := _SEL.match(line):  # ipmitool sel elist
        return Stamp(StampClock.UTC, _epoch(int(m["year"]), int(m["mon"]), int(m["day"]), m["time"], None))
    if (m := _GLOG.match(line)) or (m := _VLLM.match(line)):
        return Stamp(StampClock.UTC, _epoch(year, int(m["mon"]), int(m["day"]), m["time"], m.groupdict().get("frac")),
                     None, "", True)
    if m := _ANY_ISO.search(line, 0, 80):
        return Stamp(StampClock.UTC, _iso(m), None, _nccl_host(line, 0))
    return Stamp(host=_nccl_host(line, 0))


def _bracketed(line: str, year: int) -> Stamp:
    if m := _DMESG.match(line):
        return Stamp(StampClock.UPTIME, None, float(m["up"]))
    if (m := _DMESG_T.match(line)) and m["mon"] in _MONTHS:
        return Stamp(StampClock.UTC, _epoch(int(m["year"]), _MONTHS[m["mon"]], int(m["day"]), m["time"], None))
    if m := _BRACKET_ISO.match(line):
        return Stamp(StampClock.UTC, _iso(m), None, _nccl_host(line, m.end() + 1))
    if m := _GLOG.match(line):
        return Stamp(StampClock.UTC, _epoch(year, int(m["mon"]), int(m["day"]), m["time"], m["frac"]), None, "", True)
    return Stamp(host=_nccl_host(line, 0))
