"""The README stays true: its settings, commands and curl examples match the code."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command

from abtest.cli import app
from abtest.settings import ENVIRONMENT
from tests.api_support import wait_for_health
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
        wait_for_health(server, port)
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


def _own_flow_blocks() -> dict[str, list[str]]:
    """The fenced blocks of "Write your own flow", by language, in order."""
    section = README.split("## Write your own flow", 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, list[str]] = {}
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, re.S):
        blocks.setdefault(lang, []).append(body)
    return blocks


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_own_flow_example_works_as_written(tmp_path: Path, redis_url: str, llm_server):
    """The module, the experiment file, then every command of the section in order."""
    blocks = _own_flow_blocks()
    module, client_code, in_process_code = blocks["python"]
    (tmp_path / "headline.py").write_text(module, encoding="utf-8")
    (tmp_path / "my_experiments").mkdir()
    (tmp_path / "my_experiments" / "headline.yaml").write_text(blocks["yaml"][0])
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "ABTEST_HOME": str(tmp_path / "home"),
        "OPENAI_BASE_URL": llm_server.base_url,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    for key in ("ABTEST_API_KEYS", "ABTEST_ADMIN_KEYS", "PYTHONPATH"):
        env.pop(key, None)
    server = None
    outputs = []
    try:
        for line in blocks["bash"][0].strip().splitlines():
            command = line.replace("8081", str(port)).replace("curl -s", "curl -s -f --show-error")
            if command.startswith("export "):
                name, value = command.removeprefix("export ").split("=", 1)
                env[name] = value.replace("$PWD", str(tmp_path))
                continue
            if command.endswith("&"):
                server = subprocess.Popen(
                    command.removesuffix("&").split(),
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                wait_for_health(server, port)
                continue
            done = subprocess.run(
                command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True
            )
            outputs.append((line, done))
        validate, run, refused, definition, posted = outputs
        assert validate[1].returncode == 0 and validate[1].stdout.startswith("ok   ")
        assert run[1].returncode == 0, run[1].stderr
        assert "headline:" in run[1].stdout and "words:" in run[1].stdout
        assert refused[1].returncode == 1
        assert "error: article must not be empty" in refused[1].stderr
        assert json.loads(definition[1].stdout)["outputs"] == ["headline", "words"]
        assert posted[1].returncode == 0, posted[1].stderr
        assert json.loads(posted[1].stdout)["outputs"]["words"] > 0
        for code in (client_code.replace("8081", str(port)), in_process_code):
            done = subprocess.run(
                [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            arm, _, rest = done.stdout.strip().partition(" ")
            assert arm in {"control", "short"} and rest
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)


def test_the_command_line_examples_work_as_written(tmp_path: Path, redis_url: str, llm_server):
    section = README.split("## Command line", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```bash\n(.*?)```", section, re.S)[1]
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "ABTEST_HOME": str(tmp_path / "home"),
        "ABTEST_EXPERIMENTS": str(ROOT / "experiments"),
        "OPENAI_BASE_URL": llm_server.base_url,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    done = [
        subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
        for line in block.strip().splitlines()
    ]
    assert [d.returncode for d in done] == [0, 0, 0], [d.stderr for d in done]
    assert "summarized_text:" in done[1].stdout
    support = json.loads(done[2].stdout)
    assert support["outputs"]["intent"] == "billing" and support["outputs"]["reply"]
