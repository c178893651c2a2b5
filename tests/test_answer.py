from qa.answer import assemble
from qa.corpus import make_article
from qa.types import Chunk, Hit, Reading, Span

A = make_article("a", "Talks resumed on the 2nd of June in Istanbul. Later: June 2 again.")
B = make_article("b", "Russia proposed June 2 for the round.")
ARTS = {"a": A, "b": B}


def _span(art, text: str, score: float, nth: int = 0) -> Span:  # type: ignore[no-untyped-def]
    start = -1
    for _ in range(nth + 1):
        start = art.text.index(text, start + 1)
    return Span(art.doc_id, start, start + len(text), text, score)


def _hits() -> list[Hit]:
    return [Hit(Chunk(x.doc_id, 0, len(x.text), x.text), 1.0, 0.5, i) for i, x in enumerate((A, B))]


def test_same_answer_in_several_articles_is_merged_with_every_citation() -> None:
    r = Reading([_span(A, "June 2", 0.7), _span(B, "June 2", 0.9), _span(A, "Istanbul", 0.8)], 0.1)
    ans = assemble("When?", r, _hits(), ARTS, 0.5, 5)
    assert ans.text == "June 2"
    assert ans.score == 0.9
    assert [(c.doc_id, c.text) for c in ans.citations] == [("b", "June 2"), ("a", "June 2")]
    for c in ans.citations:
        assert ARTS[c.doc_id].text[c.start : c.end] == c.text
        assert c.context[c.start - c.context_start : c.end - c.context_start] == c.text
    assert ans.citations[0].text == ans.text
    assert ans.retrieved == ["a", "b"]


def test_normalised_wordings_merge_and_citations_are_capped() -> None:
    r = Reading([_span(A, "the 2nd of June", 0.8), _span(A, "2nd of June", 0.6)], 0.1)
    ans = assemble("When?", r, _hits(), ARTS, 0.5, 1)
    assert ans.text == "the 2nd of June" and len(ans.citations) == 1


def test_abstains_below_threshold_and_keeps_passages() -> None:
    r = Reading([_span(A, "Istanbul", 0.3)], 0.7)
    ans = assemble("Who won the cup?", r, _hits(), ARTS, 0.5, 5)
    assert ans.text is None and ans.citations == [] and ans.score == 0.3
    assert len(ans.passages) == 2
    d = ans.to_dict()
    assert d["answer"] is None and d["citations"] == []


def test_threshold_zero_is_respected() -> None:
    r = Reading([_span(A, "Istanbul", 0.01)], 0.99)
    assert assemble("q", r, _hits(), ARTS, 0.0, 5).text == "Istanbul"


def test_overlapping_spans_of_one_place_are_one_citation() -> None:
    r = Reading([_span(A, "June 2", 0.9), _span(A, "June 2 again", 0.8)], 0.1)
    r = Reading(
        [
            r.spans[0],
            Span("a", r.spans[0].start, r.spans[0].end + 1, A.text[r.spans[0].start : r.spans[0].end + 1], 0.8),
        ],
        0.1,
    )
    ans = assemble("When?", r, _hits(), ARTS, 0.5, 5)
    assert len(ans.citations) == 1


def test_context_offsets_place_the_answer_that_was_cited_when_the_sentence_holds_it_twice() -> None:
    art = make_article("t", "Intro. Kyiv 🕊️ said Kyiv would host the talks in Kyiv. End.")
    second = _span(art, "Kyiv", 0.9, nth=1)
    ans = assemble("Who said it?", Reading([second], 0.1), [Hit(Chunk("t", 0, len(art.text), art.text), 1.0, 0.5, 0)],
                   {"t": art}, 0.5, 5)
    c = ans.to_dict()["citations"][0]  # type: ignore[index]
    assert c["context"][c["context_start"] : c["context_end"]] == "Kyiv"
    assert c["context"].find("Kyiv") < c["context_start"]  # the second "Kyiv", not the first
    assert art.text[c["start"] : c["end"]] == "Kyiv"


def test_n_best_lists_the_best_answers_each_cited_and_a_withheld_answer_lists_its_passages() -> None:
    r = Reading([_span(A, "June 2", 0.7), _span(B, "June 2", 0.9), _span(A, "Istanbul", 0.8)], 0.1)
    ans = assemble("When?", r, _hits(), ARTS, 0.5, 5, n_best=3)
    assert [(a.text, a.score) for a in ans.alternatives] == [("June 2", 0.9), ("Istanbul", 0.8)]
    assert ans.alternatives[0].citations == ans.citations
    alt = ans.to_dict()["n_best"][1]  # type: ignore[index]
    cite = alt["citations"][0]
    assert alt["answer"] == "Istanbul" and A.text[cite["start"] : cite["end"]] == "Istanbul"
    assert assemble("When?", r, _hits(), ARTS, 0.5, 5).to_dict()["n_best"] is None
    withheld = assemble("When?", r, _hits(), ARTS, 0.95, 5, n_best=2).to_dict()
    assert withheld["answer"] is None and [a["answer"] for a in withheld["n_best"]] == ["June 2", "Istanbul"]  # type: ignore[index]
    assert [p["doc_id"] for p in withheld["passages"]] == ["a", "b"]  # type: ignore[index]
    assert ans.to_dict()["passages"] is None
