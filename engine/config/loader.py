"""Read one YAML file into plain data plus a map from JSON Pointer to source position.

Safe by construction: the YAML parser only composes nodes and this module turns them into
dicts, lists, strings, numbers, booleans and None. No tag can construct an object (an explicit
``!!python/...`` or any other non-core tag is an error), duplicate keys and multi-document
files are errors, and size, nesting depth and alias expansion are bounded so a hostile file
("billion laughs") fails fast with a message instead of exhausting memory.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from engine.config.diagnostics import Diagnostic

_CLoader: Any
try:  # the libyaml-based parser is ~15x faster; the pure one gives identical nodes
    from ruamel.yaml.cyaml import CSafeLoader as _CLoader
except ImportError:  # pragma: no cover - platforms without ruamel.yaml.clib
    _CLoader = None

MAX_FILE_BYTES = 1_048_576
MAX_DEPTH = 64
MAX_NODES = 100_000

_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {f"{_CORE}{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")}
_TIMESTAMP = f"{_CORE}timestamp"
Position = tuple[int, int]


@dataclass
class Document:
    """A parsed file: plain data, and 1-based (line, column) for every value and mapping key."""

    path: str
    data: Any
    positions: dict[str, Position] = field(default_factory=dict)
    key_positions: dict[str, Position] = field(default_factory=dict)
    scalar_styles: dict[str, str | None] = field(default_factory=dict)

    def offset_position(self, pointer: str, offset: int) -> Position:
        """Position of character ``offset`` inside a one-line scalar (quotes accounted for)."""
        line, column = self.position(pointer)
        style = self.scalar_styles.get(pointer, "|")
        if style in (None, ""):
            return line, column + offset
        if style in ("'", '"'):
            return line, column + 1 + _source_length(self.data_at(pointer), offset, style)
        return line, column

    def data_at(self, pointer: str) -> Any:
        """The value at a JSON Pointer (None when absent)."""
        node = self.data
        for token in filter(None, pointer.split("/")):
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict):
                node = node.get(token)
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return None
        return node

    def position(self, pointer: str, *, key: bool = False) -> Position:
        """The position of ``pointer``, or of its nearest ancestor that has one."""
        table = self.key_positions if key else self.positions
        probe = pointer
        while True:
            if probe in table:
                return table[probe]
            if probe in self.positions:
                return self.positions[probe]
            if not probe:
                return (1, 1)
            probe = probe.rsplit("/", 1)[0]


def escape(token: str | int) -> str:
    """One JSON Pointer reference token (RFC 6901)."""
    return str(token).replace("~", "~0").replace("/", "~1")


class _Limit(Exception):
    def __init__(self, node: Node, message: str, hint: str) -> None:
        self.node, self.message, self.hint = node, message, hint


class _Builder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.positions: dict[str, Position] = {}
        self.key_positions: dict[str, Position] = {}
        self.scalar_styles: dict[str, str | None] = {}
        self.diagnostics: list[Diagnostic] = []
        self.count = 0

    def where(self, node: Node) -> Position:
        return (node.start_mark.line + 1, node.start_mark.column + 1)

    def error(self, node: Node, pointer: str, message: str, hint: str | None = None) -> None:
        line, col = self.where(node)
        self.diagnostics.append(Diagnostic(self.path, line, col, pointer, message, hint=hint))

    def build(self, node: Node, pointer: str, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _Limit(
                node,
                f"the document expands to more than {MAX_NODES} values",
                "aliases (*name) repeat whole subtrees; a config never needs this many",
            )
        if depth > MAX_DEPTH:
            raise _Limit(
                node,
                f"nesting deeper than {MAX_DEPTH} levels",
                "a recursive alias or a runaway structure; flatten it",
            )
        self.positions.setdefault(pointer, self.where(node))
        tag = node.tag
        if tag not in _ALLOWED_TAGS and tag != _TIMESTAMP:
            shown = "!!" + str(tag)[len(_CORE) :] if str(tag).startswith(_CORE) else str(tag)
            self.error(
                node,
                pointer,
                f"YAML tag {shown!r} is not allowed",
                "config files hold plain data only; remove the '!' tag",
            )
            return None
        if isinstance(node, MappingNode):
            return self._mapping(node, pointer, depth)
        if isinstance(node, SequenceNode):
            return [
                self.build(item, f"{pointer}/{index}", depth + 1)
                for index, item in enumerate(node.value)
            ]
        assert isinstance(node, ScalarNode)
        one_line = node.end_mark is None or node.end_mark.line == node.start_mark.line
        self.scalar_styles[pointer] = node.style if one_line else "|"
        return _scalar(node)

    def _mapping(self, node: MappingNode, pointer: str, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == f"{_CORE}merge":
                self.error(
                    key_node,
                    pointer,
                    "merge keys ('<<') are not supported",
                    "repeat the keys, or use an alias for the whole value",
                )
                continue
            if not isinstance(key_node, ScalarNode):
                self.error(key_node, pointer, "a mapping key must be a plain string")
                continue
            key = str(_scalar(key_node))
            child = f"{pointer}/{escape(key)}"
            if key in result:
                first = self.key_positions[child]
                self.error(
                    key_node,
                    child,
                    f"duplicate key {key!r} (first defined at line {first[0]})",
                    "YAML keeps only one of them silently; remove or rename one",
                )
                continue
            self.key_positions[child] = self.where(key_node)
            result[key] = self.build(value_node, child, depth + 1)
        return result


def _scalar(node: ScalarNode) -> Any:
    value: str = node.value
    tag = node.tag
    if tag == f"{_CORE}null":
        return None
    if tag == f"{_CORE}bool":
        return value.lower() == "true"
    # The resolver's int and float patterns are looser than Python's ("+_", "0b1", "1__0."):
    # what Python cannot read stays text, and the schema says what was expected there.
    if tag == f"{_CORE}int":
        text = value.replace("_", "")
        try:
            if text.lower().lstrip("+-").startswith(("0x", "0o", "0b")):
                return int(text, 0)
            return int(text, 10)
        except ValueError:
            return value
    if tag == f"{_CORE}float":
        lowered = value.lower().replace("_", "")
        if lowered.endswith(".inf"):
            return -math.inf if lowered.startswith("-") else math.inf
        if lowered == ".nan":
            return math.nan
        try:
            return float(lowered)
        except ValueError:
            return value
    return value  # str, and timestamps stay text: the schema decides what a date looks like


def _compose(text: str) -> Node | None:
    if _CLoader is not None:
        loader = _CLoader(text)
        try:
            return loader.get_single_node()  # type: ignore[no-any-return]
        finally:
            loader.dispose()
    return YAML(typ="safe", pure=True).compose(text)  # type: ignore[no-any-return]


def parse_text(path: str, text: str) -> tuple[Document | None, list[Diagnostic]]:
    """Parse YAML text; returns the document (None if unusable) and every problem found."""
    if len(text.encode("utf-8", errors="replace")) > MAX_FILE_BYTES:
        return None, [
            Diagnostic(
                path,
                1,
                1,
                "",
                f"file is larger than {MAX_FILE_BYTES} bytes",
                hint="split the configuration into several files",
            )
        ]
    try:
        root = _compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        return None, [
            Diagnostic(
                path,
                line,
                col,
                "",
                f"YAML syntax error: {problem}{context}",
                hint=_syntax_hint(f"{problem} {exc.context or ''}"),
            )
        ]
    except YAMLError as exc:
        return None, [Diagnostic(path, 1, 1, "", f"YAML error: {exc}")]
    if root is None:
        return None, [Diagnostic(path, 1, 1, "", "the file is empty", expected="version: 1 ...")]
    builder = _Builder(path)
    try:
        data = builder.build(root, "", 0)
    except _Limit as limit:
        builder.diagnostics = []
        builder.error(limit.node, "", limit.message, limit.hint)
        return None, builder.diagnostics
    except RecursionError:  # pragma: no cover - MAX_DEPTH stops long before this
        return None, [Diagnostic(path, 1, 1, "", "structure too deep to read")]
    document = Document(path, data, builder.positions, builder.key_positions, builder.scalar_styles)
    return document, builder.diagnostics


def parse_file(path: Path, display: str | None = None) -> tuple[Document | None, list[Diagnostic]]:
    """Read and parse one file; unreadable files become a diagnostic, not an exception."""
    name = display or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, [
                Diagnostic(
                    name,
                    1,
                    1,
                    "",
                    f"file is larger than {MAX_FILE_BYTES} bytes ({size})",
                    hint="split the configuration into several files",
                )
            ]
        raw = path.read_bytes()
    except OSError as exc:
        return None, [Diagnostic(name, 1, 1, "", f"cannot read file: {exc.strerror or exc}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, [Diagnostic(name, line, 1, "", "file is not valid UTF-8")]
    return parse_text(name, text)


def _source_length(value: Any, offset: int, style: str) -> int:
    """How many source characters the first ``offset`` characters of a quoted scalar take."""
    prefix = str(value)[:offset]
    if style == "'":
        return len(prefix.replace("'", "''"))
    return len(json.dumps(prefix, ensure_ascii=False)) - 2  # backslash escapes, as YAML has


def _syntax_hint(problem: str) -> str | None:
    if "mapping values are not allowed" in problem:
        return "check the indentation of this line against the lines above, or quote a ': '"
    if "found character '\\t'" in problem or "tab" in problem:
        return "YAML indents with spaces, never tabs"
    if "did not find expected" in problem or "expected <block end>" in problem:
        return "this line is indented differently from its siblings"
    if "found undefined alias" in problem:
        return "an alias (*name) needs an anchor (&name) earlier in the file"
    if "expected a single document" in problem:
        return "one file holds one document; remove the '---' separator or split the file"
    return None
