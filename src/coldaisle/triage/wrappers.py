"""What real lines carry in front of the log message: quote markers, record headers and tool prefixes.

`peel()` removes one wrapper at the start of a line and says what it knew (an uptime, a host); `stamps.parse`
calls it until none is left, between the timestamp formats. Each wrapper is named by the tool that writes it:

- e-mail quotes: `> `, `> > `, `>>>> ` (and the indentation after them), as kernel logs reach mailing lists;
- `grep` over several files: `/var/log/messages-20170402:Apr  2 ...`;
- raw `/dev/kmsg` records: `6,3998,261229012,-;msg` (priority, sequence, microseconds since boot, flags;
  Documentation/ABI/testing/dev-kmsg);
- syslog priority `<6>` before a printk stamp (pstore, `dmesg -r`, Android consoles);
- `dmesg -x` / `--decode` facility and level: `kern  :warn  : `;
- `kubectl logs --prefix`: `[pod/NAME/CONTAINER] `; `srun --label` with a host: `[host:3]: `;
- a host and the kernel tag without a date: `node-7 kernel: ` (journal excerpts cut by hand, gpud's tests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_QUOTE = re.compile(r"(?:[ \t]*>)+[ \t]*")
_GREP_FILE = re.compile(r"/[\w./-]+:(?=\S)")
_KMSG = re.compile(r"(?P<pri>\d{1,3}),(?P<seq>\d+),(?P<usec>\d+),[^;\s]*;")
_PRI = re.compile(r"<(?P<pri>\d{1,3})>(?!1 )")
_DMESG_X = re.compile(r"(?:kern|user|mail|daemon|auth|syslog|lpr|news|uucp|cron|authpriv|ftp|local[0-7])\s*:"
                      r"\s*(?:emerg|alert|crit|err|warn|notice|info|debug)\s*:\s")
_KUBECTL = re.compile(r"\[pod/[^\]\s]+\] ")
_SRUN = re.compile(r"\[(?P<host>[A-Za-z][\w.-]*):\d+\]:\s*")
_HOST_KERNEL = re.compile(r"(?:(?P<host>[A-Za-z][\w.-]*) )?kernel: ?")
_HOST_IDENT_PID = re.compile(r"(?P<host>[A-Za-z][\w.-]*) (?P<ident>[\w./-]+)\[\d+\]: ")
_SPACE = re.compile(r"[ \t]+")


@dataclass(frozen=True, slots=True)
class Peeled:
    """The rest of the line after one wrapper, and what the wrapper told (uptime in seconds, a host)."""

    rest: str
    uptime: float | None = None
    host: str = ""


def strip_quote(line: str) -> str:
    """The line without e-mail quote markers, a grep file-name prefix and leading blanks."""
    if line[:1] in "> \t":
        m = _QUOTE.match(line)
        line = line[m.end():] if m else line.lstrip(" \t")
    if line[:1] == "/" and (m := _GREP_FILE.match(line)) and line[m.end():m.end() + 1].isalpha():
        line = line[m.end():]
    return line


def _kmsg(m: re.Match[str]) -> Peeled:
    return Peeled(m.string[m.end():], int(m["usec"]) / 1e6)


def _plain(m: re.Match[str]) -> Peeled:
    return Peeled(m.string[m.end():], host=m.groupdict().get("host") or "")


_BY_FIRST = {"digit": [(_KMSG, _kmsg)], "<": [(_PRI, _plain)], "[": [(_KUBECTL, _plain), (_SRUN, _plain)],
             "alpha": [(_DMESG_X, _plain), (_HOST_KERNEL, _plain), (_HOST_IDENT_PID, _plain)]}


def peel(line: str, dated: bool = False) -> Peeled | None:
    """One wrapper off the start of `line`, or None when it starts with none of them.

    On a line already dated only a `host kernel:` tag (after `dmesg -T`) is taken as a wrapper."""
    c = line[:1]
    if c in " \t":
        return Peeled(_SPACE.sub("", line, count=1))
    kind = "digit" if c.isdigit() else "alpha" if c.isalpha() else c
    wrappers = [(_HOST_KERNEL, _plain)] if dated else _BY_FIRST.get(kind, [])
    if dated and kind != "alpha":
        return None
    for rx, make in wrappers:
        if (m := rx.match(line)) is not None:
            return make(m)
    return None
