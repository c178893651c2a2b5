"""The shipped reader end to end on the seeds: the README's answers, its abstention, its calibration."""

import json
import math

import pytest

from qa.calibration import Calibration
from qa.settings import PACKAGED_READER_DIR
from qa.squad_metrics import normalize_answer

from .conftest import SEEDS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shipped_pipeline(tmp_path_factory: pytest.TempPathFactory, real_embedder):  # type: ignore[no-untyped-def]
    """The real pipeline over the seeds with the packaged transformers reader and its defaults."""
    from qa.pipeline import QAPipeline
    from qa.settings import Settings

    s = Settings(index_dir=tmp_path_factory.mktemp("shipped_index"), corpus_dir=SEEDS, reader="transformers")
    p = QAPipeline(s, embedder=real_embedder)
    p.load(SEEDS)
    return p


def test_the_readme_question_is_the_2nd_of_june(shipped_pipeline) -> None:  # type: ignore[no-untyped-def]
    a = shipped_pipeline.ask("When was the second Istanbul round?")
    assert a.text is not None and "june" in normalize_answer(a.text) and "2" in a.text
    art = shipped_pipeline.index.articles[a.citations[0].doc_id]
    assert art.text[a.citations[0].start : a.citations[0].end] == a.citations[0].text == a.text
    assert 0.0 < a.score <= 1.0 and a.min_confidence is not None and a.score >= a.min_confidence


def test_the_readme_negotiator(shipped_pipeline) -> None:  # type: ignore[no-untyped-def]
    assert shipped_pipeline.ask("Who is Russia's lead negotiator?").text == "Vladimir Medinsky"


def test_off_topic_is_not_in_the_articles_with_its_best_candidate(shipped_pipeline) -> None:  # type: ignore[no-untyped-def]
    a = shipped_pipeline.ask("Who won the 2022 FIFA World Cup?")
    assert a.text is None and a.citations == []
    assert a.min_confidence is not None and a.score < a.min_confidence
    if a.candidate is not None:
        art = shipped_pipeline.index.articles[a.candidate.doc_id]
        assert art.text[a.candidate.start : a.candidate.end] == a.candidate.text


def test_the_shipped_model_is_calibrated_and_carded() -> None:
    cal = Calibration.load(PACKAGED_READER_DIR)
    assert cal is not None and cal.a > 0 and 0.0 < cal.min_confidence < 1.0
    assert math.isfinite(cal.b) and cal.fitted_on["questions"] > 1000
    assert cal.fitted_on["ece_cross_fitted_by_title"] <= 0.05
    card = (PACKAGED_READER_DIR / "README.md").read_text(encoding="utf-8")
    for needle in ("Rajpurkar", "Confidence calibration", "Risk-coverage", "QA_MIN_CONFIDENCE="):
        assert needle in card, needle
    assert f"{cal.min_confidence:.2f}" in card
    assert (PACKAGED_READER_DIR / "model.safetensors").stat().st_size < 60_000_000
    split = json.loads((PACKAGED_READER_DIR / "split.json").read_text(encoding="utf-8"))
    assert len(split["val_titles"]) == 6
