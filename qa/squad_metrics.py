"""Official SQuAD v1.1 / v2.0 answer metrics: normalisation, exact match and token F1.

An empty gold list means "unanswerable": a prediction is then correct iff it is empty.

>>> f1_score("the Eiffel Tower", "Eiffel tower!")
1.0
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised strings (both empty counts as 1.0)."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def max_over_golds(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(exact, f1) of a prediction against its best gold answer; empty golds = unanswerable."""
    if not golds:
        correct = float(not normalize_answer(prediction))
        return correct, correct
    return (
        max(exact_match(prediction, g) for g in golds),
        max(f1_score(prediction, g) for g in golds),
    )


def squad_v2_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Overall, HasAns and NoAns scores in 0..1 (an empty prediction means "no answer").

    Returns keys ``exact``, ``f1``, ``total``, ``HasAns_exact``, ``HasAns_f1``, ``HasAns_total``,
    ``NoAns_acc`` and ``NoAns_total`` (NoAns exact and F1 are both the abstention accuracy).
    """
    if len(predictions) != len(golds):
        raise ValueError(f"got {len(predictions)} predictions for {len(golds)} questions")
    has_em: list[float] = []
    has_f1: list[float] = []
    no_acc: list[float] = []
    for pred, gold in zip(predictions, golds, strict=True):
        em, f1 = max_over_golds(pred, gold)
        if gold:
            has_em.append(em)
            has_f1.append(f1)
        else:
            no_acc.append(em)

    def mean(xs: Sequence[float]) -> float:
        return sum(xs) / len(xs) if xs else 0.0

    total = len(has_em) + len(no_acc)
    return {
        "exact": mean(has_em + no_acc),
        "f1": mean(has_f1 + no_acc),
        "total": float(total),
        "HasAns_exact": mean(has_em),
        "HasAns_f1": mean(has_f1),
        "HasAns_total": float(len(has_em)),
        "NoAns_acc": mean(no_acc),
        "NoAns_total": float(len(no_acc)),
    }
