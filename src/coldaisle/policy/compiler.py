"""A small safe compiler: condition text -> vectorised numpy over every subject of a Frame at once.

The text is parsed with `ast.parse(mode="eval")` and only a whitelist of node types is accepted:
and/or/not, comparisons (incl. `in (..)`), + - * /, numbers, known names and known functions. Nothing is
ever evaluated by Python; each node becomes a closure over numpy arrays. Unknown names, wrong types
(a number where a condition is needed) and per-device values in a node or job rule without an aggregate
are refused at load, with the column where the problem starts.
"""

from __future__ import annotations

import ast
import difflib
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coldaisle.policy import names as N
from coldaisle.policy.schema import Scope

Fn = Callable[[Any], Any]  # ctx -> ndarray or float


class CompileError(ValueError):
    """A condition that cannot be compiled; `offset` is the column in the expression text."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class Expr:
    """A compiled sub-expression: how to compute it, at which level, of which kind."""

    fn: Fn
    level: str  # const | device | process | node | job
    kind: str  # num | bool
    windows: dict[str, float] = field(default_factory=dict)  # device columns needing history -> seconds
    cost: float = 1.0  # rough evaluation cost, to order `and`/`or` operands cheapest first


_CMP = {ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Eq: operator.eq, ast.NotEq: operator.ne}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
#: levels a value may be lifted from, per subject level
_LIFT = {"device": ("const", "node", "job", "device"), "process": ("const", "node", "job", "device", "process"),
         "node": ("const", "node"), "job": ("const", "job")}


class Compiler:
    """Compiles the expressions of one rule for its scope (device, process, node or job)."""

    def __init__(self, scope: Scope, lets: dict[str, Expr] | None = None) -> None:
        self.scope = str(scope)
        self.lets = dict(lets or {})

    def compile(self, text: str, *, want: str = "bool") -> Expr:
        """Compile `text`; the result is lifted to the scope's subjects and must be of kind `want`."""
        text = " ".join(text.split())  # YAML blocks may span lines; a condition is one line of meaning
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            raise CompileError(f"not a valid expression: {exc.msg}", (exc.offset or 1) - 1) from None
        expr = self._node(tree.body, self.scope)
        if expr.kind != want:
            raise CompileError(f"this is a {_kind(expr.kind)}, a {_kind(want)} is needed here")
        lifted = self.lift(expr, self.scope, tree.body)
        if lifted.level == self.scope:
            return lifted  # already one value per subject: no wrapper on the hot path
        # constants broadcast inside numpy expressions; the whole answer must still be one value per subject
        return Expr(lambda c, f=lifted.fn, t=self.scope: _per_subject(f(c), c, t), self.scope, lifted.kind,
                    lifted.windows, lifted.cost)

    # -- lifting between levels ---------------------------------------------------------------
    def lift(self, e: Expr, to: str, node: ast.AST) -> Expr:
        """Express `e` per subject of level `to` (gather a node's value onto its devices, etc.)."""
        if e.level in (to, "const"):
            return e  # a constant broadcasts by itself in numpy arithmetic and comparisons
        if e.level not in _LIFT[to]:
            raise CompileError(_level_error(e.level, to), _col(node))
        return Expr(lambda c, f=e.fn, a=e.level, b=to: c.gather(f(c), a, b), to, e.kind, e.windows, e.cost + 1)

    def _unify(self, a: Expr, b: Expr, node: ast.AST, within: str) -> tuple[Expr, Expr, str]:
        order = _LIFT[within]
        levels = [x.level for x in (a, b) if x.level != "const"]
        for lv in levels:
            if lv not in order:
                raise CompileError(_level_error(lv, within), _col(node))
        top = max(levels, key=order.index) if levels else "const"
        return self.lift(a, top, node), self.lift(b, top, node), top

    # -- nodes --------------------------------------------------------------------------------
    def _node(self, node: ast.AST, within: str) -> Expr:
        handler = getattr(self, f"_{type(node).__name__}", None)
        if handler is None:
            raise CompileError(f"{type(node).__name__.lower()} is not allowed in a condition", _col(node))
        return handler(node, within)

    def _Constant(self, node: ast.Constant, within: str) -> Expr:
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise CompileError("only numbers are allowed as constants", _col(node))
        v = float(node.value)
        return Expr(lambda c, v=v: v, "const", "num")

    def _Name(self, node: ast.Name, within: str) -> Expr:
        name = node.id
        if name in self.lets:
            return self.lets[name]
        if name in N.CONSTANTS:
            v = N.CONSTANTS[name]
            return Expr(lambda c, v=v: v, "const", "num")
        for level, table in (("device", N.DEVICE), ("process", N.PROCESS), ("node", N.NODE), ("job", N.JOB)):
            if name in table:
                cost = 1.0 if level in ("node", "job") else 2.0 if name in N.DEVICE else 6.0
                leaf = Expr(lambda c, n=name, lv=level: c.column(n, lv), level, "num", cost=cost)
                if within in ("device", "process") and level != within and level in _LIFT[within]:
                    return self.lift(leaf, within, node)  # compare at the subject: NaN means "unknown" there
                return leaf
        known = [*self.lets, *N.DEVICE, *N.PROCESS, *N.NODE, *N.JOB, *N.CONSTANTS]
        close = difflib.get_close_matches(name, known, n=1)
        raise CompileError(f"unknown name {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""), _col(node))

    def _BoolOp(self, node: ast.BoolOp, within: str) -> Expr:
        parts = [self._node(v, within) for v in node.values]
        for p, v in zip(parts, node.values, strict=True):
            if p.kind != "bool":
                raise CompileError("`and`/`or` need conditions on both sides", _col(v))
        # Cheap operands first (history windows last), and stop as soon as the answer is known for every
        # subject: a quiet cluster never pays for `time_to` or `rate`.
        parts.sort(key=lambda e: e.cost)
        acc = parts[0]
        conj = isinstance(node.op, ast.And)
        for p in parts[1:]:
            a, b, lv = self._unify(acc, p, node, within)
            join = PureOp(np.logical_and if conj else np.logical_or)
            acc = Expr(lambda c, f=a.fn, g=b.fn, conj=conj, join=join: _short(f(c), g, c, conj, join), lv, "bool",
                       merge_windows(a.windows, b.windows), a.cost + b.cost)
        return acc

    def _UnaryOp(self, node: ast.UnaryOp, within: str) -> Expr:
        e = self._node(node.operand, within)
        if isinstance(node.op, ast.Not):
            if e.kind != "bool":
                raise CompileError("`not` needs a condition", _col(node))
            negate = PureOp(np.logical_not)
            return Expr(lambda c, f=e.fn, op=negate: op(f(c)), e.level, "bool", e.windows, e.cost + 1)
        if isinstance(node.op, ast.USub) and e.kind == "num":
            return Expr(lambda c, f=e.fn: -f(c), e.level, "num", e.windows)
        raise CompileError("this unary operator is not allowed", _col(node))

    def _BinOp(self, node: ast.BinOp, within: str) -> Expr:
        op = _ARITH.get(type(node.op))
        if op is None:
            raise CompileError("only + - * / are allowed", _col(node))
        a, b = self._node(node.left, within), self._node(node.right, within)
        if a.kind != "num" or b.kind != "num":
            raise CompileError("arithmetic needs numbers on both sides", _col(node))
        a, b, lv = self._unify(a, b, node, within)

        pure = PureOp(_divide if isinstance(node.op, ast.Div) else op)

        def fn(c: Any, f: Fn = a.fn, g: Fn = b.fn, pure: PureOp = pure) -> Any:
            return pure(f(c), g(c))

        return Expr(fn, lv, "num", merge_windows(a.windows, b.windows), a.cost + b.cost + 1)

    def _Compare(self, node: ast.Compare, within: str) -> Expr:
        left = self._node(node.left, within)
        out: Expr | None = None
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)):
                cmp = self._membership(left, op, right_node)
            else:
                right = self._node(right_node, within)
                if left.kind != "num" or right.kind != "num":
                    raise CompileError("comparisons need numbers on both sides", _col(node))
                a, b, lv = self._unify(left, right, node, within)
                f = _CMP.get(type(op))
                if f is None:
                    raise CompileError("only < <= > >= == != and `in` compare values", _col(node))
                cmp = Expr(_compare(a, b, f), lv, "bool", merge_windows(a.windows, b.windows), a.cost + b.cost + 1)
                left = right
            out = cmp if out is None else self._and(out, cmp, node, within)
        assert out is not None
        return out

    def _and(self, a: Expr, b: Expr, node: ast.AST, within: str) -> Expr:
        a, b, lv = self._unify(a, b, node, within)
        both = PureOp(np.logical_and)
        return Expr(lambda c, f=a.fn, g=b.fn, op=both: op(f(c), g(c)), lv, "bool",
                    merge_windows(a.windows, b.windows), a.cost + b.cost + 1)

    def _membership(self, left: Expr, op: ast.cmpop, right: ast.AST) -> Expr:
        if not isinstance(right, (ast.Tuple, ast.List)) or not all(
                isinstance(x, ast.Constant) and isinstance(x.value, (int, float)) for x in right.elts):
            raise CompileError("`in` needs a list of numbers, e.g. xid in (48, 79)", _col(right))
        values = np.array([float(x.value) for x in right.elts])  # type: ignore[attr-defined]
        values.flags.writeable = False
        neg = isinstance(op, ast.NotIn)
        member = PureOp(_member)
        return Expr(lambda c, f=left.fn, v=values, n=neg, op=member: op(f(c), v, n), left.level, "bool",
                    left.windows, left.cost + 3)

    def _Call(self, node: ast.Call, within: str) -> Expr:
        from coldaisle.policy.functions import compile_call

        if not isinstance(node.func, ast.Name) or node.keywords:
            raise CompileError("only plain calls of known functions are allowed", _col(node))
        return compile_call(self, node, within)


