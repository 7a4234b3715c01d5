"""Typed YAML: every path keeps its line, and every error names file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from coldaisle.config import Located, line_for, load_model, load_yaml_with_lines, parse_model
from coldaisle.errors import ConfigError
from coldaisle.units import Seconds, Watts


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Cap(_Strict):
    kind: Literal["cap"]
    watts: Watts


class Kill(_Strict):
    kind: Literal["kill"]
    signals: list[str]
    grace: Seconds = 5.0


class Rule(_Strict):
    name: str
    actions: list[Annotated[Cap | Kill, Field(discriminator="kind")]] = []


class Doc(_Strict):
    name: str
    rules: list[Rule] = []
    limits: dict[str, list[Watts]] = {}
    when: str | int = 0


DOC = """\
name: policy
rules:
  - name: hot
    actions:
      - kind: cap
        watts: 400 W
      - kind: kill
        signals:
          - SIGTERM
          - SIGKILL
        grace: 10 s
  - {name: inline, actions: [{kind: cap, watts: 300 W}]}
limits:
  rack1:
    - 10 kW
    - 12 kW
when: 03:04
"""


def fail(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_model(text, "p.yaml", Doc)
    return info.value


def replace(old: str, new: str) -> str:
    assert old in DOC
    return DOC.replace(old, new, 1)


def test_a_valid_document_parses_with_units_and_clock_times() -> None:
    doc = parse_model(DOC, "p.yaml", Doc)
    cap, kill = doc.rules[0].actions
    assert isinstance(cap, Cap) and cap.watts == 400.0
    assert isinstance(kill, Kill) and (kill.signals, kill.grace) == (["SIGTERM", "SIGKILL"], 10.0)
    assert isinstance(doc.rules[1].actions[0], Cap) and doc.rules[1].actions[0].watts == 300.0
    assert doc.limits == {"rack1": [10e3, 12e3]}
    assert doc.when == "03:04"


def test_every_path_in_nested_lists_and_dicts_has_its_line() -> None:
    _, lines = load_yaml_with_lines(DOC, "p.yaml")
    assert lines[("name",)] == 1
    assert lines[("rules", 0)] == 3
    assert lines[("rules", 0, "name")] == 3
    assert lines[("rules", 0, "actions", 0, "kind")] == 5
    assert lines[("rules", 0, "actions", 0, "watts")] == 6
    assert lines[("rules", 0, "actions", 1)] == 7
    assert lines[("rules", 0, "actions", 1, "signals", 0)] == 9
    assert lines[("rules", 0, "actions", 1, "signals", 1)] == 10
    assert lines[("rules", 0, "actions", 1, "grace")] == 11
    assert lines[("rules", 1)] == 12
    assert lines[("rules", 1, "actions", 0, "watts")] == 12
    assert lines[("limits", "rack1", 0)] == 15
    assert lines[("limits", "rack1", 1)] == 16
    assert lines[("when",)] == 17


@pytest.mark.parametrize(("text", "value"), [
    ("t: 03:04", "03:04"), ("t: 10:05", "10:05"), ("t: 10:05:30", "10:05:30"), ("t: '10:05'", "10:05"),
    ("t: 1:30", "1:30"), ("t: 605", 605), ("t: 1_000", 1000), ("t: 2024-06-03", None),
])
def test_clock_times_stay_strings_and_other_scalars_keep_yaml_meaning(text: str, value: object) -> None:
    data, _ = load_yaml_with_lines(text, "t.yaml")
    if value is None:
        assert str(data["t"]) == "2024-06-03"
    else:
        assert data["t"] == value


def test_line_for_falls_back_to_the_deepest_existing_prefix() -> None:
    _, lines = load_yaml_with_lines(DOC, "p.yaml")
    assert line_for(("rules", 0, "actions", 1, "nope"), lines) == 7
    assert line_for(("rules", 5, "name"), lines) == lines[("rules",)]
    assert line_for(("absent",), lines) == 1
    assert line_for((), lines) == 1


@pytest.mark.parametrize(("text", "where"), [
    (replace("watts: 400 W", "watts: 400 C"), "p.yaml:6: rules[0].actions[0].watts: 'C' is not a unit of power"),
    (replace("grace: 10 s", "grace: 10 W"), "p.yaml:11: rules[0].actions[1].grace: 'W' is not a unit of duration"),
    (replace("          - SIGKILL", "          - [SIGKILL]"), "p.yaml:10: rules[0].actions[1].signals[1]: "),
    (replace("watts: 300 W", "watts: 300"), "p.yaml:12: rules[1].actions[0].watts: 300 has no unit"),
    (replace("    - 12 kW", "    - 12 K"), "p.yaml:16: limits.rack1[1]: 'K' is not a unit of power"),
    (replace("        grace: 10 s\n", "        grace: 10 s\n        colour: red\n"),
     "p.yaml:12: rules[0].actions[1].colour: unknown key"),
    (replace("      - kind: kill\n", "      - kind: kil\n"), "p.yaml:7: rules[0].actions[1].kind: Input tag 'kil'"),
    (replace("      - kind: cap\n        watts: 400 W\n", "      - watts: 400 W\n"),
     "p.yaml:5: rules[0].actions[0]: Unable to extract tag using discriminator 'kind'"),
    (replace("        watts: 400 W\n", ""), "p.yaml:5: rules[0].actions[0].watts: Field required"),
    (replace("name: policy\n", ""), "p.yaml:1: name: Field required"),
    (replace("name: policy\n", "name: policy\nname: again\n"), "p.yaml:2: name: duplicate key 'name'"),
])
def test_errors_name_file_line_and_field_through_lists_dicts_and_unions(text: str, where: str) -> None:
    assert str(fail(text)).startswith(where)


def test_a_union_error_names_the_document_field_not_pydantics_member_tag() -> None:
    err = fail(replace("when: 03:04", "when: [3, 4]"))
    assert err.field == "when"
    assert str(err).startswith("p.yaml:17: when: ")


def test_the_discriminator_value_never_appears_as_a_field() -> None:
    err = fail(replace("watts: 400 W", "watts: 400 C"))
    assert err.field == "rules[0].actions[0].watts"
    assert "cap" not in (err.field or "")


def test_more_problems_are_counted_in_the_hint() -> None:
    err = fail(replace("watts: 400 W", "watts: 400 C").replace("grace: 10 s", "grace: 10 W"))
    assert err.line == 6
    assert err.hint == "1 more problem(s) follow once this one is fixed"


def test_one_problem_has_no_hint() -> None:
    assert fail(replace("grace: 10 s", "grace: 10 W")).hint == ""


@pytest.mark.parametrize(("text", "message"), [
    ("name: [unclosed\n", "p.yaml:2: not valid YAML: "),
    ("name: a\n  bad: indent\n", "p.yaml:2: not valid YAML: mapping values are not allowed here"),
    ("", "p.yaml: the file is empty"),
    ("? [a, b]\n: 1\n", "p.yaml:1: keys must be strings"),
])
def test_documents_that_are_not_yaml_mappings_fail_cleanly(text: str, message: str) -> None:
    assert str(fail(text)).startswith(message)


def test_load_model_reads_files_and_names_them(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(DOC, encoding="utf-8")
    assert load_model(path, Doc).name == "policy"
    doc, lines = load_model(path, Doc, with_lines=True)
    assert doc.name == "policy" and lines[("when",)] == 17
    path.write_text(replace("watts: 400 W", "watts: 400 C"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_model(path, Doc)
    assert str(info.value).startswith(f"{path}:6: rules[0].actions[0].watts: ")


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read file"):
        load_model(tmp_path / "nope.yaml", Doc)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin\.yaml: not UTF-8 text"):
        load_model(latin, Doc)


def test_located_errors_point_at_a_path_after_validation() -> None:
    _, lines = load_yaml_with_lines(DOC, "p.yaml")
    err = Located("p.yaml", lines).error(("rules", 0, "actions", 1, "signals", 1), "not a signal", hint="use SIGKILL")
    assert str(err) == "p.yaml:10: rules[0].actions[1].signals[1]: not a signal"
    assert (err.file, err.line, err.field, err.hint, err.exit_code) == (
        "p.yaml", 10, "rules[0].actions[1].signals[1]", "use SIGKILL", 2)


def test_a_config_error_formats_without_line_or_field() -> None:
    assert str(ConfigError("bad", file="f.yaml")) == "f.yaml: bad"
    assert str(ConfigError("bad", field="x.y")) == "x.y: bad"
    assert str(ConfigError("bad")) == "bad"
