"""JMESPath compiled to Python closures: the interpreter's answers, about ten times faster.

The jmespath library re-walks the AST dict on every search (a dict lookup, a method lookup and
a call per node). Rules are evaluated for every event, so the engine compiles each condition and
field mapping ONCE, at config load, into a tree of closures that does only the work left
after the AST has been read.

The contract is exact equivalence with ``engine.expressions.search`` (the library's
``TreeInterpreter`` with our custom functions bound to the same clock): same values, same
types, same exception classes raised at the same moments. Every closure below therefore
mirrors one ``TreeInterpreter.visit_*`` method, and each comment says why a shortcut is safe.
The rules that matter most:

* truthiness: ``false``, ``null``, ``""``, ``[]`` and ``{}`` are false; ``0`` is true;
* ``==``/``!=`` are Python equality except that ``0``/``1`` never equal ``false``/``true``;
* ``<``, ``<=``, ``>``, ``>=`` compare numbers or strings (jmespath 1.x also orders strings)
  and yield null for anything else; a number against a string raises ``TypeError``, as the
  interpreter does;
* a field of a non-object, an index or slice of a non-array, is null;
* projections drop null results; a pipe ends a projection (the AST already says so);
* precedence is the parser's, quirks included: ``!a.b`` is ``(!a).b``, always null;
* functions keep the library's type checks and errors: a closure calls the function directly
  only when the arguments certainly pass the library's check, and otherwise goes through
  ``Functions.call_function``, which raises exactly what the interpreter raises.

A node type this module does not know is evaluated by the interpreter (slow but correct).
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from jmespath import functions as jp_functions
from jmespath import visitor as jp_visitor
from jmespath.parser import ParsedResult, Parser

from engine.expressions import Clock, NurtureFunctions

__all__ = ["Compiled", "Compiler", "Evaluator", "compile_expression", "truthy"]

Evaluator = Callable[[Any], Any]
"""A compiled expression: the current value (the event's ``data``) in, the result out."""

Node = Mapping[str, Any]

# The library's own helpers, so that the slow paths below are the interpreter's code itself.
_equals: Final[Callable[[Any, Any], bool]] = jp_visitor._equals
_is_comparable: Final[Callable[[Any], bool]] = jp_visitor._is_comparable
_is_actual_number: Final[Callable[[Any], bool]] = jp_visitor._is_actual_number
_LibraryExpression: Final[type] = jp_visitor._Expression

_NONE_TYPE: Final = type(None)
_ORDERABLE: Final = frozenset({int, float, str})
"""Types that ``_is_comparable`` certainly accepts: the ordering fast path."""

_ORDERING: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}

