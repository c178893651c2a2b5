"""Generated news-like articles: many of them, deterministic from a seed, each with one fact to ask about."""

from __future__ import annotations

import random
from pathlib import Path

_PLACES = ["Port Elwin", "Stone Town", "Vardø", "Kastoria", "Mombasa", "Tromsø", "Ushuaia", "Gdańsk", "Zadar",
           "Lamu", "Narvik", "Galway"]
_WORDS = ["council", "harbour", "ministry", "delegation", "agreement", "ferry", "budget", "talks", "summit", "vote",
          "court", "report", "bridge", "festival", "strike", "grain", "museum", "railway", "election", "treaty"]


def article_text(i: int, rng: random.Random, sentences: int = 30) -> str:
    """One article: a title line, a date, filler sentences and one fact (``harbour master of Place-i``)."""
    place = rng.choice(_PLACES)
    lines = [f"Report {i}: {place} {rng.choice(_WORDS)} news", f"date 2031-{1 + i % 12:02d}-{1 + i % 28:02d}"]
    body = []
    for _ in range(sentences):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 20)))
        body.append(f"The {words} in {place} continued on day {rng.randint(1, 365)}.")
    body.insert(rng.randint(0, len(body)), f"The harbour master of Elwin{i} is Captain Ama Osei{i}.")
    return "\n".join(lines) + "\n" + " ".join(body) + "\n"


def write_corpus(folder: Path, n: int, seed: int = 0, start: int = 0) -> dict[str, str]:
    """Write ``n`` articles ``gen-<i>.txt`` into ``folder``; returns doc_id -> text."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(start, start + n):
        doc_id = f"gen-{i:04d}"
        text = article_text(i, rng)
        (folder / f"{doc_id}.txt").write_text(text, encoding="utf-8")
        out[doc_id] = text
    return out
