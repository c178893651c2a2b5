"""Readers: (question, retrieved chunks) -> scored spans with exact article offsets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from qa.errors import ModelUnavailable
from qa.types import Hit, Reading

if TYPE_CHECKING:
    from collections.abc import Callable

    from qa.embed import Embedder
    from qa.settings import Settings


class Reader(Protocol):
    """One role, two implementations (trained transformer, offline span reader)."""

    name: str

    def load(self) -> None: ...

    def read_batch(self, questions: list[str], hits: list[list[Hit]]) -> list[Reading]: ...

    def read(self, question: str, hits: list[Hit]) -> Reading: ...


# The abstention threshold of a reader that ships no calibration, when QA_MIN_CONFIDENCE is unset.
UNCALIBRATED_MIN_CONFIDENCE = 0.5


def min_confidence_for(settings: Settings, reader: object) -> float:
    """The confidence below which answers are withheld: ``QA_MIN_CONFIDENCE`` when set, else the
    default the reader's calibration chose on validation, else 0.5."""
    if settings.min_confidence is not None:
        return settings.min_confidence
    default = getattr(reader, "default_min_confidence", None)
    return float(default) if default is not None else UNCALIBRATED_MIN_CONFIDENCE


def looks_like_path(name: str) -> bool:
    """A local path rather than a hub id (``org/name``): absolute, relative (``./``, ``~``),
    deeper than ``org/name``, with a backslash, or an existing file or folder."""
    return (Path(name).is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name
            or Path(name).expanduser().exists())


def reader_model_available(model: str) -> bool:
    """True if ``model`` is a local folder holding a model; a hub id is tried at load time."""
    if looks_like_path(model):
        return (Path(model).expanduser() / "config.json").is_file()
    return True


def resolve_reader_kind(settings: Settings) -> str:
    """``span`` or ``transformers``; ``auto`` picks the QA model when one is available."""
    if settings.reader != "auto":
        return settings.reader
    return "transformers" if reader_model_available(settings.reader_model) else "span"


def make_reader(
    settings: Settings, embedder: Embedder, kind: str | None = None, notify: Callable[[str], None] | None = None
) -> Reader:
    """Build (not load) the reader ``kind`` (default: from settings)."""
    kind = kind if kind is not None else resolve_reader_kind(settings)
    if kind == "span":
        from qa.read.span_reader import SpanReader

        return SpanReader(embedder)
    if kind == "transformers":
        if not reader_model_available(settings.reader_model):
            raise ModelUnavailable(
                f"no QA model at {settings.reader_model}; set QA_READER_MODEL to a model folder or QA_READER=span"
            )
        from qa.read.transformers_reader import TransformersReader

        return TransformersReader(settings, notify=notify)
    raise ValueError(f"reader must be one of auto, transformers, span; got {kind!r}")
