"""docs/policy.md is generated from the schema; this keeps the committed copy true."""

from __future__ import annotations

from pathlib import Path

from coldaisle.policy import names as N
from coldaisle.policy.reference import render
from coldaisle.policy.schema import Rule


def test_docs_policy_md_is_the_generated_reference() -> None:
    committed = (Path(__file__).parents[2] / "docs" / "policy.md").read_text(encoding="utf-8")
    assert committed == render(), "run: coldaisle policy reference > docs/policy.md"


def test_every_name_and_rule_field_is_documented() -> None:
    text = render()
    for name in (*N.DEVICE, *N.PROCESS, *N.NODE, *N.JOB):
        assert f"`{name}`" in text
    for field in Rule.model_fields.values():
        assert f"`{field.alias}`" in text if field.alias else True
