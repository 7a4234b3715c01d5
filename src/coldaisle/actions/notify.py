"""Notify: one structured log line, or an Alertmanager-compatible webhook posted by a background worker.

`WebhookNotifier.execute` only enqueues, so a slow or hanging receiver never delays the
sampling loop; the worker retries with exponential backoff and a full queue drops (and says so).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from coldaisle.actions.interface import ActionKind, Decision, Outcome, Status
from coldaisle.errors import ConfigError
from coldaisle.telemetry.clock import Clock, RealClock

log = logging.getLogger(__name__)
_STOP = object()


def alert_labels(d: Decision) -> dict[str, str]:
    """Alert labels: alertname (the rule), severity, node, gpu, job; absent ones left out."""
    t = d.target
    labels = {"alertname": d.rule, "severity": d.severity, "node": t.node,
              "gpu": "" if t.device is None else str(t.device), "job": t.job or ""}
    return {k: v for k, v in labels.items() if v}


def alertmanager_payload(d: Decision, *, receiver: str = "coldaisle") -> dict[str, Any]:
    """The Alertmanager webhook receiver body (version 4) for one Decision; `restore` means resolved."""
    labels = alert_labels(d)
    status = "resolved" if d.restore else "firing"
    summary = str(d.params.get("reason") or f"{d.rule} on {d.target.label()}")
    annotations = {"summary": summary, "evidence": json.dumps(d.evidence, default=str, sort_keys=True)}
    alert = {"status": status, "labels": labels, "annotations": annotations,
             "startsAt": _rfc3339(d.time), "endsAt": _rfc3339(d.time) if d.restore else "0001-01-01T00:00:00Z",
             "generatorURL": "", "fingerprint": _fingerprint(labels)}
    return {"version": "4", "groupKey": f'{{}}:{{alertname="{d.rule}"}}', "truncatedAlerts": 0,
            "status": status, "receiver": receiver, "groupLabels": {"alertname": d.rule},
            "commonLabels": labels, "commonAnnotations": annotations, "externalURL": "", "alerts": [alert]}


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fingerprint(labels: dict[str, str]) -> str:
    text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class LogNotifier:
    """NOTIFY as one JSON log line on the `coldaisle.notify` logger (journald or a file picks it up)."""

    kind = ActionKind.NOTIFY

    def __init__(self, logger: logging.Logger | None = None, *, clock: Clock | None = None) -> None:
        self.logger = logger or logging.getLogger("coldaisle.notify")
        self.clock = clock or RealClock()

    def execute(self, decision: Decision, *, dry_run: bool) -> Outcome:
        """Log the alert (status, labels, summary, evidence) as one line."""
        try:
            alert = alertmanager_payload(decision)["alerts"][0]
            line = json.dumps({"status": alert["status"], **alert["labels"], **alert["annotations"]}, default=str)
            if dry_run:
                return Outcome(decision, Status.DRY_RUN, f"would have logged {line}", self.clock.time())
            level = logging.INFO if decision.restore else logging.WARNING
            self.logger.log(level, "%s", line)
            return Outcome(decision, Status.DONE, "logged", self.clock.time())
        except Exception as exc:
            return Outcome(decision, Status.FAILED, f"{type(exc).__name__}: {exc}", self.clock.time())


class WebhookNotifier:
    """NOTIFY as a POST to an Alertmanager-compatible webhook, from a bounded queue and one worker thread."""

    kind = ActionKind.NOTIFY

    def __init__(self, url: str, *, queue_size: int = 1000, retries: int = 3, backoff_s: float = 1.0,
                 timeout_s: float = 5.0, clock: Clock | None = None, receiver: str = "coldaisle") -> None:
        if urlparse(url).scheme not in ("http", "https"):
            raise ConfigError(f"webhook URL {url!r} is not http(s)", field="url")
        self.url, self.retries, self.backoff_s, self.timeout_s = url, retries, backoff_s, timeout_s
        self.receiver = receiver
        self.clock = clock or RealClock()
        self.sent = self.failed = self.dropped = self.attempts = 0
        self._q: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._worker = threading.Thread(target=self._run, name="coldaisle-webhook", daemon=True)
        self._worker.start()

    def execute(self, decision: Decision, *, dry_run: bool) -> Outcome:
        """Queue the alert for the worker; returns at once (DONE "queued", or FAILED when the queue is full)."""
        now = self.clock.time()
        if dry_run:
            return Outcome(decision, Status.DRY_RUN, f"would have posted alert {decision.rule} to {self.url}", now)
        try:
            self._q.put_nowait(alertmanager_payload(decision, receiver=self.receiver))
        except queue.Full:
            self.dropped += 1
            return Outcome(decision, Status.FAILED, f"queue full, dropped (webhook {self.url})", now)
        return Outcome(decision, Status.DONE, f"queued for {self.url}", now)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            try:
                if item is _STOP:
                    return
                self._deliver(item)
            finally:
                self._q.task_done()

    def _deliver(self, payload: dict[str, Any]) -> None:
        """POST with up to `retries` retries, waiting backoff_s, 2*backoff_s, 4*backoff_s ... between tries."""
        body = json.dumps(payload, default=str).encode()
        for attempt in range(self.retries + 1):
            self.attempts += 1
            error = self._post(body)
            if error is None:
                self.sent += 1
                return
            log.warning("webhook %s: attempt %d failed: %s", self.url, attempt + 1, error)
            if attempt < self.retries:
                self.clock.sleep(self.backoff_s * 2**attempt)
        self.failed += 1

    def _post(self, body: bytes) -> str | None:
        """None on a 2xx answer, else why not."""
        req = urllib.request.Request(self.url, data=body, method="POST",  # noqa: S310 - http(s) only, checked
                                     headers={"Content-Type": "application/json", "User-Agent": "coldaisle"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - scheme checked
                return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except Exception as exc:  # URLError, timeouts, resets: retried
            return f"{type(exc).__name__}: {exc}"

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait (real time) until every queued alert was delivered or given up; False on timeout."""
        with self._q.all_tasks_done:
            return self._q.all_tasks_done.wait_for(lambda: self._q.unfinished_tasks == 0, timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the worker after the queued alerts (waits at most `timeout_s`)."""
        if self._worker.is_alive():
            try:
                self._q.put(_STOP, timeout=timeout_s)
            except queue.Full:
                return
            self._worker.join(timeout_s)
