"""TransformersReader on a tiny random BERT and on fixed-logit fakes (no real weights needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from qa.errors import ModelUnavailable
from qa.read.transformers_reader import TransformersReader, sentence_window
from qa.settings import Settings
from qa.squad_metrics import f1_score, max_over_golds, normalize_answer, squad_v2_scores
from qa.types import Chunk, Hit, Reading
from tests.conftest import make_tiny_qa_model

REPO = Path(__file__).resolve().parents[2]
PACKAGED_READER = REPO / "qa" / "models" / "reader"

NON_ASCII = "Le café “Zoë” 😀 ouvrit en 1998.\r\nIl fermait à Paris, dit-on. Naïve façade!"


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random BertForQuestionAnswering saved in fp16 with the MiniLM tokenizer."""
    return make_tiny_qa_model(tmp_path_factory.mktemp("tiny_reader"), fp16=True)


def make_reader(model_dir: Path, **overrides: object) -> TransformersReader:
    """A torch-backed reader (tests swap its model for fixed-logit fakes)."""
    overrides.setdefault("backend", "torch")
    settings = Settings(reader_model=str(model_dir), **overrides)  # type: ignore[arg-type]
    reader = TransformersReader(settings)
    reader.load()
    return reader


class FixedLogits(torch.nn.Module):
    """Fake QA model: logits are a function of the token ids (a reader with fixed logits)."""

    def __init__(self, fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, input_ids: torch.Tensor, **_: torch.Tensor) -> SimpleNamespace:
        start, end = self.fn(input_ids)
        return SimpleNamespace(start_logits=start, end_logits=end)


