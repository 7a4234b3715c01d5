"""A small client for the Prometheus HTTP API: series, instant and range queries, decoded without a Python
object per sample.

A range answer is a JSON matrix of `[unix_seconds, "value"]` pairs; for a week of 512 GPUs that is millions
of pairs per metric, so each series' `values` array is cut out of the body and parsed by numpy in C. Errors
say what was asked and what Prometheus answered (https://prometheus.io/docs/prometheus/latest/querying/api/).
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import numpy as np

from coldaisle.errors import ColdaisleError

#: Prometheus refuses a range query of more than 11,000 points per series (promql/engine maxResolution)
MAX_POINTS = 11_000
_VALUES = b',"values":['
_METRIC = b'{"metric":'


class PrometheusError(ColdaisleError):
    """Prometheus could not be reached or refused a query; the message names the query."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class RangeSeries:
    """One series of a range answer: its labels, sample times (unix seconds) and values."""

    labels: dict[str, str]
    times: np.ndarray
    values: np.ndarray


class Prometheus:
    """The HTTP API of one Prometheus server (or anything that answers it: Thanos, Mimir, VictoriaMetrics)."""

    def __init__(self, url: str, *, timeout_s: float = 120.0) -> None:
        if not re.match(r"^https?://", url):
            raise ColdaisleError(f"--prometheus {url!r} is not an http(s) URL", hint="e.g. http://prometheus:9090",
                                 exit_code=2)
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.fetched_bytes = 0
        self.requests = 0
        self.wait_s = 0.0  # time spent waiting on Prometheus (its query time and the transfer), summed over threads
        self._lock = threading.Lock()

    def series(self, match: str, start: float, end: float) -> list[dict[str, str]]:
        """The label sets of every series `match` selects that has samples in [start, end]."""
        body = self._post("series", {"match[]": match, "start": _ts(start), "end": _ts(end)}, match)
        return list(json.loads(body)["data"])

    def instant(self, query: str, at: float) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) per series of the vector."""
        body = self._post("query", {"query": query, "time": _ts(at)}, query)
        return [(r["metric"], float(r["value"][1])) for r in json.loads(body)["data"]["result"]]

    def query_range(self, query: str, start: float, end: float, step: float) -> list[RangeSeries]:
        """A range query over [start, end] every `step` seconds (at most MAX_POINTS steps: chunk before)."""
        if (end - start) / step + 1 > MAX_POINTS + 1e-9:
            raise ValueError(f"{(end - start) / step + 1:.0f} steps is more than Prometheus answers in one query")
        params = {"query": query, "start": _ts(start), "end": _ts(end), "step": f"{step:.3f}"}
        return decode_matrix(self._post("query_range", params, query), step)

    def _post(self, path: str, params: dict[str, str], what: str) -> bytes:
        data = urllib.parse.urlencode(params).encode()
        req = urllib.request.Request(f"{self.url}/api/v1/{path}", data=data, method="POST",  # noqa: S310
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - http(s) checked above
                body: bytes = resp.read()
        except urllib.error.HTTPError as exc:
            raise PrometheusError(f"Prometheus refused {what!r}: {_reason(exc)}",
                                  hint="check the --selector and the mapping file's metric names") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {reason}",
                                  hint="check --prometheus (e.g. http://prometheus:9090) and that it is up") from None
        finally:
            with self._lock:
                self.wait_s += time.perf_counter() - t0
        with self._lock:
            self.fetched_bytes += len(body)
            self.requests += 1
        if b'"status":"success"' not in body[:64]:
            raise PrometheusError(f"Prometheus answered {what!r} with: {body[:300]!r}")
        return body


def _ts(t: float) -> str:
    return f"{t:.3f}"


def _reason(exc: urllib.error.HTTPError) -> str:
    """Prometheus' own `error` text when it sent one, else the HTTP status."""
    try:
        return str(json.loads(exc.read()).get("error") or exc)
    except (ValueError, OSError):
        return f"HTTP {exc.code} {exc.reason}"


def decode_matrix(body: bytes, step: float | None = None) -> list[RangeSeries]:
    """The series of a `resultType: matrix` answer; each `values` array is parsed by numpy, not json. With the
    query's `step`, a series without gaps has its times from its first and last pair, and only values are parsed."""
    out: list[RangeSeries] = []
    pos = body.find(b'"result":[')
    if pos < 0 or b'"resultType":"matrix"' not in body[: pos + 1]:
        raise PrometheusError(f"not a range-query answer: {body[:200]!r}")
    while (m := body.find(_METRIC, pos)) >= 0:
        v = body.find(_VALUES, m)
        end = body.find(b"]]", v)
        if v < 0 or end < 0:
            raise PrometheusError(f"cannot read the answer near byte {m}: {body[m:m + 120]!r}")
        labels = json.loads(body[m + len(_METRIC): v])
        out.append(RangeSeries(labels, *_pairs(body[v + len(_VALUES): end + 1], step)))
        pos = end
    return out


def _pairs(seg: bytes, step: float | None) -> tuple[np.ndarray, np.ndarray]:
    """`[t,"v"],[t,"v"]...` as (times, values)."""
    parts = seg.split(b'"')  # [ '[t,', 'v', '],[t,', 'v', ... '],' ]: values at odd places
    values = np.array(parts[1::2], dtype=float)
    if step is not None and values.size:
        first, last = float(parts[0][1:-1]), float(parts[-3][3:-1]) if values.size > 1 else float(parts[0][1:-1])
        if abs((last - first) / step + 1 - values.size) < 1e-6:  # no gaps: the times are the grid's
            return first + step * np.arange(values.size), values
    return np.fromstring(b",".join(p.strip(b"[],") for p in parts[0::2][: values.size]).decode("ascii"),
                         sep=","), values


def selector(metric: str, extra: str = "", match: tuple[tuple[str, str], ...] = ()) -> str:
    """`metric{<extra>,k="v"}`: the site's --selector matchers plus a mapped series' own."""
    parts = [p for p in (extra.strip(),) if p]
    parts += [f'{k}="{_quote(v)}"' for k, v in match]
    return f"{metric}{{{','.join(parts)}}}" if parts else metric


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def matchers(text: str | None) -> str:
    """The inside of a `--selector '{cluster="a"}'`, checked for the shape of PromQL label matchers."""
    if not text:
        return ""
    inner = text.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1].strip()
    one = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*'
    if inner and not re.fullmatch(f"{one}(,{one})*,?", inner):
        raise ColdaisleError(f"--selector {text!r} is not a list of PromQL label matchers",
                             hint="e.g. --selector '{cluster=\"a\", Hostname=~\"node-gpu-.*\"}'", exit_code=2)
    return inner.rstrip(",")
