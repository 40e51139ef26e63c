"""`abtest demo`: the main job end to end, from nothing, with every part of the platform.

1. Embedded defaults: the embedded Redis (unless `REDIS_URL`) and the local model server
   (unless `OPENAI_BASE_URL`/`OPENAI_API_KEY`).
2. The example experiment's flows are built and validated; the API starts on a free port.
3. N simulated users each send a real PDF (made from public-domain text, `demo_corpus`) and a
   question through `POST /v1/experiments/{id}/run`, then post feedback (`thumbs_up`) through
   `POST /v1/outcomes`, as a real client would.
4. The analysis reads the streams back and writes `reports/<experiment>.html`.

The simulated user (`feedback_probability`) is a documented model, so the truth is known: users
like summaries that answer their question (a larger share of the question's words appear) and
that are short. The v2 prompts ask for short, question-focused bullets, so the v2 arms should
win on `thumbs_up`; the report should find it.
"""

from __future__ import annotations

import base64
import math
import random
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from abtest import store
from abtest.demo_corpus import DOCUMENTS, DemoDocument
from abtest.pdfs import make_pdf

STOPWORDS = frozenset(
    "a an and are as at be but by did do does for from has have how in is it its may of on or "
    "the to was were what when which who why will with".split()
)
"""Words ignored when measuring how much of a question a summary covers."""


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in STOPWORDS}


def feedback_probability(summary: str, query: str) -> float:
    """Chance that a user gives a thumbs up: the demo's known truth.

    ``p = 1 / (1 + exp(-(-1.5 + 4 * coverage - 0.03 * (words - 40))))`` where `coverage` is
    the share of the question's content words found in the summary and `words` its length:
    an answer that covers the question and stays short pleases.
    """
    asked = _content_words(query)
    coverage = len(asked & _content_words(summary)) / len(asked) if asked else 0.0
    words = len(summary.split())
    return 1.0 / (1.0 + math.exp(-(-1.5 + 4.0 * coverage - 0.03 * (words - 40))))


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs: how many users, how concurrently, where the report goes."""

    experiments_dir: Path = Path("experiments")
    experiment_id: str = "pdf-summary-prompts"
    users: int = 2000
    concurrency: int = 8
    seed: int = 2026
    reports_dir: Path = Path("reports")
    fresh: bool = True


@dataclass(frozen=True)
class DemoOutcome:
    """What a demo run produced."""

    report_path: Path
    summary: str
    table: object
    srm_p_value: float
    true_rates: dict[str, float]
    runs_ok: int
    runs_failed: int
    seconds: float


@dataclass(frozen=True)
class _Pdf:
    document: DemoDocument
    base64: str


def _pdfs() -> list[_Pdf]:
    return [
        _Pdf(doc, base64.b64encode(make_pdf(doc.pages, title=doc.name)).decode())
        for doc in DOCUMENTS
    ]


def _simulate_user(
    http: httpx.Client, experiment_id: str, index: int, pdfs: list[_Pdf], seed: int
) -> tuple[str, float] | None:
    """One user: a run on a PDF with a question, then feedback.

    Returns the user's arm and true thumbs-up probability, or None when the run failed.
    """
    rng = random.Random(f"{seed}:{index}")
    unit_id = f"demo-user-{index:05d}"
    pdf = rng.choice(pdfs)
    query = rng.choice(pdf.document.queries)
    response = http.post(
        f"/v1/experiments/{experiment_id}/run",
        json={"unit_id": unit_id, "user_query": query, "pdf_base64": pdf.base64},
    )
    if response.status_code != 200:
        return None
    body = response.json()
    probability = feedback_probability(body["summary"] or "", query)
    liked = rng.random() < probability
    feedback = {
        "experiment_id": experiment_id,
        "unit_id": unit_id,
        "metric": "thumbs_up",
        "value": 1.0 if liked else 0.0,
        "request_id": body["request_id"],
    }
    http.post("/v1/outcomes", json=feedback).raise_for_status()
    return body["arm"], probability


def _clear_streams(experiment_id: str) -> None:
    from abtest.events import dedupe_key, stream_key

    keys = [
        f(experiment_id, kind) for kind in ("exposure", "outcome") for f in (stream_key, dedupe_key)
    ]
    store.sync_client().delete(*keys)


def run_demo(settings: DemoSettings, progress: Callable[[int], None] | None = None) -> DemoOutcome:
    """Run the whole demo; `progress(n)` is called after each simulated user."""
    from abtest.api import create_app
    from abtest.local import ensure_llm_endpoint
    from abtest.platform import Platform
    from abtest.prompts import PromptRegistry
    from abtest.serving import serve_app_in_thread
    from abtest.settings import Settings
    from analysis.report import analyze_stored, render_report

    started = time.perf_counter()
    llm = ensure_llm_endpoint()
    url = store.redis_url()
    platform = Platform.load(
        settings.experiments_dir, prompt_registry=PromptRegistry(store.sync_client(url))
    )
    experiment = platform.router.experiment(settings.experiment_id)
    if settings.fresh:
        _clear_streams(experiment.id)
    app = create_app(
        Settings(experiments_dir=settings.experiments_dir, home=store.abtest_home()),
        platform=platform,
    )
    pdfs = _pdfs()
    failed = 0
    truth: dict[str, list[float]] = {arm: [] for arm in experiment.arm_names}
    try:
        with serve_app_in_thread(app, ready_path="/health", name="abtest-demo-api") as api:
            with httpx.Client(base_url=api.root_url, timeout=60) as http:

                def user(index: int) -> tuple[str, float] | None:
                    return _simulate_user(http, experiment.id, index, pdfs, settings.seed)

                with ThreadPoolExecutor(settings.concurrency) as pool:
                    for answer in pool.map(user, range(settings.users)):
                        if answer is None:
                            failed += 1
                        else:
                            truth[answer[0]].append(answer[1])
                        if progress is not None:
                            progress(1)
    finally:
        if llm is not None:
            llm.stop()
    result = analyze_stored(experiment, store.sync_client(url))
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    report_path = settings.reports_dir / f"{experiment.id}.html"
    report_path.write_text(render_report(result), encoding="utf-8")
    return DemoOutcome(
        report_path=report_path,
        summary=result.summary(),
        table=result.table,
        srm_p_value=result.srm_p_value,
        true_rates={arm: sum(p) / len(p) for arm, p in truth.items() if p},
        runs_ok=sum(len(p) for p in truth.values()),
        runs_failed=failed,
        seconds=time.perf_counter() - started,
    )