def peak_at(reader: TransformersReader, start_token: str, end_token: str, cls: float = 0.0) -> FixedLogits:
    """Start logits peak on ``start_token``, end logits on ``end_token``; CLS gets ``cls``."""
    s_id, e_id = reader._tokenizer.convert_tokens_to_ids([start_token, end_token])

    def fn(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start = (ids == s_id).float() * 8.0
        end = (ids == e_id).float() * 8.0
        start[:, 0] = cls
        end[:, 0] = cls
        return start, end

    return FixedLogits(fn)


def hit(text: str, doc_id: str = "doc", start: int = 0) -> Hit:
    return Hit(chunk=Chunk(doc_id=doc_id, start=start, end=start + len(text), text=text), score=1.0)


def assert_round_trip(article: str, reading: Reading) -> None:
    for span in reading.spans:
        assert article[span.start:span.end] == span.text
        assert 0.0 <= span.score <= 1.0
    assert 0.0 <= reading.no_answer <= 1.0
    scores = [s.score for s in reading.spans]
    assert scores == sorted(scores, reverse=True)
    keys = [(s.doc_id, s.start, s.end) for s in reading.spans]
    assert len(keys) == len(set(keys))


def test_weights_are_float32_after_loading_fp16(tiny_model_dir: Path) -> None:
    reader = make_reader(tiny_model_dir)
    assert all(p.dtype == torch.float32 for p in reader._model.parameters())
    assert not reader._model.training


def test_offsets_round_trip_on_long_non_ascii_chunk_with_several_windows(tiny_model_dir: Path) -> None:
    reader = make_reader(tiny_model_dir, reader_max_length=64, reader_stride=16)
    prefix = "Headline line.\r\n"
    body = " ".join(f"Sentence {i}: the café “Zoë” served crème brûlée 😀 to Ms. Ødegård." for i in range(40))
    article = prefix + body + "\r\nThe end."
    chunk_start = len(prefix)
    chunk_text = article[chunk_start:chunk_start + len(body)]
    windows = reader._tokenizer("Who served it?", chunk_text, truncation="only_second", max_length=64, stride=16,
                                return_overflowing_tokens=True)["input_ids"]
    assert len(windows) > 3

    reading = reader.read("Who served it?", [hit(chunk_text, start=chunk_start)])
    assert reading.spans
    assert_round_trip(article, reading)
    # Candidates come from late windows too, and every offset is shifted by the chunk start.
    assert max(s.start for s in reading.spans) > chunk_start + len(body) // 2
    assert min(s.start for s in reading.spans) >= chunk_start
    assert all(s.context and s.text in s.context for s in reading.spans)


def test_exact_text_with_curly_quotes_accents_and_crlf(tiny_model_dir: Path) -> None:
    reader = make_reader(tiny_model_dir)
    reader._model = peak_at(reader, "“", "”")
    article = "Intro.\r\n" + NON_ASCII
    reading = reader.read("Which café?", [hit(NON_ASCII, doc_id="a1", start=len("Intro.\r\n"))])
    assert_round_trip(article, reading)
    best = reading.spans[0]
    assert best.text == "“Zoë”"
    assert best.doc_id == "a1"
    assert best.score > 0.5
    assert reading.no_answer < 0.5
    assert best.context == "Le café “Zoë” 😀 ouvrit en 1998."


def test_span_after_emoji_and_crlf_maps_back(tiny_model_dir: Path) -> None:
    reader = make_reader(tiny_model_dir)
    reader._model = peak_at(reader, "a", "paris")  # "à Paris": the accent folds to "a" in the vocabulary
    reading = reader.read("Where?", [hit(NON_ASCII)])
    assert reading.spans[0].text == "à Paris"
    assert NON_ASCII[reading.spans[0].start:reading.spans[0].end] == "à Paris"
    assert reading.spans[0].context == "Il fermait à Paris, dit-on."


def test_abstains_when_cls_wins(tiny_model_dir: Path) -> None:
    reader = make_reader(tiny_model_dir)
    reader._model = peak_at(reader, "“", "”", cls=12.0)
    reading = reader.read("Which café?", [hit(NON_ASCII), hit("Another passage about Paris.", doc_id="b")])
    assert reading.no_answer > 0.5
    assert reading.spans
    assert all(s.score < 0.5 for s in reading.spans)


def test_margin_shifts_the_balance(tiny_model_dir: Path) -> None:
    # Span logit 16 vs null 12: answered at margin 0, withheld at margin 6.
    for margin, answered in ((0.0, True), (6.0, False)):
        reader = make_reader(tiny_model_dir, no_answer_margin=margin)
        reader._model = peak_at(reader, "“", "”", cls=6.0)
        reading = reader.read("Which café?", [hit(NON_ASCII)])
        assert (reading.spans[0].score > 0.5) is answered
        assert (reading.no_answer < 0.5) is answered


def test_duplicate_hits_and_batch(tiny_model_dir: Path) -> None:
    reader = make_reader(tiny_model_dir)
    reader._model = peak_at(reader, "“", "”")
    readings = reader.read_batch(["Which café?", "Nothing?"], [[hit(NON_ASCII), hit(NON_ASCII)], []])
    assert len(readings) == 2
    assert_round_trip(NON_ASCII, readings[0])
    assert [s.text for s in readings[0].spans].count("“Zoë”") == 1
    assert readings[1].spans == [] and readings[1].no_answer == 1.0


def test_read_wraps_read_batch(tiny_model_dir: Path) -> None:
    reader = make_reader(tiny_model_dir)
    hits = [hit(NON_ASCII)]
    assert reader.read("Where?", hits) == reader.read_batch(["Where?"], [hits])[0]


def test_missing_model_folder_raises_model_unavailable(tmp_path: Path) -> None:
    reader = TransformersReader(Settings(reader_model=str(tmp_path / "nope")))
    with pytest.raises(ModelUnavailable, match="QA_READER=span"):
        reader.load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match=r"config\.json"):
        TransformersReader(Settings(reader_model=str(tmp_path / "empty"))).load()


def test_read_before_load_raises() -> None:
    with pytest.raises(ModelUnavailable, match="load"):
        TransformersReader(Settings()).read("Q?", [hit("Some text.")])


def test_sentence_window_is_capped() -> None:
    text = "x" * 1000 + " needle " + "y" * 1000
    window = sentence_window(text, 1001, 1007, cap=100)
    assert "needle" in window and len(window) <= 100


