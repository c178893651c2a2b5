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
from qa.ingest import Document, fingerprint

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


def text_document(text: str, title: str | None = None) -> Document:
    """A plain-text write with a title, as the record it is stored as (``<doc_id>.json``): the text
    exactly as given, the title (whitespace runs made one space, as a record is read back) beside
    it as metadata, never in the text. Its sha256 fingerprints text and title together, so a new
    title is a new version (a new ETag) and the same write twice changes nothing."""
    title = " ".join(title.split()) or None if title is not None else None
    return Document(text=text, sha256=fingerprint({"text": text, "title": title}), title=title)


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
    return _check_id(article_path(corpus_dir, doc_id, new_suffix), corpus_dir, doc_id)


def _check_id(path: Path, corpus_dir: Path, doc_id: str, replacing: Path | None = None) -> Path:
    try:
        derived = doc_id_of_new_file(path, corpus_dir, replacing)
    except CorpusError as e:
        raise InvalidDocument(f"doc_id {doc_id!r} cannot be stored: {e}") from e
    if derived != doc_id:
        raise InvalidDocument(f"doc_id {doc_id!r} is ambiguous: {path.name} in the corpus folder is article "
                              f"{derived!r} (ids keep their extension where two files share a name); use {derived!r}")
    return path


# A text write is stored as plain text, a write with metadata as a record; either may replace the
# other's file.
_SWITCHABLE = (*TEXT_SUFFIXES, ".json")


def _write_as(corpus_dir: Path, doc_id: str, suffix: str, keeps: tuple[str, ...], data: bytes) -> Path:
    """Durably write the file of article ``doc_id``: in place when its file has a suffix in
    ``keeps``, else as ``<doc_id><suffix>``. A plain-text file and a record file replace each
    other (``foo.txt`` -> ``foo.json`` when a title is added): the new file is written and
    fsynced before the old one is removed, so a crash in between leaves both (the next load names
    them ``foo.txt`` and ``foo.json``) and loses neither."""
    corpus_dir.mkdir(parents=True, exist_ok=True)
    existing = article_path(corpus_dir, doc_id, suffix)
    if existing.is_file() and existing.suffix.lower() == ".json" and not _one_record(existing):
        raise InvalidDocument(f"{existing.name} in the corpus folder is an archive of articles ({doc_id}/...), "
                              f"not article {doc_id!r}; a write cannot replace it: use another doc_id")
    if not existing.is_file() or existing.suffix.lower() in keeps:
        path = check_writable_id(corpus_dir, doc_id, suffix)
        write_atomic(path, data)
        return path
    what = "plain text" if suffix in TEXT_SUFFIXES else "text with metadata (a title, a date, ...)"
    if existing.suffix.lower() not in _SWITCHABLE:
        raise InvalidDocument(f"article {doc_id!r} comes from {existing.name}; {what} would replace that file: "
                              "delete the article first, or add the new version the way the old one came")
    if existing.name == doc_id:  # an id that keeps its extension names that one file
        raise InvalidDocument(f"article {doc_id!r} is the file {existing.name} (its id keeps the extension because "
                              f"another file shares its name); {what} cannot be stored in it: delete it first")
    path = _check_id(corpus_dir / f"{doc_id}{suffix}", corpus_dir, doc_id, replacing=existing)
    write_atomic(path, data)
    existing.unlink()
    fsync_dir(corpus_dir)
    return path


def _one_record(path: Path) -> bool:
    """Whether a ``.json`` file is one article (an object), not an archive (a list of records)."""
    try:
        return isinstance(json.loads(path.read_bytes()), dict)
    except (OSError, ValueError):  # unreadable or not JSON: the loader skips it, so it is no article either
        return True


def write_article(corpus_dir: Path, doc_id: str, text: str) -> Path:
    """Durably write the article file (atomic replace, fsynced) as plain text: its ``.txt`` or
    ``.md`` file in place, else ``<doc_id>.txt`` (replacing the record file of a text written
    with metadata)."""
    return _write_as(corpus_dir, doc_id, ".txt", TEXT_SUFFIXES, text.encode("utf-8"))


def write_record_file(corpus_dir: Path, doc_id: str, doc: Document) -> Path:
    """Durably write a document with metadata (a titled text, a page, a PDF, a fetched URL) as
    ``<doc_id>.json``: its text and metadata, and the original's SHA-256, so that the folder
    rebuilds to the same article (replacing the plain-text file of an article written without)."""
    record = {"text": doc.text, "title": doc.title, "date": doc.date, "source": doc.source, "url": doc.url,
              "author": doc.author, "sha256": doc.sha256}
    data = (json.dumps(record, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    return _write_as(corpus_dir, doc_id, ".json", (".json",), data)


@dataclass(frozen=True)
class Previous:
    """An article file's content before a write, kept under a hidden name the corpus loader skips."""

    path: Path
    kept: Path
    others: frozenset[Path] = frozenset()  # files ``<doc_id>.txt/.md/.json`` besides ``path`` before the write


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
    return Previous(path, kept, frozenset(_kind_files(corpus_dir, doc_id)) - {path})


def _kind_files(corpus_dir: Path, doc_id: str) -> list[Path]:
    """The files a text or record write of ``doc_id`` may create or replace."""
    return [p for p in (corpus_dir / f"{doc_id}{suffix}" for suffix in _SWITCHABLE) if p.is_file()]


def restore_previous(corpus_dir: Path, doc_id: str, previous: Previous | None) -> None:
    """Undo a write or delete whose index update failed: the old file back, or the new one gone
    (and the new one of the other kind, where the write replaced ``foo.txt`` by ``foo.json``)."""
    if previous is not None:
        os.replace(previous.kept, previous.path)
        for other in _kind_files(corpus_dir, doc_id):
            if other != previous.path and other not in previous.others:  # written by this write
                other.unlink()
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
