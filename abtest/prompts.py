"""Prompt registry (prompts as runtime data): versioned templates in Redis, cached in-process.

Storage: one hash per prompt, `abtest:prompt:{name}`, with fields

| field             | value                                             |
|-------------------|---------------------------------------------------|
| `1`, `2`, ...     | the template of that version (immutable)          |
| `created:<n>`     | epoch milliseconds when version n was pushed      |
| `latest`          | the highest version                               |
| `label:<label>`   | the version a label points at (e.g. `production`) |

plus the set `abtest:prompts` of all names (so listing never scans the keyspace). A push is one
Lua script on the prompt's hash: it allocates the next version, or returns the latest one if
the template is identical to it (pushes are idempotent), atomically under concurrent pushes.

References: `name@3` (a version), `name@production` (a label), `name` or `name@latest` (the
newest). Reads are cached per registry object: a version forever (versions never change),
labels and `latest` for `cache_ttl_s` (default 30 s, env `ABTEST_PROMPT_CACHE_TTL`), so moving
a label reaches every process within the TTL. When Redis is unreachable, an expired cache
entry is served rather than failing the request.

Command-line helpers (`abtest prompts push|list|label|show|history`): `push_prompt`,
`list_prompts`, `label_prompt`, `show_prompt`, `prompt_history`.
"""

from __future__ import annotations

import hashlib
import re
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

__all__ = [
    "DEFAULT_CACHE_TTL_S",
    "PromptNotFoundError",
    "PromptRegistry",
    "PromptRegistryError",
    "PromptVersion",
    "label_prompt",
    "list_prompts",
    "parse_ref",
    "prompt_history",
    "push_prompt",
    "show_prompt",
]

DEFAULT_CACHE_TTL_S = 30.0
KEY_PREFIX = "abtest:prompt:"
NAMES_KEY = "abtest:prompts"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
LABEL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
MAX_TEMPLATE_BYTES = 256 * 1024

_PUSH = """
local latest = redis.call('HGET', KEYS[1], 'latest')
if latest and redis.call('HGET', KEYS[1], latest) == ARGV[1] then
  return {tonumber(latest), 0}
end
local version = redis.call('HINCRBY', KEYS[1], 'latest', 1)
redis.call('HSET', KEYS[1], tostring(version), ARGV[1], 'created:' .. version, ARGV[2])
return {version, 1}
"""

