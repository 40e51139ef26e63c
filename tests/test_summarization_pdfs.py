"""PDF input: real PDFs written by reportlab (and pypdf for encryption), read back by pypdf."""

from __future__ import annotations

import io
import re

import pytest
from pypdf import PdfReader, PdfWriter

from variants.summarization.pdfs import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PAGES,
    SAMPLE_REPORT,
    PdfError,
    make_pdf,
    read_pdf_text,
)

PAGES = [
    "The first page talks about apples. Apples grow on trees.",
    ["The second page is about rivers.", "Rivers flow into the sea."],
    "The third page covers mountains. Mountains are tall.",
]


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def pdf_bytes() -> bytes:
    return make_pdf(PAGES)


def test_round_trip_keeps_known_text_and_page_markers(pdf_bytes):
    text = read_pdf_text(pdf_bytes)
    blocks = re.split(r"\n\n(?=\[page \d+\])", text)
    assert [b.splitlines()[0] for b in blocks] == ["[page 1]", "[page 2]", "[page 3]"]
    assert _flat(blocks[0]) == "[page 1] " + PAGES[0]
    assert _flat(blocks[1]) == "[page 2] The second page is about rivers. Rivers flow into the sea."
    assert "Mountains are tall." in blocks[2]


def test_every_source_kind_reads_the_same(pdf_bytes, tmp_path):
    path = tmp_path / "doc.pdf"
    assert make_pdf(PAGES, path) == pdf_bytes  # deterministic output, also written to `path`
    expected = read_pdf_text(pdf_bytes)
    assert read_pdf_text(path) == expected
    assert read_pdf_text(str(path)) == expected
    assert read_pdf_text(bytearray(pdf_bytes)) == expected
    with path.open("rb") as handle:
        assert read_pdf_text(handle) == expected


def test_sample_report_has_four_pages_of_known_facts():
    text = read_pdf_text(make_pdf(SAMPLE_REPORT))
    assert len(PdfReader(io.BytesIO(make_pdf(SAMPLE_REPORT))).pages) == 4
    assert "Ridership on the three routes rose by forty percent" in _flat(text)
    assert "[page 4]" in text and "[page 5]" not in text


def test_blank_pages_are_skipped_but_numbering_is_kept():
    text = read_pdf_text(make_pdf(["Only page one has words.", "", "And page three."]))
    assert "[page 1]" in text and "[page 3]" in text and "[page 2]" not in text


@pytest.mark.parametrize(
    "data, needle",
    [
        (b"", "empty"),
        (b"hello, this is not a PDF at all", "not a PDF"),
        (None, "corrupt"),  # truncated, filled in below
    ],
)
def test_corrupt_input_is_a_clear_error(pdf_bytes, data, needle):
    if data is None:
        data = pdf_bytes[: len(pdf_bytes) // 3]
    with pytest.raises(PdfError, match=needle) as info:
        read_pdf_text(data)
    assert info.value.reason == "corrupt"
    assert isinstance(info.value, ValueError)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(PdfError, match="cannot read the PDF file"):
        read_pdf_text(tmp_path / "missing.pdf")


def test_password_protected_pdf_is_refused():
    with pytest.raises(PdfError, match="encrypted") as info:
        read_pdf_text(make_pdf(PAGES, password="s3cret"))
    assert info.value.reason == "encrypted"


def test_pdf_with_only_an_owner_password_is_read(pdf_bytes):
    writer = PdfWriter(clone_from=io.BytesIO(pdf_bytes))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    assert "Apples grow on trees." in read_pdf_text(buffer.getvalue())


def test_pdf_without_text_is_refused():
    with pytest.raises(PdfError, match="no extractable text") as info:
        read_pdf_text(make_pdf(["", ""]))
    assert info.value.reason == "no_text"


def test_byte_limit_applies_to_every_source_kind(pdf_bytes, tmp_path):
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf_bytes)
    limit = len(pdf_bytes) - 1
    for source in (pdf_bytes, path, io.BytesIO(pdf_bytes)):
        with pytest.raises(PdfError, match="too large") as info:
            read_pdf_text(source, max_bytes=limit)
        assert info.value.reason == "too_large"
    assert read_pdf_text(pdf_bytes, max_bytes=len(pdf_bytes))


def test_page_limit(pdf_bytes):
    with pytest.raises(PdfError, match=r"too many pages: 3 \(limit 2\)") as info:
        read_pdf_text(pdf_bytes, max_pages=2)
    assert info.value.reason == "too_large"


def test_default_limits(pdf_bytes):
    assert DEFAULT_MAX_BYTES == 20 * 1024 * 1024 and DEFAULT_MAX_PAGES == 200
    with pytest.raises(PdfError, match=r"too large: .* \(limit 1000 bytes\)"):
        read_pdf_text(pdf_bytes, max_bytes=1000)


def test_pdf_errors_are_flow_input_errors(pdf_bytes):
    """The platform answers a `FlowInputError` with 422 and records nothing."""
    from abtest import FlowInputError

    with pytest.raises(FlowInputError):
        read_pdf_text(b"not a pdf")


def test_the_sample_pdf_is_the_first_page_of_the_sample_report():
    import variants.summarization as summarization

    text = read_pdf_text(summarization.SAMPLE_INPUTS["pdf_source"])
    assert text.startswith("[page 1]") and "Riverton Transit Pilot" in text
    assert "[page 2]" not in text


def test_wrong_source_types_are_type_errors():
    with pytest.raises(TypeError, match="path, bytes or a binary file object"):
        read_pdf_text(12345)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="binary mode"):
        read_pdf_text(io.StringIO("%PDF-1.4"))  # type: ignore[arg-type]


def test_make_pdf_refuses_a_page_that_does_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        make_pdf(["word " * 5000])
