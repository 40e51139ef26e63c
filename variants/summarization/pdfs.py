"""PDF input of the summarizer flow: extract text safely with pypdf, make known PDFs.

`read_pdf_text` is the only way the flow reads a PDF. It enforces size limits before parsing,
keeps a `[page N]` marker before the text of every page that has any, and turns every way a
PDF can be unusable into one `PdfError`, a `FlowInputError` (so the platform answers 422 and
records nothing), whose `reason` says which:

| reason      | meaning                                                        |
|-------------|----------------------------------------------------------------|
| `too_large` | more bytes than `max_bytes` or more pages than `max_pages`     |
| `corrupt`   | not a PDF, truncated or otherwise unparsable                   |
| `encrypted` | password-protected (an empty user password is tried first)     |
| `no_text`   | parses, but has no extractable text (e.g. scanned images only) |

Limits are the flow's configuration (`max_pdf_bytes`, `max_pdf_pages` in an arm's config;
20 MB and 200 pages by default): a request can never raise them.

`make_pdf` writes multi-page PDFs with known text (reportlab, a development dependency:
`pip install abtest-prompts[devtools]`); `SAMPLE_REPORT` is a four-page report with distinct
facts per page, used by the demo, the benchmarks and the tests, and `sample.pdf` beside this
module is its first page, the flow's `SAMPLE_INPUTS`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Literal

from abtest import FlowInputError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PAGES",
    "SAMPLE_REPORT",
    "PdfError",
    "PdfSource",
    "make_pdf",
    "read_pdf_text",
]

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PAGES = 200

PdfSource = str | Path | bytes | bytearray | memoryview | BinaryIO
"""A path (str or Path), the PDF's bytes, or a binary file object opened for reading."""

SAMPLE_REPORT: tuple[tuple[str, ...], ...] = (
    (
        "Riverton Transit Pilot: Final Report.",
        "The city of Riverton ran a twelve month pilot of free bus travel on three routes. "
        "The pilot started in March and ended the following February. "
        "Its goal was to test whether free fares would move commuters out of cars. "
        "The council funded the pilot with a grant of four million dollars. "
        "Route 7, Route 12 and the Harbor Line took part in the pilot.",
        "Ridership on the three routes rose by forty percent during the pilot. "
        "Most of the growth came from weekday commuters travelling before nine in the morning. "
        "Weekend ridership grew more slowly, by about fifteen percent. "
        "Surveys showed that one in five new riders had previously driven to work. "
        "Students and older residents were the groups that used the buses most.",
    ),
    (
        "Traffic on the main corridor along Route 7 fell by eight percent at peak hours. "
        "Average car journey times on the corridor improved by four minutes. "
        "Air quality sensors near the Harbor Line recorded slightly lower nitrogen dioxide. "
        "The change in air quality was small and within the normal seasonal range. "
        "Parking demand in the city centre dropped on weekdays but not on weekends.",
        "Bus punctuality suffered as buses filled up at the busiest stops. "
        "Boarding took longer because more passengers got on at each stop. "
        "On-time performance fell from ninety one percent to eighty four percent. "
        "The operator added two extra buses to Route 12 in the sixth month. "
        "After the extra buses arrived, punctuality on Route 12 recovered to eighty nine percent.",
    ),
    (
        "The pilot cost four point six million dollars, above the budget of four million. "
        "Lost fare revenue accounted for three million dollars of the cost. "
        "The extra buses and drivers cost another one point two million dollars. "
        "Marketing and surveys made up the remaining four hundred thousand dollars. "
        "The overspend was covered by the regional transport fund.",
        "Bus drivers reported more crowded vehicles and longer shifts. "
        "Complaints about crowding doubled during the winter months. "
        "Complaints about fares, which were the most common before the pilot, almost vanished. "
        "The drivers union asked for a permanent increase in staffing if the scheme continues. "
        "Cleaning costs rose because buses carried more passengers each day.",
    ),
    (
        "The report recommends making Route 7 and the Harbor Line permanently free. "
        "It recommends returning Route 12 to paid fares with a discount for students. "
        "The council should add at least four buses before any expansion of free travel. "
        "A congestion charge in the city centre could fund part of the lost fare revenue. "
        "The council will vote on the recommendations in the autumn.",
        "In summary, free fares raised ridership and reduced car traffic on the main corridor. "
        "The scheme cost more than planned, mostly because of lost fare revenue. "
        "Crowding and punctuality were the main operational problems of the pilot. "
        "Extra buses solved most of the punctuality problems where they were added. "
        "The authors conclude that targeted free routes give the best value for money.",
    ),
)
"""A four-page report with known facts per page (ridership, traffic, cost, recommendations)."""

PdfProblem = Literal["too_large", "corrupt", "encrypted", "no_text"]


class PdfError(FlowInputError):
    """A PDF that cannot be used as input; `reason` is one of `PdfProblem`."""

    def __init__(self, reason: PdfProblem, message: str):
        super().__init__(message, reason=reason)


