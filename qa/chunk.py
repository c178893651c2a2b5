"""Chunking stage: sentence-aware, overlapping chunks that fit the embedding model.

Token counts come from the embedding model's tokenizer (``TokenCounter``), so no chunk is
silently truncated by the model. Every chunk keeps exact offsets into its article.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from qa.types import Article, Chunk

# A sentence ends at . ! ? (plus closing quotes/brackets) followed by whitespace, or glued to a
# capitalised word after a lower-case word ("talks.The Kremlin", common in scraped news); and at
# every line break.
_END_RE = re.compile(r"""[.!?…]+["'”’)\]]*(?=\s)|(?<=[a-z]{2}[.!?])(?=[A-Z“"])|\n+""")
_ABBREV = {
    "u.s",
    "u.k",
    "u.n",
    "mr",
    "mrs",
    "ms",
    "dr",
    "st",
    "jr",
    "sr",
    "vs",
    "gen",
    "col",
    "lt",
    "no",
    "e.g",
    "i.e",
    "etc",
    "a.m",
    "p.m",
}
_WORD_RE = re.compile(r"\S+")


class TokenCounter(Protocol):
    """Counts the model tokens of texts (special tokens excluded)."""

    def count_tokens(self, texts: list[str]) -> list[int]: ...


def _is_abbreviation(text: str, dot: int) -> bool:
    """True if the period at ``dot`` ends an abbreviation such as "U.S." or "Mr."."""
    m = re.search(r"([A-Za-z.]+)$", text[max(0, dot - 8) : dot])
    if not m:
        return False
    word = m.group(1).lower().strip(".")
    return word in _ABBREV or len(word) == 1


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans ``(start, end)`` of ``text``, whitespace trimmed, covering every word."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _END_RE.finditer(text):
        end = m.end()
        if text[m.start()] == "." and m.end() - m.start() == 1 and _is_abbreviation(text, m.start()):
            continue
        spans.append((start, end))
        start = end
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        seg = text[s:e]
        lead = len(seg) - len(seg.lstrip())
        trail = len(seg) - len(seg.rstrip())
        if e - trail > s + lead:
            out.append((s + lead, e - trail))
    return out


def _split_word(text: str, start: int, end: int, counter: TokenCounter, max_tokens: int) -> list[tuple[int, int]]:
    """Cut one whitespace-free "word" longer than a chunk (a URL, a wall of digits) into pieces
    that each count at most ``max_tokens`` on their own, preferring cuts after punctuation.

    The longest prefix that fits is found by bisection on the model's own token counts (token
    counts grow with the prefix), so no piece relies on a guess of characters per token.
    """
    def fits(s: int, e: int) -> bool:
        return counter.count_tokens([text[s:e]])[0] <= max_tokens

    pieces: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        if fits(pos, end):
            pieces.append((pos, end))
            break
        lo, hi = 1, end - pos - 1  # a single character always fits (max_tokens >= 16)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(pos, pos + mid):
                lo = mid
            else:
                hi = mid - 1
        cut = pos + lo
        for j in range(cut, pos + lo // 2, -1):  # "…/segment/" rather than "…/segm"
            if not text[j - 1].isalnum():
                cut = j
                break
        pieces.append((pos, cut))
        pos = cut
    return pieces


def _split_long(
    text: str, word_tokens: list[tuple[int, int, int]], counter: TokenCounter, max_tokens: int
) -> list[tuple[int, int, int]]:
    """Cut an over-long sentence (its ``word_tokens``) at word boundaries into units
    ``(start, end, tokens)`` of at most ``max_tokens``; a word longer than that is cut by tokens.

    A piece of a cut word counts as a full chunk, so it is never packed with its neighbours (the
    tokens of glued pieces need not add up).
    """
    units: list[tuple[int, int, int]] = []
    cur_s, cur_e, cur_n = -1, -1, 0
    for ws, we, n in word_tokens:
        if cur_s >= 0 and (cur_n + n > max_tokens or n > max_tokens):
            units.append((cur_s, cur_e, cur_n))
            cur_s, cur_n = -1, 0
        if n > max_tokens:
            units.extend((s, e, max_tokens) for s, e in _split_word(text, ws, we, counter, max_tokens))
            continue
        if cur_s < 0:
            cur_s = ws
        cur_e, cur_n = we, cur_n + n
    if cur_s >= 0:
        units.append((cur_s, cur_e, cur_n))
    return units


def chunk_article(article: Article, counter: TokenCounter, max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    """Split one article into chunks of whole sentences of at most ``max_tokens`` tokens.

    Consecutive chunks repeat up to ``overlap_tokens`` tokens of trailing sentences. A sentence
    longer than ``max_tokens`` is cut at word boundaries, and a word longer than that by tokens,
    so that no chunk holds more than ``max_tokens`` tokens.
    """
    if overlap_tokens >= max_tokens:
        raise ValueError(f"overlap_tokens must be < max_tokens, got {overlap_tokens} >= {max_tokens}")
    text = article.text
    words = [(m.start(), m.end()) for m in _WORD_RE.finditer(text)]
    counts = counter.count_tokens([text[s:e] for s, e in words]) if words else []
    word_tokens = [(s, e, n) for (s, e), n in zip(words, counts, strict=True)]

    # Sentence units with their token counts (a word-piece tokenizer splits on whitespace first,
    # so a sentence's count is the sum of its words' counts).
    units: list[tuple[int, int, int]] = []
    wi = 0
    for s, e in split_sentences(text):
        n = 0
        first = wi
        while wi < len(word_tokens) and word_tokens[wi][1] <= e:
            n += word_tokens[wi][2]
            wi += 1
        if n > max_tokens:
            units.extend(_split_long(text, word_tokens[first:wi], counter, max_tokens))
        else:
            units.append((s, e, n))

    chunks: list[Chunk] = []
    i = 0
    while i < len(units):
        j, total = i, 0
        while j < len(units) and (j == i or total + units[j][2] <= max_tokens):
            total += units[j][2]
            j += 1
        s, e = units[i][0], units[j - 1][1]
        chunks.append(Chunk(article.doc_id, s, e, text[s:e]))
        if j >= len(units):
            break
        # Step back over trailing sentences worth at most overlap_tokens, always moving forward.
        k, back = j, 0
        while k - 1 > i and back + units[k - 1][2] <= overlap_tokens:
            back += units[k - 1][2]
            k -= 1
        i = k
    return chunks


def chunk_corpus(
    articles: Iterable[Article], counter: TokenCounter, max_tokens: int, overlap_tokens: int
) -> list[Chunk]:
    """Chunks of every article, in corpus order."""
    return [c for a in articles for c in chunk_article(a, counter, max_tokens, overlap_tokens)]


def sentence_around(text: str, start: int, end: int, window: int = 400) -> tuple[int, int]:
    """Offsets of the sentence(s) holding ``text[start:end]``, looking at most ``window``
    characters either side."""
    lo = max(0, start - window)
    hi = min(len(text), end + window)
    s, e = start, end
    for ss, se in split_sentences(text[lo:hi]):
        ss, se = ss + lo, se + lo
        if ss <= start < se or ss < end <= se:
            s, e = min(s, ss), max(e, se)
    return s, e
