"""Typed field paths: every field a JMESPath expression reads must exist in the input schema.

The checker walks the expression's AST alongside the JSON Schema of what the expression will
see (an event's ``data``, or a sequence step's context) and reports each field that cannot
exist there, with the closest real name. ``raw`` (the vendor payload) is an open object and
accepts anything. Types are followed through indexes, projections, filters, pipes and the
array arguments of ``sort_by``/``max_by``/``min_by``/``map``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.config.diagnostics import did_you_mean
from engine.expressions import FUNCTIONS

Schema = dict[str, Any]
_LITERAL_WORDS = {"null", "true", "false"}
_BOOLEAN_NODES = {"not_expression", "comparator", "and_expression", "or_expression"}


@dataclass(frozen=True)
class PathProblem:
    """One unknown field (or wrong use of one) found in an expression."""

    name: str
    path: str
    message: str
    expected: str | None
    hint: str | None

    def offset_in(self, expression: str) -> int:
        """Best 0-based offset of the offending name inside the expression text."""
        if "[" not in self.path and "." in self.path:  # the whole dotted path, spaces allowed
            dotted = r"\s*\.\s*".join(re.escape(part) for part in self.path.split("."))
            exact = re.search(rf"(?<![A-Za-z0-9_.]){dotted}(?![A-Za-z0-9_])", expression)
            if exact:
                return exact.end() - len(self.name)
        pattern = rf'(?<![A-Za-z0-9_"]){re.escape(self.name)}(?![A-Za-z0-9_])'
        for match in re.finditer(pattern, expression):
            before = expression[: match.start()].rstrip()
            if self.path.count(".") == 0 or before.endswith((".", "[", "|", "{", ",", "(", ":")):
                return match.start()
        fallback = expression.find(self.name)
        return max(fallback, 0)


class _Type:
    """A set of alternative schemas (a union), or anything when ``any`` is set."""

    def __init__(self, alternatives: list[Schema] | None) -> None:
        self.alternatives = alternatives

    @property
    def is_any(self) -> bool:
        return self.alternatives is None


ANY = _Type(None)


class PathChecker:
    """Checks expressions against one root schema (with its ``$defs``)."""

    def __init__(self, root: Schema, subject: str) -> None:
        self.root = root
        self.subject = subject
        self.problems: list[PathProblem] = []

    # -- schema navigation -------------------------------------------------------------
    def _resolve(self, schema: Schema) -> list[Schema]:
        if "$ref" in schema:
            name = str(schema["$ref"]).rsplit("/", 1)[-1]
            return self._resolve(self.root.get("$defs", {})[name])
        for union in ("anyOf", "oneOf"):
            if union in schema:
                out: list[Schema] = []
                for branch in schema[union]:
                    out.extend(self._resolve(branch))
                return out
        return [schema]

    def typed(self, schema: Schema) -> _Type:
        alternatives = self._resolve(schema)
        if any(_is_open(alt) for alt in alternatives):
            return ANY
        return _Type(alternatives)

    def root_type(self) -> _Type:
        return self.typed(self.root)

    def is_date(self, kind: _Type) -> bool | None:
        """True if the type is a timestamp, False if it cannot be one, None if unknown."""
        if kind.is_any:
            return None
        assert kind.alternatives is not None
        usable = [a for a in kind.alternatives if a.get("type") != "null"]
        return bool(usable) and all(a.get("format") == "date-time" for a in usable)

    # -- the walk -----------------------------------------------------------------------
    def check(self, ast: dict[str, Any]) -> _Type:
        return self._walk(ast, self.root_type(), "")

    def _field(self, current: _Type, name: str, path: str) -> _Type:
        shown = f"{path}.{name}" if path else name
        if current.is_any:
            return ANY
        assert current.alternatives is not None
        objects = [a for a in current.alternatives if a.get("type") == "object"]
        found = [a["properties"][name] for a in objects if name in a.get("properties", {})]
        if found:
            out: list[Schema] = []
            for schema in found:
                resolved = self.typed(schema)
                if resolved.is_any:
                    return ANY
                assert resolved.alternatives is not None
                out.extend(resolved.alternatives)
            return _Type(out)
        if objects:
            known = sorted({key for a in objects for key in a.get("properties", {})})
            where = f"{path}" if path else self.subject
            hint: str | None
            if name in _LITERAL_WORDS:
                hint = f"for the literal, write `{name}` in backticks; bare {name} is a field name"
            else:
                close = did_you_mean(name, known)
                hint = (
                    close.replace("did you mean '", f"did you mean '{path}.")
                    if (close and path)
                    else close
                )
            self.problems.append(
                PathProblem(
                    name,
                    shown,
                    f"unknown field {shown!r} in {self.subject}",
                    f"a field of {where}: {', '.join(known)}",
                    hint,
                )
            )
            return ANY
        kinds = sorted({str(a.get("type")) for a in current.alternatives} - {"null"})
        if kinds:
            self.problems.append(
                PathProblem(
                    name,
                    shown,
                    f"{path!r} is {' or '.join(kinds)}, it has no field {name!r}",
                    None,
                    "use [0] or [*] to reach into a list" if "array" in kinds else None,
                )
            )
        return ANY

    def _items(self, current: _Type) -> _Type:
        if current.is_any:
            return ANY
        assert current.alternatives is not None
        out: list[Schema] = []
        for alt in current.alternatives:
            if alt.get("type") == "array":
                items = self.typed(alt.get("items", {}))
                if items.is_any:
                    return ANY
                assert items.alternatives is not None
                out.extend(items.alternatives)
        return _Type(out) if out else ANY

    def _walk(self, node: dict[str, Any], current: _Type, path: str) -> _Type:
        kind = node.get("type")
        children: list[Any] = node.get("children", [])
        if kind == "field":
            return self._field(current, str(node["value"]), path)
        if kind == "subexpression":
            head = children[0] if children else {}
            if head.get("type") in _BOOLEAN_NODES and len(children) > 1:
                tail = _extend("", {"type": "subexpression", "children": children[1:]})
                self.problems.append(
                    PathProblem(
                        tail.split(".")[0],
                        tail,
                        f"'.{tail}' reads a field of a true/false value, so it is always null",
                        None,
                        "JMESPath binds '!' tighter than '.': !a.b means (!a).b; write !(a.b)",
                    )
                )
            for child in children:
                current = self._walk(child, current, path)
                path = _extend(path, child)
            return current
        if kind == "index_expression":
            left = self._walk(children[0], current, path)
            return self._items(left) if children[1].get("type") == "index" else left
        if kind in {"projection", "filter_projection"}:
            left = self._walk(children[0], current, path)
            element = self._items(left)
            element_path = _extend(path, children[0]) + "[]"
            if kind == "filter_projection":
                self._walk(children[2], element, element_path)
            self._walk(children[1], element, element_path)
            return ANY
        if kind == "value_projection":
            self._walk(children[0], current, path)
            return ANY
        if kind == "flatten":
            return self._items(self._walk(children[0], current, path))
        if kind == "pipe":
            left = self._walk(children[0], current, path)
            return self._walk(children[1], left, _extend(path, children[0]))
        if kind == "function_expression":
            return self._function(node, current, path)
        if kind in {"identity", "current"}:
            return current
        if kind in {"literal", "index", "slice", "expref"}:
            return ANY
        for child in children:  # comparators, and/or/not, multi-selects, key_val_pair
            if isinstance(child, dict):
                self._walk(child, current, path)
        return ANY

    def _function(self, node: dict[str, Any], current: _Type, path: str) -> _Type:
        name = str(node["value"])
        args: list[dict[str, Any]] = node.get("children", [])
        if name not in FUNCTIONS:
            self.problems.append(
                PathProblem(
                    name,
                    name,
                    f"unknown function {name}()",
                    "a JMESPath built-in or one of lower, upper, trim, now, days_since",
                    did_you_mean(name, FUNCTIONS),
                )
            )
            return ANY
        low, high = FUNCTIONS[name]
        if len(args) < low or (high is not None and len(args) > high):
            wanted = (
                str(low) if low == high else f"{low} or more" if high is None else f"{low}-{high}"
            )
            self.problems.append(
                PathProblem(
                    name, name, f"{name}() takes {wanted} argument(s), got {len(args)}", None, None
                )
            )
        first: _Type = ANY
        for index, arg in enumerate(args):
            if arg.get("type") == "expref":
                element = self._items(first)
                self._walk(arg["children"][0], element, _extend(path, args[0]) + "[]")
            else:
                result = self._walk(arg, current, path)
                if index == 0:
                    first = result
        return ANY


def _is_open(schema: Schema) -> bool:
    if not schema:
        return True
    if schema.get("type") == "object":
        return schema.get("additionalProperties", True) is not False and not schema.get(
            "properties"
        )
    return "type" not in schema and "const" not in schema and "enum" not in schema


def _extend(path: str, node: dict[str, Any]) -> str:
    if node.get("type") == "field":
        return f"{path}.{node['value']}" if path else str(node["value"])
    if node.get("type") == "subexpression":
        for child in node.get("children", []):
            path = _extend(path, child)
        return path
    if node.get("type") == "index_expression":
        return _extend(path, node["children"][0]) + "[]"
    return path
