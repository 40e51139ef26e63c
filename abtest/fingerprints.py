"""What each flow fingerprint stands for: the prompts (id, version, sha256, text) behind it.

An exposure records only its `flow_fingerprint` (DESIGN.md, Events), a sha256 that cannot be
read back. When an arm's prompts come from the prompt registry, a label such as `@production`
may point at different versions over an experiment's life, and a reader of the results needs
to know which version each exposure's fingerprint resolved to. So the first time a process
sees a fingerprint, it writes the fingerprint's manifest to one hash per experiment,
`abtest:{<experiment_id>}:fingerprints` (same hash tag as the experiment's streams, so one
Cluster shard), field = fingerprint, value = JSON::

    {"arm": "v2", "recorded_at": 1764380000000,
     "prompts": {"<node>": {"prompt_id": ..., "version": ..., "sha256": ..., "source": ...,
                            "text": ...}}}

`HSETNX` makes the write idempotent across processes and replicas: a fingerprint is a hash of
the arm's config and templates, so any two manifests of one fingerprint are the same. A
manifest is provenance, not an event: when Redis cannot take it, the request goes on (its
events are spooled as usual) and the next request with that fingerprint tries again
(`abtest.state_store.ManifestRecorder`). This module is the encoding only, no I/O.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "Manifest",
    "PromptRecord",
    "manifest_json",
    "manifests_key",
    "parse_manifests",
]

logger = logging.getLogger("abtest.fingerprints")


class PromptRecord(Protocol):
    """What a manifest keeps of a prompt (`abtest.flows.registry.PromptUse` has it)."""

    prompt_id: str
    version: str
    sha256: str
    text: str
    source: str


@dataclass(frozen=True)
class Manifest:
    """One fingerprint's arm and prompts, as read back (`read_manifests`)."""

    fingerprint: str
    arm: str
    recorded_at: int
    prompts: dict[str, dict[str, str]]

    def versions(self) -> str:
        """The prompts as one line, e.g. ``summary: summary@3, final: final_summary v2``."""
        return ", ".join(
            f"{node}: {_version_label(use)}" for node, use in sorted(self.prompts.items())
        )


def _version_label(use: Mapping[str, str]) -> str:
    version = use.get("version", "")
    prompt_id = use.get("prompt_id", "")
    return version if "@" in version else f"{prompt_id} {version}".strip()


def manifests_key(experiment_id: str) -> str:
    """The experiment's manifest hash (hash-tagged like its streams)."""
    return f"abtest:{{{experiment_id}}}:fingerprints"


def manifest_json(arm: str, prompts: Mapping[str, PromptRecord], now_ms: int | None = None) -> str:
    """A fingerprint's manifest as stored (see the module docstring)."""
    return json.dumps(
        {
            "arm": arm,
            "recorded_at": int(time.time() * 1000) if now_ms is None else now_ms,
            "prompts": {
                node: {
                    "prompt_id": use.prompt_id,
                    "version": use.version,
                    "sha256": use.sha256,
                    "source": use.source,
                    "text": use.text,
                }
                for node, use in sorted(prompts.items())
            },
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def parse_manifests(raw: Mapping[Any, Any]) -> dict[str, Manifest]:
    """The manifests hash (as `HGETALL` returns it) by fingerprint; an unreadable entry is
    skipped (and logged) rather than failing a report."""
    manifests: dict[str, Manifest] = {}
    for field, value in raw.items():
        fingerprint = field.decode() if isinstance(field, bytes) else str(field)
        try:
            data = json.loads(value)
            manifests[fingerprint] = Manifest(
                fingerprint=fingerprint,
                arm=str(data["arm"]),
                recorded_at=int(data["recorded_at"]),
                prompts={
                    str(node): {str(k): str(v) for k, v in use.items()}
                    for node, use in dict(data["prompts"]).items()
                },
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("fingerprint manifest %s unreadable, skipped: %s", fingerprint, exc)
    return manifests