class PureOp:
    """An elementwise operation that remembers its last answer for immutable arguments.

    A read-only array never changes, so the same read-only arguments give the same answer: the twin (and
    the context's static columns) hand out the same read-only array while a column does not change, and a
    condition over unchanged columns then costs an identity check, not numpy work. Writeable arguments (a
    fresh reading) are always computed. The answer is stored as a tuple, so a reader never sees half of it."""

    __slots__ = ("fn", "last")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.last: tuple[tuple[Any, ...], Any] | None = None

    def __call__(self, *args: Any) -> Any:
        last = self.last
        if last is not None:
            for a, b in zip(args, last[0]):  # noqa: B905 - the same operation: the same number of arguments
                if a is not b:
                    break
            else:
                return last[1]
        out = self.fn(*args)
        for a in args:
            if type(a) is np.ndarray and a.flags.writeable:
                return out  # a fresh reading: nothing to remember
        if type(out) is np.ndarray:
            out.flags.writeable = False
        self.last = (args, out)
        return out


def _compare(a: Expr, b: Expr, f: Callable[[Any, Any], Any]) -> Fn:
    """`a OP b`, with a constant side bound once rather than called on every sample."""
    op = PureOp(f)
    if b.level == "const" and a.level != "const":
        v = b.fn(None)
        return lambda c, x=a.fn, v=v, op=op: op(x(c), v)
    if a.level == "const" and b.level != "const":
        v = a.fn(None)
        return lambda c, y=b.fn, v=v, op=op: op(v, y(c))
    return lambda c, x=a.fn, y=b.fn, op=op: op(x(c), y(c))


