"""Where and when a log line says it happened: the timestamps real software prints, and the host it names.

`parse(line, year)` peels wrappers (`wrappers.py`) and reads, in any nesting, first match wins:

- printk: `[ 1234.567890]` uptime, with a caller id `[   C16]` / `[    T1]` after it, `show_delta`'s
  `[13.206505 < 0.000013 >]`, a vendor CPU prefix `[2-3219.1870]`; `dmesg -T` `[Fri Aug 29 20:09:52 2025]`
  in any locale (`[一 8月 25 16:20:28 2025]`, `[Do Mär 26 07:38:49 2020]`); `dmesg -H` `[Jul31 01:56]`
  (its relative `[  +0.000844]` lines carry no time of their own);
- BSD syslog / `journalctl -o short` / `short-precise` `May 21 03:04:00[.123456] host ident[pid]: `, month
  names in any glibc locale (`июл 27`, `12月 19`, `janv. 3`), with or without the host, a remote IP as host;
- ISO 8601: `journalctl -o short-iso(-precise)`, `dmesg --time-format=iso` (`2025-01-21T02:21:33,498559+00:00`),
  RFC 5424 with `<PRI>1` and rsyslog's file form without it (`2022-12-26T07:44:45+01:00 host app - - - msg`),
  CRI container logs and `kubectl logs --timestamps` (`2023-10-06T00:17:09.669794202Z stdout F `), Talos
  (`node: kern: warning: [2025-02-25T16:19:43.741311529Z]: `), Slurm/DeepSpeed `[2024-05-21T03:00:00.000]`;
- glog/klog `E0521 03:04:00.123456` and PyTorch's `[rank0]:[E321 02:07:08.408271257`, vLLM `ERROR 05-21
  03:04:00`, nv-fabricmanager `[Feb 27 2025 15:10:02]`, `ipmitool sel elist` rows, ctime lines (`Tue Feb 13
  10:00:07 -0800`, NetApp ONTAP), Loghub's Thunderbird/BGL/HPC records (epoch seconds and node).

Years missing from a stamp are guessed (`year_guessed`) and fixed against the corpus later (timeline.py).
Times without a zone are read as UTC. NCCL's `host:pid:tid [dev]` prefix names the host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from coldaisle.triage.dates import epoch as _epoch
from coldaisle.triage.dates import month
from coldaisle.triage.interface import StampClock
from coldaisle.triage.wrappers import peel, strip_quote

_ISO = r"(?P<date>\d{4}-\d\d-\d\d)[T ](?P<time>\d\d:\d\d:\d\d)(?:[.,](?P<frac>\d+))?(?P<tz>Z|[+-]\d\d:?\d\d)?"
_MON = r"(?P<mon>\d{1,2}[月월]|[^\W\d_]{2,6}\.?)"
_UPTIME = re.compile(r"\[\s*(?P<up>\d+\.\d{4,9})(?:\s*<\s*[\d.]+\s*>)?\](?:\[\s*[CT]\d+\])?\s?")
_VENDOR_UP = re.compile(r"\[\d+-(?P<up>\d+\.\d+)\]\s?")
_XORG = re.compile(r"\[\s*\d+\.\d{1,3}\]\s?|\[\s*\+\d+\.\d+\]\s?")
_DMESG_T = re.compile(r"\[[^\W\d_]{1,4}\.? +" + _MON
                      + r" +(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d) (?P<year>\d{4})\]\s?")
_DMESG_H = re.compile(r"\[(?P<mon>[A-Z][a-z]{2})(?P<day>\d{1,2}) (?P<time>\d\d:\d\d)\]\s?")
_FABRIC = re.compile(r"\[(?P<mon>[A-Z][a-z]{2}) (?P<day>\d\d) (?P<year>\d{4}) (?P<time>\d\d:\d\d:\d\d)\]\s?")
_BRACKET_ISO = re.compile(r"\[" + _ISO + r"\]\s?")
_DATE = _MON + r" +(?P<day>\d{1,2}),? (?P<time>\d\d:\d\d:\d\d)(?:\.(?P<frac>\d+))?"
_SYSLOG = re.compile(_DATE + r" +(?:(?:\w+@)?(?P<host>[^\s:\[\]]+|\[[0-9a-fA-F:]+\]) )??"
                     r"(?P<ident>[^\s:\[]+)(?:\[\d+\])?: ?")
_SYSLOG_DATE = re.compile(_DATE + r"\s")
_CTIME = re.compile(r"[^\W\d_]{2,4}\.? " + _MON + r" +(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d)"
                    r"(?: (?P<tz>[+-]\d{4}))?(?: (?P<year>\d{4}))?\b\s?")
_RFC5424 = re.compile(r"(?:<\d{1,3}>1 )?" + _ISO + r" (?P<host>\S+) (?P<app>[^\s:]+) (?P<procid>[^\s:]+) "
                      r"(?P<msgid>[^\s:]+) (?:-|(?:\[[^\]]*\])+) ?")
_CRI = re.compile(_ISO + r" (?:stdout|stderr) [FP] ")
_TALOS = re.compile(r"(?P<host>[\w.:-]+): (?:\S.*?: )?(?:emerg|alert|crit|err|warning|notice|info|debug): \["
                    + _ISO + r"\]:\s?")
_ISO_HOST = re.compile(_ISO + r"(?: ?(?:[+-]\d{4}(?: [A-Z+-]\w*)?))?:?\s+(?:(?P<host>[\w.:-]+) "
                       r"(?P<ident>[^\s:\[]+)(?:\[\d+\])?: )?")
_LOGHUB = re.compile(r"(?:-|[A-Z_]+) (?P<epoch>\d{9,10}) \d{4}\.\d\d\.\d\d (?P<host>\S+) "
                     r"(?:\d{4}-\d\d-\d\d-[\d.]+ \S+ )?")
_LOGHUB_HPC = re.compile(r"\d+ (?P<host>[\w-]+) [\w.]+ [\w.]+ (?P<epoch>\d{9,10}) \d+ ")
_GLOG = re.compile(r"(?:\[rank\d+\]:\[)?[IWEF](?P<mon>1[0-2]|0?[1-9])(?P<day>[0-3]\d) "
                   r"(?P<time>\d\d:\d\d:\d\d)(?:\.(?P<frac>\d+))?[ \]]")
_VLLM = re.compile(r"(?:INFO|WARNING|ERROR|DEBUG|CRITICAL) (?P<mon>\d\d)-(?P<day>\d\d) (?P<time>\d\d:\d\d:\d\d)")
_ANY_ISO = re.compile(_ISO)
_SEL = re.compile(r"\s*[0-9a-fA-F]+ \| (?P<mon>\d\d)/(?P<day>\d\d)/(?P<year>\d{4}) \| (?P<time>\d\d:\d\d:\d\d) \|")
_NCCL_HOST = re.compile(r"(?P<host>[A-Za-z][\w.-]*):\d+:\d+ \[\d+\] ")
_NO_HOST = frozenset({"localhost", "localhost.localdomain", "(none)", "-", "kernel", "hostname"})
EPOCH_FLOOR = 1e9  # a bracketed "uptime" beyond 31 years is a Unix time (UCX logs `[1750832176.378614]`)


@dataclass(frozen=True, slots=True)
class Stamp:
    """A line's time (UTC epoch or uptime), its host if it names one, and whether the year was guessed."""

    clock: StampClock = StampClock.NONE
    time: float | None = None
    uptime: float | None = None
    host: str = ""
    year_guessed: bool = False