# Python classes whose ``__name__`` the library's type check may list. A fast path accepts an
# argument only when ``type(arg)`` is one of these AND its name is allowed, which implies the
# library's name-based check passes; anything else takes the checked path.
_KNOWN_TYPES: Final[tuple[type, ...]] = (
    bool,
    list,
    dict,
    OrderedDict,
    _NONE_TYPE,
    str,
    float,
    int,
    _LibraryExpression,
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _identity(value: Any) -> Any:
    return value


def truthy(value: Any) -> bool:
    """JMESPath truthiness: false for ``false``, ``null``, ``""``, ``[]`` and ``{}``; ``0`` is true.

    Same answer as ``TreeInterpreter._is_true``, which compares with ``==`` so that, unlike
    Python, the number 0 counts as true.
    """
    if value is None or value is False:
        return False
    kind = type(value)
    if kind is str or kind is list or kind is dict:
        return len(value) > 0
    if kind is bool or kind is int or kind is float:
        return True
    # Anything unusual (subclasses, other mappings): the interpreter's own test, verbatim.
    return not (value == "" or value == [] or value == {})


def _not(value: Any) -> bool:
    """``!x``: Python's ``not`` except that ``!0`` is false (``TreeInterpreter`` special case)."""
    if _is_actual_number(value) and value == 0:
        return False
    return not value


class _ClosureVisitor:
    """What a ``_Expression`` (an expref argument) calls back: here the compiled closure itself.

    Functions such as ``sort_by`` call ``expref.visit(expref.expression, element)``; handing
    them the library's ``_Expression`` class keeps its type name, which the argument type check
    looks for (``'_Expression'`` -> ``expref``).
    """

    @staticmethod
    def visit(evaluate: Evaluator, value: Any) -> Any:
        return evaluate(value)


_CLOSURE_VISITOR: Final = _ClosureVisitor()


class Compiled:
    """One compiled expression; call it with the data to evaluate.

    ``function`` is the bare closure, for the hottest loops (it saves one call per evaluation).
    """

    __slots__ = ("expression", "function")

    def __init__(self, expression: str | None, function: Evaluator) -> None:
        self.expression = expression
        self.function = function

    def __call__(self, data: Any) -> Any:
        return self.function(data)

    def __repr__(self) -> str:
        return f"Compiled({self.expression!r})"


class Compiler:
    """Compiles JMESPath ASTs against one set of functions (built-ins plus ours, one clock).

    Compile every expression of a config with the same ``Compiler``: they share the functions
    object, as they would share it in the interpreter.
    """

    def __init__(self, clock: Clock = _utc_now) -> None:
        self.functions = NurtureFunctions(clock)
        self._interpreter = jp_visitor.TreeInterpreter(
            jp_visitor.Options(custom_functions=self.functions)
        )

    # -- entry points ---------------------------------------------------------------------

    def compile(self, expression: str | ParsedResult | Node) -> Compiled:
        """Compile expression text (syntax errors raise the parser's exceptions), a
        ``ParsedResult`` from ``engine.expressions.parse``, or a bare AST node."""
        if isinstance(expression, str):
            parsed = Parser().parse(expression)
            return Compiled(expression, self.node(parsed.parsed))
        if isinstance(expression, ParsedResult):
            return Compiled(expression.expression, self.node(expression.parsed))
        return Compiled(None, self.node(expression))

    def node(self, node: Node) -> Evaluator:
        """The closure of one AST node (and its subtree)."""
        builder = self._BUILDERS.get(node["type"])
        if builder is None:
            return self._fallback(node)
        return builder(self, node)

    def _fallback(self, node: Node) -> Evaluator:
        """A subtree of unknown type: let the interpreter walk it, with the same functions."""
        interpreter = self._interpreter

        def interpret(value: Any) -> Any:
            return interpreter.visit(node, value)

        return interpret

    # -- paths: subexpression, index_expression and pipe --------------------------------

    def _chain(self, node: Node) -> Evaluator:
        """``a.b``, ``a[0]`` and ``a | b`` all apply their children left to right.

        ``visit_subexpression``, ``visit_index_expression`` and ``visit_pipe`` are the same
        fold, so nested ones flatten into one list of steps; identity steps drop out, and runs
        of plain fields fuse into one closure (the common ``application.stage.name``).
        """
        steps: list[Node] = []
        self._flatten_steps(node, steps)
        evaluators: list[Evaluator] = []
        fields: list[str] = []
        for step in steps:
            if step["type"] == "field":
                fields.append(step["value"])
                continue
            if fields:
                evaluators.append(_fields(fields))
                fields = []
            if step["type"] not in ("identity", "current"):
                evaluators.append(self.node(step))
        if fields:
            evaluators.append(_fields(fields))
        return _compose(evaluators)

    def _flatten_steps(self, node: Node, into: list[Node]) -> None:
        if node["type"] in ("subexpression", "index_expression", "pipe"):
            for child in node["children"]:
                self._flatten_steps(child, into)
        else:
            into.append(node)

    def _field(self, node: Node) -> Evaluator:
        return _fields([node["value"]])

    def _identity(self, node: Node) -> Evaluator:
        return _identity

    def _literal(self, node: Node) -> Evaluator:
        # The interpreter hands out the AST's own object every time; so do we.
        constant = node["value"]

        def literal(value: Any) -> Any:
            return constant

        return literal

    def _index(self, node: Node) -> Evaluator:
        position: int = node["value"]

        def index(value: Any) -> Any:
            # Strings are not indexable in JMESPath, hence the list test (visit_index).
            if not isinstance(value, list):
                return None
            try:
                return value[position]  # Python's negative indexes are JMESPath's
            except IndexError:
                return None

        return index

    def _slice(self, node: Node) -> Evaluator:
        # slice(None, None, 0) is accepted here; indexing with it raises ValueError at
        # evaluation time, exactly as in visit_slice.
        bounds = slice(*node["children"])

        def slice_(value: Any) -> Any:
            if not isinstance(value, list):
                return None
            return value[bounds]

        return slice_

    # -- projections ----------------------------------------------------------------------

    def _projection(self, node: Node) -> Evaluator:
        base = self.node(node["children"][0])
        right_node = node["children"][1]
        if right_node["type"] in ("identity", "current"):

            def project_identity(value: Any) -> Any:
                items = base(value)
                if not isinstance(items, list):
                    return None
                return [item for item in items if item is not None]

            return project_identity
        right = self.node(right_node)

        def project(value: Any) -> Any:
            items = base(value)
            if not isinstance(items, list):
                return None
            return [result for item in items if (result := right(item)) is not None]

        return project

    def _value_projection(self, node: Node) -> Evaluator:
        base = self.node(node["children"][0])
        right = self.node(node["children"][1])

        def project_values(value: Any) -> Any:
            mapping = base(value)
            try:
                items = mapping.values()  # any mapping, as in visit_value_projection
            except AttributeError:
                return None
            return [result for item in items if (result := right(item)) is not None]

        return project_values

    def _filter_projection(self, node: Node) -> Evaluator:
        base_node, right_node, condition_node = node["children"]
        base = self.node(base_node)
        condition = self.node(condition_node)
        if right_node["type"] in ("identity", "current"):

            def filter_identity(value: Any) -> Any:
                items = base(value)
                if not isinstance(items, list):
                    return None
                return [item for item in items if truthy(condition(item)) and item is not None]

            return filter_identity
        right = self.node(right_node)

        def filter_(value: Any) -> Any:
            items = base(value)
            if not isinstance(items, list):
                return None
            return [
                result
                for item in items
                if truthy(condition(item)) and (result := right(item)) is not None
            ]

        return filter_

    def _flatten(self, node: Node) -> Evaluator:
        base = self.node(node["children"][0])

        def flatten(value: Any) -> Any:
            items = base(value)
            if not isinstance(items, list):
                return None
            merged: list[Any] = []
            for item in items:
                if isinstance(item, list):
                    merged.extend(item)
                else:
                    merged.append(item)
            return merged

        return flatten

    # -- multi-select ---------------------------------------------------------------------

    def _multi_select_list(self, node: Node) -> Evaluator:
        parts = tuple(self.node(child) for child in node["children"])

        def select_list(value: Any) -> Any:
            if value is None:  # only null: `false`.[a] is [null], as in the interpreter
                return None
            return [part(value) for part in parts]

        return select_list

    def _multi_select_dict(self, node: Node) -> Evaluator:
        # key_val_pair nodes just evaluate their child; a repeated key keeps the last value.
        pairs = tuple(
            (child["value"], self.node(child["children"][0])) for child in node["children"]
        )

        def select_dict(value: Any) -> Any:
            if value is None:
                return None
            return {key: part(value) for key, part in pairs}

        return select_dict

    def _key_val_pair(self, node: Node) -> Evaluator:
        return self.node(node["children"][0])

    # -- logic and comparison -------------------------------------------------------------

    def _or(self, node: Node) -> Evaluator:
        left = self.node(node["children"][0])
        right = self.node(node["children"][1])

        def or_(value: Any) -> Any:
            matched = left(value)
            # The operands are mostly comparison results: decide booleans without a call.
            if matched is True:
                return matched
            if matched is False or matched is None or not truthy(matched):
                return right(value)
            return matched

        return or_

    def _and(self, node: Node) -> Evaluator:
        left = self.node(node["children"][0])
        right = self.node(node["children"][1])

        def and_(value: Any) -> Any:
            matched = left(value)
            if matched is True:
                return right(value)
            if matched is False or matched is None or not truthy(matched):
                return matched
            return right(value)

        return and_

    def _not_expression(self, node: Node) -> Evaluator:
        operand = self.node(node["children"][0])

        def not_(value: Any) -> Any:
            return _not(operand(value))

        return not_

    def _comparator(self, node: Node) -> Evaluator:
        operator_name: str = node["value"]
        left_node, right_node = node["children"]
        left = self.node(left_node)
        right = self.node(right_node)
        if operator_name in ("eq", "ne"):
            return _equality(operator_name == "eq", left, right, left_node, right_node)
        compare = _ORDERING.get(operator_name)
        if compare is None:  # not produced by the parser; the interpreter raises KeyError
            return self._fallback(node)

        def order(value: Any) -> Any:
            lhs = left(value)
            rhs = right(value)
            if type(lhs) in _ORDERABLE and type(rhs) in _ORDERABLE:
                return compare(lhs, rhs)  # int/float vs str raises TypeError, as visit does
            if _is_comparable(lhs) and _is_comparable(rhs):
                return compare(lhs, rhs)
            return None

        return order

    # -- functions ------------------------------------------------------------------------

    def _expref(self, node: Node) -> Evaluator:
        evaluate = self.node(node["children"][0])

        def expref(value: Any) -> Any:
            # A fresh _Expression per evaluation, as visit_expref creates one.
            return _LibraryExpression(evaluate, _CLOSURE_VISITOR)

        return expref

    def _function(self, node: Node) -> Evaluator:
        name: str = node["value"]
        arguments = tuple(self.node(child) for child in node["children"])
        functions = self.functions
        call_checked = functions.call_function  # type checks, arity, unknown names: the library
        spec = functions.FUNCTION_TABLE.get(name)
        accepted = None if spec is None else _fast_types(spec["signature"], len(arguments))
        if spec is None or accepted is None:
            # Unknown function, wrong arity, variadic or array-of-T signatures: let the library
            # check every call (it raises UnknownFunctionError, ArityError, JMESPathTypeError).
            def call(value: Any) -> Any:
                return call_checked(name, [argument(value) for argument in arguments])

            return call

        function = spec["function"]
        if len(arguments) == 0:

            def call0(value: Any) -> Any:
                return function(functions)

            return call0
        if len(arguments) == 1:
            (argument,) = arguments
            (types,) = accepted

            def call1(value: Any) -> Any:
                first = argument(value)
                if types is None or type(first) in types:
                    return function(functions, first)
                return call_checked(name, [first])

            return call1
        if len(arguments) == 2:
            argument_a, argument_b = arguments
            types_a, types_b = accepted

            def call2(value: Any) -> Any:
                first = argument_a(value)
                second = argument_b(value)
                if (types_a is None or type(first) in types_a) and (
                    types_b is None or type(second) in types_b
                ):
                    return function(functions, first, second)
                return call_checked(name, [first, second])

            return call2

        def call_n(value: Any) -> Any:
            values = [argument(value) for argument in arguments]
            for given, types in zip(values, accepted, strict=True):
                if types is not None and type(given) not in types:
                    return call_checked(name, values)
            return function(functions, *values)

        return call_n

    _BUILDERS: Final[dict[str, Callable[[Compiler, Node], Evaluator]]] = {
        "subexpression": _chain,
        "index_expression": _chain,
        "pipe": _chain,
        "field": _field,
        "identity": _identity,
        "current": _identity,
        "literal": _literal,
        "index": _index,
        "slice": _slice,
        "projection": _projection,
        "value_projection": _value_projection,
        "filter_projection": _filter_projection,
        "flatten": _flatten,
        "multi_select_list": _multi_select_list,
        "multi_select_dict": _multi_select_dict,
        "key_val_pair": _key_val_pair,
        "or_expression": _or,
        "and_expression": _and,
        "not_expression": _not_expression,
        "comparator": _comparator,
        "expref": _expref,
        "function_expression": _function,
    }


def compile_expression(expression: str | ParsedResult | Node, clock: Clock = _utc_now) -> Compiled:
    """Compile one expression with the custom functions bound to ``clock``.

    For many expressions, a ``Compiler(clock)`` compiles them against one functions object.
    """
    return Compiler(clock).compile(expression)


# -- building blocks ------------------------------------------------------------------------


def _compose(evaluators: Sequence[Evaluator]) -> Evaluator:
    """Apply ``evaluators`` left to right (an empty list is the identity)."""
    if not evaluators:
        return _identity
    if len(evaluators) == 1:
        return evaluators[0]
    if len(evaluators) == 2:
        first, second = evaluators

        def compose2(value: Any) -> Any:
            return second(first(value))

        return compose2
    steps = tuple(evaluators)

    def compose(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value

    return compose


def _walk(value: Any, names: Sequence[str]) -> Any:
    """visit_field applied name after name: ``value.get(name)``, AttributeError -> null.

    Once a value is null every later field is null too, so the walk stops there.
    """
    for name in names:
        if value is None:
            return None
        try:
            value = value.get(name)
        except AttributeError:
            return None
    return value


def _fields(names: Sequence[str]) -> Evaluator:
    """``a.b.c``: one closure for a run of fields (the common ``application.stage.name``).

    Plain dicts, by far the common case, are read with ``dict.get`` after an exact type test;
    anything else goes through ``_walk``, the interpreter's own rule. Testing the type first
    instead of catching AttributeError matters: a missing object in the middle of a path is
    routine (``interview.status`` on an application event) and an exception costs ~0.4 µs.
    """
    chain: tuple[str, ...] = tuple(names)
    if len(chain) == 1:
        (a,) = chain

        def field1(value: Any) -> Any:
            if type(value) is dict:
                return value.get(a)
            return _walk(value, chain)

        return field1
    if len(chain) == 2:
        a, b = chain
        after_a: tuple[str, ...] = chain[1:]

        def field2(value: Any) -> Any:
            if type(value) is dict:
                value = value.get(a)
                if type(value) is dict:
                    return value.get(b)
                return _walk(value, after_a)
            return _walk(value, chain)

        return field2
    if len(chain) == 3:
        a, b, c = chain
        tail_b, tail_c = chain[1:], chain[2:]

        def field3(value: Any) -> Any:
            if type(value) is dict:
                value = value.get(a)
                if type(value) is dict:
                    value = value.get(b)
                    if type(value) is dict:
                        return value.get(c)
                    return _walk(value, tail_c)
                return _walk(value, tail_b)
            return _walk(value, chain)

        return field3

    def field_n(value: Any) -> Any:
        for position, name in enumerate(chain):
            if type(value) is not dict:
                return _walk(value, chain[position:])
            value = value.get(name)
        return value

    return field_n


def _equality(
    equal: bool, left: Evaluator, right: Evaluator, left_node: Node, right_node: Node
) -> Evaluator:
    """``==`` / ``!=``; both sides are always evaluated, left first, as in visit_comparator.

    ``_equals`` differs from ``==`` only when one side is the number 0 or 1 and the other a
    boolean. Against a string, null, array or object literal that cannot happen, so those
    comparisons (``candidate.email != `null```, ``stage.name == 'Offer'``) use ``==`` directly.
    """
    plain = (str, _NONE_TYPE, list, dict)
    if right_node["type"] == "literal" and type(right_node["value"]) in plain:
        constant = right_node["value"]
        if equal:

            def eq_constant(value: Any) -> Any:
                return left(value) == constant

            return eq_constant

        def ne_constant(value: Any) -> Any:
            # `not ==`, not `!=`: visit_comparator negates _equals, i.e. Python's ==.
            return not (left(value) == constant)  # noqa: SIM201

        return ne_constant
    if left_node["type"] == "literal" and type(left_node["value"]) in plain:
        constant = left_node["value"]
        if equal:

            def constant_eq(value: Any) -> Any:
                return constant == right(value)

            return constant_eq

        def constant_ne(value: Any) -> Any:
            return not (constant == right(value))  # noqa: SIM201

        return constant_ne
    if equal:

        def eq(value: Any) -> Any:
            return _equals(left(value), right(value))

        return eq

    def ne(value: Any) -> Any:
        return not _equals(left(value), right(value))

    return ne


def _fast_types(
    signature: Sequence[Mapping[str, Any]], count: int
) -> list[frozenset[type] | None] | None:
    """Per argument, the Python types that certainly pass the library's check (None: any type).

    None overall when the call needs the library's full check every time: a variadic or
    mismatched arity, or an ``array-T`` argument (its elements are checked too).
    """
    if len(signature) != count or any(spec.get("variadic") for spec in signature):
        return None
    accepted: list[frozenset[type] | None] = []
    for spec in signature:
        names: list[str] = spec["types"]
        if not names:
            accepted.append(None)
            continue
        if any("-" in name for name in names):
            return None
        pytypes = {
            pyname for name in names for pyname in jp_functions.REVERSE_TYPES_MAP.get(name, ())
        }
        accepted.append(frozenset(cls for cls in _KNOWN_TYPES if cls.__name__ in pytypes))
    return accepted
