"""The functions a condition may call: windowed ones over a column's history, aggregates, and helpers.

- `rate(col, seconds)`: change per second over the window; `delta(col, seconds)`: change over it.
- `time_to(col, limit, seconds)`: seconds until `col` reaches `limit` at the slope fitted over the window
  (least squares); +inf when not rising toward it.
- `avg_over(col, seconds)`, `max_over(col, seconds)`.
- `max(x) min(x) mean(x) sum(x) any(c) all(c) share(c) count(c)`: over the GPUs of a node or job rule.
- `known(x)`: x is a real reading (not NaN); `abs(x)`.
- `count(kind, window)`, `count(kind, code, window)`: events in the node's fault history within the window (a
  number of seconds, or a duration such as "7 d"), e.g. `count(xid, 79, "7 d") >= 2`, `count(drain, "30 d")`.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

import numpy as np

from coldaisle.policy import names as N
from coldaisle.policy.compiler import CompileError, Expr, _col, merge_windows
from coldaisle.units import UnitError, parse_quantity

if TYPE_CHECKING:
    from coldaisle.policy.compiler import Compiler


def compile_call(comp: Compiler, node: ast.Call, within: str) -> Expr:
    """Compile a call of a known function or raise CompileError."""
    name = node.func.id  # type: ignore[attr-defined]
    if name in N.WINDOWED:
        return _windowed(comp, node, name, within)
    if name == "count" and len(node.args) in (2, 3) and isinstance(node.args[0], ast.Name):
        return _history(node)
    if name in N.AGGREGATES:
        return _aggregate(comp, node, name, within)
    if name in ("known", "abs"):
        if len(node.args) != 1:
            raise CompileError(f"{name}() takes one argument", _col(node))
        e = comp._node(node.args[0], within)
        if e.kind != "num":
            raise CompileError(f"{name}() needs a number", _col(node))
        if name == "known":
            return Expr(lambda c, f=e.fn: ~np.isnan(np.asarray(f(c), dtype=float)), e.level, "bool", e.windows)
        return Expr(lambda c, f=e.fn: np.abs(f(c)), e.level, "num", e.windows)
    raise CompileError(f"unknown function {name!r}", _col(node))


def _history(node: ast.Call) -> Expr:
    """`count(kind[, code], window)`: a node-level count from the node's fault history."""
    kind = node.args[0].id  # type: ignore[attr-defined]
    if kind not in N.HISTORY:
        raise CompileError(f"count() of the history needs a kind: {', '.join(N.HISTORY)}", _col(node.args[0]))
    code = None
    if len(node.args) == 3:
        arg = node.args[1]
        if not isinstance(arg, ast.Constant) or isinstance(arg.value, bool) or not isinstance(arg.value, int):
            raise CompileError("the code must be a whole number, e.g. count(xid, 79, \"7 d\")", _col(arg))
        code = int(arg.value)
    window = node.args[-1]
    try:
        if not isinstance(window, ast.Constant) or isinstance(window.value, bool):
            raise UnitError("not a constant")
        value = window.value
        seconds = float(value) if isinstance(value, (int, float)) else parse_quantity(value, "duration")
    except UnitError:
        raise CompileError('the window must be a duration, e.g. "7 d" or 3600', _col(window)) from None
    return Expr(lambda c, k=kind, x=code, w=seconds: c.history_count(k, x, w), "node", "num", cost=3.0)


def _seconds(node: ast.AST) -> float:
    if not isinstance(node, ast.Constant) or isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
        raise CompileError("the window must be a number of seconds, e.g. rate(temperature_c, 30)", _col(node))
    if not 1 <= float(node.value) <= 3600:
        raise CompileError("the window must be between 1 and 3600 seconds", _col(node))
    return float(node.value)


def _windowed(comp: Compiler, node: ast.Call, name: str, within: str) -> Expr:
    want = 3 if name == "time_to" else 2
    if len(node.args) != want:
        shape = "time_to(column, limit, seconds)" if name == "time_to" else f"{name}(column, seconds)"
        raise CompileError(f"use {shape}", _col(node))
    col = node.args[0]
    if not isinstance(col, ast.Name) or col.id not in N.DEVICE:
        raise CompileError(f"{name}() needs a per-GPU column name as its first argument", _col(col))
    if within in ("node", "job"):
        raise CompileError(f"{name}() is per GPU: wrap it in an aggregate, e.g. max({name}(...))", _col(node))
    window = _seconds(node.args[-1])
    windows = {col.id: window}
    if name == "time_to":
        limit = comp.lift(comp._node(node.args[1], "device"), "device", node.args[1])
        if limit.kind != "num":
            raise CompileError("the limit of time_to() must be a number", _col(node.args[1]))
        windows = merge_windows(windows, limit.windows)
        return Expr(lambda c, n=col.id, lf=limit.fn, w=window: c.time_to(n, lf(c), w), "device", "num", windows,
                    30.0 + limit.cost)
    return Expr(lambda c, n=col.id, w=window, k=name: c.windowed(k, n, w), "device", "num", windows, 10.0)


def _aggregate(comp: Compiler, node: ast.Call, name: str, within: str) -> Expr:
    if comp.scope not in ("node", "job") or within not in ("node", "job"):
        raise CompileError(f"{name}() aggregates over the GPUs of a node or job rule; this rule is per "
                           f"{comp.scope}", _col(node))
    if len(node.args) != 1:
        raise CompileError(f"{name}() takes one argument", _col(node))
    inner = comp.lift(comp._node(node.args[0], "device"), "device", node.args[0])
    arg = Expr(lambda c, f=inner.fn: _per_device(f(c), c), "device", inner.kind, inner.windows, inner.cost)
    wants_bool = name in ("any", "all", "share", "count")
    if wants_bool != (arg.kind == "bool"):
        raise CompileError(f"{name}() needs a {'condition' if wants_bool else 'number'}", _col(node.args[0]))
    kind = "bool" if name in ("any", "all") else "num"
    return Expr(lambda c, f=arg.fn, k=name, s=comp.scope: c.reduce(k, f(c), s), comp.scope, kind, arg.windows,
                arg.cost + 10.0)


def _per_device(x: Any, c: Any) -> Any:
    """A constant inside an aggregate counts once per GPU."""
    return np.full(c.n, x) if np.ndim(x) == 0 else x


def reduce_groups(op: str, values: np.ndarray, groups: np.ndarray, n_groups: int) -> Any:
    """Aggregate per-device `values` into `n_groups` groups (group -1 is ignored); empty groups give NaN."""
    ok = groups >= 0
    g, v = groups[ok], np.asarray(values, dtype=float)[ok]
    count = np.bincount(g, minlength=n_groups).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if op in ("sum", "count"):
            return np.bincount(g, weights=np.nan_to_num(v), minlength=n_groups)
        if op in ("mean", "share"):  # over known readings only, like max and min
            known = ~np.isnan(v)
            n_known = np.bincount(g, weights=known, minlength=n_groups)
            total = np.bincount(g, weights=np.where(known, v, 0.0), minlength=n_groups)
            return total / np.where(n_known > 0, n_known, np.nan)
        if op == "any":
            return np.bincount(g, weights=np.nan_to_num(v), minlength=n_groups) > 0
        if op == "all":
            return (np.bincount(g, weights=np.nan_to_num(v), minlength=n_groups) == count) & (count > 0)
        out = np.full(n_groups, -np.inf if op == "max" else np.inf)
        (np.fmax if op == "max" else np.fmin).at(out, g, v)
        out[np.isinf(out)] = np.nan
        return out
