from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from engine.config.actions import ACTIONS
from engine.config.schema import (
    DISPATCH,
    all_schema_files,
    config_validator,
    exported_config_validator,
    render,
)
from engine.events import EVENT_DATA

REPO = Path(__file__).resolve().parents[3]


def test_committed_schema_files_are_not_stale() -> None:
    """schema/ is generated from the models; regenerate with `make schema` when this fails."""
    stale = [
        relative
        for relative, schema in all_schema_files()
        if not (REPO / "schema" / relative).is_file()
        or (REPO / "schema" / relative).read_text(encoding="utf-8") != render(schema)
    ]
    assert stale == [], f"stale schema files (run `make schema`): {stale}"


def test_no_orphan_schema_files() -> None:
    generated = {relative for relative, _ in all_schema_files()}
    on_disk = {str(p.relative_to(REPO / "schema")) for p in (REPO / "schema").rglob("*.json")}
    assert on_disk - generated == set()


@pytest.mark.parametrize("relative", [r for r, _ in all_schema_files()])
def test_every_schema_is_valid_draft_2020_12(relative: str) -> None:
    schema = json.loads((REPO / "schema" / relative).read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_there_is_an_event_schema_per_canonical_type_and_a_params_schema_per_action() -> None:
    assert {p.name.removesuffix(".schema.json") for p in (REPO / "schema/events").iterdir()} == set(
        EVENT_DATA
    )
    assert {
        p.name.removesuffix(".schema.json") for p in (REPO / "schema/actions").iterdir()
    } == set(ACTIONS)


def test_action_union_reports_unknown_param_at_its_key() -> None:
    """The discriminated union is rewritten to if/then, so errors are precise, not 'oneOf'."""
    data = {
        "version": 1,
        "rules": [
            {
                "id": "r",
                "description": "d",
                "trigger": "link.clicked",
                "actions": [{"action": "ats.add_tag", "params": {"tga": "x"}}],
            }
        ],
    }
    errors = list(config_validator().iter_errors(data))
    assert {e.validator for e in errors} == {"additionalProperties", "required"}
    assert all(list(e.absolute_path)[:4] == ["rules", 0, "actions", 0] for e in errors)


def test_field_names_are_checked_by_the_schema_too() -> None:
    data = {
        "version": 1,
        "rules": [
            {
                "id": "r",
                "description": "d",
                "trigger": "link.clicked",
                "actions": [
                    {
                        "action": "crm.upsert_contact",
                        "fields": {"email": "candidate.email", "bad-name": "x"},
                    }
                ],
            }
        ],
    }
    errors = list(config_validator().iter_errors(data))
    assert [e.validator for e in errors] == ["pattern"]


def _verdicts(validator: Draft202012Validator, data: object) -> set[tuple[str, str]]:
    return {
        ("/".join(map(str, e.absolute_path)), str(e.validator))
        for e in validator.iter_errors(data)
        if e.validator != DISPATCH
    }


def test_fast_validator_and_exported_schema_give_the_same_verdicts() -> None:
    """`nurture validate` dispatches unions directly; the exported if/then chain must agree."""
    from engine.config.loader import parse_file

    files = sorted((REPO / "tests/data").rglob("*.yaml")) + sorted((REPO / "rules").glob("*.yaml"))
    compared = 0
    for path in files:
        if path.name in {"nurture.yaml", "nurture.yml"}:
            continue
        document, _ = parse_file(path)
        if document is None:
            continue
        compared += 1
        assert _verdicts(config_validator(), document.data) == _verdicts(
            exported_config_validator(), document.data
        ), path
    assert compared >= 7
