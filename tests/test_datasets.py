"""The evaluation datasets in `datasets/`: well-formed rows that fit their flows, PDFs that
extract, and expected keywords that the example arms find in some outputs but not all.

The last check runs every row through every arm of the example experiments, as `abtest eval`
does: the real `FlowRegistry`, the real `openai` SDK and the local model server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import variants.summarization as summarization
import variants.support_reply as support_reply
from abtest.experiments import load_experiment
from abtest.flows import FlowRegistry
from variants.summarization.corpus import DOCUMENTS
from variants.summarization.pdfs import read_pdf_text

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "datasets"
PDFS = DATASETS / "pdf_summary"
KNOWLEDGE = json.loads((ROOT / "variants/support_reply/knowledge.json").read_text())["entries"]


@dataclass(frozen=True)
class Dataset:
    """A dataset file, the flow its rows are inputs of, and the experiment that evaluates it."""

    file: str
    flow: ModuleType
    optional_inputs: frozenset[str]
    expected_keys: frozenset[str]
    experiment: str


SETS = {
    "support_reply": Dataset(
        "support_reply.jsonl",
        support_reply,
        frozenset({"customer_tier"}),
        frozenset({"intent", "keyword"}),
        "support_reply.yaml",
    ),
    "pdf_summary": Dataset(
        "pdf_summary.jsonl",
        summarization,
        frozenset(),
        frozenset({"keyword"}),
        "pdf_summary.yaml",
    ),
}


def rows(name: str) -> list[dict[str, Any]]:
    lines = (DATASETS / SETS[name].file).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def run_inputs(row: dict[str, Any]) -> dict[str, Any]:
    """The row's inputs as a run gets them: a `{"path": ...}` value is that file's bytes,
    relative to the datasets folder."""
    return {
        key: (DATASETS / value["path"]).read_bytes() if isinstance(value, dict) else value
        for key, value in row["inputs"].items()
    }


def pdf_source_text(name: str) -> str:
    """The text a PDF was made from: its corpus document, else its `.txt` beside it."""
    for doc in DOCUMENTS:
        if doc.name == name:
            return "\n\n".join("\n\n".join(page) for page in doc.pages)
    return (PDFS / f"{name}.txt").read_text(encoding="utf-8")


def normalized(text: str) -> str:
    return " ".join(text.split())


# -- shape ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SETS))
def test_every_line_is_a_json_row_with_a_unique_id(name):
    lines = (DATASETS / SETS[name].file).read_text(encoding="utf-8").splitlines()
    assert 20 <= len(lines) <= 50
    parsed = [json.loads(line) for line in lines]
    assert all(set(row) == {"id", "inputs", "expected"} for row in parsed)
    ids = [row["id"] for row in parsed]
    assert len(set(ids)) == len(ids)
    assert all(isinstance(i, str) and i for i in ids)


@pytest.mark.parametrize("name", sorted(SETS))
def test_inputs_name_exactly_the_flows_inputs(name):
    spec = SETS[name]
    allowed = set(spec.flow.INPUTS)
    required = allowed - spec.optional_inputs
    for row in rows(name):
        assert required <= set(row["inputs"]) <= allowed, row["id"]
        assert set(row["expected"]) == spec.expected_keys, row["id"]


def test_support_rows_have_known_tiers_intents_and_knowledge_keywords():
    all_rows = rows("support_reply")
    assert {row["expected"]["intent"] for row in all_rows} == set(support_reply.INTENTS)
    for row in all_rows:
        assert row["inputs"].get("customer_tier", "standard") in support_reply.TIERS
        assert 1 <= len(row["inputs"]["message"]) <= support_reply.MAX_MESSAGE_CHARS
        intent, keyword = row["expected"]["intent"], row["expected"]["keyword"]
        entries = [e["text"] for e in KNOWLEDGE if e["intent"] == intent]
        assert any(keyword.lower() in text.lower() for text in entries), row["id"]


def test_pdf_rows_point_at_pdfs_whose_text_has_the_keyword():
    texts: dict[str, str] = {}
    for row in rows("pdf_summary"):
        path = row["inputs"]["pdf_source"]["path"]
        assert path.startswith("pdf_summary/") and (DATASETS / path).is_file(), row["id"]
        if path not in texts:
            texts[path] = read_pdf_text(DATASETS / path).lower()
        assert row["expected"]["keyword"].lower() in texts[path], row["id"]
        assert row["inputs"]["user_query"].strip()


def test_every_pdf_has_a_source_and_several_questions():
    pdfs = sorted(p.stem for p in PDFS.glob("*.pdf"))
    sources = {doc.name for doc in DOCUMENTS} | {p.stem for p in PDFS.glob("*.txt")}
    assert set(pdfs) == sources
    asked = [Path(row["inputs"]["pdf_source"]["path"]).stem for row in rows("pdf_summary")]
    assert all(asked.count(name) >= 2 for name in pdfs)


@pytest.mark.parametrize("name", sorted(p.stem for p in PDFS.glob("*.pdf")))
def test_every_pdf_extracts_to_its_documents_text(name):
    extracted = normalized(read_pdf_text(PDFS / f"{name}.pdf"))
    first_paragraph = pdf_source_text(name).strip().split("\n\n")[0]
    assert normalized(first_paragraph) in extracted


# -- the rows run, and the keywords discriminate ---------------------------------------------


@pytest.fixture(scope="module")
def outputs(session_llm_client) -> dict[str, dict[str, list[str]]]:
    """Per dataset, per arm of its example experiment, the text output for every row."""
    found: dict[str, dict[str, list[str]]] = {}
    for name, spec in SETS.items():
        experiment = load_experiment(ROOT / "experiments" / spec.experiment)
        registry = FlowRegistry.from_experiments([experiment], llm_client=session_llm_client)
        text_output = spec.flow.FINAL_VARS[0]
        found[name] = {}
        for arm in experiment.arms:
            results = [registry.run(experiment.id, arm.name, run_inputs(r)) for r in rows(name)]
            assert all(result.ok for result in results), [r.error for r in results if not r.ok]
            found[name][arm.name] = [str(result.outputs[text_output]) for result in results]
    return found


@pytest.mark.parametrize("name", sorted(SETS))
def test_every_row_runs_on_every_arm_and_keywords_discriminate(outputs, name):
    keywords = [row["expected"]["keyword"].lower() for row in rows(name)]
    hits = {
        arm: [kw in text.lower() for kw, text in zip(keywords, texts, strict=True)]
        for arm, texts in outputs[name].items()
    }
    every_answer = [hit for arm_hits in hits.values() for hit in arm_hits]
    assert 0.3 < sum(every_answer) / len(every_answer) < 0.95
    for i, row in enumerate(rows(name)):
        assert any(arm_hits[i] for arm_hits in hits.values()), f"{row['id']}: no arm finds it"
    assert len({sum(arm_hits) for arm_hits in hits.values()}) > 1, "all arms score the same"
