"""Answerability features: does the passage a span was read in say what the question asks about?

The reader's score ``x`` (span logit over no-answer logit) misses a kind of unanswerable question
that is common in news and in SQuAD 2.0: the passage matches the question's topic but lacks one of
its specifics (another name, another number, a word the question turns on). These features measure
that, for one candidate span, from the question, the passage (the chunk the span was read in) and
the span's offsets in it. The calibration (:mod:`qa.calibration`) weighs them beside ``x``; the
weights are fitted by ``qa calibrate`` on held-out questions, so a feature that does not help gets
a weight near 0. Words are :func:`qa.bm25.bm25_tokens` (lower case, no stopwords); a word's rarity
is its IDF over the reader's training paragraphs (:class:`WordStats`, shipped in the model folder
as ``word_stats.tsv.gz``; words seen in fewer than ``MIN_DF`` paragraphs are left out of the file
and count as never seen).

Example::

    stats = WordStats.load(Path("qa/models/reader"))
    values = lexical_features("Who founded Acme in 1990?", passage, start, end, stats)
"""

from __future__ import annotations

import gzip
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from qa.bm25 import bm25_tokens
from qa.chunk import split_sentences

WORD_STATS_FILE = "word_stats.tsv.gz"
MIN_DF = 3  # words in fewer training paragraphs are not stored (they count as never seen)

# In the order the calibration's ``weights`` follow; the README and the model card explain each.
FEATURES: tuple[str, ...] = (
    "missing_share",  # share of the question's words not in the passage
    "missing_count",  # how many of them
    "missing_idf",  # their IDF as a share of the question's total IDF
    "missing_idf_near",  # the same for words not in the span's sentence or the sentence either side
    "missing_names",  # capitalised words of the question (not its first) absent from the passage
    "missing_numbers",  # numbers of the question absent from the passage
)
# What `qa calibrate` weighs by default: the pair with the best leave-one-title-out F1 on the reader's
# validation titles (open mode, reader v4: 0.602 against 0.583 for the score alone; all six: 0.588).
DEFAULT_FEATURES: tuple[str, ...] = ("missing_idf", "missing_idf_near")

_NAME_RE = re.compile(r"\b[A-Z][a-zA-Z]+\b")
_NUMBER_RE = re.compile(r"\d+")


class WordStatsError(ValueError):
    """A word statistics file is unreadable or not in the expected layout."""


@dataclass(frozen=True)
class WordStats:
    """Document frequencies of words over ``paragraphs`` training paragraphs."""

    paragraphs: int
    df: dict[str, int]

    def idf(self, word: str) -> float:
        return math.log((self.paragraphs + 1) / (self.df.get(word, 0) + 0.5))

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> WordStats:
        """Count, for each word, the texts it occurs in; keep the words of ``MIN_DF`` texts or more."""
        df: Counter[str] = Counter()
        n = 0
        for text in texts:
            n += 1
            df.update(set(bm25_tokens(text)))
        return cls(n, {w: c for w, c in df.items() if c >= MIN_DF})

    def save(self, folder: Path) -> Path:
        path = folder / WORD_STATS_FILE
        lines = [f"#paragraphs\t{self.paragraphs}", *(f"{w}\t{c}" for w, c in sorted(self.df.items()))]
        # mtime 0: the same statistics give the same bytes (the file lives in git with the model).
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(("\n".join(lines) + "\n").encode("utf-8"))
        return path

    @classmethod
    def load(cls, folder: Path) -> WordStats | None:
        """The model folder's word statistics, or None when it has none.

        Raises:
            WordStatsError: the file exists but is not word statistics.
        """
        path = folder / WORD_STATS_FILE
        if not path.is_file():
            return None
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                head = f.readline().rstrip("\n").split("\t")
                if len(head) != 2 or head[0] != "#paragraphs":
                    raise ValueError("the first line must be '#paragraphs<TAB>N'")
                df: dict[str, int] = {}
                for line in f:
                    word, count = line.rstrip("\n").split("\t")
                    df[word] = int(count)
            stats = cls(int(head[1]), df)
        except (OSError, ValueError, EOFError) as e:
            raise WordStatsError(f"cannot read {path} ({type(e).__name__}: {e}); rebuild it with "
                                 "`qa calibrate --word-stats TRAINING_DATA...`") from e
        if stats.paragraphs < 1:
            raise WordStatsError(f"{path}: the paragraph count must be positive")
        return stats


def _near_range(sentences: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """Indices of the first and last sentence of the span's sentence and one either side."""
    inside = [i for i, (s, e) in enumerate(sentences) if s < end and start < e] or [
        min(range(len(sentences)), key=lambda i: abs(sentences[i][0] - start))]
    return max(0, inside[0] - 1), min(len(sentences) - 1, inside[-1] + 1)


def near_span(passage: str, start: int, end: int) -> str:
    """The sentence of ``passage`` holding ``passage[start:end]`` and one sentence either side."""
    sentences = split_sentences(passage)
    if not sentences:
        return passage
    lo, hi = _near_range(sentences, start, end)
    return passage[sentences[lo][0] : sentences[hi][1]]


@dataclass(frozen=True)
class _PassageWords:
    lower: str
    words: frozenset[str]
    sentences: tuple[tuple[int, int], ...]
    sentence_words: tuple[frozenset[str], ...]


# A question's n-best spans come from a few passages: each is split and tokenised once, not per span.
@lru_cache(maxsize=64)
def _passage_words(passage: str) -> _PassageWords:
    sentences = tuple(split_sentences(passage))
    return _PassageWords(passage.lower(), frozenset(bm25_tokens(passage)), sentences,
                         tuple(frozenset(bm25_tokens(passage[s:e])) for s, e in sentences))


@lru_cache(maxsize=64)
def _question_words(question: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The question's words, names (capitalised, not its first word) and numbers."""
    return tuple(bm25_tokens(question)), tuple(_NAME_RE.findall(question[1:])), tuple(_NUMBER_RE.findall(question))


def lexical_features(question: str, passage: str, start: int, end: int, stats: WordStats) -> list[float]:
    """The values of :data:`FEATURES` for the span ``passage[start:end]`` (offsets into ``passage``)."""
    words, names, numbers = _question_words(question)
    pw = _passage_words(passage)
    present = pw.words
    if pw.sentences:
        lo, hi = _near_range(pw.sentences, start, end)
        near: frozenset[str] = frozenset().union(*pw.sentence_words[lo : hi + 1])
    else:
        near = present
    missing = [w for w in words if w not in present]
    total = sum(stats.idf(w) for w in words) or 1.0
    low = pw.lower
    return [
        len(missing) / len(words) if words else 0.0,
        float(len(missing)),
        sum(stats.idf(w) for w in missing) / total,
        sum(stats.idf(w) for w in words if w not in near) / total,
        float(sum(1 for n in names if n.lower() not in low)),
        float(sum(1 for n in numbers if n not in passage)),
    ]


def check_features(names: Sequence[str]) -> None:
    """Raises ValueError, naming the known ones, when a name is not one of :data:`FEATURES`."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ValueError(f"unknown answerability feature(s) {', '.join(unknown)}; known: {', '.join(FEATURES)}")


def feature_values(names: Sequence[str], question: str, passage: str, start: int, end: int,
                   stats: WordStats) -> list[float]:
    """The values of the features ``names`` (a calibration's ``extra``), in that order.

    Raises:
        ValueError: a name is not one of :data:`FEATURES`.
    """
    check_features(names)
    values = dict(zip(FEATURES, lexical_features(question, passage, start, end, stats), strict=True))
    return [values[n] for n in names]
