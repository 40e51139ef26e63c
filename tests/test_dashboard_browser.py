"""The dashboard in a real browser: Debian's Chromium, driven by Selenium through Debian's
chromedriver, against the real service (uvicorn in a thread) on the test Redis.

Nothing is downloaded: the driver's path is given explicitly, so Selenium Manager (which
would fetch a browser and a driver) never runs, and the tests fail loudly if it is asked
to. Without Chromium and chromedriver the tests skip and say how to get them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from abtest.api import create_app
from analysis.formatting import format_number, format_p, format_percent
from tests.api_support import EXAMPLES, EXPERIMENT, service_settings
from tests.redis_process import free_port

pytest.importorskip("selenium", reason="the browser tests need selenium (the dev extra)")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM_NAMES = ("chromium", "chromium-browser")
NO_BROWSER = (
    "the browser tests need Debian's Chromium and its driver: apt-get install chromium "
    "chromium-driver (`make test` installs them when run as root on Debian)"
)
KEYS = {"api_keys": frozenset({"k-api"}), "viewer_keys": frozenset({"k-view"})}
API = {"Authorization": "Bearer k-api"}
WAIT_S = 30


def _chromium() -> tuple[str, str] | None:
    """The system's Chromium and chromedriver, or None."""
    browser = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless Chromium for the module (a fresh cookie jar per test: see `page`)."""
    found = _chromium()
    if found is None:
        pytest.skip(NO_BROWSER)
    binary, driver_path = found
    patch = pytest.MonkeyPatch()
    patch.setenv("SE_OFFLINE", "true")  # Selenium Manager, were it reached, would not download

    def no_manager(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Selenium Manager must not run: the driver path is explicit")

    patch.setattr(
        "selenium.webdriver.common.selenium_manager.SeleniumManager.binary_paths", no_manager
    )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except WebDriverException as exc:
        patch.undo()
        pytest.skip(f"{NO_BROWSER}; starting it failed: {exc.msg}")
    try:
        yield driver
    finally:
        driver.quit()
        patch.undo()


@dataclasses.dataclass
class RunningService:
    """The running service: its base URL and an HTTP client with an API key."""

    url: str
    http: httpx.Client

    def populate(self, first: int, last: int, thumbs_every: int = 2) -> None:
        """Expose units `first`..`last - 1` and report their outcomes."""
        for i in range(first, last):
            unit = f"u{i}"
            assigned = self.http.post(
                f"/v1/experiments/{EXPERIMENT}/assign", json={"unit_id": unit}
            )
            assert assigned.status_code == 200, assigned.text
            outcomes = [
                {"experiment_id": EXPERIMENT, "unit_id": unit, "metric": "latency_ms",
                 "value": 900 + (i * 37) % 200},
            ]  # fmt: skip
            if i % thumbs_every == 0:
                outcomes.append(
                    {
                        "experiment_id": EXPERIMENT,
                        "unit_id": unit,
                        "metric": "thumbs_up",
                        "value": 1,
                    }
                )
            assert self.http.post("/v1/outcomes", json=outcomes).status_code == 200

    def results(self) -> dict[str, Any]:
        response = self.http.get(f"/v1/experiments/{EXPERIMENT}/results")
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def service(env, tmp_path: Path) -> Iterator[RunningService]:
    """`abtest`'s app served by uvicorn on a free port, keys required."""
    import uvicorn

    app = create_app(service_settings(experiments_dir=EXAMPLES, home=tmp_path, **KEYS))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, headers=API, timeout=30) as http:
            yield RunningService(url, http)
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def page(browser: WebDriver, service: RunningService) -> WebDriver:
    """The browser with no cookies of an earlier test."""
    browser.delete_all_cookies()
    return browser


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(condition, what)


