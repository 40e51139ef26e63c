"""The body of a run request, JSON or multipart, checked against the experiment's input model."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field, ValidationError, create_model
from starlette.datastructures import UploadFile

from abtest.api.errors import ApiError, validation_detail
from abtest.api.models import UNIT_ID_MAX, Attributes, RunIn, StrictIn, UnitId
from abtest.platform import Platform

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
"""Form bodies of a run: multipart (files for bytes inputs), or URL-encoded (text inputs)."""

_FORM_SCHEMA = {
    "type": "object",
    "required": ["unit_id"],
    "properties": {
        "unit_id": {"type": "string", "minLength": 1, "maxLength": UNIT_ID_MAX},
        "attributes": {"type": "string", "description": "a JSON object"},
    },
    "additionalProperties": {
        "description": "one field per run input; a file for a bytes input, "
        "JSON text for a list or dict input"
    },
}
RUN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": RunIn.model_json_schema()},
            **{form: {"schema": _FORM_SCHEMA} for form in FORM_TYPES},
        },
    }
}


@lru_cache(maxsize=256)
def _run_body(inputs_model: type[BaseModel]) -> type[BaseModel]:
    """`RunIn` with `inputs` typed by one experiment's input model, so one strict JSON parse
    checks the whole body and pydantic names the bad input (`body.inputs.user_query`)."""
    return create_model(
        inputs_model.__name__.removesuffix("Inputs") + "RunIn",
        __base__=StrictIn,
        unit_id=(UnitId, ...),
        attributes=(Attributes, Field(default_factory=dict)),
        inputs=(inputs_model, ...),
    )


async def read_run_request(
    request: Request, platform: Platform, experiment_id: str
) -> tuple[str, dict[str, Any], BaseModel]:
    """(unit_id, attributes, inputs) from a JSON body or a multipart form."""
    inputs_model = platform.flows.input_model(experiment_id)
    if request.headers.get("content-type", "").startswith(FORM_TYPES):
        structured = {
            spec.name for spec in platform.flows.contract(experiment_id).inputs if spec.structured
        }
        return await _form_request(request, inputs_model, structured)
    try:
        body = _run_body(inputs_model).model_validate_json(await request.body(), strict=True)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", validation_detail(exc.errors(), "body")) from None
    return body.unit_id, body.attributes, body.inputs


async def _form_request(
    request: Request, inputs_model: type[BaseModel], structured: set[str]
) -> tuple[str, dict[str, Any], BaseModel]:
    """A multipart run: `unit_id`, optional `attributes` (JSON text), one field per input;
    list and dict inputs are JSON text, bytes inputs files. Form text is converted to the
    input's type (pydantic's lax mode: "3" is an int here, unlike in JSON)."""
    fields = inputs_model.model_fields
    form = await request.form(max_files=max(1, len(fields)), max_fields=len(fields) + 2)
    raw: dict[str, Any] = {}
    envelope: dict[str, Any] = {}
    problems = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            value = await value.read()
        if name in ("unit_id", "attributes"):
            envelope[name] = value
            continue
        if isinstance(value, str) and name in structured:
            try:
                value = json.loads(value)
            except ValueError:
                problems.append({"field": f"form.{name}", "message": "must be JSON text"})
                continue
        raw[name] = value
    if isinstance(envelope.get("attributes"), str | bytes):
        try:
            envelope["attributes"] = json.loads(envelope["attributes"])
        except ValueError:
            problems.append({"field": "form.attributes", "message": "must be a JSON object"})
    if problems:
        raise ApiError(422, "invalid_request", problems)
    try:
        body = _run_body(inputs_model).model_validate({**envelope, "inputs": raw})
    except ValidationError as exc:
        detail = [
            {**item, "field": item["field"].replace("form.inputs.", "form.")}
            for item in validation_detail(exc.errors(), "form")
        ]
        raise ApiError(422, "invalid_request", detail) from None
    return body.unit_id, body.attributes, body.inputs