def _divide(x: Any, y: Any) -> Any:
    """x / y, where x/0 is inf or NaN, never a warning."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return x / y


def _per_subject(x: Any, c: Any, level: str) -> Any:
    return c.broadcast(x, level) if np.ndim(x) == 0 else x


def _short(first: Any, rest: Fn, c: Any, conj: bool, join: PureOp) -> Any:
    """`first and rest` / `first or rest`, skipping `rest` when `first` already decides every subject."""
    if not isinstance(first, np.ndarray) or first.dtype != bool:
        first = np.asarray(first, dtype=bool)
    if first.ndim:  # a constant side (`1 < 2 or ...`) decides nothing per subject: evaluate the rest
        hits = np.count_nonzero(first)  # several times cheaper than ndarray.any()/all() on a few hundred GPUs
        if conj and not hits:
            return first
        if not conj and hits == first.size:
            return first
    return join(first, rest(c))


def _member(x: Any, values: np.ndarray, invert: bool) -> Any:
    """`x in values` elementwise; NaN (no reading) is never a member."""
    x = np.asarray(x, dtype=float)
    nothing = x.ndim and not np.count_nonzero(~np.isnan(x))  # all NaN: nothing to look up
    hit = np.zeros(x.shape, bool) if nothing else (x[..., None] == values).any(axis=-1)
    return ~hit if invert else hit


def merge_windows(*parts: dict[str, float]) -> dict[str, float]:
    """Union of history needs, keeping the longest window per column."""
    out: dict[str, float] = {}
    for part in parts:
        for k, v in part.items():
            out[k] = max(out.get(k, 0.0), v)
    return out


def _col(node: ast.AST) -> int:
    return int(getattr(node, "col_offset", 0))


def _kind(kind: str) -> str:
    return "condition" if kind == "bool" else "number"


def _level_error(level: str, to: str) -> str:
    if to in ("node", "job") and level == "device":
        return (f"a per-GPU value in a {to} rule needs an aggregate, "
                "such as max(temperature_c) or share(utilization_gpu > 95)")
    return f"a per-{level} value cannot be used in a {to} rule"
