"""Answer typing: what a question asks for, the fit of spans, and the QA reader's re-ranking."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qa.read.answer_types import AnswerTyper, ChunkParser, expected_types, is_typed, type_fit
from qa.read.transformers_reader import ScoredSpan, TransformersReader
from qa.settings import Settings
from qa.types import Chunk, Hit
from tests.conftest import make_tiny_qa_model
from tests.read.test_transformers_reader import FixedLogits


@pytest.mark.parametrize(
    ("question", "want"),
    [
        ("When was the second Istanbul round?", {"DATE", "TIME"}),
        ("How many prisoners were exchanged?", {"CARDINAL", "QUANTITY", "PERCENT", "MONEY"}),
        ("Who is Russia's lead negotiator?", {"PERSON", "ORG", "NORP"}),
        ("Where did the talks take place?", {"GPE", "LOC", "FAC"}),
        ("Why did Kyiv refuse?", None),
    ],
)
def test_expected_types(question: str, want: set[str] | None) -> None:
    got = expected_types(question)
    assert (set(got) if got is not None else None) == want


def test_type_fit_rules() -> None:
    assert type_fit("When did it start?", "June 2", "DATE") == 1.0
    assert type_fit("When did it start?", "Medinsky", "PERSON") == 0.0
    assert type_fit("How many drones?", "472", "QUANTITY") == 1.0
    assert type_fit("How much money?", "472", "CARDINAL") == 1.0
    assert type_fit("How many people?", "5%", "PERCENT") == 1.0
    assert type_fit("What number of people?", "$5", "MONEY") == 1.0
    assert type_fit("How long did the talks last?", "about an hour", None) == 1.0
    assert type_fit("How long did the talks last?", "Wednesday", "DATE") == 0.0
    assert type_fit("How long did the talks last?", "2022", "DATE") == 0.0
    assert type_fit("On which day of the week?", "Monday", "DATE") == 1.0
    assert type_fit("On which day of the week?", "June 2", "DATE") == 0.0
    assert type_fit("Which palace hosted it?", "the Ciragan Palace", "FAC", head="palac") == 1.0
    assert type_fit("Why did it fail?", "propaganda", None) is None
    assert not is_typed("Why did it fail?") and is_typed("How long was it?")


@pytest.mark.integration
def test_typer_labels_spans_of_a_chunk() -> None:
    text = "Talks in Istanbul on June 2 lasted about an hour, said Vladimir Medinsky."
    chunk = Chunk("d", 10, 10 + len(text), text)
    typer = AnswerTyper()
    typer.load()
    where = (chunk, text.index("June 2"), text.index("June 2") + len("June 2"))
    who = (chunk, text.index("Vladimir"), len(text) - 1)
    assert typer.fits("When were the talks?", [where, who]) == [1.0, 0.0]
    assert typer.fits("Who spoke?", [where, who]) == [0.0, 1.0]
    assert typer.fits("Why were the talks short?", [where, who]) == [None, None]


def test_typer_widens_a_span_to_the_entity_that_fits() -> None:
    text = "Russia proposed a second round, scheduled for the 2nd of June in Istanbul, said Vladimir Medinsky."
    chunk = Chunk("d", 100, 100 + len(text), text)
    typer = AnswerTyper()
    typer.load()
    june = (chunk, text.index("June"), text.index("June") + 4)
    vladimir = (chunk, text.index("Vladimir"), text.index("Vladimir") + len("Vladimir"))
    whole_date = (text.index("the 2nd of June"), text.index("the 2nd of June") + len("the 2nd of June"))
    whole_name = (vladimir[1], text.index("Medinsky") + len("Medinsky"))
    assert typer.widen("When is the second round?", [june, vladimir]) == [whole_date, vladimir[1:]]
    assert typer.widen("Who said it?", [june, vladimir]) == [june[1:], whole_name]
    assert typer.widen("Why a second round?", [june, vladimir]) == [june[1:], vladimir[1:]]  # open question


def test_widened_entries_move_and_merge() -> None:
    from qa.read.transformers_reader import _widen_entries

    chunks = [Chunk("d", 50, 80, "x" * 30)]
    entries = [(("d", 60, 64), (9.0, 0, 10, 14, 1.0)), (("d", 55, 64), (7.0, 0, 5, 14, 1.0)),
               (("d", 70, 72), (5.0, 0, 20, 22, 1.0))]
    out = _widen_entries(entries, [(5, 14), (5, 14), (20, 22)], chunks)
    # "June" and "2nd of June" both become "the 2nd of June": the better logit stays, once.
    assert out == [(("d", 55, 64), (9.0, 0, 5, 14, 1.0)), (("d", 70, 72), (5.0, 0, 20, 22, 1.0))]


def test_adjusted_logit() -> None:
    span = ScoredSpan("d", 0, 4, "2022", 11.0, "", fit=0.0)
    assert span.adjusted(3.0) == 8.0
    # From its own window's no-answer logit when passages are compared apart.
    assert ScoredSpan("d", 0, 4, "2022", 11.0, "", fit=0.0, null=6.0).adjusted(3.0, passage_norm=True) == 2.0
    assert ScoredSpan("d", 0, 4, "June", 9.0, "", fit=1.0).adjusted(3.0) == 9.0
    assert ScoredSpan("d", 0, 4, "x", 9.0, "", fit=None).adjusted(3.0) == 9.0


class _StubTyper(AnswerTyper):
    """Says a span fits exactly when its text is a weekday (no spaCy needed)."""

    def load(self) -> None:
        pass

    def fits(self, question: str, spans: list[tuple[Chunk, int, int]]) -> list[float | None]:
        return [1.0 if c.text[s:e] == "Monday" else 0.0 for c, s, e in spans]

    def widen(self, question: str, spans: list[tuple[Chunk, int, int]]) -> list[tuple[int, int]]:
        return [(s, e) for _, s, e in spans]


def test_type_weight_reranks_the_n_best(tmp_path: Path) -> None:
    text = "They met in spring and again on Monday ."
    chunk = Chunk("doc", 0, len(text), text)
    results = {}
    for weight in (0.0, 5.0):
        reader = TransformersReader(
            Settings(reader_model=str(make_tiny_qa_model(tmp_path / f"m{weight}")), reader_type_weight=weight,
                     backend="torch"),
            typer=_StubTyper(),
        )
        reader.load()
        ids = reader._tokenizer.convert_tokens_to_ids(["spring", "monday"])

        def fn(input_ids: torch.Tensor, ids: list[int] = ids) -> tuple[torch.Tensor, torch.Tensor]:
            logits = (input_ids == ids[0]).float() * 6.0 + (input_ids == ids[1]).float() * 4.0
            return logits, logits.clone()

        reader._model = FixedLogits(fn)
        reading = reader.read("When did they meet?", [Hit(chunk, 1.0)])
        results[weight] = reading.spans[0].text
        for sp in reading.spans:
            assert text[sp.start : sp.end] == sp.text
    assert results == {0.0: "spring", 5.0: "Monday"}


def test_parses_are_cached_by_text_so_a_replaced_article_is_parsed_again() -> None:
    """Same doc id and offsets, other text (the article was replaced, maybe through another replica):
    the parse is of the new text, never the cached one of the old."""

    class Upper:
        def pipe(self, texts: list[str]) -> list[str]:
            return [t.upper() for t in texts]

    parser = ChunkParser()
    parser._nlp = Upper()
    assert parser.parse([Chunk("a", 0, 9, "old words")]) == ["OLD WORDS"]
    assert parser.parse([Chunk("a", 0, 9, "new words")]) == ["NEW WORDS"]
