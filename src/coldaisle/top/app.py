"""`coldaisle top` on a terminal: a rich Live screen redrawn after every sample; `q` or Ctrl-C quits.

Without a terminal (a pipe, a file) it prints one screen after `--duration` (or after the first sample),
so the same view can be captured by scripts and docs.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import termios
import tty
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live

from coldaisle.top.render import render
from coldaisle.top.session import TopOptions, TopSession
from coldaisle.top.state import Snapshot


def run(o: TopOptions, console: Console, *, once: bool = False) -> int:
    """Watch the node until `q`, Ctrl-C or `--duration`; returns the exit code."""
    session = TopSession(o)
    undo = capture_logs(session.recorder.notes)
    try:
        if once or not console.is_terminal:
            snap = _until_done(session, o, once or o.duration_s is None, lambda _s: None)
            if snap is not None:
                console.print(render(snap, console.width))
            return 0
        with Live(console=console, screen=True, auto_refresh=False) as live, keys() as pressed:
            def show(snap: Snapshot) -> bool:
                live.update(render(snap, console.width), refresh=True)
                return "q" in pressed()
            _until_done(session, o, False, show)
    except KeyboardInterrupt:
        pass
    finally:
        undo()
        session.close()
    return 0


def _until_done(session: TopSession, o: TopOptions, first_only: bool,
                show: Callable[[Snapshot], bool]) -> Snapshot | None:
    """Step until the duration is spent, `show` asks to stop, or (first_only) one screen exists."""
    end = None if o.duration_s is None else session.clock.monotonic() + o.duration_s
    last = None
    while end is None or session.clock.monotonic() < end - 1e-9:
        snap = session.step()
        if snap is None:
            continue
        last = snap
        if first_only or show(snap):
            break
    return last


@contextmanager
def keys() -> Iterator[Callable[[], str]]:
    """Keys typed since the last call, without waiting (cbreak mode, so Ctrl-C still interrupts)."""
    fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
    if fd is None:
        yield lambda: ""
        return
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        def pressed() -> str:
            out = b""
            while select.select([fd], [], [], 0)[0]:
                chunk = os.read(fd, 64)
                if not chunk:
                    break
                out += chunk
            return out.decode(errors="replace").lower()

        yield pressed
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class _Notes(logging.Handler):
    """Warnings from the agent's parts go to the screen's note lines instead of over the drawing."""

    def __init__(self, notes: deque[str]) -> None:
        super().__init__(logging.WARNING)
        self.notes = notes

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("coldaisle.notify"):  # alerts are in the actions table already
            self.notes.append(record.getMessage())


def capture_logs(notes: deque[str]) -> Callable[[], None]:
    """Route the `coldaisle` loggers into `notes` while top runs; returns the undo."""
    logger = logging.getLogger("coldaisle")
    handler, before = _Notes(notes), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False

    def undo() -> None:
        logger.removeHandler(handler)
        logger.propagate = before

    return undo
