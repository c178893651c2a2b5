"""Corpus stage: every article file under a folder (``.txt``, ``.md``, ``.html``, ``.pdf``, and the
records of ``.jsonl``/``.json`` archives) becomes an article through its converter
(:mod:`qa.ingest`); plain text is kept exact."""

from __future__ import annotations

import glob
import hashlib
import logging
import re
from pathlib import Path

from qa.errors import CorpusError, IngestError
from qa.ingest import SUFFIXES, Document, convert_file, holds_records
from qa.types import Article

log = logging.getLogger(__name__)

ARTICLE_SUFFIXES = SUFFIXES  # every format a corpus folder may hold
TEXT_SUFFIXES = (".txt", ".md")  # the files a plain-text write may replace
MAX_TITLE_CHARS = 200  # a first line longer than this is a paragraph, not a headline
# "date 2025-06-02", "Date: 2025-06-02", "2025-06-02": an ISO date stated in the article.
_DATE_RE = re.compile(r"\b(?:date\s*:?\s*)?(\d{4}-\d{2}-\d{2})\b", re.IGNORECASE)
_MD_DECOR_RE = re.compile(r"^\s*#+\s*|\*\*|__")


def sha256_text(text: str) -> str:
    """Fingerprint of an article's exact text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_LEADING_DATE_RE = re.compile(r"^\s*(?:date\s*:?\s*)?\d{4}-\d{2}-\d{2}\b\s*", re.IGNORECASE)


def detect_title(text: str) -> str:
    """First non-empty line, markdown heading marks, bold and a leading date marker ("date
    2025-06-02") stripped; empty when that line is a paragraph (over 200 characters), not a headline."""
    for line in text.splitlines():
        if line.strip():
            title = _MD_DECOR_RE.sub("", _LEADING_DATE_RE.sub("", line)).strip()
            return title if len(title) <= MAX_TITLE_CHARS else ""
    return ""


def detect_date(text: str) -> str | None:
    """The first ISO date (``YYYY-MM-DD``) the article states, if any."""
    m = _DATE_RE.search(text)
    return m.group(1) if m else None


def make_article(doc_id: str, text: str, path: str = "", doc: Document | None = None) -> Article:
    """Build an :class:`Article` from its exact text; the metadata of ``doc`` (a converted
    input) where it has them, else title and date as the text states them."""
    if doc is None:
        return Article(doc_id=doc_id, text=text, title=detect_title(text), date=detect_date(text),
                       sha256=sha256_text(text), path=path)
    return Article(doc_id=doc_id, text=text, title=doc.title or detect_title(text),
                   date=doc.date or detect_date(text), sha256=doc.sha256, path=path, source=doc.source,
                   url=doc.url, author=doc.author)


def doc_id_for(path: Path, root: Path) -> str:
    """File name without extension; relative path (with ``/``) for nested folders."""
    return path.relative_to(root).with_suffix("").as_posix()


def derive_doc_ids(files: list[Path], root: Path) -> dict[Path, str]:
    """The doc id of each article file: its name without extension, or, where two files share
    that stem (``foo.md`` and ``foo.txt``), the name with its extension, so that no two files
    get one id.

    Raises:
        CorpusError: two files still map to one id (``a.md.txt`` next to ``a.md`` and ``a.txt``).
    """
    stems: dict[str, list[Path]] = {}
    for p in files:
        stems.setdefault(doc_id_for(p, root), []).append(p)
    ids: dict[Path, str] = {}
    owner: dict[str, Path] = {}
    for stem, paths in stems.items():
        for p in paths:
            doc_id = stem if len(paths) == 1 else p.relative_to(root).as_posix()
            if doc_id in owner:
                raise CorpusError(f"{owner[doc_id]} and {p} would both be article {doc_id!r}; rename one of them")
            owner[doc_id] = p
            ids[p] = doc_id
    return ids


def doc_id_of_new_file(path: Path, root: Path, replacing: Path | None = None) -> str:
    """The id the corpus loader will give ``path`` (which may not exist yet) among the files
    already in ``root``, ``replacing`` (a file the write removes) left out. Only its folder's
    files whose names start like its own can share its stem, so only those are listed (a write
    does not scan the whole corpus)."""
    prefix = path.name.split(".", 1)[0]
    siblings = path.parent.glob(glob.escape(prefix) + "*") if path.parent.is_dir() else iter(())
    files = [p for p in siblings if p not in (path, replacing) and p.is_file()
             and p.suffix.lower() in ARTICLE_SUFFIXES and not p.name.startswith(".")]
    return derive_doc_ids(sorted([*files, path]), root)[path]


def article_files(root: Path) -> list[Path]:
    """Article files under ``root``, sorted, hidden files and folders skipped."""
    files = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in ARTICLE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(files)


def read_articles(path: Path, doc_id: str, max_bytes: int = 50_000_000) -> list[Article]:
    """The articles of one file: one, or one per record of an archive (ids ``<doc_id>/<record id>``,
    or ``<doc_id>/<n>`` for a record without one). An unreadable or empty file, or a bad record,
    is skipped with a warning that names it."""
    try:
        docs = convert_file(path, max_bytes)
    except IngestError as e:
        log.warning("skipping %s", e)
        return []
    for problem in docs[0].problems:
        log.warning("skipping a record of %s", problem)
    if holds_records(path, docs):
        return [make_article(f"{doc_id}/{d.key or n}", d.text, str(path), d) for n, d in enumerate(docs, 1)]
    return [make_article(doc_id, docs[0].text, str(path), docs[0])]


def load_corpus(root: Path | str, max_file_bytes: int = 50_000_000) -> list[Article]:
    """Load every article under ``root``, each under a unique doc id (:func:`derive_doc_ids`).

    Raises:
        CorpusError: the folder is missing, it holds no readable article, or two of its files
            cannot be told apart by id.

    Example:
        >>> arts = load_corpus("seeds")  # doctest: +SKIP
        >>> arts[0].doc_id
        '000_9d76441e7a41c4fe'
    """
    root = Path(root)
    kinds = "articles (.txt, .md, .html, .pdf, .jsonl, .json)"
    if not root.exists():
        raise CorpusError(f"corpus folder {root} does not exist; point to a folder of {kinds}")
    if not root.is_dir():
        raise CorpusError(f"corpus path {root} is not a folder; point to a folder of {kinds}")
    files = article_files(root)
    ids = derive_doc_ids(files, root)
    articles: list[Article] = []
    owner: dict[str, Path] = {}
    for p in files:
        for a in read_articles(p, ids[p], max_file_bytes):
            if a.doc_id in owner:  # "a/1" from a.jsonl and from the file a/1.txt
                raise CorpusError(f"{owner[a.doc_id]} and {p} would both be article {a.doc_id!r}; rename one of them")
            owner[a.doc_id] = p
            articles.append(a)
    if not articles:
        raise CorpusError(f"no readable article in {root}; add {kinds} there")
    return articles


def corpus_fingerprints(root: Path | str) -> dict[str, str]:
    """``doc_id -> sha256`` of the articles under ``root`` (what the index manifest records)."""
    return {a.doc_id: a.sha256 for a in load_corpus(root)}