_LABEL = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'label:' .. ARGV[2], ARGV[1])
return 1
"""


class PromptRegistryError(RuntimeError):
    """The registry cannot answer (Redis unreachable and nothing cached)."""


class PromptNotFoundError(LookupError):
    """No such prompt, version or label; the message names what was asked for."""


@dataclass(frozen=True)
class PromptVersion:
    """One immutable version of a prompt template."""

    name: str
    version: int
    template: str
    created_ms: int = 0
    labels: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """The exact reference, e.g. `final-summary@3`."""
        return f"{self.name}@{self.version}"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.template.encode("utf-8")).hexdigest()


def parse_ref(ref: str) -> tuple[str, str]:
    """Split `name[@version|@label]` into `(name, selector)`; selector "latest" by default."""
    name, at, selector = ref.strip().partition("@")
    if at and not selector:
        raise ValueError(f"{ref!r}: expected name@<version number> or name@<label> after '@'")
    selector = selector or "latest"
    if not NAME_PATTERN.match(name):
        raise ValueError(
            f"prompt name {name!r} must match {NAME_PATTERN.pattern} (letters, digits, _ . -)"
        )
    if not (selector.isdigit() or LABEL_PATTERN.match(selector)):
        raise ValueError(f"{ref!r}: expected name@<version number> or name@<label>")
    return name, selector


class PromptRegistry:
    """Versioned prompt templates in Redis with an in-process TTL cache.

    Parameters
    ----------
    client
        A redis-py client (either `decode_responses` setting); the caller owns it.
    cache_ttl_s
        How long a label or `latest` lookup is served from the cache (services pass
        `Settings.prompt_cache_ttl_s`, from `ABTEST_PROMPT_CACHE_TTL`); 0 disables caching of
        labels.
    clock
        Monotonic seconds, injectable for tests of the TTL.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        if cache_ttl_s < 0:
            raise ValueError(f"cache_ttl_s ({cache_ttl_s}) must be >= 0")
        self.cache_ttl_s = cache_ttl_s
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, PromptVersion]] = {}
        self._lock = threading.Lock()
        self._push = client.register_script(_PUSH)
        self._label = client.register_script(_LABEL)

    @classmethod
    def from_url(cls, url: str, **kwargs) -> PromptRegistry:
        """A registry on its own client for `url` (e.g. `redis://localhost:6379/0`)."""
        return cls(redis.Redis.from_url(url, decode_responses=True, protocol=2), **kwargs)

    # -- writes -----------------------------------------------------------------------------

    def push(self, name: str, template: str) -> int:
        """Store `template` as the next version of `name` and return that version.

        Idempotent: pushing the latest template again returns the latest version unchanged.
        """
        return self.push_version(name, template)[0].version

    def push_version(self, name: str, template: str) -> tuple[PromptVersion, bool]:
        """Like `push`, returning the stored `PromptVersion` and whether it is new."""
        _check_name(name)
        if not isinstance(template, str) or not template.strip():
            raise ValueError(f"template of prompt '{name}' must be a non-empty string")
        if len(template.encode("utf-8")) > MAX_TEMPLATE_BYTES:
            raise ValueError(
                f"template of prompt '{name}' is larger than {MAX_TEMPLATE_BYTES} bytes"
            )
        created_ms = int(time.time() * 1000)
        version, created = self._push(keys=[_key(name)], args=[template, created_ms])
        self._redis.sadd(NAMES_KEY, name)
        self._invalidate(name)
        if not created:
            return self.get(f"{name}@{int(version)}"), False
        return PromptVersion(name, int(version), template, created_ms), True

    def label(self, name: str, label: str, version: int) -> None:
        """Point `label` (e.g. "production") at an existing `version` of `name`."""
        _check_name(name)
        if not LABEL_PATTERN.match(label) or label == "latest":
            raise ValueError(
                f"label {label!r} must start with a letter, use letters, digits, _ . -, "
                "and not be 'latest'"
            )
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"version ({version!r}) must be a positive integer")
        if not self._label(keys=[_key(name)], args=[str(version), label]):
            raise PromptNotFoundError(f"prompt '{name}' has no version {version}")
        self._invalidate(name)

    # -- reads ------------------------------------------------------------------------------

    def get(self, ref: str) -> PromptVersion:
        """The version `ref` names: `name@3`, `name@production`, `name` (= latest)."""
        name, selector = parse_ref(ref)
        key = (name, selector)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and (cached[0] > now or selector.isdigit()):
            return cached[1]
        try:
            found = self._resolve(name, selector)
        except redis.RedisError as exc:
            if cached is not None:
                return cached[1]  # stale, but better than failing while Redis is away
            raise PromptRegistryError(f"prompt registry unavailable: {exc}") from exc
        with self._lock:
            self._cache[key] = (now + self.cache_ttl_s, found)
            self._cache[(name, str(found.version))] = (now + self.cache_ttl_s, found)
        return found

    def history(self, name: str) -> list[PromptVersion]:
        """Every version of `name`, oldest first, each with the labels pointing at it."""
        _check_name(name)
        fields = self._fields(name)
        if not fields:
            raise PromptNotFoundError(f"no prompt named '{name}'")
        labels: dict[int, list[str]] = {}
        for field, value in fields.items():
            if field.startswith("label:"):
                labels.setdefault(int(value), []).append(field[len("label:") :])
        return [
            PromptVersion(
                name,
                int(field),
                value,
                int(fields.get(f"created:{field}", 0)),
                tuple(sorted(labels.get(int(field), ()))),
            )
            for field, value in sorted(
                ((f, v) for f, v in fields.items() if f.isdigit()), key=lambda fv: int(fv[0])
            )
        ]

    def labels(self, name: str) -> dict[str, int]:
        """`{label: version}` of `name`."""
        return {
            field[len("label:") :]: int(value)
            for field, value in self._fields(name).items()
            if field.startswith("label:")
        }

    def names(self) -> list[str]:
        """All prompt names, sorted."""
        return sorted(_text(n) for n in self._redis.smembers(NAMES_KEY))

    def invalidate(self, name: str | None = None) -> None:
        """Drop cached lookups of `name` (or of every prompt)."""
        self._invalidate(name)

    # -- internals --------------------------------------------------------------------------

    def _resolve(self, name: str, selector: str) -> PromptVersion:
        if selector.isdigit():
            version: str | None = selector
        elif selector == "latest":
            version = _text_or_none(self._redis.hget(_key(name), "latest"))
            if version is None:
                raise PromptNotFoundError(f"no prompt named '{name}'")
        else:
            version = _text_or_none(self._redis.hget(_key(name), f"label:{selector}"))
            if version is None:
                if not self._redis.exists(_key(name)):
                    raise PromptNotFoundError(f"no prompt named '{name}'")
                known = sorted(self.labels(name))
                hint = f" (labels: {', '.join(known)})" if known else " (it has no labels)"
                raise PromptNotFoundError(f"prompt '{name}' has no label '{selector}'{hint}")
        template, created = self._redis.hmget(_key(name), [version, f"created:{version}"])
        if template is None:
            if not self._redis.exists(_key(name)):
                raise PromptNotFoundError(f"no prompt named '{name}'")
            raise PromptNotFoundError(f"prompt '{name}' has no version {version}")
        return PromptVersion(name, int(version), _text(template), int(_text(created or "0")))

    def _fields(self, name: str) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in self._redis.hgetall(_key(name)).items()}

    def _invalidate(self, name: str | None) -> None:
        with self._lock:
            if name is None:
                self._cache.clear()
            else:
                for key in [k for k in self._cache if k[0] == name and not k[1].isdigit()]:
                    del self._cache[key]