def _iso(m: re.Match[str]) -> float | None:
    y, mo, d = (int(x) for x in m["date"].split("-"))
    return _epoch(y, mo, d, m["time"], m["frac"], m["tz"])


def _host(name: str | None) -> str:
    name = (name or "").strip("[]")
    return name if name and name not in _NO_HOST and not name.isdigit() else ""


@dataclass(slots=True)
class _Found:
    """What the formats found so far on one line."""

    time: float | None = None
    uptime: float | None = None
    host: str = ""
    guessed: bool = False
    done: bool = False  # the message itself was reached (after a syslog/ISO host and ident)

    def stamp(self) -> Stamp:
        clock = StampClock.UTC if self.time is not None else (
            StampClock.UPTIME if self.uptime is not None else StampClock.NONE)
        return Stamp(clock, self.time, self.uptime, self.host, self.guessed and self.time is not None)


def parse(line: str, year: int) -> Stamp:
    """The stamp at the start of `line` (`year` fills formats that print none)."""
    text, f = strip_quote(line), _Found()
    for _ in range(8):
        dated = f.done or f.time is not None or f.uptime is not None
        n = _step(text, year, f, dated)
        if n is None:
            p = peel(text, dated)
            if p is None:
                break
            f.uptime = f.uptime if f.uptime is not None else p.uptime
            f.host = f.host or _host(p.host)
            n = len(text) - len(p.rest)
        text = text[n:]
        if not text:
            break
    if f.time is None and f.uptime is None and (m := _ANY_ISO.search(text, 0, 80)):
        f.time = _iso(m)
    f.host = f.host or _nccl_host(text)
    return f.stamp()


