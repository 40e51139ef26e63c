"""Evaluation datasets: JSONL rows `{"id", "inputs": {...}, "expected": {...}?}`.

A row's `inputs` are what a request to `POST /v1/experiments/{id}/run` carries, so one row
runs through every arm exactly like live traffic. A bytes input is given like the API takes
it, as base64 text, or as `{"path": "file"}` read relative to the dataset file (PDFs stay
files beside the dataset instead of base64 in it).

A malformed line stops the load with every bad line's number: a silently skipped row would
change what the arms are compared on. Whether a row's inputs fit the flow is decided per row
when it runs (`abtest.evaluation.runner`), so one bad row does not stop the others.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abtest.experiments import Evaluation

__all__ = [
    "DatasetError",
    "Row",
    "dataset_path",
    "json_safe",
    "load_dataset",
    "resolve_inputs",
    "row_digest",
]


class DatasetError(ValueError):
    """The dataset file cannot be used; the message names the file and every bad line."""


@dataclass(frozen=True)
class Row:
    """One dataset row as written (`inputs` not yet resolved: see `resolve_inputs`)."""

    id: str
    inputs: dict[str, Any]
    expected: dict[str, Any] | None
    line: int


def dataset_path(evaluation: Evaluation, experiments_dir: Path) -> Path:
    """The dataset file: absolute as written; else relative to the folder holding the
    experiments folder (the project root, where `datasets/` sits beside `experiments/`),
    or failing that to the current directory (a definition file copied elsewhere still
    finds the project's dataset when run from the project). When neither exists, the
    project-root path, which the error then names."""
    path = Path(evaluation.dataset or "")
    if path.is_absolute():
        return path
    folder = experiments_dir if experiments_dir.is_dir() else experiments_dir.parent
    beside = folder.resolve().parent / path
    if beside.exists() or not path.exists():
        return beside
    return path.resolve()


def load_dataset(path: Path) -> list[Row]:
    """Every row of the JSONL file at `path`; DatasetError naming each malformed line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such dataset file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the dataset: {exc}") from None
    rows: list[Row] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        row, problem = _parse_line(text, number)
        if problem is not None:
            problems.append(f"line {number}: {problem}")
            continue
        assert row is not None
        if row.id in first_line:
            problems.append(
                f"line {number}: duplicate id '{row.id}' (also line {first_line[row.id]})"
            )
            continue
        first_line[row.id] = number
        rows.append(row)
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        raise DatasetError(f"{len(problems)} {noun} in {path}:\n  " + "\n  ".join(problems))
    if not rows:
        raise DatasetError(f"{path}: the dataset has no rows")
    return rows


def _parse_line(text: str, number: int) -> tuple[Row | None, str | None]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, f"malformed JSON: {exc}"
    if not isinstance(data, dict):
        return None, f"a row must be a JSON object, got {type(data).__name__}"
    unknown = sorted(set(data) - {"id", "inputs", "expected"})
    if unknown:
        return None, f"unknown key(s) {', '.join(unknown)} (a row has id, inputs, expected)"
    row_id = data.get("id")
    if isinstance(row_id, int) and not isinstance(row_id, bool):
        row_id = str(row_id)
    if not isinstance(row_id, str) or not row_id:
        return None, "id must be a non-empty string"
    inputs = data.get("inputs")
    if not isinstance(inputs, dict):
        return None, f"row '{row_id}': inputs must be an object"
    expected = data.get("expected")
    if expected is not None and not isinstance(expected, dict):
        return None, f"row '{row_id}': expected must be an object"
    return Row(id=row_id, inputs=inputs, expected=expected, line=number), None


def resolve_inputs(row: Row, bytes_inputs: frozenset[str], folder: Path) -> dict[str, Any]:
    """The row's inputs with every bytes input decoded (base64 text, or `{"path": ...}` read
    relative to `folder`); ValueError naming the row and input when one cannot be."""
    resolved = dict(row.inputs)
    for name in bytes_inputs & set(row.inputs):
        resolved[name] = _bytes_value(row, name, row.inputs[name], folder)
    return resolved


def _bytes_value(row: Row, name: str, value: Any, folder: Path) -> bytes:
    if isinstance(value, Mapping) and set(value) == {"path"} and isinstance(value["path"], str):
        file = folder / value["path"]
        try:
            return file.read_bytes()
        except OSError as exc:
            raise ValueError(f"row '{row.id}': input '{name}': cannot read {file}: {exc}") from None
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                f"row '{row.id}': input '{name}' must be base64 text or {{\"path\": ...}}"
            ) from None
    raise ValueError(
        f"row '{row.id}': input '{name}' must be base64 text or {{\"path\": ...}}, "
        f"got {type(value).__name__}"
    )


def json_safe(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with bytes replaced by `{"bytes": n, "sha256": ...}`: what the per-row file
    and the runs stream keep of a bytes input."""
    return {
        name: {"bytes": len(v), "sha256": hashlib.sha256(v).hexdigest()}
        if isinstance(v, bytes | bytearray)
        else v
        for name, v in values.items()
    }


def row_digest(inputs: Mapping[str, Any], expected: Mapping[str, Any] | None = None) -> str:
    """sha256 of resolved inputs (bytes by their own digest) and, when given, the expected
    values: a row whose content changes is run again even if its id stays."""
    payload = {"inputs": json_safe(inputs), "expected": expected}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
