"""Durable article writes: the corpus folder is the source of truth, the index is derived.

A write puts the article file in place atomically and fsyncs it *before* the index is updated,
so an acknowledged write survives a crash at any later point: on restart the index is found
stale and rebuilt from the folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from qa.corpus import ARTICLE_SUFFIXES, TEXT_SUFFIXES, doc_id_of_new_file
from qa.durable import fsync_dir
from qa.errors import CorpusError, InvalidDocument
from qa.index import write_atomic
from qa.ingest import Document

# Letters, digits, dot, dash, underscore; no path separators, no "..", no control characters.
_DOC_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def validate_doc_id(doc_id: str, max_chars: int) -> str:
    """``doc_id`` if it is a safe file stem; raises InvalidDocument otherwise."""
    if not isinstance(doc_id, str) or not doc_id:
        raise InvalidDocument("doc_id must be a non-empty string")
    if len(doc_id) > max_chars:
        raise InvalidDocument(f"doc_id has {len(doc_id)} characters; the limit is {max_chars}")
    if not _DOC_ID_RE.fullmatch(doc_id) or ".." in doc_id:
        raise InvalidDocument(
            "doc_id may contain only letters, digits, '.', '-' and '_' (no path separators, '..' or control "
            f"characters), got {doc_id!r}"
        )
    return doc_id


def validate_text(text: str, max_chars: int) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidDocument("text must not be empty")
    if len(text) > max_chars:
        raise InvalidDocument(f"text has {len(text)} characters; the limit is {max_chars} (QA_MAX_DOCUMENT_CHARS)")
    _check_chars(text, "text")
    return text


def _check_chars(value: str, what: str) -> None:
    if "\x00" in value:
        raise InvalidDocument(f"{what} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate cannot be stored as UTF-8
        raise InvalidDocument(f"{what} is not valid Unicode (unpaired surrogate at character {e.start})") from e


def validate_title(title: str | None, max_chars: int) -> str | None:
    """``title`` if acceptable: no NUL, valid Unicode, at most ``max_chars`` characters."""
    if title is None:
        return None
    if not isinstance(title, str):
        raise InvalidDocument("title must be a string")
    if len(title) > max_chars:
        raise InvalidDocument(f"title has {len(title)} characters; the limit is {max_chars}")
    _check_chars(title, "title")
    return title


def compose_text(text: str, title: str | None) -> str:
    """The article as stored: ``title`` becomes the first line unless the text already starts with it."""
    if title is None or not title.strip():
        return text
    title = " ".join(title.split())
    first = text.lstrip().split("\n", 1)[0].strip()
    return text if first == title else f"{title}\n{text}"


def article_path(corpus_dir: Path, doc_id: str, new_suffix: str = ".txt") -> Path:
    """The existing file for ``doc_id`` (any article suffix; ``foo.md`` itself for an id that
    keeps its extension because ``foo.txt`` exists too), or ``<doc_id>.txt`` for a new one."""
    named = corpus_dir / doc_id
    if named.suffix.lower() in ARTICLE_SUFFIXES and named.is_file():
        return named
    for suffix in ARTICLE_SUFFIXES:
        p = corpus_dir / f"{doc_id}{suffix}"
        if p.is_file():
            return p
    return corpus_dir / f"{doc_id}{new_suffix}"


def check_writable_id(corpus_dir: Path, doc_id: str, new_suffix: str = ".txt") -> Path:
    """The file that article ``doc_id`` is written to; InvalidDocument if the corpus loader would
    read that file back under another id (``foo`` where ``foo.md`` and ``foo.txt`` both exist)."""
    path = article_path(corpus_dir, doc_id, new_suffix)
    try:
        derived = doc_id_of_new_file(path, corpus_dir)
    except CorpusError as e:
        raise InvalidDocument(f"doc_id {doc_id!r} cannot be stored: {e}") from e
    if derived != doc_id:
        raise InvalidDocument(f"doc_id {doc_id!r} is ambiguous: {path.name} in the corpus folder is article "
                              f"{derived!r} (ids keep their extension where two files share a name); use {derived!r}")
    return path


def write_article(corpus_dir: Path, doc_id: str, text: str) -> Path:
    """Durably write the article file (atomic replace, fsynced) as plain text."""
    corpus_dir.mkdir(parents=True, exist_ok=True)
    path = check_writable_id(corpus_dir, doc_id)
    if path.suffix.lower() not in TEXT_SUFFIXES:
        raise InvalidDocument(f"article {doc_id!r} comes from {path.name}; plain text would replace that file: "
                              "delete the article first, or add the new version the way the old one came")
    write_atomic(path, text.encode("utf-8"))
    return path


def write_record_file(corpus_dir: Path, doc_id: str, doc: Document) -> Path:
    """Durably write a converted document (a page, a PDF, a fetched URL) as ``<doc_id>.json``:
    its extracted text and metadata, and the original's SHA-256, so that the folder rebuilds to
    the same article."""
    corpus_dir.mkdir(parents=True, exist_ok=True)
    path = check_writable_id(corpus_dir, doc_id, ".json")
    if path.suffix.lower() != ".json":
        raise InvalidDocument(f"article {doc_id!r} comes from {path.name}; delete it first to add it as a page")
    record = {"text": doc.text, "title": doc.title, "date": doc.date, "source": doc.source, "url": doc.url,
              "author": doc.author, "sha256": doc.sha256}
    write_atomic(path, (json.dumps(record, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))
    return path


@dataclass(frozen=True)
class Previous:
    """An article file's content before a write, kept under a hidden name the corpus loader skips."""

    path: Path
    kept: Path


def keep_previous(corpus_dir: Path, doc_id: str) -> Previous | None:
    """Keep the current file of ``doc_id`` (a hard link: no data copied, so it works on a full
    disk) until the write is known to have succeeded; None if there is no file."""
    path = article_path(corpus_dir, doc_id)
    if not path.is_file():
        return None
    kept = path.with_name(f".{path.name}.{uuid.uuid4().hex}.prev")
    try:
        os.link(path, kept)
    except OSError:  # a file system without hard links
        shutil.copyfile(path, kept)
    return Previous(path, kept)


def restore_previous(corpus_dir: Path, doc_id: str, previous: Previous | None) -> None:
    """Undo a write or delete whose index update failed: the old file back, or the new one gone."""
    if previous is not None:
        os.replace(previous.kept, previous.path)
    else:
        article_path(corpus_dir, doc_id).unlink(missing_ok=True)
    fsync_dir(corpus_dir)


def discard_previous(previous: Previous | None) -> None:
    if previous is not None:
        previous.kept.unlink(missing_ok=True)




def delete_article(corpus_dir: Path, doc_id: str) -> bool:
    """Remove the article file durably; False if there was none."""
    path = article_path(corpus_dir, doc_id)
    if not path.is_file():
        return False
    path.unlink()
    fsync_dir(corpus_dir)
    return True