# ---- SQuAD v2 metrics used by the closed-mode validation


def test_squad_metrics() -> None:
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert f1_score("the cat sat", "a cat sat down") == pytest.approx(0.8)
    assert max_over_golds("", []) == (1.0, 1.0)
    assert max_over_golds("Paris", []) == (0.0, 0.0)
    assert max_over_golds("paris.", ["London", "Paris"]) == (1.0, 1.0)
    scores = squad_v2_scores(["Paris", "", "x"], [["Paris"], [], []])
    assert scores["HasAns_f1"] == 1.0 and scores["NoAns_acc"] == 0.5
    assert scores["f1"] == pytest.approx(2 / 3)


# ---- the real trained reader


@pytest.mark.integration
def test_packaged_reader_answers_and_abstains() -> None:
    if not (PACKAGED_READER / "config.json").is_file():
        pytest.skip(f"no trained reader in {PACKAGED_READER}")
    reader = make_reader(PACKAGED_READER)
    text = ("The Eiffel Tower was completed in 1889 for the World’s Fair in Paris. "
            "It was designed by the engineering company of Gustave Eiffel.")
    article = "Preface.\n" + text
    answered, unanswerable = reader.read_batch(
        ["When was the Eiffel Tower completed?", "What is the population of Tokyo?"],
        [[hit(text, start=9)], [hit(text, start=9)]],
    )
    assert_round_trip(article, answered)
    assert answered.spans[0].text == "1889"
    assert answered.spans[0].score > 0.5
    assert unanswerable.no_answer > answered.no_answer


def test_bf16_precision_reads_the_same_spans(tiny_model_dir: Path) -> None:
    fp32 = make_reader(tiny_model_dir)
    bf16 = make_reader(tiny_model_dir, reader_precision="bf16")
    assert_round_trip(NON_ASCII, bf16.read("Which café?", [hit(NON_ASCII)]))  # the real bf16 forward pass
    for reader in (fp32, bf16):
        reader._model = peak_at(reader, "“", "”", cls=2.0)
    a, b = fp32.read("Which café?", [hit(NON_ASCII)]), bf16.read("Which café?", [hit(NON_ASCII)])
    assert_round_trip(NON_ASCII, b)
    assert (b.spans[0].start, b.spans[0].end) == (a.spans[0].start, a.spans[0].end)
    assert abs(b.spans[0].score - a.spans[0].score) < 0.01


def test_auto_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from qa.read import transformers_reader as tr

    monkeypatch.setattr(tr, "cpu_has_bf16", lambda: True)
    assert tr.resolve_precision("auto") == "bf16" and tr.resolve_precision("fp32") == "fp32"
    monkeypatch.setattr(tr, "cpu_has_bf16", lambda: False)
    assert tr.resolve_precision("auto") == "fp32" and tr.resolve_precision("bf16") == "bf16"


def test_passage_norm_ranks_spans_against_their_own_passage(tiny_model_dir: Path) -> None:
    """A passage whose span logit is high but whose no-answer logit is higher loses to a passage the
    model is sure of, when spans are measured from their own window's null (passage_norm)."""
    results = {}
    for norm in (False, True):
        reader = make_reader(tiny_model_dir, reader_passage_norm=norm, reader_type_weight=0.0)
        beta, delta, alpha = reader._tokenizer.convert_tokens_to_ids(["beta", "delta", "alpha"])

        def fn(ids: torch.Tensor, beta: int = beta, delta: int = delta, alpha: int = alpha
               ) -> tuple[torch.Tensor, torch.Tensor]:
            logits = (ids == beta).float() * 8.0 + (ids == delta).float() * 6.0
            logits[:, 0] = (ids == alpha).any(dim=1).float() * 7.0  # unsure of the "alpha" passage
            return logits, logits.clone()

        reader._model = FixedLogits(fn)
        reading = reader.read("Which one?", [hit("alpha beta", doc_id="a"), hit("gamma delta", doc_id="b")])
        results[norm] = reading.spans[0].text
    assert results == {False: "beta", True: "delta"}


