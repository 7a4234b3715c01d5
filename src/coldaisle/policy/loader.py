"""Load a policy file: validate the schema, compile every condition, and report errors as file:line:field."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from coldaisle.config import Loc, Located, load_model, parse_model
from coldaisle.policy.compiler import CompileError, Compiler, Expr, merge_windows
from coldaisle.policy.schema import Policy, Rule, Scope

DEFAULT = "default"


@dataclass(frozen=True)
class CompiledRule:
    """A rule with its expressions compiled and the history windows they need."""

    rule: Rule
    when: Expr
    clear: Expr | None
    straggler: Expr | None
    windows: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated, compiled policy and where it came from."""

    policy: Policy
    rules: list[CompiledRule]
    source: str

    @property
    def windows(self) -> dict[str, float]:
        """Every per-device column a rule needs history for, with the longest window."""
        out: dict[str, float] = {}
        for r in self.rules:
            for k, v in r.windows.items():
                out[k] = max(out.get(k, 0.0), v)
        return out


def default_policy_path() -> Path:
    """The shipped default policy file."""
    return Path(str(files("coldaisle.policy") / "default.yaml"))


def load_policy(path: str | Path) -> LoadedPolicy:
    """Load `path` (or `default`) into a compiled policy, or raise ConfigError naming file:line:field."""
    p = default_policy_path() if str(path) == DEFAULT else Path(path)
    policy, lines = load_model(p, Policy, with_lines=True)
    return LoadedPolicy(policy, compile_rules(policy, Located(str(p), lines)), str(p))


def parse_policy(text: str, file: str = "<policy>") -> LoadedPolicy:
    """Like load_policy, from text."""
    policy, lines = parse_model(text, file, Policy, with_lines=True)
    return LoadedPolicy(policy, compile_rules(policy, Located(file, lines)), file)


def compile_rules(policy: Policy, at: Located) -> list[CompiledRule]:
    """Compile every rule; duplicate names and bad expressions are ConfigErrors."""
    out: list[CompiledRule] = []
    seen: set[str] = set()
    for i, rule in enumerate(policy.rules):
        if rule.name in seen:
            raise at.error(("rules", i, "name"), f"rule name {rule.name!r} is used twice")
        seen.add(rule.name)
        out.append(_compile(rule, at, ("rules", i)))
    return out


def _compile(rule: Rule, at: Located, path: Loc) -> CompiledRule:
    lets: dict[str, Expr] = {}
    let_level = str(rule.scope) if rule.scope in (Scope.DEVICE, Scope.PROCESS) else "device"
    for name, text in rule.let.items():
        comp = Compiler(rule.scope, lets)
        lets[name] = _expr(comp, text, at, (*path, "let", name), want=None, within=let_level)
    comp = Compiler(rule.scope, lets)
    when = _expr(comp, rule.when, at, (*path, "when"))
    clear = _expr(comp, rule.clear, at, (*path, "clear")) if rule.clear else None
    straggler = None
    if rule.straggler:
        straggler = _expr(Compiler(Scope.DEVICE, lets), rule.straggler, at, (*path, "straggler"))
    if any(r.nodes == "straggler" for r in rule.actions) and straggler is None:
        raise at.error((*path, "actions"), "a drain of `straggler` nodes needs a `straggler:` condition")
    windows = merge_windows(when.windows, clear.windows if clear else {}, straggler.windows if straggler else {})
    return CompiledRule(rule, when, clear, straggler, windows)


def _expr(comp: Compiler, text: str, at: Located, path: Loc, want: str | None = "bool",
          within: str = "device") -> Expr:
    flat = " ".join(text.split())
    try:
        if want is None:
            import ast

            return comp._node(ast.parse(flat, mode="eval").body, within)
        return comp.compile(flat, want=want)
    except CompileError as exc:
        pointer = f"\n    {flat}\n    {' ' * exc.offset}^"
        raise at.error(path, f"{exc}{pointer}") from None
    except SyntaxError as exc:
        raise at.error(path, f"not a valid expression: {exc.msg}") from None
