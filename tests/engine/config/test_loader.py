from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from engine.config import loader
from engine.config.loader import MAX_NODES, parse_file, parse_text

SAMPLE = """\
version: 1
rules:
  - id: a
    condition: "x == 'y'"
    actions: [{action: suppress}]
"""


def test_positions_are_one_based_for_values_and_keys() -> None:
    document, problems = parse_text("f.yaml", SAMPLE)
    assert problems == [] and document is not None
    assert document.positions["/rules/0/id"] == (3, 9)
    assert document.key_positions["/rules/0/condition"] == (4, 5)
    assert document.position("/rules/0/actions/0/action") == (5, 24)
    # a pointer below an existing node falls back to its nearest ancestor
    assert document.position("/rules/0/actions/0/params/x") == (5, 15)


def test_offset_position_accounts_for_the_opening_quote() -> None:
    document, _ = parse_text("f.yaml", SAMPLE)
    assert document is not None
    # the scalar's quote is at column 16; expression offset 2 ('=') is one further right
    assert document.offset_position("/rules/0/condition", 2) == (4, 16 + 1 + 2)


def test_c_and_pure_parsers_give_the_same_data_and_positions(monkeypatch) -> None:
    fast, _ = parse_text("f.yaml", SAMPLE)
    monkeypatch.setattr(loader, "_CLoader", None)
    pure, _ = parse_text("f.yaml", SAMPLE)
    assert fast is not None and pure is not None
    assert fast.data == pure.data
    assert fast.positions == pure.positions
    assert fast.key_positions == pure.key_positions


def test_yaml_1_2_scalars_stay_what_they_look_like() -> None:
    document, _ = parse_text("f.yaml", "a: 09:00\nb: yes\nc: on\nd: 010\ne: 0x1F\nf: ~\ng: 1_000\n")
    assert document is not None
    assert document.data == {
        "a": "09:00",
        "b": "yes",
        "c": "on",
        "d": 10,
        "e": 31,
        "f": None,
        "g": 1000,
    }


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a: !!python/object/apply:os.system ['true']\n", id="python-object-apply"),
        pytest.param("a: !!python/name:os.system\n", id="python-name"),
        pytest.param("a: !custom 1\n", id="custom-tag"),
    ],
)
def test_no_yaml_tag_constructs_objects(text: str) -> None:
    document, problems = parse_text("f.yaml", text)
    assert [p.message.split(" is ")[0] for p in problems] == [
        f"YAML tag {text.split()[1].split('[')[0]!r}"
    ]
    assert document is not None and document.data == {"a": None}


def test_alias_bomb_fails_fast_with_a_limit_message() -> None:
    lines = ['a0: ["x","x","x","x","x","x","x","x","x","x"]']
    for level in range(1, 10):
        prev = f"a{level - 1}"
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*{prev}"] * 10) + "]")
    lines[0] = 'a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]'
    document, problems = parse_text("bomb.yaml", "\n".join(lines) + "\n")
    assert document is None
    assert len(problems) == 1
    assert f"more than {MAX_NODES} values" in problems[0].message


def test_recursive_alias_is_stopped_by_the_depth_limit() -> None:
    document, problems = parse_text("f.yaml", "a: &x [1, *x]\n")
    assert document is None
    assert "nesting deeper than" in problems[0].message


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (loader.MAX_FILE_BYTES + 10) + "\n")
    document, problems = parse_file(big)
    assert document is None
    assert "larger than" in problems[0].message


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\nname: caf\xe9\n")
    document, problems = parse_file(path)
    assert document is None
    assert (problems[0].line, problems[0].message) == (2, "file is not valid UTF-8")


def test_unreadable_path_is_a_diagnostic_not_an_exception(tmp_path: Path) -> None:
    document, problems = parse_file(tmp_path / "missing.yaml")
    assert document is None
    assert problems[0].message.startswith("cannot read file")


def test_merge_keys_are_refused() -> None:
    _, problems = parse_text("f.yaml", "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")
    assert [p.message for p in problems] == ["merge keys ('<<') are not supported"]


def test_plain_ruamel_safe_load_agrees_on_valid_config(repo: Path) -> None:
    """Our own node-to-data construction matches ruamel's safe loader on the shipped files."""
    for path in sorted((repo / "rules").glob("*.yaml")):
        ours, problems = parse_file(path)
        assert problems == [] and ours is not None
        assert ours.data == YAML(typ="safe", pure=True).load(path.read_text())


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("+_", "+_"),  # the resolver calls these ints; Python cannot read them: they stay text
        ("-_", "-_"),
        ("0b101", 5),
        ("-0b11", -3),
        ("-0x1F", -31),
        ("1_000", 1000),
        ("1_0.5_0", 10.5),
    ],
)
def test_numbers_the_resolver_accepts_but_python_cannot_read_stay_text(
    text: str, value: object
) -> None:
    """Found by the proof suite's YAML fuzzing: ``+_`` used to raise ValueError from the loader."""
    document, problems = parse_text("f.yaml", f"a: {text}\n")
    assert problems == [] and document is not None
    assert document.data == {"a": value}


def test_a_mapping_where_the_action_name_goes_is_a_located_error(tmp_path: Path) -> None:
    """Found by the proof's YAML fuzzing: the discriminator's value looked up as a dict key
    raised TypeError (unhashable) out of the loader instead of naming the place."""
    from engine.config.load import load_config

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\n"
        "rules:\n"
        "  - id: r\n"
        "    description: d\n"
        "    trigger: ats.application.created\n"
        "    actions:\n"
        "      - action: {crm.upsert_contact: 1}\n"
        "        fields: {email: candidate.email}\n"
    )
    loaded = load_config([rules])
    assert loaded.config is None
    assert any(d.line == 7 and "action" in d.format_text() for d in loaded.errors), [
        d.format_text() for d in loaded.errors
    ]
