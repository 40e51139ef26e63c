"""Experiment definitions and unit ids shared by the router tests."""

from __future__ import annotations

from typing import Any

from abtest.experiments import Experiment, parse_experiment


def make_experiment(**fields: Any) -> Experiment:
    """A valid running experiment with three arms, with `fields` replacing the defaults."""
    data: dict[str, Any] = {
        "id": "exp",
        "flow": "variants.summarization",
        "status": "running",
        "arms": [
            {"name": "control", "weight": 0.34, "config": {"prompt_version": "v1"}},
            {"name": "v2", "weight": 0.33, "config": {"prompt_version": "v2"}},
            {"name": "v3", "weight": 0.33, "config": {"prompt_version": "v3"}},
        ],
    }
    data.update(fields)
    return parse_experiment(data)


def unit_ids(n: int) -> list[str]:
    """`n` distinct ids, about one in ten non-ASCII (accents, CJK, emoji beyond U+FFFF)."""
    extras = ["é", "ß", "日本", "用户", "😀", "𝔘", "Ωmega", "ñ", "ü"]
    ids = []
    for i in range(n):
        if i % 10 == 0:
            ids.append(f"{extras[i % len(extras)]}-{i}")
        else:
            ids.append(f"user-{i:07d}")
    return ids
