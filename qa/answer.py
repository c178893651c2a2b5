"""Answer assembly: merge the same answer found in several places, cite it, or abstain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from qa.chunk import sentence_around
from qa.dates import resolve as resolve_date
from qa.read.answer_types import HOW_LONG, expected_types
from qa.squad_metrics import normalize_answer
from qa.types import Alternative, Answer, Article, Citation, Hit, Reading, Span


def assemble(
    question: str,
    reading: Reading,
    hits: list[Hit],
    articles: Mapping[str, Article],
    min_confidence: float,
    max_citations: int,
    n_best: int = 1,
) -> Answer:
    """Turn a reader's spans into one cited answer, or ``text=None`` below the threshold.

    Spans whose normalised text is equal (``"the 2nd of June"`` and ``"2nd of June"``) are one
    answer; its citations list every supporting span, best first, and ``citations[0].text`` is
    the answer as written there. With ``n_best`` > 1, ``alternatives`` holds the best ``n_best``
    answers (the first is the answer itself when it is given), each cited, whatever their score.
    """
    retrieved = retrieved_articles(hits)
    groups: dict[str, list[Span]] = {}
    for sp in reading.spans:
        key = normalize_answer(sp.text) or sp.text.strip()
        if key:
            groups.setdefault(key, []).append(sp)
    if not groups:
        return Answer(question, None, 0.0, [], retrieved, list(hits))
    ranked = [sorted(g, key=lambda s: (-s.score, s.doc_id, s.start))
              for g in sorted(groups.values(), key=lambda g: (-max(s.score for s in g), -len(g)))]
    wanted = expected_types(question)
    asks_date = wanted is not None and "DATE" in wanted and not HOW_LONG.search(question.lower())
    alternatives = [Alternative(g[0].text, g[0].score, _citations(g, articles, max_citations, asks_date))
                    for g in ranked[:n_best]] if n_best > 1 else []
    best = ranked[0]
    score = best[0].score
    if score < min_confidence:
        return Answer(question, None, score, [], retrieved, list(hits), candidate=best[0],
                      min_confidence=min_confidence, alternatives=alternatives)
    return Answer(question, best[0].text, score, _citations(best, articles, max_citations, asks_date), retrieved,
                  list(hits), min_confidence=min_confidence, alternatives=alternatives)


def _citations(spans: list[Span], articles: Mapping[str, Article], max_citations: int,
               asks_date: bool) -> list[Citation]:
    """The citations of one answer's spans (best first), an overlapping span of a place cited once."""
    seen: set[tuple[str, int, int]] = set()
    citations = []
    for s in spans:
        if any(d == s.doc_id and s.start < e and b < s.end for d, b, e in seen):
            continue  # an overlapping span of the same place ("Medinsky" / "Medinsky,") is one citation
        seen.add((s.doc_id, s.start, s.end))
        art = articles.get(s.doc_id)
        if art is not None:
            cs, ce = sentence_around(art.text, s.start, s.end)
            context = art.text[cs:ce]
            when = resolve_date(s.text, art.date, context) if asks_date else None
            citations.append(Citation(
                s.doc_id, s.start, s.end, s.text, context, cs, title=art.title or None, date=art.date,
                source=art.source, url=art.url,
                resolved_date=when.start.isoformat() if when is not None and when.is_day else None,
                resolved_start=when.start.isoformat() if when is not None and not when.is_day else None,
                resolved_end=when.end.isoformat() if when is not None and not when.is_day else None))
        else:
            citations.append(Citation(s.doc_id, s.start, s.end, s.text, s.context, s.start))
        if len(citations) >= max_citations:
            break
    return citations


def retrieved_articles(hits: Sequence[Hit]) -> list[str]:
    """The articles of ``hits``, in order of their first passage."""
    return list(dict.fromkeys(h.chunk.doc_id for h in hits))