def log_in(driver: WebDriver, service: RunningService, key: str, path: str = "/ui") -> None:
    """Open `path`, be sent to the login form, and submit `key` there."""
    driver.get(service.url + path)
    wait_for(driver, lambda d: "/ui/login" in d.current_url, "the login form")
    field = driver.find_element(By.ID, "key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.ID, "login-submit").click()


def row_of(driver: WebDriver, metric: str, arm: str) -> WebElement:
    return driver.find_element(
        By.CSS_SELECTOR, f'table.live-results tr[data-metric="{metric}"][data-arm="{arm}"]'
    )


def cell(row: WebElement, field: str) -> WebElement:
    return row.find_element(By.CSS_SELECTOR, f'[data-field="{field}"]')


def effect_text(value: float | None, estimand: str | None) -> str:
    """The JSON's effect as the table writes it (signed, in % for a relative lift)."""
    if value is None or not math.isfinite(value):
        return "–"
    text = format_percent(value) if estimand == "relative" else format_number(value)
    return ("+" if value > 0 else "") + text


def interval_text(row: dict[str, Any]) -> str:
    if row["ci_low"] is None or row["ci_high"] is None:
        return ""
    fmt = format_percent if row["estimand"] == "relative" else format_number
    return f"[{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"


def json_value(element: WebElement) -> Any:
    import json

    return json.loads(element.get_attribute("data-value"))


# --- the tests ------------------------------------------------------------------------------


def test_login_refuses_a_wrong_key_and_lets_a_viewer_key_in(
    page: WebDriver, service: RunningService
) -> None:
    target = f"/ui/experiments/{EXPERIMENT}"
    log_in(page, service, "not-the-key", target)
    error = wait_for(page, lambda d: d.find_elements(By.ID, "login-error"), "the login error")
    assert "not valid" in error[0].text
    assert not [c for c in page.get_cookies() if c["name"] == "abtest_key"]
    field = page.find_element(By.ID, "key")
    field.send_keys("k-view")
    page.find_element(By.ID, "login-submit").click()
    wait_for(page, lambda d: d.current_url == service.url + target, "the experiment page")
    assert page.find_element(By.TAG_NAME, "h1").text == EXPERIMENT
    (cookie,) = [c for c in page.get_cookies() if c["name"] == "abtest_key"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/ui"
    assert page.execute_script("return document.cookie") == ""  # HttpOnly: no script reads it
    page.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait_for(page, lambda d: "/ui/login" in d.current_url, "the login form after logout")
    page.get(service.url + "/ui")
    assert "/ui/login" in page.current_url


def test_the_list_shows_every_experiment(page: WebDriver, service: RunningService) -> None:
    service.populate(0, 30)
    log_in(page, service, "k-view")
    wait_for(page, lambda d: d.find_elements(By.ID, "experiments"), "the experiments list")
    listed = [
        row.get_attribute("data-experiment")
        for row in page.find_elements(By.CSS_SELECTOR, "#experiments tr[data-experiment]")
    ]
    catalogue = service.http.get("/v1/experiments").json()
    assert listed == sorted(e["id"] for e in catalogue)
    row = page.find_element(By.CSS_SELECTOR, f'tr[data-experiment="{EXPERIMENT}"]')
    assert cell(row, "units").text == "30"
    states = row.find_elements(By.CSS_SELECTOR, '[data-field="state"]')
    assert [s.text for s in states] == ["active", "active", "active"]
    results = service.results()
    primary = [r for r in results["table"] if r["primary"] and r["arm"] != "control"]
    for expected in primary:
        lift = row.find_element(
            By.CSS_SELECTOR,
            f'.lift[data-metric="{expected["metric"]}"][data-arm="{expected["arm"]}"]',
        )
        assert cell(lift, "effect").text == effect_text(expected["effect"], expected["estimand"])
    row.find_element(By.CSS_SELECTOR, "a.experiment-link").click()
    wait_for(page, lambda d: d.current_url.endswith(f"/ui/experiments/{EXPERIMENT}"), "a click")


def test_the_numbers_on_screen_are_the_json(page: WebDriver, service: RunningService) -> None:
    service.populate(0, 60)
    log_in(page, service, "k-view", f"/ui/experiments/{EXPERIMENT}")
    wait_for(page, lambda d: d.find_elements(By.ID, "goal-results"), "the results table")
    results = service.results()
    for expected in results["table"]:
        row = row_of(page, expected["metric"], expected["arm"])
        units = cell(row, "units")
        assert json_value(units) == expected["units"]
        assert units.text == f"{expected['units']:,}"
        if expected["arm"] == "control":
            continue
        effect = cell(row, "effect")
        assert json_value(effect) == expected["effect"]
        assert effect.text == effect_text(expected["effect"], expected["estimand"])
        assert cell(row, "interval").text == interval_text(expected)
        assert cell(row, "p_adjusted").text == format_p(
            math.nan if expected["p_adjusted"] is None else expected["p_adjusted"]
        )
    guardrails = page.find_elements(By.CSS_SELECTOR, "#guardrail-states tr[data-arm]")
    assert [
        (
            g.get_attribute("data-arm"),
            g.get_attribute("data-metric"),
            cell(g, "guardrail-state").text,
        )
        for g in guardrails
    ] == [(g["arm"], g["metric"], g["state"]) for g in results["guardrails"]]
    charts = page.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == 1 + len({r["metric"] for r in results["table"]})


def test_the_page_updates_when_outcomes_arrive(page: WebDriver, service: RunningService) -> None:
    service.populate(0, 20)
    log_in(page, service, "k-view", f"/ui/experiments/{EXPERIMENT}")
    wait_for(page, lambda d: d.find_elements(By.ID, "goal-results"), "the results table")
    page.execute_script("window.stillTheSamePage = true;")
    before = cell(row_of(page, "thumbs_up", "control"), "units").text
    service.populate(20, 50, thumbs_every=1)
    expected = {r["arm"]: r for r in service.results()["table"] if r["metric"] == "thumbs_up"}

    def refreshed(driver: WebDriver) -> bool:
        row = row_of(driver, "thumbs_up", "control")
        return cell(row, "units").text == f"{expected['control']['units']:,}"

    wait_for(page, refreshed, "the control's units to grow without a reload")
    assert page.execute_script("return window.stillTheSamePage === true;")
    assert before != cell(row_of(page, "thumbs_up", "control"), "units").text
    for arm in ("v2", "v2-small-chunks"):
        effect = cell(row_of(page, "thumbs_up", arm), "effect")
        assert json_value(effect) == expected[arm]["effect"]
    assert int(page.find_element(By.TAG_NAME, "body").get_attribute("data-refreshes")) >= 1
