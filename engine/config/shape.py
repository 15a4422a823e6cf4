"""Check a document against its JSON Schema and turn each failure into a located Diagnostic.

jsonschema reports *what* failed; this module adds *where* (file:line:col from the loader's
position map), expected-vs-found in the user's terms, and a did-you-mean hint. Unions are
narrowed to the branch that fits the value's type, so a typo inside an ``ExitTrigger`` object
is reported at that key rather than as "not valid under any of the given schemas".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from engine.config.diagnostics import Diagnostic, did_you_mean, one_of, shorten
from engine.config.loader import Document, escape

_TYPE_WORDS = {
    "object": "a mapping (key: value)",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing (null)",
}
_ENUM_NOUNS = {
    "action": "action type",
    "trigger": "event type",
    "event": "event type",
    "exit_on": "event type",
}


def found(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"the string {shorten(value)}"


def _value(error: ValidationError) -> Any:
    return error.validator_value


def pointer_of(path: Any) -> str:
    return "".join(f"/{escape(token)}" for token in path)


def check_shape(document: Document, validator: Draft202012Validator) -> list[Diagnostic]:
    """Every schema violation in the document, located and explained."""
    diagnostics: list[Diagnostic] = []
    for error in validator.iter_errors(document.data):
        diagnostics.extend(_explain(document, error))
    return sorted(set(diagnostics))


def _branch_fits(branch_errors: list[ValidationError]) -> bool:
    """False when the branch rejects the value's very type (the wrong alternative)."""
    return not any(not e.relative_path and e.validator == "type" for e in branch_errors)


def _explain(document: Document, error: ValidationError) -> Iterator[Diagnostic]:
    pointer = pointer_of(error.absolute_path)
    kind = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}

    if kind in {"anyOf", "oneOf"} and error.context:
        branches: dict[int, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
        fitting = [errs for _, errs in sorted(branches.items()) if _branch_fits(errs)]
        if fitting:
            for sub in min(fitting, key=len):
                yield from _explain(document, sub)
            return
        wanted = sorted({_describe(s) for s in _value(error)})
        yield _at(
            document,
            pointer,
            f"wrong kind of value: {found(error.instance)}",
            expected=" or ".join(wanted),
        )
        return

    if "propertyNames" in error.schema_path:
        key = error.instance
        key_pointer = f"{pointer}/{escape(str(key))}"
        yield _at(
            document,
            key_pointer,
            f"invalid name {shorten(key)}",
            expected=schema.get("description") or f"matching {schema.get('pattern')}",
            key=True,
        )
        return

    if kind == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(schema.get("properties", {}))
        for extra in sorted(set(error.instance) - set(allowed)):
            yield _at(
                document,
                f"{pointer}/{escape(extra)}",
                f"unknown key {extra!r}",
                expected=one_of(allowed) if allowed else "no keys here",
                hint=_secret_hint(extra, allowed)
                or did_you_mean(extra, allowed)
                or "a misspelt key would silently change behaviour, so unknown keys are errors",
                key=True,
            )
        return

    if kind == "required":
        for missing in _value(error):
            if isinstance(error.instance, dict) and missing not in error.instance:
                description = schema.get("properties", {}).get(missing, {}).get("description")
                yield _at(
                    document,
                    pointer,
                    f"missing required key {missing!r}",
                    expected=description,
                    key=True,
                )
        return

    if kind == "enum":
        last = str(error.absolute_path[-1]) if error.absolute_path else ""
        parent = str(error.absolute_path[-2]) if len(error.absolute_path) > 1 else ""
        noun = _ENUM_NOUNS.get(last) or _ENUM_NOUNS.get(parent) or "value"
        options = [str(v) for v in _value(error)]
        yield _at(
            document,
            pointer,
            f"unknown {noun} {shorten(error.instance)}",
            expected=one_of(options, limit=20),
            hint=did_you_mean(str(error.instance), options),
        )
        return

    if kind == "const":
        yield _at(
            document,
            pointer,
            f"unsupported value {shorten(error.instance)}",
            expected=repr(_value(error)),
        )
        return

    if kind == "type":
        wanted = _value(error)
        words = [_TYPE_WORDS.get(w, w) for w in (wanted if isinstance(wanted, list) else [wanted])]
        yield _at(
            document,
            pointer,
            f"wrong type: found {found(error.instance)}",
            expected=" or ".join(words),
        )
        return

    if kind == "pattern":
        yield _at(
            document,
            pointer,
            f"{shorten(error.instance)} is not valid here",
            expected=schema.get("description") or f"text matching {_value(error)}",
        )
        return

    yield _at(document, pointer, error.message, expected=schema.get("description"))


def _secret_hint(key: str, allowed: list[str]) -> str | None:
    for variant in (f"{key}_env", f"{key}_envs"):
        if variant in allowed:
            return (
                f"secrets never go into files: put the value in an environment variable and "
                f"write its name under {variant!r} (and rotate it if this file was committed)"
            )
    return None


def _describe(subschema: Any) -> str:
    if not isinstance(subschema, dict):
        return "a value"
    if "$ref" in subschema:
        return "a mapping (" + str(subschema["$ref"]).rsplit("/", 1)[-1] + ")"
    if "enum" in subschema:
        return "a known name"
    return _TYPE_WORDS.get(str(subschema.get("type")), "a value")


def _at(
    document: Document,
    pointer: str,
    message: str,
    *,
    expected: str | None = None,
    hint: str | None = None,
    key: bool = False,
) -> Diagnostic:
    line, column = document.position(pointer, key=key)
    return Diagnostic(document.path, line, column, pointer, message, expected, hint)
