"""The webhook notice of an automatic stop (``safety.webhook``).

The stop itself is already in the store and its audit stream when the notice is sent, so the
notice is best effort: one POST with a short timeout, and a failure (refused, timed out, a
non-2xx answer) is logged and never stops the monitor.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from abtest.arm_state import AuditEntry

__all__ = ["notice", "send_notice"]

logger = logging.getLogger("abtest.monitor")


def notice(entry: AuditEntry, metric: str) -> dict[str, Any]:
    """The JSON body: which arm of which experiment stopped, on what metric, why, when (epoch
    milliseconds) and the check's numbers."""
    return {
        "experiment_id": entry.experiment_id,
        "arm": entry.arm,
        "metric": metric,
        "reason": entry.reason,
        "statistics": entry.statistics,
        "stopped_at": entry.ts,
    }


def send_notice(url: str, body: dict[str, Any], timeout_s: float = 2.0) -> bool:
    """POST `body` as JSON to `url`; whether it was answered with a 2xx."""
    try:
        response = httpx.post(url, json=body, timeout=timeout_s)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        logger.warning(
            "stop notice for %s/%s not sent to %s: %s",
            body.get("experiment_id"),
            body.get("arm"),
            url,
            exc,
        )
        return False
    if not response.is_success:
        logger.warning(
            "stop notice for %s/%s: %s answered %d",
            body.get("experiment_id"),
            body.get("arm"),
            url,
            response.status_code,
        )
        return False
    return True
