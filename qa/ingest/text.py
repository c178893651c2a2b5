"""``.txt`` / ``.md``: the UTF-8 text exactly as it is (CRLF kept), title and date detected."""

from __future__ import annotations

from qa.errors import IngestError
from qa.ingest import Document, sha256_bytes


def decode_utf8(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")  # bytes -> str keeps CRLF exactly
    except UnicodeDecodeError as e:
        raise IngestError(f"{name}: not valid UTF-8 (byte {e.start})") from e


def convert(data: bytes, name: str) -> list[Document]:
    text = decode_utf8(data, name)
    if not text.strip():
        raise IngestError(f"{name}: the file is empty")
    return [Document(text=text, sha256=sha256_bytes(data))]
