"""Ingestion: one converter per input format, each turning the bytes of one input into
documents (text plus title, date, source, url, author where known).

- ``.txt`` / ``.md``: the text as it is (:mod:`qa.ingest.text`).
- ``.html`` / ``.htm``: the article's main text and metadata, by trafilatura (:mod:`qa.ingest.html`).
- ``.pdf``: the text layer, by pypdf (:mod:`qa.ingest.pdf`).
- ``.jsonl`` and ``.json``: one article per record (:mod:`qa.ingest.records`).
- URLs and RSS/Atom feeds: fetched with httpx, parsed with feedparser (:mod:`qa.ingest.fetch`).

The extracted text is the article: what is chunked, stored and cited.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from qa.errors import IngestError


@dataclass
class Document:
    """One converted input, before it becomes an article. ``sha256`` fingerprints the original
    (the page's bytes, the record's JSON), so re-adding the same input changes nothing."""

    text: str
    sha256: str
    title: str | None = None
    date: str | None = None  # ISO 8601 (YYYY-MM-DD)
    source: str | None = None
    url: str | None = None
    author: str | None = None
    key: str | None = None  # a record's own id within its file (JSONL), else None
    problems: list[str] = field(default_factory=list)  # records of the same file that were skipped


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(fields: Mapping[str, str | None]) -> str:
    """SHA-256 of a record's fields that are set, as canonical JSON (keys sorted): the version of
    an article written with metadata, which changes when any of them does."""
    record = {k: v for k, v in fields.items() if v is not None}
    return sha256_bytes(json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8"))


Converter = Callable[[bytes, str], list[Document]]


def _converters() -> dict[str, Converter]:
    from qa.ingest import html, pdf, records, text

    return {".txt": text.convert, ".md": text.convert, ".html": html.convert, ".htm": html.convert,
            ".pdf": pdf.convert, ".jsonl": records.convert_jsonl, ".json": records.convert_json}


SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf", ".jsonl", ".json")
RECORD_SUFFIXES = (".jsonl", ".json")  # files that may hold many articles


def holds_records(path: Path, docs: list[Document]) -> bool:
    """Whether the documents of ``path`` are records of an archive (one id each, under the file's)
    rather than the file's one article: any ``.jsonl``, a ``.json`` list."""
    suffix = path.suffix.lower()
    return suffix == ".jsonl" or (suffix in RECORD_SUFFIXES and (len(docs) > 1 or docs[0].key is not None))


def convert(data: bytes, name: str) -> list[Document]:
    """The documents in ``data``, an input called ``name`` (its suffix says the format).

    Raises:
        IngestError: the input holds no article (the message names it and says why).
    """
    suffix = Path(name).suffix.lower()
    conv = _converters().get(suffix)
    if conv is None:
        raise IngestError(f"{name}: {suffix or 'no suffix'} is not a format this reads ({', '.join(SUFFIXES)})")
    return conv(data, name)


def convert_file(path: Path, max_bytes: int) -> list[Document]:
    """The documents of the file at ``path``; IngestError if unreadable, too big or empty."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise IngestError(f"{path}: {size:,} bytes is over the limit of {max_bytes:,} (QA_MAX_FILE_BYTES)")
        data = path.read_bytes()
    except OSError as e:
        raise IngestError(f"{path}: cannot read it ({e.strerror or e})") from e
    return convert(data, str(path))
