"""Numbers as the report, the notebook and the summary sentences show them.

One module so that every part that writes a percentage or a p-value (the table, the
sentences, the guardrail and progress lines) writes it the same way.
"""

from __future__ import annotations

import math

__all__ = ["format_number", "format_p", "format_percent"]


def format_percent(x: float) -> str:
    """``0.041`` -> ``"4.1%"``; two decimals below 1%; ``"n/a"`` for NaN."""
    if not math.isfinite(x):
        return "n/a"
    digits = 2 if 0 < abs(x) < 0.01 else 1
    return f"{x * 100:.{digits}f}%"


def format_number(x: float) -> str:
    """Four significant digits, thousands separators for large values, ``"n/a"`` for NaN."""
    if not math.isfinite(x):
        return "n/a"
    if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
        return f"{x:.3e}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def format_p(p: float) -> str:
    """p-values with four decimals, ``"<0.0001"`` below that, ``"–"`` when undefined."""
    if not math.isfinite(p):
        return "–"
    if p < 1e-4:
        return "<0.0001"
    return f"{p:.4f}"
