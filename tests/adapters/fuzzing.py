"""Hypothesis strategies the vendor webhook tests share: arbitrary JSON, and an example
payload with one value replaced or one key removed."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st


def json_values(keys: Sequence[str]) -> st.SearchStrategy[Any]:
    """Any JSON value; mappings favour ``keys`` so parsers get past their first check."""
    key = st.sampled_from(list(keys)) | st.text(max_size=8)
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key, inner, max_size=5),
        max_leaves=25,
    )


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def mutation_of(draw: st.DrawFn, example: Any, values: st.SearchStrategy[Any]) -> Any:
    """``example`` with one value (anywhere, the root included) replaced or its key removed."""
    doc = copy.deepcopy(example)
    path = draw(st.sampled_from(_paths(doc)))
    if not path:
        return draw(values)
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(values)
    return doc
