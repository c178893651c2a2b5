"""``.jsonl`` (one JSON object per line) and ``.json`` (one object, or a list of them): an
article per record, with ``text`` and optional ``id``, ``title``, ``date``, ``source``, ``url``,
``author`` (the common layout of news dumps).

A malformed record is skipped with a message naming its line (or position); the file's other
records are still read.
"""

from __future__ import annotations

import json
from typing import Any

from qa.errors import IngestError
from qa.ingest import Document, sha256_bytes
from qa.ingest.dates import iso_date
from qa.ingest.text import decode_utf8

FIELDS = ("title", "date", "source", "url", "author")
_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _record(obj: Any, where: str) -> Document:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: not a JSON object")
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: no \"text\" (a non-empty string)")
    meta: dict[str, str | None] = {}
    for name in FIELDS:
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}: \"{name}\" is not a string")
        meta[name] = " ".join(value.split()) or None if value else None
    key = obj.get("id")
    if key is not None:
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        if not isinstance(key, str) or not key or not set(key) <= _KEY_CHARS or ".." in key or len(key) > 128:
            raise ValueError(f"{where}: \"id\" must be letters, digits, '.', '-' or '_' (up to 128)")
    date = iso_date(meta["date"])
    if meta["date"] and date is None:
        raise ValueError(f"{where}: \"date\" {meta['date']!r} is not a date")
    canonical = json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return Document(text=text, sha256=sha256_bytes(canonical), title=meta["title"], date=date,
                    source=meta["source"], url=meta["url"], author=meta["author"], key=key)


def _collect(items: list[tuple[str, Any]], name: str, problems: list[str] | None = None) -> list[Document]:
    """The documents of ``items`` (where, object); ``problems`` (already found, e.g. lines that are
    not JSON) and those of bad records go on the first document, naming the file."""
    docs: list[Document] = []
    problems = list(problems or [])
    keys: dict[str, str] = {}
    for where, obj in items:
        try:
            doc = _record(obj, where)
        except ValueError as e:
            problems.append(f"{name}: {e}")
            continue
        if doc.key is not None:
            if doc.key in keys:
                problems.append(f"{name}: {where}: id {doc.key!r} repeats {keys[doc.key]}")
                continue
            keys[doc.key] = where
        docs.append(doc)
    if not docs:
        raise IngestError(f"{name}: no readable record" + (f" ({problems[0]})" if problems else ""))
    docs[0].problems = problems
    return docs


def convert_jsonl(data: bytes, name: str) -> list[Document]:
    items: list[tuple[str, Any]] = []
    bad: list[str] = []
    for i, line in enumerate(decode_utf8(data, name).splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append((f"line {i}", json.loads(line)))
        except json.JSONDecodeError as e:
            bad.append(f"{name}: line {i}: not JSON ({e.msg} at column {e.colno})")
    return _collect(items, name, bad)


def convert_json(data: bytes, name: str) -> list[Document]:
    try:
        obj = json.loads(decode_utf8(data, name))
    except json.JSONDecodeError as e:
        raise IngestError(f"{name}: not JSON ({e.msg} at line {e.lineno})") from e
    if isinstance(obj, list):
        return _collect([(f"record {i}", o) for i, o in enumerate(obj, 1)], name)
    try:
        doc = _record(obj, "the object")
    except ValueError as e:
        raise IngestError(f"{name}: {e}") from e
    doc.key = None  # a single object is the file's one article: its id is the file's
    if isinstance(obj.get("sha256"), str) and len(obj["sha256"]) == 64:
        doc.sha256 = obj["sha256"]  # the original's (a page or PDF added with `qa add`), kept across rebuilds
    return [doc]
