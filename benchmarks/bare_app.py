"""The baseline of bench_api: a bare FastAPI endpoint returning the assign endpoint's JSON."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()

ANSWER = {
    "experiment_id": "pdf-summary-prompts",
    "unit_id": "u1",
    "arm": "v2",
    "in_experiment": True,
    "reason": "hashed",
    "config": {
        "prompt_version": "v2",
        "model": "gpt-4o-mini",
        "chunk_tokens": 800,
        "temperature": 0.0,
        "content_type": "a document",
    },
    "request_id": "0123456789abcdef0123456789abcdef",
    "exposure_logged": True,
}


@app.get("/v1/experiments/{experiment_id}/assign")
async def assign(experiment_id: str, unit_id: str) -> dict:
    return {**ANSWER, "experiment_id": experiment_id, "unit_id": unit_id}
