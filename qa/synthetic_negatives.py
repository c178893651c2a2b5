"""Unanswerable training examples made by editing answerable ones.

The reader's weak side is the human-written unanswerable question of SQuAD 2.0: a question about the
paragraph's topic, often with a plausible answer of the right type in the paragraph, that the
paragraph does not answer. Only about 3,600 such questions exist in the training data, against
100,000 answerable ones. Four edits make more of that kind from the answerable questions (after
"Learning to Ask Unanswerable Questions", Zhu et al. 2019, and the SQuAD 2.0 paper's categories):

- **answer sentence removed**: the question stays; every sentence of its paragraph that holds a gold
  answer is cut out. The rest of the paragraph is on topic (often with other candidates of the same
  type) but no longer answers it.
- **entity swap**: the paragraph stays; one name or number that the question shares with the
  paragraph is replaced by one of the same shape (a capitalised run of the same word count, or a
  number of the same digit count) that this paragraph lacks, taken from the same article's other
  questions when one fits (on topic), else from another article's. SQuAD 2.0 calls this kind
  "entity swap" (a fifth of its unanswerable questions).
- **negation**: the paragraph stays; the question's first auxiliary verb after its question word is
  negated ("When was the castle built?" -> "When wasn't the castle built?"). The paragraph states
  what happened, not what did not: SQuAD 2.0's "negation" kind (a tenth of them).
- **entity mix**: the paragraph stays; a name or number the question shares with its paragraph is
  replaced by another of the same shape from the *same paragraph*, outside the sentences that hold
  the answer ("the founder of McKinsey & Co." -> "the founder of Seaborg & Co."). Every word of the
  question is still in the paragraph, so word overlap cannot tell it apart: only reading can. These
  are the validation set's most confident false answers (its "mutual exclusion" and mixed-entity
  questions).

All four are cheap string edits, and each can produce an example whose label is wrong (the answer
restated in another sentence; a swapped name that is an alias). The filters below drop the cases
that are easy to detect: a gold answer string still present after removal, a replacement found in
the paragraph (swap), a question that already holds a negation (negation), a replacement that occurs
in an answer sentence (mix).
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
# What comes right before the first word of a sentence: its end mark (and closing quotes) and spaces.
_SENTENCE_START = re.compile(r"[.!?][\"')\]]*\s+$")
# Auxiliary verb -> its negated contraction (grammatical wherever the auxiliary stands in a question).
_NEGATED = {
    "is": "isn't", "was": "wasn't", "are": "aren't", "were": "weren't", "does": "doesn't", "did": "didn't",
    "do": "don't", "can": "can't", "could": "couldn't", "has": "hasn't", "have": "haven't", "had": "hadn't",
    "will": "won't", "would": "wouldn't", "should": "shouldn't", "must": "mustn't",
}
_WH = frozenset({"what", "which", "who", "whom", "whose", "when", "where", "why", "how"})
_HAS_NEGATION = re.compile(r"\b(?:not|never|no|none|nothing|neither|nor|without)\b|n't\b", re.IGNORECASE)
# The auxiliary must come within this many words after the question word ("In what year did ...").
_AUX_REACH = 4


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
    negation: float = 0.0
    entity_mix: float = 0.0

    def describe(self) -> str:
        text = (f"{self.sentence_removed:g} per answerable question with the sentences holding its answer "
                f"removed from its paragraph (kept only when no gold answer string is left and at least "
                f"one sentence remains), {self.entity_swap:g} with a name or number it shares with "
                "its paragraph swapped for one of the same shape that the paragraph does not contain "
                "(from the same article's other questions when one fits, else another article's)")
        if self.negation > 0 or self.entity_mix > 0:
            text += (f", {self.negation:g} with its first auxiliary verb negated (\"was\" -> \"wasn't\"), and "
                     f"{self.entity_mix:g} with a name or number it shares with its paragraph swapped for another "
                     "of the same shape from outside the paragraph's answer sentences")
        return text + "; all labelled no-answer"


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


def holds_answer(spans: Sequence[tuple[int, int]], answers: Sequence[tuple[str, int]]) -> list[bool]:
    """For each ``(start, end)`` span, whether a gold answer ``(text, start)`` overlaps it."""
    return [any(s < a_start + len(a_text) and a_start < e for a_text, a_start in answers) for s, e in spans]


def remove_answer_sentences(context: str, answers: Sequence[tuple[str, int]]) -> str | None:
    """The paragraph without every sentence that overlaps a gold answer, or None when nothing would be
    left or a gold answer string (case-insensitive) would still be in it."""
    spans = sentence_spans(context)
    hit = holds_answer(spans, answers)
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
    return _entities(question, sentence_initial_too=True)


def paragraph_entities(context: str) -> list[str]:
    """Names and numbers in running text, in order: as :func:`question_entities`, except that the
    first word of a sentence is dropped (capitalised there whatever it is)."""
    return _entities(context, sentence_initial_too=False)


def _entities(text: str, sentence_initial_too: bool) -> list[str]:
    found: list[str] = []
    for m in _CAPS.finditer(text):
        words = m.group(0).split()
        if not sentence_initial_too and (m.start() == 0 or _SENTENCE_START.search(text, max(0, m.start() - 6),
                                                                                  m.start())):
            words = words[1:]
        while words and words[0] in _QUESTION_WORDS:
            words = words[1:]
        if words:
            found.append(" ".join(words))
    found += [m.group(0) for m in _NUMBER.finditer(text)]
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


def negate_question(question: str) -> str | None:
    """The question with its first auxiliary verb after a question word negated ("did" -> "didn't"),
    or None when it already holds a negation or has no such auxiliary."""
    if _HAS_NEGATION.search(question):
        return None
    words = list(re.finditer(r"\S+", question))
    lowered = [w.group(0).lower().strip("\"'(,") for w in words]
    for i, w in enumerate(lowered):
        if w not in _WH:
            continue
        for j in range(i + 1, min(len(words), i + 1 + _AUX_REACH)):
            neg = _NEGATED.get(lowered[j])
            if neg is not None and words[j].group(0).isalpha():
                m = words[j]
                if m.group(0)[0].isupper():
                    neg = neg[0].upper() + neg[1:]
                return question[: m.start()] + neg + question[m.end():]
        return None
    return None


def mix_entity(ex: QAExample, rng: random.Random) -> str | None:
    """The question with one entity it shares with its paragraph replaced by a different entity of the
    same shape from the same paragraph that no answer sentence contains, or None when there is none."""
    spans = sentence_spans(ex.context)
    answer_sentences = [ex.context[s:e] for (s, e), h in zip(spans, holds_answer(spans, ex.answers), strict=True) if h]
    if not answer_sentences:
        return None
    shared = [e for e in question_entities(ex.question) if e in ex.context]
    rng.shuffle(shared)
    candidates = list(dict.fromkeys(paragraph_entities(ex.context)))
    for ent in shared:
        options = [
            c for c in candidates
            if _shape(c) == _shape(ent) and c != ent and ent not in c and c not in ent
            and c not in ex.question and not any(c in sent for sent in answer_sentences)
            and not any(c in a_text or a_text in c for a_text, _ in ex.answers)
        ]
        if options:
            return ex.question.replace(ent, options[rng.randrange(len(options))], 1)
    return None


def build_edit_negatives(articles: Sequence[Article], recipe: EditRecipe) -> list[QAExample]:
    """Unanswerable examples edited from the articles' answerable questions (see :class:`EditRecipe`)."""
    from qa.train import QAExample

    rng = random.Random(recipe.seed * 7919 + 1)
    if max(recipe.sentence_removed, recipe.entity_swap, recipe.negation, recipe.entity_mix) <= 0:
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
            # The newer kinds draw only when asked for, so older recipes keep their exact examples.
            if recipe.negation > 0 and draw_count(rng, recipe.negation):
                q = negate_question(ex.question)
                if q is not None:
                    out.append(QAExample(f"{ex.qid}#neg", ex.title, ex.paragraph, q, ex.context, ()))
            if recipe.entity_mix > 0 and draw_count(rng, recipe.entity_mix):
                q = mix_entity(ex, rng)
                if q is not None:
                    out.append(QAExample(f"{ex.qid}#mix", ex.title, ex.paragraph, q, ex.context, ()))
    return out
