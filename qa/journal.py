"""The write journal of an index version: one fsynced record per added, replaced or deleted article.

A record is ``QAJ1``, the payload's length (8 bytes, little-endian), its CRC-32 (4 bytes), then
the payload: a JSON header's length (4 bytes), the header, and for an added article its chunk
vectors (float32, one row per chunk). A crash in the middle of an append leaves a last record
that is short or fails its CRC; reading stops there with a warning (the article file itself was
written first, so the index is found stale for it and brought up to date). A bad record that is
followed by more data is damage, reported as :class:`IndexCorrupt`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa.durable import fsync_dir
from qa.errors import IndexCorrupt

log = logging.getLogger(__name__)

JOURNAL = "journal.log"
MAGIC = b"QAJ1"
_FRAME = struct.Struct("<4sQI")  # magic, payload length, CRC-32 of the payload
_HEADER_LEN = struct.Struct("<I")


@dataclass(frozen=True)
class PutRecord:
    """An article added or replaced: its metadata and text, chunk offsets and chunk vectors."""

    doc_id: str
    text: str
    title: str
    date: str | None
    sha256: str
    path: str
    spans: list[tuple[int, int]]
    vectors: np.ndarray
    meta: dict[str, str | None] = field(default_factory=dict)  # source, url, author


@dataclass(frozen=True)
class DeleteRecord:
    """An article deleted."""

    doc_id: str


Record = PutRecord | DeleteRecord


def encode(record: Record) -> bytes:
    """The framed bytes of ``record``."""
    if isinstance(record, PutRecord):
        header: dict[str, Any] = {
            "op": "put", "doc_id": record.doc_id, "text": record.text, "title": record.title, "date": record.date,
            "sha256": record.sha256, "path": record.path, "spans": [list(s) for s in record.spans],
            "dim": int(record.vectors.shape[1]), "meta": record.meta,
        }
        body = np.ascontiguousarray(record.vectors, dtype="<f4").tobytes()
    else:
        header, body = {"op": "delete", "doc_id": record.doc_id}, b""
    head = json.dumps(header, ensure_ascii=False).encode("utf-8")
    payload = _HEADER_LEN.pack(len(head)) + head + body
    return _FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def _decode(payload: bytes) -> Record:
    """The record in a payload whose CRC matched; ValueError if it is not a record."""
    (n,) = _HEADER_LEN.unpack_from(payload)
    h = json.loads(payload[_HEADER_LEN.size : _HEADER_LEN.size + n].decode("utf-8"))
    if not isinstance(h, dict) or not isinstance(h.get("doc_id"), str):
        raise ValueError("the header is not a record")
    if h.get("op") == "delete":
        return DeleteRecord(h["doc_id"])
    if h.get("op") != "put":
        raise ValueError(f"unknown operation {h.get('op')!r}")
    spans = [(int(s), int(e)) for s, e in h["spans"]]
    text, dim = h["text"], int(h["dim"])
    if not isinstance(text, str) or any(not 0 <= s <= e <= len(text) for s, e in spans):
        raise ValueError("chunk offsets outside the article text")
    vectors = np.frombuffer(payload, dtype="<f4", offset=_HEADER_LEN.size + n).astype(np.float32)
    if dim < 1 or len(vectors) != len(spans) * dim:
        raise ValueError(f"{len(vectors)} numbers for {len(spans)} vectors of dimension {dim}")
    meta = h.get("meta") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str | None) for v in meta.values()):
        raise ValueError("the metadata is not name -> string")
    return PutRecord(h["doc_id"], text, str(h["title"]), h["date"], str(h["sha256"]), str(h.get("path", "")),
                     spans, vectors.reshape(len(spans), dim), meta)


def read_journal(path: Path) -> list[Record]:
    """Every complete record of the journal at ``path`` (none if there is no file).

    Raises:
        IndexCorrupt: a record that fails its checks is followed by more data.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise IndexCorrupt(f"{path} is unreadable ({e.strerror or e}); rebuild the index") from e
    records: list[Record] = []
    pos = 0
    while pos < len(data):
        problem = None
        if len(data) - pos < _FRAME.size:
            problem = "a short record header"
        else:
            magic, length, crc = _FRAME.unpack_from(data, pos)
            end = pos + _FRAME.size + length
            if magic != MAGIC:
                if not data[pos:].strip(b"\x00"):  # a file system that zero-fills an interrupted append
                    problem = "zeros"
                else:
                    raise IndexCorrupt(f"{path} has no record at byte {pos} (garbled?); rebuild the index")
            elif end > len(data):
                problem = f"a record of {length} bytes with {len(data) - pos - _FRAME.size} present"
            elif zlib.crc32(data[pos + _FRAME.size : end]) != crc:
                if end < len(data):
                    raise IndexCorrupt(f"{path}: record {len(records) + 1} at byte {pos} does not match its "
                                       "checksum (garbled?); rebuild the index")
                problem = "a last record that fails its checksum"
            else:
                try:
                    records.append(_decode(data[pos + _FRAME.size : end]))
                except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as e:
                    raise IndexCorrupt(f"{path}: record {len(records) + 1} at byte {pos} is not a journal record "
                                       f"({e}); rebuild the index") from e
                pos = end
                continue
        log.warning("%s ends in an incomplete write (%s, %d bytes from byte %d); ignoring it: the article "
                    "files are the source of truth and the index will be found stale for that article",
                    path, problem, len(data) - pos, pos)
        break
    return records


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync(fd: int, path: Path) -> None:
    os.fsync(fd)




def append(path: Path, record: Record) -> int:
    """Append ``record`` to the journal at ``path`` and fsync it; returns the byte it starts at.

    On any error the journal is cut back to its previous length, so a refused write leaves no
    record behind.
    """
    frame = encode(record)
    if not path.exists():  # the file's name must be durable before any record in it is acknowledged
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
        fsync_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        start = os.fstat(fd).st_size
        try:
            _write_all(fd, frame)
            _fsync(fd, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
                os.fsync(fd)
            raise
    finally:
        os.close(fd)
    return start


def truncate(path: Path, size: int) -> None:
    """Cut the journal back to ``size`` bytes (undoing an append whose write was refused)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
