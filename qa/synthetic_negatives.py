"""Unanswerable training examples made by editing answerable ones.

The reader's weak side is the human-written unanswerable question of SQuAD 2.0: a question about the
paragraph's topic, often with a plausible answer of the right type in the paragraph, that the
paragraph does not answer. Only about 3,600 such questions exist in the training data, against
100,000 answerable ones. Two edits make more of that kind from the answerable questions (after
"Learning to Ask Unanswerable Questions", Zhu et al. 2019, and the SQuAD 2.0 paper's categories):

- **answer sentence removed**: the question stays; every sentence of its paragraph that holds a gold
  answer is cut out. The rest of the paragraph is on topic (often with other candidates of the same
  type) but no longer answers it.
- **entity swap**: the paragraph stays; one name or number that the question shares with the
  paragraph is replaced by one of the same shape (a capitalised run of the same word count, or a
  number of the same digit count) that this paragraph lacks, taken from the same article's other
  questions when one fits (on topic), else from another article's. SQuAD 2.0 calls this kind
  "entity swap" (a fifth of its unanswerable questions).

Both are cheap string edits, and both can produce an example whose label is wrong (the answer
restated in another sentence; a swapped name that is an alias). The filters below drop the cases
that are easy to detect: a gold answer string still present after removal, a replacement found in
the paragraph.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qa.train import Article, QAExample

# A sentence ends at . ! or ? (closing quotes or brackets may follow) before whitespace and a capital,
# digit or opening quote. Abbreviations ("U.S. Army") split wrongly now and then: that removes a
# little more text around the answer, which keeps the example unanswerable.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
# Runs of capitalised words (allowing "of", "the", "and", "de" inside) and numbers in a question.
_CAPS = re.compile(r"\b[A-Z][\w'\-]*(?:\s+(?:(?:of|the|and|de|von|van|la|le|du)\s+)?[A-Z][\w'\-]*)*")
_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\w.]\w)")
_QUESTION_WORDS = frozenset({
    "What", "Which", "Who", "Whom", "Whose", "When", "Where", "Why", "How", "In", "On", "At", "By", "For",
    "From", "To", "The", "A", "An", "Is", "Are", "Was", "Were", "Did", "Do", "Does", "Can", "Could",
    "According", "During", "After", "Before", "Along", "With", "Of", "As", "If", "Since", "Under",
})


def draw_count(rng: random.Random, rate: float) -> int:
    """How many extra examples one question gets at a mean ``rate``: its whole part, plus one more
    with the probability of its fraction (one draw from ``rng`` every time)."""
    whole = int(rate)
    return whole + (1 if rng.random() < rate - whole else 0)


@dataclass(frozen=True)
class EditRecipe:
    """How many edited negatives per answerable training question (means: the fraction is drawn per
    question) of each kind."""

    sentence_removed: float
    entity_swap: float
    seed: int

    def describe(self) -> str:
        return (f"{self.sentence_removed:g} per answerable question with the sentences holding its answer "
                f"removed from its paragraph (kept only when no gold answer string is left and at least "
                f"one sentence remains), and {self.entity_swap:g} with a name or number it shares with "
                "its paragraph swapped for one of the same shape that the paragraph does not contain "
                "(from the same article's other questions when one fits, else another article's); both "
                "labelled no-answer")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text`` (whitespace between sentences belongs to none)."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _SENTENCE_END.finditer(text):
        cut = m.start() + len(m.group(0).rstrip())  # keep closing quotes with their sentence
        spans.append((pos, cut))
        pos = m.end()
    if pos < len(text):
        spans.append((pos, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def remove_answer_sentences(context: str, answers: Sequence[tuple[str, int]]) -> str | None:
    """The paragraph without every sentence that overlaps a gold answer, or None when nothing would be
    left or a gold answer string (case-insensitive) would still be in it."""
    spans = sentence_spans(context)
    hit = [
        any(s < a_start + len(a_text) and a_start < e for a_text, a_start in answers)
        for s, e in spans
    ]
    kept = [context[s:e] for (s, e), h in zip(spans, hit, strict=True) if not h]
    if not kept or not any(hit):
        return None
    out = " ".join(kept)
    lowered = out.lower()
    if any(a_text.strip() and a_text.lower() in lowered for a_text, _ in answers):
        return None
    return out


def _shape(span: str) -> tuple[str, int]:
    if _NUMBER.fullmatch(span):
        return ("num", len(re.sub(r"\D", "", span.split(".")[0])))
    return ("caps", len(span.split()))


def question_entities(question: str) -> list[str]:
    """Names (capitalised runs, a leading question word dropped) and numbers in a question."""
    found: list[str] = []
    for m in _CAPS.finditer(question):
        words = m.group(0).split()
        while words and words[0] in _QUESTION_WORDS:
            words = words[1:]
        if words:
            found.append(" ".join(words))
    found += [m.group(0) for m in _NUMBER.finditer(question)]
    return found


def swap_entity(ex: QAExample, same_article: dict[tuple[str, int], list[str]],
                pool: dict[tuple[str, int], list[tuple[str, str]]], rng: random.Random) -> str | None:
    """The question with one of the entities it shares with its paragraph replaced by a same-shape
    entity the paragraph lacks, or None when there is no such pair. The replacement comes from the
    other questions of the same article when one fits (an on-topic swap, the harder kind: "reform in
    Peru" -> "reform in Bolivia"), else from ``pool`` (``(title, entity)`` by shape) of any other
    article."""
    shared = [e for e in question_entities(ex.question) if e in ex.context]
    rng.shuffle(shared)
    lowered = ex.context.lower()

    def fits(new: str, ent: str) -> bool:
        return new.lower() not in lowered and new != ent and ent not in new and new not in ent

    for ent in shared:
        local = [e for e in same_article.get(_shape(ent), []) if fits(e, ent)]
        if local:
            return ex.question.replace(ent, local[rng.randrange(len(local))], 1)
        options = pool.get(_shape(ent), [])
        for _ in range(8):
            if not options:
                break
            title, new = options[rng.randrange(len(options))]
            if title != ex.title and fits(new, ent):
                return ex.question.replace(ent, new, 1)
    return None


def build_edit_negatives(articles: Sequence[Article], recipe: EditRecipe) -> list[QAExample]:
    """Unanswerable examples edited from the articles' answerable questions (see :class:`EditRecipe`)."""
    from qa.train import QAExample

    rng = random.Random(recipe.seed * 7919 + 1)
    if recipe.sentence_removed <= 0 and recipe.entity_swap <= 0:
        return []
    pool: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for art in articles:
        for ex in art.examples:
            for ent in question_entities(ex.question):
                pool.setdefault(_shape(ent), []).append((art.title, ent))
    out: list[QAExample] = []
    for art in articles:
        same_article: dict[tuple[str, int], list[str]] = {}
        for ex in art.examples:
            for ent in question_entities(ex.question):
                same_article.setdefault(_shape(ent), []).append(ent)
        same_article = {k: list(dict.fromkeys(v)) for k, v in same_article.items()}
        for ex in art.examples:
            if not ex.answers:
                continue
            if draw_count(rng, recipe.sentence_removed):
                ctx = remove_answer_sentences(ex.context, ex.answers)
                if ctx is not None:
                    out.append(QAExample(f"{ex.qid}#cut", ex.title, -1, ex.question, ctx, ()))
            if draw_count(rng, recipe.entity_swap):
                q = swap_entity(ex, same_article, pool, rng)
                if q is not None:
                    out.append(QAExample(f"{ex.qid}#swap", ex.title, ex.paragraph, q, ex.context, ()))
    return out
