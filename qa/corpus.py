"""Corpus stage: every ``*.txt``/``*.md`` file under a folder is an article, text kept exact."""

from __future__ import annotations

import glob
import hashlib
import logging
import re
from pathlib import Path

from qa.errors import CorpusError
from qa.types import Article

log = logging.getLogger(__name__)

ARTICLE_SUFFIXES = (".txt", ".md")
# "date 2025-06-02", "Date: 2025-06-02", "2025-06-02": an ISO date stated in the article.
_DATE_RE = re.compile(r"\b(?:date\s*:?\s*)?(\d{4}-\d{2}-\d{2})\b", re.IGNORECASE)
_MD_DECOR_RE = re.compile(r"^\s*#+\s*|\*\*|__")


def sha256_text(text: str) -> str:
    """Fingerprint of an article's exact text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def detect_title(text: str) -> str:
    """First non-empty line, markdown heading marks and bold stripped."""
    for line in text.splitlines():
        if line.strip():
            return _MD_DECOR_RE.sub("", line).strip()
    return ""


def detect_date(text: str) -> str | None:
    """The first ISO date (``YYYY-MM-DD``) the article states, if any."""
    m = _DATE_RE.search(text)
    return m.group(1) if m else None


def make_article(doc_id: str, text: str, path: str = "") -> Article:
    """Build an :class:`Article` from its exact text."""
    return Article(
        doc_id=doc_id,
        text=text,
        title=detect_title(text),
        date=detect_date(text),
        sha256=sha256_text(text),
        path=path,
    )


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


def doc_id_of_new_file(path: Path, root: Path) -> str:
    """The id the corpus loader will give ``path`` (which may not exist yet) among the files
    already in ``root``. Only its folder's files whose names start like its own can share its
    stem, so only those are listed (a write does not scan the whole corpus)."""
    prefix = path.name.split(".", 1)[0]
    siblings = path.parent.glob(glob.escape(prefix) + "*") if path.parent.is_dir() else iter(())
    files = [p for p in siblings if p != path and p.is_file() and p.suffix.lower() in ARTICLE_SUFFIXES
             and not p.name.startswith(".")]
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


def read_article(path: Path, root: Path, doc_id: str | None = None) -> Article | None:
    """Read one file as article ``doc_id`` (default: its stem); returns None (with a warning
    naming it) if unreadable or empty."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        log.warning("skipping %s: cannot read it (%s)", path, e.strerror or e)
        return None
    try:
        # newline handling is ours to avoid: bytes -> str keeps CRLF exactly.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        log.warning("skipping %s: not valid UTF-8 (byte %d)", path, e.start)
        return None
    if not text.strip():
        log.warning("skipping %s: the file is empty", path)
        return None
    return make_article(doc_id if doc_id is not None else doc_id_for(path, root), text, str(path))


def load_corpus(root: Path | str) -> list[Article]:
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
    if not root.exists():
        raise CorpusError(f"corpus folder {root} does not exist; point to a folder of .txt/.md articles")
    if not root.is_dir():
        raise CorpusError(f"corpus path {root} is not a folder; point to a folder of .txt/.md articles")
    files = article_files(root)
    ids = derive_doc_ids(files, root)
    articles = [a for p in files if (a := read_article(p, root, ids[p])) is not None]
    if not articles:
        raise CorpusError(f"no readable .txt or .md article in {root}; add UTF-8 articles there")
    return articles


def corpus_fingerprints(root: Path | str) -> dict[str, str]:
    """``doc_id -> sha256`` of the articles under ``root`` (what the index manifest records)."""
    return {a.doc_id: a.sha256 for a in load_corpus(root)}
