"""Hypothesis strategies for any JSON value: as Python objects, and as JSON text.

What a peer can put in a frame is any JSON value, not only the ones Python writes
back easily: integers of hundreds or thousands of digits, number literals past
what a float holds (``1e999``) or past the 4,300 digits Python turns into an
``int``, ``-0.0`` and ``1e308``, and values nested thousands of levels deep.

- :data:`json_scalars` and :data:`json_values` are Python objects that
  ``json.dumps(allow_nan=True)`` writes (NaN and the infinities included: Python's
  encoder writes them, although they are not JSON).
- :data:`json_pieces` adds :class:`Raw` pieces of JSON text that no Python object
  writes: number literals of any length and exponent, and deep nesting. Write a
  value holding them with :func:`to_json`.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

#: Python turns at most this many digits into an ``int`` (``sys.int_info``), and back.
INT_DIGITS = 4300
#: Nesting this shallow parses, this deep hits the parser's recursion limit, wherever
#: the parser is called from; the depths between depend on the caller's stack.
SHALLOW, DEEP = 400, 3000


def _digits(count: int) -> st.SearchStrategy[int]:
    return st.integers(10 ** (count - 1), 10**count - 1)


#: Integers of any size Python can write as JSON: hundreds of digits are common.
big_integers = st.builds(
    lambda sign, magnitude: sign * magnitude,
    st.sampled_from([1, -1]),
    (st.integers(19, 600) | st.integers(600, INT_DIGITS)).flatmap(_digits),
)
integers = (
    st.integers()
    | big_integers
    | st.sampled_from([2**53 - 1, 2**53, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**400])
)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e308, -1e308, 1.7976931348623157e308, -0.0, 5e-324, 2.0**53, 1e-320]
)
json_scalars = st.none() | st.booleans() | integers | floats | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


class Raw(str):
    """A piece of JSON text that :func:`to_json` writes as it is."""


#: Number literals of any length: past a float's range, past Python's int digits.
number_literals = st.builds(
    lambda sign, whole, fraction, exponent: Raw(f"{sign}{whole}{fraction}{exponent}"),
    st.sampled_from(["", "-"]),
    st.sampled_from(["0", "1", "9" * 400, "9" * (INT_DIGITS + 1), "1" + "0" * 5000])
    | st.from_regex(r"[1-9][0-9]{0,30}", fullmatch=True),
    st.sampled_from(["", ".0", ".5", "." + "3" * 400]),
    st.sampled_from(["", "e308", "e309", "E-400", "e+999", "e99999", "e-0"]),
)


def _nest(value: str, depth: int, kind: str) -> Raw:
    if kind == "list":
        return Raw("[" * depth + value + "]" * depth)
    return Raw('{"k":' * depth + value + "}" * depth)


#: A value wrapped in lists or objects, shallow enough to parse or too deep for it.
deep_values = st.builds(
    _nest,
    json_scalars.map(lambda v: json.dumps(v, allow_nan=True)) | number_literals,
    st.integers(1, SHALLOW) | st.integers(DEEP, 3 * DEEP),
    st.sampled_from(["list", "object"]),
)

#: Any JSON value, as objects that may hold :class:`Raw` text: write it with to_json.
json_pieces = st.recursive(
    json_scalars | number_literals | deep_values,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def to_json(value: Any) -> str:
    """``json.dumps(value, allow_nan=True)``, with every :class:`Raw` piece written as is."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(key))}:{to_json(item)}" for key, item in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(item) for item in value) + "]"
    return json.dumps(value, allow_nan=True)
