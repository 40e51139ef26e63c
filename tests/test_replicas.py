"""Several API replicas on one store: the same assignments, the same prompt registry (a label
moved is seen by every replica within the cache TTL), and a reload sent to each replica."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from abtest.prompts import PromptRegistry
from tests.api_support import EXPERIMENT, experiments_with_a_registry_arm, run_body, wait_for_health
from tests.api_support import FINAL_PROMPT as FINAL
from tests.redis_process import free_port

TEMPLATE = "Answer {query} from these notes on {content_type}:\n{summaries}"


def _serve(experiments: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "abtest.cli", "serve", "--port", str(port), "-e", str(experiments)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_health(server, port)
    return server, f"http://127.0.0.1:{port}"


def test_two_replicas_share_assignments_prompts_and_reloads(
    tmp_path: Path, redis_url: str, redis_client, llm_server
) -> None:
    experiments = experiments_with_a_registry_arm(
        tmp_path, redis_client, TEMPLATE, TEMPLATE + "\nAt most 20 words."
    )
    path = experiments / "pdf_summary.yaml"
    prompts = PromptRegistry(redis_client)
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "OPENAI_BASE_URL": llm_server.base_url,
        "ABTEST_PROMPT_CACHE_TTL": "0.5",
    }
    for key in ("ABTEST_API_KEYS", "ABTEST_ADMIN_KEYS"):
        env.pop(key, None)
    replicas = [
        _serve(experiments, {**env, "ABTEST_HOME": str(tmp_path / f"home{i}")}) for i in (1, 2)
    ]
    try:
        urls = [url for _, url in replicas]
        assign = f"/v1/experiments/{EXPERIMENT}/assign"
        arms = [
            [httpx.get(url + assign, params={"unit_id": f"u{i}"}).json()["arm"] for i in range(200)]
            for url in urls
        ]
        assert arms[0] == arms[1] and len(set(arms[0])) == 3

        def version(url: str) -> str:
            run = httpx.post(f"{url}/v1/experiments/{EXPERIMENT}/run", json=run_body("qa-alice"))
            return run.json()["prompts"][FINAL]["version"]

        assert [version(url) for url in urls] == ["final-summary@1"] * 2
        prompts.label("final-summary", "production", 2)
        time.sleep(0.6)  # the TTL of the replicas' prompt caches
        assert [version(url) for url in urls] == ["final-summary@2"] * 2

        path.write_text(path.read_text().replace("coverage: 1.0", "coverage: 0.5"))
        reloaded = [httpx.post(url + "/v1/admin/reload").status_code for url in urls]
        shas = {
            httpx.get(f"{url}/v1/experiments/{EXPERIMENT}").json()["definition_sha"] for url in urls
        }
        coverage = {
            httpx.get(f"{url}/v1/experiments/{EXPERIMENT}").json()["definition"]["coverage"]
            for url in urls
        }
        assert reloaded == [200, 200] and len(shas) == 1 and coverage == {0.5}
    finally:
        for server, _ in replicas:
            server.terminate()
            server.wait(timeout=30)
