"""The dashboard without a browser: who may see it (keys, the login cookie), what its JSON
holds, and honest errors (404 for an unknown experiment, 503 while the store is down).

The app runs for real (TestClient runs its lifespan) on the test Redis; the pages a browser
shows, and their live refresh, are tested in `test_dashboard_browser.py`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from abtest.api.dashboard.routes import EXPERIMENT_SECTIONS
from abtest.api.dashboard.views import diff_lines
from abtest.api.security import KEY_COOKIE, LoginRequired, authorize
from abtest.experiments import load_experiments
from abtest.settings import Settings
from analysis.analyze import TIMELINE_COLUMNS
from tests.api_support import EXAMPLES, EXPERIMENT, api_client
from tests.redis_process import RedisProcess

KEYS = {
    "api_keys": frozenset({"k-api"}),
    "admin_keys": frozenset({"k-admin"}),
    "viewer_keys": frozenset({"k-view"}),
}
SETTINGS = Settings(**KEYS)
API = {"Authorization": "Bearer k-api"}
VIEWER = {"Authorization": "Bearer k-view"}


def populate(client: TestClient, units: int, headers: dict[str, str] | None = None) -> None:
    """Expose `units` units through the API and report outcomes for them."""
    headers = headers or {}
    for i in range(units):
        path = f"/v1/experiments/{EXPERIMENT}/assign"
        assert client.post(path, json={"unit_id": f"u{i}"}, headers=headers).status_code == 200
        outcomes = [
            {"experiment_id": EXPERIMENT, "unit_id": f"u{i}", "metric": "thumbs_up", "value": 1},
            {"experiment_id": EXPERIMENT, "unit_id": f"u{i}", "metric": "latency_ms", "value": i},
        ]
        kept = outcomes if i % 2 else outcomes[1:]
        assert client.post("/v1/outcomes", json=kept, headers=headers).status_code == 200


def login(client: TestClient, key: str, next_path: str = "/ui") -> Any:
    return client.post("/ui/login", data={"key": key, "next": next_path}, follow_redirects=False)


# --- who may do what (the policy itself, no app) --------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "authorization", "cookie", "expected"),
    [
        # open whatever is configured
        ("GET", "/health", "", "", None),
        ("GET", "/ui/login", "", "", None),
        ("POST", "/ui/login", "", "", None),
        ("POST", "/ui/logout", "", "", None),
        ("GET", "/ui/static/dashboard.js", "", "", None),
        # dashboard pages: the login form without a valid key; its JSON refuses instead
        ("GET", "/ui", "", "", 303),
        ("GET", f"/ui/experiments/{EXPERIMENT}", "", f"{KEY_COOKIE}=wrong", 303),
        ("GET", "/ui/api/experiments", "", "", 401),
        ("GET", "/ui/api/experiments", "", f"{KEY_COOKIE}=wrong", 403),
        # any kind of key may view, by cookie or bearer
        ("GET", "/ui", "", f"{KEY_COOKIE}=k-view", None),
        ("GET", "/ui/api/experiments", "", f"{KEY_COOKIE}=k-api", None),
        ("GET", "/ui", "Bearer k-admin", "", None),
        ("POST", "/ui/api/experiments", "", f"{KEY_COOKIE}=k-view", 403),
        # a viewer key reads experiments and results, and nothing else
        ("GET", "/v1/experiments", "Bearer k-view", "", None),
        ("GET", f"/v1/experiments/{EXPERIMENT}/results", "Bearer k-view", "", None),
        ("HEAD", f"/v1/experiments/{EXPERIMENT}/report", "Bearer k-view", "", None),
        ("GET", f"/v1/experiments/{EXPERIMENT}/assign", "Bearer k-view", "", 403),
        ("POST", f"/v1/experiments/{EXPERIMENT}/assign", "Bearer k-view", "", 403),
        ("POST", "/v1/outcomes", "Bearer k-view", "", 403),
        ("POST", "/v1/admin/reload", "Bearer k-view", "", 403),
        ("GET", "/metrics", "Bearer k-view", "", 403),
        ("GET", "/v1/experimentsX", "Bearer k-view", "", 403),
        # the cookie is a dashboard credential only
        ("GET", "/v1/experiments", "", f"{KEY_COOKIE}=k-api", 401),
        # API and admin keys as before
        ("POST", "/v1/outcomes", "Bearer k-api", "", None),
        ("POST", "/v1/admin/reload", "Bearer k-api", "", 403),
        ("POST", "/v1/admin/reload", "Bearer k-admin", "", None),
        ("GET", "/v1/experiments", "Bearer nope", "", 403),
    ],
)
def test_who_may_do_what(
    method: str, path: str, authorization: str, cookie: str, expected: int | None
) -> None:
    refusal = authorize(path, method, authorization, cookie, SETTINGS)
    assert (None if refusal is None else refusal.status) == expected, refusal
    if expected == 303:
        assert isinstance(refusal, LoginRequired)
        assert refusal.location.startswith("/ui/login?next=/ui")


def test_without_any_key_configured_everything_is_open() -> None:
    open_settings = Settings()
    for method, path in (("GET", "/ui"), ("POST", "/v1/outcomes"), ("POST", "/v1/admin/x")):
        assert authorize(path, method, "", "", open_settings) is None


def test_viewer_keys_alone_close_the_service() -> None:
    """Configuring only viewer keys is configuring keys: writes need a key no one has."""
    viewers = Settings(viewer_keys=frozenset({"k-view"}))
    assert authorize("/v1/outcomes", "POST", "", "", viewers).status == 401
    assert authorize("/ui", "GET", "", f"{KEY_COOKIE}=k-view", viewers) is None


# --- the login over HTTP --------------------------------------------------------------------


def test_a_page_without_a_key_goes_to_the_login_and_back(env, tmp_path: Path) -> None:
    with api_client(tmp_path, **KEYS) as client:
        page = client.get(f"/ui/experiments/{EXPERIMENT}", follow_redirects=False)
        form = client.get(page.headers["location"])
        json_refused = client.get("/ui/api/experiments")
        script = client.get("/ui/static/dashboard.js")
        done = login(client, "k-view", f"/ui/experiments/{EXPERIMENT}")
        cookie = done.headers["set-cookie"]
        shown = client.get(f"/ui/experiments/{EXPERIMENT}", follow_redirects=False)
        polled = client.get(f"/ui/api/experiments/{EXPERIMENT}")
        session = client.get("/ui/api/session")
    assert page.status_code == 303
    assert page.headers["location"] == f"/ui/login?next=/ui/experiments/{EXPERIMENT}"
    assert form.status_code == 200 and 'name="key"' in form.text
    assert f'value="/ui/experiments/{EXPERIMENT}"' in form.text
    assert json_refused.status_code == 401 and json_refused.json()["error"] == "unauthorized"
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert done.status_code == 303 and done.headers["location"] == f"/ui/experiments/{EXPERIMENT}"
    assert cookie.startswith(f"{KEY_COOKIE}=k-view;")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert shown.status_code == 200 and EXPERIMENT in shown.text
    assert polled.status_code == 200
    assert session.json() == {"viewer": True}


def test_a_wrong_key_gets_the_form_again_with_401(env, tmp_path: Path) -> None:
    with api_client(tmp_path, **KEYS) as client:
        wrong = login(client, "not-a-key", f"/ui/experiments/{EXPERIMENT}")
        empty = login(client, "")
        still_out = client.get("/ui", follow_redirects=False)
    for response in (wrong, empty):
        assert response.status_code == 401
        assert "set-cookie" not in response.headers
        assert 'id="login-error"' in response.text and "not valid" in response.text
    assert f'value="/ui/experiments/{EXPERIMENT}"' in wrong.text
    assert still_out.status_code == 303


def test_login_never_sends_the_browser_to_another_site(env, tmp_path: Path) -> None:
    with api_client(tmp_path, **KEYS) as client:
        places = [
            login(client, "k-view", target).headers["location"]
            for target in ("https://evil.example/", "//evil.example/ui", "/v1/admin/reload")
        ]
    assert places == ["/ui", "/ui", "/ui"]


def test_logout_forgets_the_key(env, tmp_path: Path) -> None:
    with api_client(tmp_path, **KEYS) as client:
        login(client, "k-view")
        assert client.get("/ui", follow_redirects=False).status_code == 200
        out = client.post("/ui/logout", follow_redirects=False)
        after = client.get("/ui", follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert (
        f'{KEY_COOKIE}=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    )
    assert after.status_code == 303


def test_a_viewer_key_may_look_but_not_write(env, tmp_path: Path) -> None:
    outcome = {"experiment_id": EXPERIMENT, "unit_id": "u1", "metric": "thumbs_up", "value": 1}
    with api_client(tmp_path, **KEYS) as client:
        results = client.get(f"/v1/experiments/{EXPERIMENT}/results", headers=VIEWER)
        written = client.post("/v1/outcomes", json=outcome, headers=VIEWER)
        assigned = client.get(
            f"/v1/experiments/{EXPERIMENT}/assign", params={"unit_id": "u1"}, headers=VIEWER
        )
        by_api_key = client.post("/v1/outcomes", json=outcome, headers=API)
        page_by_api_key = client.get("/ui", headers=API)
    assert results.status_code == 200
    assert written.status_code == 403 and written.json()["error"] == "forbidden"
    assert assigned.status_code == 403
    assert by_api_key.status_code == 200
    assert page_by_api_key.status_code == 200


def test_with_no_keys_the_dashboard_is_open(env, tmp_path: Path) -> None:
    open_keys = {"api_keys": frozenset(), "admin_keys": frozenset(), "viewer_keys": frozenset()}
    with api_client(tmp_path, **open_keys) as client:
        page = client.get("/ui", follow_redirects=False)
        form = client.get("/ui/login")
    assert page.status_code == 200 and EXPERIMENT in page.text
    assert "Log out" not in page.text
    assert "dashboard is open" in form.text


# --- what it shows --------------------------------------------------------------------------


def test_the_json_carries_the_results_endpoint_and_every_section(env, tmp_path: Path) -> None:
    with api_client(tmp_path, **KEYS) as client:
        populate(client, 40, API)
        login(client, "k-view")
        polled = client.get(f"/ui/api/experiments/{EXPERIMENT}").json()
        results = client.get(f"/v1/experiments/{EXPERIMENT}/results", headers=VIEWER).json()
        listed = client.get("/ui/api/experiments").json()
        catalogue = client.get("/v1/experiments", headers=VIEWER).json()
    assert polled["results"] == results
    assert set(polled["html"]) == set(EXPERIMENT_SECTIONS)
    assert sum(polled["units_per_arm"].values()) == 40
    assert polled["arms"] == {
        arm: {"state": "active", "reason": None, "stopped_at": None, "actor": None}
        for arm in ("control", "v2", "v2-small-chunks")
    }
    assert polled["timeline"] and set(polled["timeline"][0]) == set(TIMELINE_COLUMNS)
    assert set(polled["prompts"]) == {"control", "v2", "v2-small-chunks"}
    control_prompts = polled["prompts"]["control"]
    assert len(control_prompts["fingerprint"]) == 64 and control_prompts["prompts"]
    assert [e["id"] for e in listed["experiments"]] == sorted(e["id"] for e in catalogue)
    assert set(listed["html"]) == {"experiments"}
    for row in results["table"]:
        shown = re.search(
            rf'<tr class="[^"]*" data-metric="{row["metric"]}" data-arm="{row["arm"]}">.*?'
            r"data-field=\"units\" data-value='(\d+)'>([\d,]+)<",
            polled["html"]["results"],
            re.S,
        )
        assert shown is not None, row
        assert int(shown.group(1)) == row["units"] and shown.group(2) == f"{row['units']:,}"


def test_the_page_is_self_contained_and_locked_down(env, tmp_path: Path) -> None:
    with api_client(tmp_path, **KEYS) as client:
        login(client, "k-view")
        page = client.get(f"/ui/experiments/{EXPERIMENT}")
        assets = re.findall(r'(?:src|href)="(/[^"]*)"', page.text)
        fetched = {url: client.get(url).status_code for url in assets}
    assert "http://" not in page.text.split("<body")[0] and "https://" not in page.text
    assert fetched and set(fetched.values()) == {200}, fetched
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "<script>" not in page.text  # no inline script: the policy would block it


def test_an_unknown_experiment_is_a_404_page_and_json(env, tmp_path: Path) -> None:
    with api_client(tmp_path, **KEYS) as client:
        login(client, "k-view")
        page = client.get("/ui/experiments/no-such-thing")
        data = client.get("/ui/api/experiments/no-such-thing")
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    assert "unknown experiment &#39;no-such-thing&#39;" in page.text
    assert data.status_code == 404
    assert data.json() == {"error": "not_found", "detail": "unknown experiment 'no-such-thing'"}


def test_prompts_are_shown_with_their_diff_against_the_control(env, tmp_path: Path) -> None:
    with api_client(tmp_path, **KEYS) as client:
        login(client, "k-view")
        prompts = client.get(f"/ui/api/experiments/{EXPERIMENT}").json()["html"]["prompts"]
    assert prompts.count('class="arm-prompts"') == 3
    assert "differs from the control" in prompts
    assert '<span class="add">+' in prompts and '<span class="del">-' in prompts


def test_diff_lines_mark_additions_and_removals() -> None:
    lines = diff_lines("Summarize {text}.\nBe brief.", "Summarize {text}.\nBe warm.")
    assert [(d["css"], d["line"]) for d in lines] == [
        ("hunk", "@@ -1,2 +1,2 @@"),
        ("", " Summarize {text}."),
        ("del", "-Be brief."),
        ("add", "+Be warm."),
    ]


def test_drift_is_marked_on_the_charts_and_listed(env, tmp_path: Path, monkeypatch) -> None:
    """When the analysis reports prompt drift (the results' `drift` list), each change is a
    dashed line on every chart and a line in the drift list."""
    from abtest.api.dashboard import reading

    real = reading.to_json

    def with_drift(result: Any) -> dict[str, Any]:
        data = real(result)
        at = result.last_exposure.isoformat()
        data["drift"] = [{"arm": "v2", "from": "a" * 64, "to": "b" * 64, "at": at}]
        return data

    monkeypatch.setattr(reading, "to_json", with_drift)
    with api_client(tmp_path, **KEYS) as client:
        populate(client, 12, API)
        login(client, "k-view")
        charts = client.get(f"/ui/api/experiments/{EXPERIMENT}").json()["html"]["charts"]
    metrics = len(load_experiments(EXAMPLES)[EXPERIMENT].metrics)
    assert charts.count('<g class="marker"><title>drift: v2</title>') == 1 + metrics  # units too
    assert 'id="drift"' in charts and "changed fingerprint <code>aaaaaaaaaaaa</code>" in charts


def test_no_drift_key_shows_nothing(env, tmp_path: Path) -> None:
    with api_client(tmp_path, **KEYS) as client:
        populate(client, 6, API)
        login(client, "k-view")
        charts = client.get(f"/ui/api/experiments/{EXPERIMENT}").json()["html"]["charts"]
    assert "marker" not in charts and 'id="drift"' not in charts


# --- the store down -------------------------------------------------------------------------


@pytest.fixture
def stoppable_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llm_server):
    server = RedisProcess(tmp_path / "redis").start()
    monkeypatch.setenv("REDIS_URL", server.url)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    try:
        yield server
    finally:
        server.stop()


def test_the_store_down_is_a_clear_503(stoppable_store: RedisProcess, tmp_path: Path) -> None:
    with api_client(tmp_path / "home", **KEYS) as client:
        login(client, "k-view")
        assert client.get("/ui").status_code == 200
        stoppable_store.stop()
        pages = [client.get("/ui"), client.get(f"/ui/experiments/{EXPERIMENT}")]
        data = [client.get("/ui/api/experiments"), client.get(f"/ui/api/experiments/{EXPERIMENT}")]
        stoppable_store.start()
        back = client.get("/ui")
    for response in pages:
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        assert "The store is unavailable" in response.text
        assert "cannot be reached" in response.text
    for response in data:
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        assert response.json()["error"] == "store_unavailable"
    assert back.status_code == 200


def test_a_stopped_arm_shows_its_state_and_the_audit_log(env, tmp_path: Path, redis_client) -> None:
    from abtest.state_store import change_state

    change_state(
        redis_client,
        EXPERIMENT,
        "v2",
        "stop",
        actor="monitor",
        reason="latency_ms worse than control beyond its margin",
        statistics={"p": 0.001},
    )
    with api_client(tmp_path, **KEYS) as client:
        login(client, "k-view")
        polled = client.get(f"/ui/api/experiments/{EXPERIMENT}").json()
        listed = client.get("/ui/api/experiments").json()["html"]["experiments"]
    assert polled["arms"]["v2"]["state"] == "stopped"
    assert [(e["arm"], e["action"], e["actor"]) for e in polled["audit"]] == [
        ("v2", "stop", "monitor")
    ]
    audit = polled["html"]["audit"]
    assert "latency_ms worse than control beyond its margin" in audit and "monitor" in audit
    assert re.search(r'data-arm="v2">v2\s*<span class="badge bad" data-field="state"', listed)


def _evaluation_rows(path: Path) -> Path:
    """A per-row file of an offline evaluation of the example experiment: `summary_quality`
    scores 3 for the control and 4 for v2 on every row, v2-small-chunks alternating 3 and 4."""
    scores = {"control": [3] * 6, "v2": [4] * 6, "v2-small-chunks": [3, 4] * 3}
    lines = [
        json.dumps(
            {
                "experiment_id": EXPERIMENT,
                "row_id": f"r{row}",
                "arm": arm,
                "arm_fingerprint": arm * 4,
                "evaluator": "summary_quality",
                "evaluator_kind": "llm_judge",
                "evaluator_fingerprint": "f" * 64,
                "score": float(values[row]),
                "status": "ok",
                "detail": "",
                "inputs": {"user_query": f"question {row}"},
                "expected": None,
                "outputs": {"summarized_text": f"answer {row} of {arm}"},
                "scale": [1, 10],
            }
        )
        for arm, values in scores.items()
        for row in range(6)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_offline_evaluation_and_the_online_judges_show(env, tmp_path, redis_client) -> None:
    """With an offline summary and online judge verdicts in the store, the experiment page
    has the offline-vs-online table and every judge's verdicts, parse failures included."""
    from analysis.evaluation import (
        judge_stats_key,
        load_evaluation,
        summarize_evaluation,
        summary_key,
    )

    rows = load_evaluation(_evaluation_rows(tmp_path / "rows.jsonl"))
    summary = summarize_evaluation(rows, control="control")
    redis_client.set(summary_key(EXPERIMENT), json.dumps(summary.to_json()))
    verdicts = {"control:summary_quality:ok": 5, "control:summary_quality:parse_failure": 2}
    redis_client.hset(judge_stats_key(EXPERIMENT), mapping=verdicts)
    try:
        with api_client(tmp_path, **KEYS) as client:
            populate(client, 12, API)
            login(client, "k-view")
            polled = client.get(f"/ui/api/experiments/{EXPERIMENT}").json()
    finally:
        redis_client.delete(summary_key(EXPERIMENT), judge_stats_key(EXPERIMENT))
    section = polled["html"]["evaluation"]
    assert 'id="offline-vs-online"' in section and 'id="judge-verdicts"' in section
    assert [r["arm"] for r in polled["results"]["offline_vs_online"]] == ["v2", "v2-small-chunks"]
    v2 = re.search(r'data-arm="v2" data-evaluator="summary_quality">(.*?)</tr>', section, re.S)
    assert v2 is not None and "<td>+1 <span" in v2.group(1)
    control = re.search(
        r'data-arm="control" data-evaluator="summary_quality">(.*?)</tr>', section, re.S
    )
    assert control is not None
    assert re.findall(r"<td>(\d+)</td>", control.group(1)) == ["5", "2", "0"]