def test_a_calibrated_model_scores_probabilities(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from qa.calibration import Calibration, sigmoid

    folder = tmp_path / "calibrated"
    shutil.copytree(tiny_model_dir, folder)
    Calibration(0.5, -1.0, 0.3).save(folder)
    reader = make_reader(folder)
    assert reader.calibration is not None and reader.default_min_confidence == 0.3
    reader._model = peak_at(reader, "“", "”", cls=6.0)
    reading = reader.read("Which café?", [hit(NON_ASCII)])
    # Span logit 16 over its passage's null 12 (x = 4): p = sigmoid(0.5 * 4 - 1), no margin of 3 applied.
    assert reading.spans[0].score == pytest.approx(sigmoid(1.0), abs=1e-3)
    assert reading.no_answer == pytest.approx(1.0 - reading.spans[0].score)
    # The expert margin shifts the feature: x = 4 - 2.
    shifted = make_reader(folder, no_answer_margin=2.0)
    shifted._model = peak_at(shifted, "“", "”", cls=6.0)
    assert shifted.read("Which café?", [hit(NON_ASCII)]).spans[0].score == pytest.approx(sigmoid(0.0), abs=1e-3)


def test_answerability_features_lower_the_score_of_a_span_whose_passage_lacks_a_name(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    from qa.calibration import Calibration, sigmoid
    from qa.read.answerability import WordStats

    folder = tmp_path / "with_features"
    shutil.copytree(tiny_model_dir, folder)
    Calibration(0.5, -1.0, 0.3, method="logistic", extra=("missing_names",), weights=(-3.0,)).save(folder)
    with pytest.raises(ModelUnavailable, match="word_stats"):
        make_reader(folder)
    WordStats(100, {"paris": 5}).save(folder)
    reader = make_reader(folder)
    reader._model = peak_at(reader, "“", "”", cls=6.0)
    # x = 4 as above; "Paris" is in the passage, "Lyon" is not: one missing name costs 3 logits.
    assert reader.read("Which café in Paris?", [hit(NON_ASCII)]).spans[0].score == pytest.approx(
        sigmoid(1.0), abs=1e-3)
    reading = reader.read("Which café in Lyon?", [hit(NON_ASCII)])
    assert reading.spans[0].score == pytest.approx(sigmoid(-2.0), abs=1e-3)
    assert_round_trip(NON_ASCII, reading)
    Calibration(0.5, -1.0, 0.3, method="logistic", extra=("gap",), weights=(1.0,)).save(folder)
    with pytest.raises(ModelUnavailable, match="unknown answerability feature"):
        make_reader(folder)


def test_a_broken_calibration_file_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "calibration.json").write_text("{not json")
    with pytest.raises(ModelUnavailable, match=r"calibration\.json"):
        make_reader(folder)


def test_the_model_folders_tuned_settings_are_the_defaults_and_the_environment_overrides(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    from qa.read.transformers_reader import UNCALIBRATED_MARGIN, TransformersReader
    from qa.settings import Settings

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "calibration.json").unlink(missing_ok=True)
    (folder / "metrics.json").write_text(json.dumps({"best_margin": 1.5, "best_type_weight": 2.0}), encoding="utf-8")
    plain = TransformersReader(Settings(reader_model=str(folder), backend="torch"))
    plain.load()
    assert plain.type_weight == 2.0 and plain.confidence(1.5) == 0.5  # the model's margin, not the default 3
    told = TransformersReader(Settings(reader_model=str(folder), backend="torch", reader_type_weight=0.5,
                                       no_answer_margin=0.0))
    told.load()
    assert told.type_weight == 0.5 and told.confidence(0.0) == 0.5
    (folder / "metrics.json").unlink()
    bare = TransformersReader(Settings(reader_model=str(folder), backend="torch"))
    bare.load()
    assert bare.type_weight == Settings().reader_type_weight and bare.confidence(UNCALIBRATED_MARGIN) == 0.5
