"""The README stays true: its settings, commands and curl examples match the code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.main import get_command

from abtest.cli import app
from abtest.settings import ENVIRONMENT
from tests.redis_process import free_port
from variants.summarization.pdfs import SAMPLE_REPORT, make_pdf

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for name in ENVIRONMENT:
        assert f"`{name}`" in README, name


def test_every_command_is_documented() -> None:
    command = get_command(app)
    for name in command.commands:
        assert f"abtest {name}" in README, name


def _curl_examples() -> list[str]:
    block = re.search(r"```bash\nabtest serve --port 8080 &\n(.*?)```", README, re.S)
    assert block, "the API section's curl block is missing"
    return block.group(1).replace("\\\n", " ").strip().splitlines()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_examples_work_against_abtest_serve(tmp_path: Path, redis_url: str, llm_server):
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "ABTEST_HOME": str(tmp_path / "home"),
        "OPENAI_BASE_URL": llm_server.base_url,
    }
    for key in ("ABTEST_API_KEYS", "ABTEST_ADMIN_KEYS"):
        env.pop(key, None)
    make_pdf(SAMPLE_REPORT, tmp_path / "report.pdf")
    server = subprocess.Popen(
        [sys.executable, "-m", "abtest.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert server.poll() is None, "abtest serve exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        for line in _curl_examples():
            command = line.replace("localhost:8080", f"127.0.0.1:{port}")
            command = command.replace("curl -s", "curl -s -f --show-error")
            done = subprocess.run(
                command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, (line, done.stderr)
            assert done.stdout.strip(), line
    finally:
        server.kill()
        server.wait(10)