def read_pdf_text(
    source: PdfSource, *, max_bytes: int = DEFAULT_MAX_BYTES, max_pages: int = DEFAULT_MAX_PAGES
) -> str:
    """Text of every page of a PDF, each page's text after a `[page N]` line.

    Parameters
    ----------
    source
        A path, the PDF's bytes, or a binary file object (read from its current position).
    max_bytes, max_pages
        Limits. The byte limit is checked before anything is parsed (a path by its size, a
        file object by reading at most `max_bytes + 1` bytes).

    Raises
    ------
    PdfError
        With `reason` "too_large", "corrupt", "encrypted" or "no_text" and a message a user
        can act on.
    """
    limit_bytes, limit_pages = max_bytes, max_pages
    data = _read_bytes(source, limit_bytes)
    if not data:
        raise PdfError("corrupt", "the PDF is empty (0 bytes)")
    if len(data) > limit_bytes:
        shown = (
            _size(len(data))
            if isinstance(source, bytes | bytearray | memoryview)
            else (f"more than {_size(limit_bytes)}")
        )
        raise PdfError("too_large", f"the PDF is too large: {shown} (limit {_size(limit_bytes)})")
    reader = _open_reader(data)
    try:
        page_count = len(reader.pages)
    except Exception as exc:  # pypdf raises many types on broken page trees
        raise PdfError("corrupt", f"the PDF is corrupt: cannot read its pages ({exc})") from None
    if page_count > limit_pages:
        raise PdfError(
            "too_large", f"the PDF has too many pages: {page_count} (limit {limit_pages})"
        )
    parts = []
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception as exc:
            raise PdfError(
                "corrupt", f"the PDF is corrupt: cannot extract text of page {number} ({exc})"
            ) from None
        text = text.strip()
        if text:
            parts.append(f"[page {number}]\n{text}")
    if not parts:
        raise PdfError(
            "no_text",
            f"the PDF has no extractable text on any of its {page_count} page(s) "
            "(scanned images need OCR first)",
        )
    return "\n\n".join(parts)


def make_pdf(
    pages: Sequence[str | Sequence[str]],
    path: str | Path | None = None,
    *,
    title: str = "abtest document",
    password: str | None = None,
) -> bytes:
    """Write a PDF with one page per item of `pages` and return its bytes.

    Each item is a page's text (paragraphs separated by blank lines) or a list of paragraphs;
    an empty item gives a page without text. `path`, when given, also receives the bytes.
    `password` encrypts the PDF with that user password (reportlab's standard encryption).
    """
    try:
        import reportlab  # noqa: F401
    except ImportError:
        raise ImportError(
            "making PDFs needs reportlab: pip install 'abtest-prompts[devtools]'"
        ) from None
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.lib.utils import escapeOnce
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import Frame, Paragraph

    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, encrypt=password, invariant=1)
    canvas.setTitle(title)
    style = getSampleStyleSheet()["BodyText"]
    width, height = A4
    for page in pages:
        paragraphs = _paragraphs(page)
        if paragraphs:
            flowables = [Paragraph(escapeOnce(p), style) for p in paragraphs]
            frame = Frame(2 * cm, 2 * cm, width - 4 * cm, height - 4 * cm, showBoundary=0)
            frame.addFromList(flowables, canvas)
            if flowables:
                raise ValueError("a page's text does not fit on one PDF page; split it")
        else:
            canvas.rect(2 * cm, 2 * cm, width - 4 * cm, height - 4 * cm)  # a drawing, no text
        canvas.showPage()
    canvas.save()
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _paragraphs(page: str | Sequence[str]) -> list[str]:
    if isinstance(page, str):
        return [p.strip() for p in page.split("\n\n") if p.strip()]
    return [p.strip() for p in page if p.strip()]


def _read_bytes(source: PdfSource, limit: int) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise PdfError("corrupt", f"cannot read the PDF file {path}: {exc.strerror}") from None
        if size > limit:
            raise PdfError(
                "too_large",
                f"the PDF is too large: {_size(size)} (limit {_size(limit)})",
            )
        return path.read_bytes()
    read = getattr(source, "read", None)
    if read is None:
        raise TypeError(
            f"pdf source must be a path, bytes or a binary file object, got {type(source).__name__}"
        )
    data = read(limit + 1)
    if isinstance(data, str):
        raise TypeError("pdf source file object must be opened in binary mode")
    return bytes(data)


def _open_reader(data: bytes):
    from pypdf import PdfReader

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise PdfError("corrupt", "the file is not a PDF (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        encrypted = reader.is_encrypted
    except Exception as exc:
        raise PdfError("corrupt", f"the PDF is corrupt: {exc}") from None
    if encrypted:
        try:
            opened = reader.decrypt("")
        except Exception:  # unsupported algorithm or broken encryption dictionary
            opened = 0
        if not opened:
            raise PdfError(
                "encrypted", "the PDF is encrypted (password-protected); upload it unlocked"
            )
    return reader


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} bytes"
