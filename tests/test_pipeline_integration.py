"""The real pipeline over the seeds (real embedder and spaCy; span reader)."""

import pytest

from qa.errors import InvalidQuestion

pytestmark = pytest.mark.integration

QUESTIONS = [
    "When was the second Istanbul round?",
    "Who is Russia's lead negotiator?",
    "How many drones did Russia launch?",
    "Where were the talks held?",
    "Who won the 2022 FIFA World Cup?",
    "What did Ukraine's delegation present to Russia?",
]


def test_every_chunk_and_citation_round_trips(span_pipeline) -> None:  # type: ignore[no-untyped-def]
    idx = span_pipeline.index
    for c in idx.chunks:
        assert idx.articles[c.doc_id].text[c.start : c.end] == c.text
    for a in span_pipeline.ask_batch(QUESTIONS):
        for c in a.citations:
            assert idx.articles[c.doc_id].text[c.start : c.end] == c.text
        if a.text is not None:
            assert a.citations[0].text == a.text


def test_retrieval_finds_the_right_article(span_pipeline) -> None:  # type: ignore[no-untyped-def]
    hits = span_pipeline.search("Vladimir Medinsky lead negotiator", 3)
    assert hits[0].chunk.doc_id == "003_56e07843aefd4aea"
    assert all(h.score > 0 for h in hits)


def test_abstains_on_an_off_topic_question(span_pipeline) -> None:  # type: ignore[no-untyped-def]
    a = span_pipeline.ask("Who won the 2022 FIFA World Cup?")
    assert a.text is None and a.citations == [] and a.passages


def test_negotiator(span_pipeline) -> None:  # type: ignore[no-untyped-def]
    assert span_pipeline.ask("Who is Russia's lead negotiator?").text == "Vladimir Medinsky"


def test_invalid_questions(span_pipeline) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidQuestion):
        span_pipeline.ask("  ")
    with pytest.raises(InvalidQuestion, match="limit"):
        span_pipeline.ask("x" * 10_000)
