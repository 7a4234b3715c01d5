"""Notifiers: the Alertmanager webhook payload on a real local HTTP server, retries, a full queue, the log line."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from coldaisle.actions.interface import ActionKind, Decision, Status, Target
from coldaisle.actions.notify import LogNotifier, WebhookNotifier
from coldaisle.errors import ConfigError

T0 = 1716260652.0  # 2024-05-21T03:04:12Z


def _alert(restore: bool = False) -> Decision:
    return Decision(T0, "gpu-overheat", "critical", ActionKind.NOTIFY, Target("node-gpu-88", 2, job="4242"),
                    params={"reason": "gpu-overheat: node-gpu-88/gpu2 at 91 C for 60 s"},
                    evidence={"temperature_c": 91.0, "power_w": 698.2}, restore=restore)


def test_alertmanager_payload_reaches_the_receiver(receiver) -> None:
    hook = WebhookNotifier(receiver.url, backoff_s=0.01)
    assert hook.execute(_alert(), dry_run=False).detail == f"queued for {receiver.url}"
    assert hook.execute(_alert(restore=True), dry_run=False).status == Status.DONE
    assert hook.flush(5)
    hook.close()
    firing, resolved = receiver.posts
    assert firing["version"] == "4" and firing["status"] == "firing" and firing["receiver"] == "coldaisle"
    assert firing["groupLabels"] == {"alertname": "gpu-overheat"}
    (alert,) = firing["alerts"]
    assert alert["labels"] == {"alertname": "gpu-overheat", "severity": "critical", "node": "node-gpu-88",
                               "gpu": "2", "job": "4242"}
    assert alert["annotations"]["summary"] == "gpu-overheat: node-gpu-88/gpu2 at 91 C for 60 s"
    assert json.loads(alert["annotations"]["evidence"]) == {"power_w": 698.2, "temperature_c": 91.0}
    assert alert["startsAt"] == "2024-05-21T03:04:12.000Z" and alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert len(alert["fingerprint"]) == 16
    assert resolved["status"] == "resolved" and resolved["alerts"][0]["endsAt"] == "2024-05-21T03:04:12.000Z"
    assert hook.sent == 2 and hook.failed == 0


def test_failing_receiver_is_retried_then_given_up(receiver) -> None:
    receiver.codes = [500, 500, 500]
    hook = WebhookNotifier(receiver.url, retries=2, backoff_s=0.01)
    hook.execute(_alert(), dry_run=False)
    assert hook.flush(5)
    assert (len(receiver.posts), hook.attempts, hook.failed, hook.sent) == (3, 3, 1, 0)
    receiver.codes = [503]  # fails once, then answers 200
    hook.execute(_alert(), dry_run=False)
    assert hook.flush(5)
    hook.close()
    assert (len(receiver.posts), hook.sent) == (5, 1)


def test_full_queue_drops_and_says_so(receiver) -> None:
    receiver.hang = threading.Event()
    hook = WebhookNotifier(receiver.url, queue_size=1, retries=0, timeout_s=0.5)
    assert hook.execute(_alert(), dry_run=False).status == Status.DONE  # taken by the worker, which hangs
    assert receiver.got.wait(5)
    assert hook.execute(_alert(), dry_run=False).status == Status.DONE  # waits in the queue
    dropped = hook.execute(_alert(), dry_run=False)
    assert dropped.status == Status.FAILED and dropped.detail.startswith("queue full, dropped")
    assert hook.dropped == 1
    receiver.release.set()
    hook.close(5)


def test_dry_run_posts_nothing(receiver) -> None:
    hook = WebhookNotifier(receiver.url)
    outcome = hook.execute(_alert(), dry_run=True)
    assert outcome.status == Status.DRY_RUN and outcome.detail.startswith("would have posted alert gpu-overheat")
    hook.close()
    assert receiver.posts == []


def test_only_http_urls() -> None:
    with pytest.raises(ConfigError):
        WebhookNotifier("file:///etc/passwd")


def test_log_notifier_writes_one_json_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="coldaisle.notify"):
        outcome = LogNotifier().execute(_alert(), dry_run=False)
    assert outcome.status == Status.DONE
    (record,) = caplog.records
    line = json.loads(record.getMessage())
    assert line["alertname"] == "gpu-overheat" and line["status"] == "firing" and line["gpu"] == "2"
    assert record.levelno == logging.WARNING