def _nccl_host(text: str) -> str:
    m = _NCCL_HOST.search(text, 0, 120)
    return m["host"] if m else ""


def _step(text: str, year: int, f: _Found, dated: bool) -> int | None:
    """Read one timestamp format at the start of `text` into `f`; the characters it used, or None.

    Once a line is dated only a printk uptime may follow (syslog's `kernel: [ 8.546423]`)."""
    c = text[:1]
    if dated:
        m = _UPTIME.match(text) if c == "[" else None
        if m is not None and f.uptime is None and float(m["up"]) < EPOCH_FLOOR:
            f.uptime = float(m["up"])
        return m.end() if m is not None else None
    if c == "[":
        return _bracketed(text, year, f)
    for rx, kind in _FORMATS:
        if (m := rx.match(text)) is not None and (n := kind(m, year, f)) is not None:
            return n
    return None


def _set(f: _Found, t: float | None, host: str | None = None, guessed: bool = False, done: bool = False) -> None:
    if f.time is None and t is not None:
        f.time, f.guessed = t, guessed
    f.host = f.host or _host(host)
    f.done = f.done or done


def _syslog(m: re.Match[str], year: int, f: _Found) -> int | None:
    if (mon := month(m["mon"])) is None:
        return None
    gd = m.groupdict()
    _set(f, _epoch(year, mon, int(m["day"]), m["time"], m["frac"]), gd.get("host"), True, "ident" in gd)
    return m.end()


def _ctime(m: re.Match[str], year: int, f: _Found) -> int | None:
    if (mon := month(m["mon"])) is None:
        return None
    _set(f, _epoch(int(m["year"] or year), mon, int(m["day"]), m["time"], None, m["tz"]), None, not m["year"])
    return m.end()


def _iso_kind(m: re.Match[str], year: int, f: _Found) -> int | None:
    gd = m.groupdict()
    _set(f, _iso(m), gd.get("host"), done="app" in gd or gd.get("ident") is not None)
    return m.end()


def _epoch_kind(m: re.Match[str], year: int, f: _Found) -> int | None:
    _set(f, float(m["epoch"]), m["host"])
    return m.end()


def _month_number(m: re.Match[str], year: int, f: _Found) -> int | None:
    _set(f, _epoch(int(m.groupdict().get("year") or year), int(m["mon"]), int(m["day"]), m["time"],
                   m.groupdict().get("frac")), None, not m.groupdict().get("year"))
    return m.end()


_FORMATS = [(_TALOS, _iso_kind), (_RFC5424, _iso_kind), (_CRI, _iso_kind), (_ISO_HOST, _iso_kind),
            (_LOGHUB, _epoch_kind), (_LOGHUB_HPC, _epoch_kind), (_SEL, _month_number), (_GLOG, _month_number),
            (_VLLM, _month_number), (_SYSLOG, _syslog), (_SYSLOG_DATE, _syslog), (_CTIME, _ctime)]


def _uptime(m: re.Match[str], year: int, f: _Found) -> int | None:
    up = float(m["up"])
    if up >= EPOCH_FLOOR:  # UCX and others bracket a Unix time
        _set(f, up)
    elif f.uptime is None:
        f.uptime = up
    return m.end()


def _dated(m: re.Match[str], year: int, f: _Found) -> int | None:
    """`[Fri Aug 29 20:09:52 2025]`, `[Feb 27 2025 15:10:02]`, `[Jul31 01:56]` (no year): any month name."""
    if (mon := month(m["mon"])) is None:
        return None
    given = m.groupdict().get("year")
    _set(f, _epoch(int(given or year), mon, int(m["day"]), m["time"], None), guessed=not given)
    return m.end()


def _bracket_iso(m: re.Match[str], year: int, f: _Found) -> int | None:
    _set(f, _iso(m))
    return m.end()


def _skip(m: re.Match[str], year: int, f: _Found) -> int | None:
    return m.end()  # Xorg's server time, `dmesg -H` deltas: no time of their own


_BRACKETED = [(_UPTIME, _uptime), (_VENDOR_UP, _uptime), (_DMESG_T, _dated), (_FABRIC, _dated), (_DMESG_H, _dated),
              (_BRACKET_ISO, _bracket_iso), (_GLOG, _month_number), (_XORG, _skip)]


def _bracketed(text: str, year: int, f: _Found) -> int | None:
    for rx, kind in _BRACKETED:
        if (m := rx.match(text)) is not None and (n := kind(m, year, f)) is not None:
            return n
    return None


def with_host(stamp: Stamp, host: str) -> Stamp:
    """The same stamp naming `host` (a journal record's _HOSTNAME)."""
    return replace(stamp, host=host)
