"""SQuAD v1.1/v2.0 JSON, read and checked in one place for evaluation (``qa eval --squad``) and
training (``qa train-reader --data``): plain ``.json`` or compressed ``.json.gz``/``.json.xz``/``.json.bz2``.

Example:
    >>> paragraphs = read_squad("../shared/squad/squad-dev-subset-v2.0.json")  # doctest: +SKIP
    >>> paragraphs[0].title, paragraphs[0].index, len(paragraphs[0].questions)
    ('Normans', 0, 9)
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.errors import QAError

_OPENERS: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}


class SquadDataError(QAError):
    """A SQuAD file is missing, unreadable or not in the SQuAD layout; the message names the file."""


@dataclass(frozen=True)
class SquadQuestion:
    """One question; ``answers`` is empty when it is unanswerable (``is_impossible``)."""

    id: str
    question: str
    answers: tuple[tuple[str, int | None], ...]  # (text, answer_start); the start where the file gives one


@dataclass(frozen=True)
class SquadParagraph:
    """One paragraph of a SQuAD article: ``data[entry].paragraphs[index]``."""

    title: str
    entry: int
    index: int
    context: str
    questions: tuple[SquadQuestion, ...]


def read_json(path: str | Path) -> Any:
    """A JSON file, plain or compressed (``.gz``, ``.xz``, ``.bz2``, chosen by suffix).

    Raises:
        SquadDataError: the file is missing, unreadable, or not JSON.
    """
    path = Path(path)
    opener = _OPENERS.get(path.suffix, open)
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise SquadDataError(f"SQuAD file {path} does not exist; pass a SQuAD JSON file (.json, .json.gz or "
                             ".json.xz)") from None
    except json.JSONDecodeError as e:
        raise SquadDataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError) as e:
        raise SquadDataError(f"cannot read SQuAD file {path} ({type(e).__name__}: {e})") from e


def _field(obj: object, key: str, kind: type, where: str, path: Path) -> Any:
    if not isinstance(obj, dict) or not isinstance(obj.get(key), kind):
        raise SquadDataError(f"{path}: {where}.{key} must be a {kind.__name__} (is this SQuAD v1.1/v2.0 JSON?)")
    return obj[key]


def _start(ans: dict[str, Any], where: str, path: Path) -> int | None:
    value = ans.get("answer_start")
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SquadDataError(f"{path}: {where}.answer_start must be an int, got {value!r}") from None


def read_squad(path: str | Path) -> list[SquadParagraph]:
    """The paragraphs of an official SQuAD v1.1/v2.0 file, in file order, with their questions.

    Raises:
        SquadDataError: the file is missing, unreadable, not JSON, or not in the SQuAD layout
            (the message says where: ``data[3].paragraphs[0].qas[2].id must be a str``).
    """
    path = Path(path)
    raw = read_json(path)
    out: list[SquadParagraph] = []
    for ai, art in enumerate(_field(raw, "data", list, "top level", path)):
        title = _field(art, "title", str, f"data[{ai}]", path)
        for pi, para in enumerate(_field(art, "paragraphs", list, f"data[{ai}]", path)):
            where = f"data[{ai}].paragraphs[{pi}]"
            context = _field(para, "context", str, where, path)
            questions = []
            for qi, qa in enumerate(_field(para, "qas", list, where, path)):
                qwhere = f"{where}.qas[{qi}]"
                qid = _field(qa, "id", str, qwhere, path)
                question = _field(qa, "question", str, qwhere, path)
                answers: list[tuple[str, int | None]] = []
                if not qa.get("is_impossible", False):
                    for ni, ans in enumerate(qa.get("answers", [])):
                        awhere = f"{qwhere}.answers[{ni}]"
                        answers.append((_field(ans, "text", str, awhere, path), _start(ans, awhere, path)))
                questions.append(SquadQuestion(qid, question, tuple(answers)))
            out.append(SquadParagraph(title, ai, pi, context, tuple(questions)))
    return out
