"""Templates: the dashboard's pages and their sections, from the package's `templates/`.

A page includes its sections; the JSON a page polls carries the same sections rendered
alone, so a refresh and a reload show the same markup. Pages use the report's style sheet
(`analysis.table_html.STYLE`) so the dashboard and the HTML report look alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jinja2
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from analysis.table_html import STYLE

__all__ = ["html_response", "page", "sections"]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("abtest.api.dashboard", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=False,
)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Every page: scripts only from this service (no inline script, no CDN), not framed, not
cached (the numbers are live)."""


def page(name: str, **context: Any) -> str:
    """A whole page."""
    return _ENV.get_template(name).render(report_style=Markup(STYLE), **context)


def sections(names: Iterable[str], context: Mapping[str, Any]) -> dict[str, str]:
    """Each named section (`templates/sections/<name>.html`) rendered alone."""
    return {name: _ENV.get_template(f"sections/{name}.html").render(**context) for name in names}


def html_response(html: str, status: int = 200) -> HTMLResponse:
    """A page with the dashboard's security headers."""
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
