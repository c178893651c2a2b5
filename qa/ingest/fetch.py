"""Web addresses: fetch a page, PDF or RSS/Atom feed with httpx (timeouts, a size limit,
content-type checks, bounded redirects) and convert it like a saved file; a feed adds the page
of every item (feedparser), each item's failure reported apart from the others."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from qa.errors import IngestError
from qa.ingest import Document, html, pdf, text
from qa.ingest.dates import iso_date

if TYPE_CHECKING:
    import httpx

USER_AGENT = "article-qa/0.1 (+https://github.com/article-qa)"
HTML_TYPES = {"text/html", "application/xhtml+xml"}
PDF_TYPES = {"application/pdf"}
FEED_TYPES = {"application/rss+xml", "application/atom+xml", "application/xml", "text/xml", "application/rdf+xml"}
TEXT_TYPES = {"text/plain", "text/markdown"}


@dataclass(frozen=True)
class FetchLimits:
    timeout_s: float = 15.0
    max_bytes: int = 20_000_000
    max_redirects: int = 5
    max_feed_items: int = 200


@dataclass
class Fetched:
    url: str  # after redirects
    content_type: str
    data: bytes


def is_url(item: str) -> bool:
    return bool(re.match(r"(?i)^https?://", item))


def url_doc_id(url: str) -> str:
    """A readable, stable doc id for a web address: host and path, e.g.
    ``example.com-news-2025-06-02-talks`` (a hash added where it had to be cut)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    raw = f"{host}{parts.path}" + (f"-{parts.query}" if parts.query else "")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).replace("..", ".").strip("-.")
    slug = re.sub(r"\.(html?|php|aspx?)$", "", slug)
    if not slug or len(slug) > 100:
        slug = f"{slug[:90].rstrip('-.')}-{hashlib.sha256(url.encode()).hexdigest()[:8]}".lstrip("-.")
    return slug


def make_client(limits: FetchLimits) -> httpx.Client:
    """An httpx client with the limits' timeout and redirect bound."""
    import httpx

    return httpx.Client(follow_redirects=True, max_redirects=limits.max_redirects,
                        timeout=httpx.Timeout(limits.timeout_s), headers={"User-Agent": USER_AGENT})


def fetch(url: str, limits: FetchLimits, client: httpx.Client | None = None) -> Fetched:
    """The body of ``url``. IngestError (naming the URL) for a timeout, a 4xx/5xx answer, too
    many redirects, a body over the size limit, or a connection that fails."""
    import httpx

    own = client is None
    c = client if client is not None else make_client(limits)
    try:
        with c.stream("GET", url) as r:
            if r.status_code >= 400:
                raise IngestError(f"{url}: the server answered {r.status_code} {r.reason_phrase}")
            declared = r.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                raise IngestError(f"{url}: {int(declared):,} bytes is over the limit of {limits.max_bytes:,}")
            body = bytearray()
            for part in r.iter_bytes():
                body += part
                if len(body) > limits.max_bytes:
                    raise IngestError(f"{url}: the body is over the limit of {limits.max_bytes:,} bytes")
            ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
            return Fetched(str(r.url), ctype, bytes(body))
    except httpx.TooManyRedirects:
        raise IngestError(f"{url}: redirected more than {limits.max_redirects} times") from None
    except httpx.TimeoutException:
        raise IngestError(f"{url}: no answer within {limits.timeout_s:g}s") from None
    except httpx.InvalidURL as e:
        raise IngestError(f"{url}: not a valid web address ({e})") from None
    except httpx.HTTPError as e:
        raise IngestError(f"{url}: cannot fetch it ({type(e).__name__}: {e})") from None
    finally:
        if own:
            c.close()


def _kind(f: Fetched) -> str:
    if f.content_type in HTML_TYPES:
        return "html"
    if f.content_type in PDF_TYPES or f.data[:5] == b"%PDF-":
        return "pdf"
    if f.content_type in FEED_TYPES or (f.content_type in ("", "application/octet-stream")
                                        and re.match(rb"\s*<\?xml", f.data[:200])):
        return "feed"
    if f.content_type in TEXT_TYPES:
        return "text"
    raise IngestError(f"{f.url}: content type {f.content_type or 'unknown'!r} is not a page, PDF or feed")


def page_document(f: Fetched) -> Document:
    kind = _kind(f)
    if kind == "html":
        doc = html.convert(f.data, f.url, url=f.url)[0]
    elif kind == "pdf":
        doc = pdf.convert(f.data, f.url)[0]
    elif kind == "text":
        doc = text.convert(f.data, f.url)[0]
    else:
        raise IngestError(f"{f.url}: a feed where a page was expected")
    doc.url = doc.url or f.url
    return doc


def documents_from_url(url: str, limits: FetchLimits, say: Callable[[str], None] | None = None
                       ) -> tuple[list[tuple[str, Document]], list[str]]:
    """``(doc_id, document)`` of a page or PDF, or of every item of a feed, and the problems of
    the items that could not be added (a feed's other items are still added).

    Raises:
        IngestError: the URL itself cannot be fetched or read.
    """
    with make_client(limits) as client:
        first = fetch(url, limits, client)
        if _kind(first) != "feed":
            doc = page_document(first)
            return [(url_doc_id(doc.url or first.url), doc)], []
        import feedparser

        feed = feedparser.parse(first.data)
        if not feed.entries:
            why = f" ({type(feed.bozo_exception).__name__})" if feed.get("bozo") else ""
            raise IngestError(f"{url}: not an RSS/Atom feed with items{why}")
        outlet = " ".join(str(feed.feed.get("title", "")).split()) or None
        out: list[tuple[str, Document]] = []
        problems: list[str] = []
        for entry in feed.entries[: limits.max_feed_items]:
            link = entry.get("link")
            if not link:
                problems.append(f"{url}: an item without a link ({entry.get('title', 'untitled')!r})")
                continue
            try:
                doc = page_document(fetch(link, limits, client))
            except IngestError as e:
                problems.append(str(e))
                continue
            doc.title = doc.title or entry.get("title")
            doc.date = doc.date or iso_date(entry.get("published") or entry.get("updated"))
            doc.author = doc.author or entry.get("author")
            doc.source = doc.source or outlet
            out.append((url_doc_id(doc.url or link), doc))
            if say is not None:
                say(f"fetched {link}")
        return out, problems
