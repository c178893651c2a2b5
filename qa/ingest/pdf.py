"""``.pdf``: the text layer, page by page (pages separated by a blank line), by pypdf; a PDF
without one (a scan) is refused by name, never indexed as empty."""

from __future__ import annotations

import io
import logging

from qa.errors import IngestError
from qa.ingest import Document, sha256_bytes
from qa.ingest.dates import iso_date

logging.getLogger("pypdf").setLevel(logging.ERROR)


def convert(data: bytes, name: str) -> list[Document]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        info = reader.metadata
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as e:
        raise IngestError(f"{name}: not a readable PDF ({type(e).__name__}: {e})") from e
    text = "\n\n".join(p for p in pages if p)
    if not text.strip():
        raise IngestError(f"{name}: the PDF has no text layer (a scan?); run OCR on it first")

    def field(value: object) -> str | None:
        return " ".join(str(value).split()) or None if value else None

    title = field(info.title) if info is not None else None
    author = field(info.author) if info is not None else None
    date = None
    if info is not None:
        try:
            created = info.creation_date
        except (ValueError, TypeError):
            created = None
        date = created.date().isoformat() if created is not None else None
    return [Document(text=text, sha256=sha256_bytes(data), title=title, author=author, date=iso_date(date))]
