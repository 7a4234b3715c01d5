"""Loading policy files: the shipped default compiles; every broken file is a ConfigError at file:line:field,
and `coldaisle policy check` shows it as `Error: FILE:LINE: field: ...` with a caret under the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from coldaisle.errors import ConfigError
from coldaisle.policy.loader import default_policy_path, load_policy, parse_policy
from coldaisle.policy.schema import Scope

BASE = """\
mode: enforce
rules:
  - name: hot
    when: temperature_c > 80
    for: 10 s
    actions:
      - {do: notify}
  - name: cold
    scope: node
    when: inlet_c < 5
    actions: [{do: notify}]
"""


def config_error(text: str, file: str = "p.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as err:
        parse_policy(text, file)
    return err.value


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle`."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# -- the shipped default --------------------------------------------------------------------------------
def test_the_default_policy_loads_and_every_rule_compiles() -> None:
    lp = load_policy("default")
    raw = yaml.safe_load(default_policy_path().read_text())
    assert [cr.rule.name for cr in lp.rules] == [r["name"] for r in raw["rules"]]
    assert lp.policy.mode == "dry-run"  # a real node only decides and audits unless told otherwise
    assert lp.source == str(default_policy_path())
    for cr in lp.rules:
        assert cr.when.kind == "bool" and cr.when.level == str(cr.rule.scope), cr.rule.name
        assert cr.clear is None or (cr.clear.kind == "bool" and cr.clear.level == str(cr.rule.scope))
        assert cr.straggler is None or cr.straggler.level == "device"
        assert cr.rule.actions, cr.rule.name
    scopes = {cr.rule.scope for cr in lp.rules}
    assert scopes == {Scope.DEVICE, Scope.PROCESS, Scope.NODE, Scope.JOB}
    assert lp.windows == {"temperature_c": 30.0, "memory_used_bytes": 10.0, "pcie_replay_total": 60.0}


def test_load_policy_reads_a_file_by_path(tmp_path: Path) -> None:
    p = tmp_path / "mine.yaml"
    p.write_text(BASE)
    lp = load_policy(p)
    assert lp.source == str(p) and [cr.rule.name for cr in lp.rules] == ["hot", "cold"]
    assert lp.rules[0].rule.for_ == 10.0 and lp.policy.mode == "enforce"


def test_a_disabled_rule_still_has_to_compile() -> None:
    err = config_error(BASE.replace("    for: 10 s\n", "    for: 10 s\n    enabled: false\n")
                       .replace("temperature_c > 80", "temprature_c > 80"))
    assert err.field == "rules[0].when"


# -- broken files: file, line, field ---------------------------------------------------------------------
def test_unknown_key() -> None:
    text = BASE.replace("    for: 10 s\n", "    for: 10 s\n    colour: red\n")
    err = config_error(text)
    assert (err.file, err.line, err.field) == ("p.yaml", line_of(text, "colour"), "rules[0].colour")
    assert "unknown key" in err.message


def test_unknown_top_level_key() -> None:
    err = config_error("moode: enforce\n" + BASE)
    assert (err.line, err.field) == (1, "moode")


@pytest.mark.parametrize(("value", "message"), [
    ("10 parsecs", "'parsecs' is not a unit of duration"),
    ("10", "has no unit"),
    ("10 W", "'W' is not a unit of duration"),
])
def test_bad_unit(value: str, message: str) -> None:
    text = BASE.replace("for: 10 s", f"for: {value}")
    err = config_error(text)
    assert (err.line, err.field) == (line_of(text, "for:"), "rules[0].for")
    assert message in err.message


def test_bad_power_unit_in_a_rung() -> None:
    text = BASE.replace("{do: notify}\n", "{do: power_cap, watts: 300 C}\n", 1)
    err = config_error(text)
    assert err.field == "rules[0].actions[0].watts" and err.line == line_of(text, "power_cap")
    assert "not a unit of power" in err.message


def test_unknown_metric_in_when_points_at_the_when_line_and_column() -> None:
    text = BASE.replace("inlet_c < 5", "inlet_c < 5 and inlet_temp < 5")
    err = config_error(text)
    assert (err.file, err.line, err.field) == ("p.yaml", line_of(text, "inlet_temp"), "rules[1].when")
    assert "unknown name 'inlet_temp' (did you mean 'inlet_c'?)" in err.message
    expr, caret = err.message.splitlines()[-2:]
    assert expr.strip() == "inlet_c < 5 and inlet_temp < 5"
    assert caret.index("^") == expr.index("inlet_temp")


def test_error_in_a_folded_multiline_when_names_the_when_line() -> None:
    text = BASE.replace("    when: temperature_c > 80\n",
                        "    when: >-\n      temperature_c > 80\n      and tempreature_c > 1\n")
    err = config_error(text)
    assert (err.line, err.field) == (line_of(text, "when: >-"), "rules[0].when")
    expr, caret = err.message.splitlines()[-2:]
    assert caret.index("^") == expr.index("tempreature_c")


def test_a_condition_may_be_a_literal_block_over_several_lines() -> None:
    text = BASE.replace("    when: temperature_c > 80\n",
                        "    when: |\n      temperature_c > 80\n      and power_w > 600\n")
    lp = parse_policy(text)
    assert lp.rules[0].when.kind == "bool"


@pytest.mark.parametrize(("key", "field"), [("clear", "rules[0].clear"), ("straggler", "rules[0].straggler")])
def test_errors_in_clear_and_straggler_name_their_field(key: str, field: str) -> None:
    text = BASE.replace("    for: 10 s\n", f"    for: 10 s\n    {key}: temperature_c < frobnicate\n")
    err = config_error(text)
    assert (err.line, err.field) == (line_of(text, f"{key}:"), field)


def test_error_in_a_let_names_the_let() -> None:
    text = BASE.replace("    for: 10 s\n", "    for: 10 s\n    let:\n      warm: temperature_c >\n")
    err = config_error(text)
    assert (err.line, err.field) == (line_of(text, "warm:"), "rules[0].let.warm")
    assert "not a valid expression" in err.message


def test_a_condition_operator_outside_the_language_is_a_config_error() -> None:
    text = BASE.replace("temperature_c > 80", "temperature_c is 80")
    err = config_error(text)
    assert (err.line, err.field) == (line_of(text, "is 80"), "rules[0].when")


@pytest.mark.parametrize(("insert", "field", "message"), [
    ("    max_actions_per_hour: many\n", "rules[0].max_actions_per_hour", "valid integer"),
    ("    max_actions_per_hour: 0\n", "rules[0].max_actions_per_hour", "greater than or equal to 1"),
    ("    severity: loud\n", "rules[0].severity", "'info', 'warning' or 'critical'"),
    ("    scope: rack\n", "rules[0].scope", "'device', 'process', 'node' or 'job'"),
    ("    enabled: sometimes\n", "rules[0].enabled", "valid boolean"),
    ("    let: [a, b]\n", "rules[0].let", "valid dictionary"),
])
def test_wrong_type(insert: str, field: str, message: str) -> None:
    text = BASE.replace("    for: 10 s\n", "    for: 10 s\n" + insert)
    err = config_error(text)
    assert (err.line, err.field) == (line_of(text, insert.strip()), field)
    assert message in err.message


def test_a_number_where_a_condition_is_needed_in_when() -> None:
    text = BASE.replace("temperature_c > 80", "temperature_c + 80")
    err = config_error(text)
    assert err.field == "rules[0].when" and "a condition is needed" in err.message


@pytest.mark.parametrize("rung", ["{do: power_cap}", "{do: power_cap, watts: 300 W, fraction: 0.5}",
                                  "{do: power_cap, to_min: false}"])
def test_power_cap_needs_exactly_one_level(rung: str) -> None:
    text = BASE.replace("{do: notify}\n", rung + "\n", 1)
    err = config_error(text)
    assert (err.line, err.field) == (line_of(text, "power_cap"), "rules[0].actions[0]")
    assert "needs exactly one of watts, fraction or to_min" in err.message


def test_power_levels_only_apply_to_power_cap() -> None:
    text = BASE.replace("{do: notify}\n", "{do: notify, watts: 300 W}\n", 1)
    err = config_error(text)
    assert err.field == "rules[0].actions[0]" and "only apply to power_cap" in err.message


def test_power_cap_fraction_out_of_range() -> None:
    text = BASE.replace("{do: notify}\n", "{do: power_cap, fraction: 1.5}\n", 1)
    err = config_error(text)
    assert err.field == "rules[0].actions[0].fraction"


def test_drain_of_stragglers_needs_a_straggler_condition() -> None:
    text = BASE.replace("{do: notify}\n", "{do: drain, nodes: straggler}\n", 1)
    err = config_error(text)
    assert err.field == "rules[0].actions"
    assert err.line in (line_of(text, "actions:"), line_of(text, "nodes: straggler"))
    assert "needs a `straggler:` condition" in err.message
    ok = text.replace("    for: 10 s\n", "    for: 10 s\n    straggler: utilization_gpu < 50\n")
    assert parse_policy(ok).rules[0].straggler is not None


def test_duplicate_rule_names_point_at_the_second() -> None:
    text = BASE.replace("name: cold", "name: hot")
    err = config_error(text)
    assert (err.line, err.field) == (8, "rules[1].name")
    assert "rule name 'hot' is used twice" in err.message


def test_bad_rule_name_and_empty_rules() -> None:
    err = config_error(BASE.replace("name: hot", "name: Hot Rule"))
    assert (err.line, err.field) == (3, "rules[0].name")
    err = config_error("rules: []\n")
    assert (err.line, err.field) == (1, "rules")


def test_yaml_syntax_error_names_the_line() -> None:
    text = BASE.replace("    for: 10 s\n", "    for: [10 s\n")
    err = config_error(text)
    assert err.file == "p.yaml" and err.line == line_of(text, "for: [10 s") + 1
    assert "not valid YAML" in err.message


def test_duplicate_yaml_key_is_refused() -> None:
    text = BASE.replace("    for: 10 s\n", "    for: 10 s\n    for: 20 s\n")
    err = config_error(text)
    assert (err.line, err.field) == (line_of(text, "for: 20 s"), "rules[0].for")


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_policy(tmp_path / "nope.yaml")
    assert "cannot read file" in err.value.message and err.value.exit_code == 2


# -- the CLI ----------------------------------------------------------------------------------------------
def coldaisle(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "coldaisle.cli", *args], check=False, capture_output=True,
                          text=True, cwd=cwd, timeout=60, env=env)


def test_policy_check_of_a_broken_file_exits_2_with_file_line_field_and_a_caret(tmp_path: Path) -> None:
    text = BASE.replace("inlet_c < 5", "inlet_c < 5 or temprature_c > 1")
    (tmp_path / "broken.yaml").write_text(text)
    r = coldaisle("policy", "check", "broken.yaml", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    n = line_of(text, "temprature_c")
    assert lines[0] == (f"Error: broken.yaml:{n}: rules[1].when: unknown name 'temprature_c' "
                        "(did you mean 'temperature_c'?)")
    assert lines[1].strip() == "inlet_c < 5 or temprature_c > 1"
    assert lines[2].strip() == "^" and lines[2].index("^") == lines[1].index("temprature_c")
    assert r.stdout == ""


def test_policy_check_of_a_schema_error_exits_2(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(BASE.replace("for: 10 s", "for: soon"))
    r = coldaisle("policy", "check", "p.yaml", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith(f"Error: p.yaml:{line_of(BASE, 'for:')}: rules[0].for: ")


def test_policy_check_of_the_default_lists_every_rule(tmp_path: Path) -> None:
    r = coldaisle("policy", "check", "default", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rules = load_policy("default").rules
    assert f"{default_policy_path()}: {len(rules)} rules OK (mode: dry-run)" in " ".join(r.stdout.split())
    listed = [line.split()[0] for line in r.stdout.splitlines() if line.startswith("  ")]
    assert listed == [cr.rule.name for cr in rules]
