"""Edited negatives for reader training: answer sentence removed, entity swap."""

from __future__ import annotations

import random

from qa.synthetic_negatives import (
    EditRecipe,
    build_edit_negatives,
    question_entities,
    remove_answer_sentences,
    sentence_spans,
    swap_entity,
)
from qa.train import Article, QAExample

PARA = ("The second round of talks was held in Istanbul on 2 June 2022. Delegations from Kyiv and Moscow "
        "met at the Ciragan Palace. The third round, planned for July, never took place.")


def _ex(qid: str, question: str, answer: str | None, context: str = PARA, title: str = "Talks") -> QAExample:
    answers = ((answer, context.index(answer)),) if answer else ()
    return QAExample(qid, title, 0, question, context, answers)


def test_sentence_spans_cover_each_sentence_exactly() -> None:
    text = 'He said "It ended." Then (in 1990) it began again! Why? 3 more came.'
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == ['He said "It ended."', "Then (in 1990) it began again!", "Why?",
                                             "3 more came."]


def test_removing_the_answer_sentence_leaves_the_rest_and_no_answer() -> None:
    ans = "2 June 2022"
    out = remove_answer_sentences(PARA, ((ans, PARA.index(ans)),))
    assert out == ("Delegations from Kyiv and Moscow met at the Ciragan Palace. The third round, planned for July, "
                   "never took place.")
    # The answer stated again elsewhere: the edit would still answer the question, so none is made.
    twice = PARA + " Both sides later recalled 2 June 2022."
    assert remove_answer_sentences(twice, ((ans, twice.index(ans)),)) is None
    # A one-sentence paragraph has nothing left.
    one = "Talks were held on 2 June 2022."
    assert remove_answer_sentences(one, ((ans, one.index(ans)),)) is None


def test_question_entities_drop_question_words_and_keep_numbers() -> None:
    assert question_entities("When did the Ciragan Palace host talks in 2022?") == ["Ciragan Palace", "2022"]
    assert question_entities("Where did Delegations from Kyiv meet?") == ["Delegations", "Kyiv"]


def test_swap_prefers_the_same_articles_entities_the_paragraph_lacks() -> None:
    ex = _ex("q1", "Where did delegations from Kyiv meet?", "Ciragan Palace")
    same = {("caps", 1): ["Moscow", "Minsk", "Kyiv"]}  # Moscow and Kyiv are in the paragraph
    for seed in range(5):
        assert swap_entity(ex, same, {}, random.Random(seed)) == "Where did delegations from Minsk meet?"
    # Nothing fitting in the article: another article's entity of the same shape, never its own.
    pool = {("caps", 1): [("Talks", "Minsk"), ("Other", "Geneva")]}
    assert swap_entity(ex, {}, pool, random.Random(0)) == "Where did delegations from Geneva meet?"
    # A question sharing no entity with its paragraph cannot be swapped.
    assert swap_entity(_ex("q2", "Who won the Cup?", None), same, pool, random.Random(0)) is None


def test_build_makes_unanswerable_examples_at_the_asked_rate() -> None:
    art = Article("Talks", [
        _ex("a", "When was the second round held in Istanbul?", "2 June 2022"),
        _ex("b", "Where did delegations from Kyiv meet?", "Ciragan Palace"),
        _ex("c", "Who won the Cup?", None),
    ])
    other = Article("Football", [_ex("d", "Who did Geneva beat?", "Basel", "Geneva beat Basel.", "Football")])
    out = build_edit_negatives([art, other], EditRecipe(1.0, 1.0, seed=3))
    by_id = {e.qid: e for e in out}
    # None from the unanswerable c; d's one-sentence paragraph has no cut, and its swap takes a name from
    # the other article (its own has no other).
    assert set(by_id) == {"a#cut", "a#swap", "b#cut", "b#swap", "d#swap"}
    assert by_id["d#swap"].question in {"Who did Istanbul beat?", "Who did Kyiv beat?"}
    assert all(e.answers == () for e in out)
    assert "2 June 2022" not in by_id["a#cut"].context and "Ciragan" not in by_id["b#cut"].context
    assert by_id["a#swap"].context == PARA and by_id["a#swap"].question != art.examples[0].question
    assert build_edit_negatives([art], EditRecipe(0.0, 0.0, seed=3)) == []
    assert out == build_edit_negatives([art, other], EditRecipe(1.0, 1.0, seed=3))  # seeded
