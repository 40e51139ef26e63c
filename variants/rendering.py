"""Filling prompt templates safely, shared by the example flows.

A template may be runtime data (bound to the prompt registry), so it must not be able to reach
into the values it is filled with: `str.format` would evaluate `{text.__class__}` or
`{items[0]}`. `render` fills plain `{name}` fields only and refuses anything else, naming the
fields it can fill. Flows import this module under a `_` name (Hamilton would otherwise turn
`render` into a node of the flow).
"""

from __future__ import annotations

import string

_FORMATTER = string.Formatter()


def render(template: str, **fields: object) -> str:
    """`template` with its `{name}` fields filled from `fields` (`{{`/`}}` are literal braces).

    Raises `ValueError` for a field that is not one of `fields`, or that has an attribute or
    index lookup, a conversion or a format spec.
    """
    parts = []
    for literal, name, spec, conversion in _FORMATTER.parse(template):
        parts.append(literal)
        if name is None:
            continue
        if name not in fields or spec or conversion:
            allowed = ", ".join("{" + f + "}" for f in sorted(fields))
            raise ValueError(f"prompt template field {{{name}}} is not one of {allowed}")
        parts.append(str(fields[name]))
    return "".join(parts)
