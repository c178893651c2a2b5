"""``qa add PATH|URL ...``: convert each item and add it to the index through the pipeline's
journal, one article at a time; a bad item is reported by name and the others still go in."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from qa.errors import IngestError, QAError
from qa.ingest import SUFFIXES, Document, convert_file, holds_records
from qa.ingest.fetch import FetchLimits, documents_from_url, is_url

if TYPE_CHECKING:
    from qa.pipeline import QAPipeline


@dataclass
class AddReport:
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one line each, naming the item
    in_corpus: list[str] = field(default_factory=list)  # files inside the corpus folder: indexed where they are

    def summary(self) -> str:
        parts = [f"added {len(self.added)}", f"replaced {len(self.replaced)}", f"unchanged {len(self.unchanged)}"]
        if self.in_corpus:
            parts.append(f"{len(self.in_corpus)} file(s) already in the corpus folder, indexed in place")
        if self.failed:
            parts.append(f"failed {len(self.failed)}")
        return ", ".join(parts) + " article(s)"


def safe_id(name: str) -> str:
    """``name`` as a doc id a write accepts (letters, digits, '.', '-', '_')."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).replace("..", ".").strip("-.")
    return slug[:120] or "article"


def documents_of_file(path: Path, max_bytes: int) -> list[tuple[str, Document]]:
    """``(doc_id, document)`` of a file: its stem, or ``<stem>-<record id or number>`` per record."""
    docs = convert_file(path, max_bytes)
    stem = safe_id(path.stem)
    if holds_records(path, docs):
        return [(safe_id(f"{stem}-{d.key or n}"), d) for n, d in enumerate(docs, 1)]
    return [(stem, docs[0])]


def _files(item: Path) -> list[Path]:
    if item.is_dir():
        return sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                      and not any(part.startswith(".") for part in p.relative_to(item).parts))
    return [item]


def add_items(pipeline: QAPipeline, items: list[str], say: Callable[[str], None], progress: bool = False,
              limits: FetchLimits | None = None, max_file_bytes: int = 50_000_000) -> AddReport:
    """Add every item (a file, a folder, a URL, a feed URL); the report says what happened to each."""
    limits = limits if limits is not None else FetchLimits()
    report = AddReport()
    work: list[tuple[str, str, Document]] = []  # (what to call it, doc_id, document)
    for item in items:
        try:
            if is_url(item):
                found, problems = documents_from_url(item, limits, say if progress else None)
                report.failed.extend(problems)
                work.extend((item, d, doc) for d, doc in found)
                continue
            path = Path(item).expanduser()
            if not path.exists():
                raise IngestError(f"{item}: no such file or folder")
            for f in _files(path):
                if f.resolve().is_relative_to(pipeline.corpus_dir.resolve()):
                    # already part of the corpus folder, so indexed in place when the index was loaded
                    report.in_corpus.append(str(f))
                    continue
                try:
                    found_docs = documents_of_file(f, max_file_bytes)
                except IngestError as e:
                    report.failed.append(str(e))
                    continue
                report.failed.extend(found_docs[0][1].problems)
                work.extend((str(f), d, doc) for d, doc in found_docs)
        except IngestError as e:
            report.failed.append(str(e))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(work, desc="adding", unit="article")
    else:
        iterator = work
    for name, doc_id, doc in iterator:
        try:
            _, replaced, unchanged = pipeline.add_converted(doc_id, doc)
        except QAError as e:
            report.failed.append(f"{name}: {e}")
            continue
        (report.unchanged if unchanged else report.replaced if replaced else report.added).append(doc_id)
    for line in report.failed:
        say(f"error: {line}")
    return report


def ingest_one(text: str | None, html_page: str | None, meta: dict[str, str | None], max_chars: int) -> Document:
    """One document from an API write: ``text`` with metadata, a page's ``html`` (metadata given
    override what the page says), or the page or PDF at ``meta["url"]``.

    Raises:
        IngestError: the page holds no article, or the URL cannot be fetched (or is a feed).
        InvalidDocument: a date that is not one.
    """
    from qa.errors import InvalidDocument
    from qa.ingest import fingerprint, html
    from qa.ingest.dates import iso_date
    from qa.ingest.fetch import fetch, page_document

    if text is not None:
        doc = Document(text=text, sha256="")  # its fingerprint covers the metadata: set below
    elif html_page is not None:
        doc = html.convert(html_page.encode("utf-8"), "the html", url=meta.get("url"))[0]
    else:
        url = meta["url"] or ""
        if not is_url(url):
            raise IngestError(f"{url!r}: not an http(s) address")
        doc = page_document(fetch(url, FetchLimits()))
    if len(doc.text) > max_chars:
        raise InvalidDocument(f"the article text has {len(doc.text)} characters; the limit is {max_chars}")
    given = {}
    for name in ("title", "source", "url", "author"):
        value = meta.get(name)
        if value:
            given[name] = " ".join(value.split())
    if meta.get("date"):
        day = iso_date(meta["date"])
        if day is None:
            raise InvalidDocument(f"date {meta['date']!r} is not a date; use YYYY-MM-DD")
        given["date"] = day
    for name, value in given.items():
        setattr(doc, name, value)
    # The version (sha256, the ETag) covers the metadata given, so that a new title or date is a
    # write, not "unchanged": the text's fields, or the fetched original and what overrides it.
    if text is not None:
        doc.sha256 = fingerprint({"text": doc.text, "title": doc.title, "date": doc.date, "source": doc.source,
                                  "url": doc.url, "author": doc.author})
    elif given:
        doc.sha256 = fingerprint({"original": doc.sha256, **given})
    return doc
