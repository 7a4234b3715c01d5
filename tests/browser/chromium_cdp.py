"""A small Chrome DevTools Protocol client: start headless Chromium, open a page, collect errors, screenshot it.

Only what the browser tests need: the flags that keep Chromium off the network and quiet (no QUIC, no
background networking, no component updates, no sync, no first-run), a fresh profile per browser,
`--remote-debugging-port=0` read back from the profile's DevToolsActivePort, and one websocket per page.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars")


@dataclass
class PageResult:
    """What a page did while it loaded: problems the console or the runtime reported, and facts read from it."""

    url: str
    errors: list[str] = field(default_factory=list)
    title: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    screenshot: Path | None = None


class Chromium:
    """One headless Chromium with its own profile; `open()` loads a page in a fresh tab."""

    def __init__(self, binary: str, *, width: int = 1280, height: int = 900) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="coldaisle-chromium-"))
        self.width, self.height = width, height
        self.log = open(self.profile / "chromium.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile / 'profile'}",
                                      "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
                                      "about:blank"], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.port = self._port()
        self._next = 0

    def _port(self, timeout: float = 30.0) -> int:
        marker = self.profile / "profile" / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited ({self.proc.returncode}):\n{self.log_tail()}")
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.05)
        raise RuntimeError(f"chromium gave no DevTools port in {timeout:g} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        """The end of Chromium's own output, for failure messages."""
        self.log.flush()
        return (self.profile / "chromium.log").read_text(errors="replace")[-3000:]

    def open(self, url: str, screenshot: Path | None = None, facts: dict[str, str] | None = None,
             timeout: float = 30.0) -> PageResult:
        """Load `url` in a new tab, wait for its load event, gather errors, evaluate `facts`, take a screenshot."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as resp:
            target = json.load(resp)
        ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=timeout)
        result = PageResult(url)
        try:
            for method in ("Runtime.enable", "Log.enable", "Page.enable"):
                self._call(ws, method, {}, result)
            self._call(ws, "Emulation.setDeviceMetricsOverride",
                       {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False}, result)
            self._call(ws, "Page.navigate", {"url": url}, result)
            self._until(ws, "Page.loadEventFired", result, timeout)
            self._settle(ws, result)
            result.title = self._eval(ws, "document.title", result)
            result.facts = {k: self._eval(ws, js, result) for k, js in (facts or {}).items()}
            if screenshot is not None:
                shot = self._call(ws, "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                  result)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                result.screenshot = screenshot
        finally:
            ws.close()
        return result

    def _call(self, ws: websocket.WebSocket, method: str, params: dict[str, Any], result: PageResult) -> Any:
        self._next += 1
        ident = self._next
        ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = json.loads(ws.recv())
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg, result)

    def _until(self, ws: websocket.WebSocket, event: str, result: PageResult, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            self._event(msg, result)
            if msg.get("method") == event:
                return
        raise TimeoutError(f"no {event} in {timeout:g} s")

    def _settle(self, ws: websocket.WebSocket, result: PageResult, quiet: float = 0.3) -> None:
        """Drain events until the page has said nothing for `quiet` seconds (late errors are caught too)."""
        ws.settimeout(quiet)
        try:
            while True:
                self._event(json.loads(ws.recv()), result)
        except websocket.WebSocketTimeoutException:
            pass
        finally:
            ws.settimeout(30)

    def _eval(self, ws: websocket.WebSocket, js: str, result: PageResult) -> Any:
        out = self._call(ws, "Runtime.evaluate", {"expression": js, "returnByValue": True}, result)
        if "exceptionDetails" in out:
            raise RuntimeError(f"{js}: {out['exceptionDetails']}")
        return out["result"].get("value")

    @staticmethod
    def _event(msg: dict[str, Any], result: PageResult) -> None:
        """Console errors and assertions, uncaught exceptions, and browser log errors (failed loads, CSP ...)."""
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            result.errors.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                        for a in p.get("args", ())))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            result.errors.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            result.errors.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}".strip())

    def close(self) -> None:
        """Stop the browser and remove its profile."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)
