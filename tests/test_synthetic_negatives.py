"""Edited negatives for reader training: answer sentence removed, entity swap, negation, entity mix."""

from __future__ import annotations

import random

from qa.synthetic_negatives import (
    EditRecipe,
    build_edit_negatives,
    mix_entity,
    negate_question,
    paragraph_entities,
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


def test_negation_negates_the_first_auxiliary_after_the_question_word() -> None:
    assert negate_question("When was the castle built?") == "When wasn't the castle built?"
    assert negate_question("In what year did Tesla die?") == "In what year didn't Tesla die?"
    assert negate_question("What Was the name?") == "What Wasn't the name?"
    # Already negated, no auxiliary, or the auxiliary too far from the question word: no edit.
    assert negate_question("Why is it not red?") is None
    assert negate_question("What didn't he say?") is None
    assert negate_question("Who founded the company?") is None
    assert negate_question("How many people in the old town of Paris were there?") is None
    assert negate_question("Is it red?") is None


def test_paragraph_entities_skip_the_capital_that_starts_a_sentence() -> None:
    text = "Following the war, Glenn Seaborg won in 1951. The Ciragan Palace hosted talks. Kyiv sent Umerov."
    assert paragraph_entities(text) == ["Glenn Seaborg", "Ciragan Palace", "Umerov", "1951"]


def test_mix_swaps_in_an_entity_of_the_same_paragraph_outside_the_answer_sentences() -> None:
    ex = _ex("q1", "When did delegations from Kyiv meet?", "2 June 2022")
    # Kyiv (shared) becomes the one other one-word name of this paragraph outside the answer's sentence:
    # Istanbul stands in that sentence, "Kyiv and Moscow" is one three-word run, "Ciragan Palace" two words.
    assert {mix_entity(ex, random.Random(seed)) for seed in range(6)} == {"When did delegations from July meet?"}
    other = _ex("q2", "What was held in Istanbul?", "The second round of talks")
    assert mix_entity(other, random.Random(0)) == "What was held in July?"
    # Nothing of the same shape outside the answer sentence: no edit.
    lone = _ex("q3", "Where did Kyiv meet?", "Ciragan Palace", "Kyiv met at the Ciragan Palace.")
    assert mix_entity(lone, random.Random(0)) is None


def test_negation_and_mix_are_built_only_when_asked_and_keep_older_recipes_exact() -> None:
    art = Article("Talks", [
        _ex("a", "When was the second round held in Istanbul?", "2 June 2022"),
        _ex("b", "Where did delegations from Kyiv meet?", "Ciragan Palace"),
    ])
    old = build_edit_negatives([art], EditRecipe(1.0, 1.0, seed=3))
    out = build_edit_negatives([art], EditRecipe(1.0, 1.0, seed=3, negation=1.0, entity_mix=1.0))
    by_id = {e.qid: e for e in out}
    assert [e for e in out if e.qid.split("#")[1] in {"cut", "swap"}] == old
    assert by_id["a#neg"].question == "When wasn't the second round held in Istanbul?"
    assert by_id["b#neg"].question == "Where didn't delegations from Kyiv meet?"
    assert by_id["a#mix"].question == "When was the second round held in July?"
    assert all(e.answers == () and e.context == PARA for e in out if e.qid.split("#")[1] in {"neg", "mix"})
    assert "negated" in EditRecipe(0, 0, 3, negation=0.5).describe()
    assert "negated" not in EditRecipe(1, 1, 3).describe()