def _key(name: str) -> str:
    return KEY_PREFIX + name


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"prompt name {name!r} must match {NAME_PATTERN.pattern} (letters, digits, _ . -)"
        )


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _text_or_none(value: str | bytes | None) -> str | None:
    return None if value is None else _text(value)


# -- functions for the command line (`abtest prompts ...`) ------------------------------------


def push_prompt(client: redis.Redis, name: str, template: str) -> tuple[PromptVersion, bool]:
    """`abtest prompts push NAME FILE`: store a template; returns (version, is_new)."""
    return PromptRegistry(client, cache_ttl_s=0).push_version(name, template)


def list_prompts(client: redis.Redis) -> list[tuple[PromptVersion, dict[str, int]]]:
    """`abtest prompts list`: the latest version of every prompt, and every label of the
    prompt with the version it points at (a label may point at an older version)."""
    registry = PromptRegistry(client, cache_ttl_s=0)
    return [(registry.history(name)[-1], registry.labels(name)) for name in registry.names()]


def placeholders(template: str) -> list[str]:
    """The `{name}` fields of a `str.format`-style template, in order of first use (`{{` is a
    literal brace). Raises `ValueError` for a template `str.format` cannot parse."""
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    return list(dict.fromkeys(names))


def label_prompt(client: redis.Redis, name: str, label: str, version: int) -> PromptVersion:
    """`abtest prompts label NAME LABEL VERSION`: move a label; returns the labelled version."""
    registry = PromptRegistry(client, cache_ttl_s=0)
    registry.label(name, label, version)
    return registry.get(f"{name}@{version}")


def show_prompt(client: redis.Redis, ref: str) -> PromptVersion:
    """`abtest prompts show NAME[@VERSION|@LABEL]`: one version (labels filled in)."""
    registry = PromptRegistry(client, cache_ttl_s=0)
    found = registry.get(ref)
    labels = tuple(sorted(k for k, v in registry.labels(found.name).items() if v == found.version))
    return PromptVersion(found.name, found.version, found.template, found.created_ms, labels)


def prompt_history(client: redis.Redis, name: str) -> list[PromptVersion]:
    """`abtest prompts history NAME`: every version, oldest first, with labels."""
    return PromptRegistry(client, cache_ttl_s=0).history(name)
