"""``.html`` / ``.htm``: a news page's main text (no navigation, ads or comments) and its title,
date, author and outlet, by trafilatura, the maintained extractor for exactly this."""

from __future__ import annotations

import logging

from qa.errors import IngestError
from qa.ingest import Document, sha256_bytes

for _name in ("trafilatura", "htmldate", "courlan"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def convert(data: bytes, name: str, url: str | None = None) -> list[Document]:
    import trafilatura

    try:
        extracted = trafilatura.bare_extraction(data, url=url, with_metadata=True, include_comments=False,
                                                include_tables=True, favor_precision=True)
    except Exception as e:  # trafilatura raises assorted lxml/parser errors on broken input
        raise IngestError(f"{name}: not a readable HTML page ({type(e).__name__})") from e
    text = (getattr(extracted, "text", None) or "").strip() if extracted is not None else ""
    if not text:
        raise IngestError(f"{name}: no article text found in the page")
    def meta(attr: str) -> str | None:
        value = getattr(extracted, attr, None)
        return " ".join(str(value).split()) or None if value else None

    return [Document(text=text, sha256=sha256_bytes(data), title=meta("title"), date=meta("date"),
                     source=meta("sitename") or meta("hostname"), url=meta("url") or url, author=meta("author"))]
