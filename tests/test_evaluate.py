"""``qa eval``: metric functions on hand-computed cases, file parsing, and both SQuAD modes plus the
test-set mode end to end with a fake embedder and a fixed-span reader (no real model)."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from qa import evaluate as ev
from qa.cli import qa_main
from qa.settings import Settings
from qa.squad_metrics import squad_v2_scores
from qa.types import Answer, Citation, Hit, Reading, Span


# ------------------------------------------------------------------ fakes
class HashEmbedder:
    """Deterministic bag-of-words hashing vectors of dim 8; one token per 4 characters."""

    name = "hash-8"
    dim = 8
    max_tokens = 254

    def load(self) -> None:
        pass

    def embed_batch(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                out[i, int(hashlib.sha256(w.encode()).hexdigest(), 16) % self.dim] += 1.0
            n = float(np.linalg.norm(out[i]))
            if n:
                out[i] /= n
            else:
                out[i, 0] = 1.0
        return out

    def embed(self, text: str) -> np.ndarray:
        return self.embed_batch([text])[0]

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [max(1, -(-len(t) // 4)) for t in texts]


class FixedSpanReader:
    """Answers every question with ``word`` wherever a passage contains it (score 0.9), else nothing."""

    name = "fixed"

    def __init__(self, word: str = "Paris") -> None:
        self.word = word
        self.loaded = 0

    def load(self) -> None:
        self.loaded += 1

    def read_batch(self, questions: list[str], hits: list[list[Hit]]) -> list[Reading]:
        out = []
        for hs in hits:
            spans = []
            for h in hs:
                i = h.chunk.text.find(self.word)
                if i >= 0:
                    s = h.chunk.start + i
                    spans.append(Span(h.chunk.doc_id, s, s + len(self.word), self.word, 0.9))
            out.append(Reading(spans, 0.1 if spans else 1.0))
        return out

    def read(self, question: str, hits: list[Hit]) -> Reading:
        return self.read_batch([question], [hits])[0]


def _answer(
    text: str | None,
    citations: list[Citation] | None = None,
    retrieved: list[str] | None = None,
    score: float = 0.9,
    latency: float = 1.0,
) -> Answer:
    return Answer("q?", text, score, citations or [], retrieved or [], latency_ms=latency)


def _gold(answers: list[str], doc_ids: list[str] | None = None, qid: str = "q") -> ev.GoldQuestion:
    return ev.GoldQuestion(qid, "q?", tuple(answers), tuple(doc_ids or []))


# ------------------------------------------------------------------ answer metrics
def test_answer_scores_normalise_and_take_the_best_gold() -> None:
    assert ev.answer_scores("The Eiffel Tower!", ["eiffel tower"]) == (1.0, 1.0)
    em, f1 = ev.answer_scores("tower in Paris", ["a tower", "Paris"])
    assert em == 0.0
    # vs "a tower": tokens tower|in|paris vs tower -> p 1/3, r 1 -> F1 0.5; vs "Paris" also 0.5
    assert f1 == pytest.approx(0.5)
    assert ev.answer_scores("Paris", ["London", "paris."]) == (1.0, 1.0)


def test_abstention_scoring() -> None:
    assert ev.answer_scores(None, []) == (1.0, 1.0)  # abstaining on an unanswerable question is right
    assert ev.answer_scores(None, ["Paris"]) == (0.0, 0.0)  # abstaining on an answerable one is wrong
    assert ev.answer_scores("Paris", []) == (0.0, 0.0)  # answering an unanswerable one is wrong
    assert ev.answer_scores("the", []) == (0.0, 0.0)  # even when the answer normalises to nothing


def test_has_ans_no_ans_split_matches_the_official_v2_aggregation() -> None:
    golds = [_gold(["Paris"]), _gold(["in March", "March"]), _gold([]), _gold([]), _gold(["two days"])]
    preds: list[str | None] = ["paris", "in May", None, "London", None]
    m = ev.compute_metrics(golds, [_answer(p) for p in preds], {}, mode="t", reader="r", wall_s=1.0)
    official = squad_v2_scores([p or "" for p in preds], [list(g.answers) for g in golds])
    assert m.exact == pytest.approx(official["exact"]) == pytest.approx(2 / 5)
    assert m.f1 == pytest.approx(official["f1"])  # "in May" vs "in March": 1 of 2 tokens -> 0.5
    assert m.f1 == pytest.approx((1 + 0.5 + 1 + 0 + 0) / 5)
    assert m.has_ans_exact == pytest.approx(official["HasAns_exact"]) == pytest.approx(1 / 3)
    assert m.has_ans_f1 == pytest.approx(official["HasAns_f1"]) == pytest.approx(1.5 / 3)
    assert m.no_ans_exact == m.no_ans_f1 == pytest.approx(official["NoAns_acc"]) == pytest.approx(0.5)
    assert (m.questions, m.answerable, m.unanswerable, m.answered) == (5, 3, 2, 3)


def test_abstention_precision_and_recall() -> None:
    abstained = [True, True, True, False, False]
    answerable = [False, False, True, False, True]
    # 3 abstentions, 2 of them on unanswerable questions; 3 unanswerable questions
    assert ev.abstention_precision_recall(abstained, answerable) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert ev.abstention_precision_recall([False, False], [True, False]) == (None, 0.0)
    assert ev.abstention_precision_recall([True], [True]) == (0.0, None)


# ------------------------------------------------------------------ citations
TEXTS = {"a": "Talks began in Istanbul on May 16.", "b": "The second round was on the 2nd of June."}


def _cite(doc_id: str, start: int, end: int, text: str | None = None) -> Citation:
    return Citation(doc_id, start, end, TEXTS[doc_id][start:end] if text is None else text, "")


def test_citation_validity_checks_offsets_and_the_answer_text() -> None:
    good = _answer("May 16", [_cite("a", 27, 33), _cite("a", 27, 33)])
    assert TEXTS["a"][27:33] == "May 16" and ev.citation_valid(good, TEXTS)
    bad_offset = _answer("May 16", [_cite("a", 27, 33), _cite("a", 26, 32, "May 16")])
    wrong_first = _answer("May 16", [_cite("b", 4, 10)])  # exact text, but not the answer
    unknown_doc = _answer("May 16", [Citation("zzz", 0, 6, "May 16", "")])
    out_of_range = _answer("May 16", [Citation("a", 30, 99, "May 16", "")])
    uncited = _answer("May 16", [])
    for a in (bad_offset, wrong_first, unknown_doc, out_of_range, uncited):
        assert not ev.citation_valid(a, TEXTS)
    # abstentions do not count; 1 valid of 3 answered
    assert ev.citation_validity([good, bad_offset, uncited, _answer(None)], TEXTS) == pytest.approx(1 / 3)
    assert ev.citation_validity([_answer(None)], TEXTS) is None


def test_citation_support_counts_answered_answerable_questions_only() -> None:
    answers = [
        _answer("May 16", [_cite("a", 27, 33)]),  # gold a: supported
        _answer("June", [_cite("b", 4, 10), _cite("a", 0, 5)]),  # first citation b, gold a: not supported
        _answer(None),  # abstained: not counted
        _answer("x", [_cite("a", 0, 1)]),  # unanswerable: not counted
        _answer("y", []),  # answered without citation: not supported
    ]
    golds = [
        _gold(["May 16"], ["a", "c"]),
        _gold(["May 16"], ["a"]),
        _gold(["May 16"], ["a"]),
        _gold([]),
        _gold(["y"], ["a"]),
    ]
    assert ev.citation_support(answers, golds) == pytest.approx(1 / 3)


# ------------------------------------------------------------------ retrieval and latency
def test_recall_at_k_and_mrr() -> None:
    assert ev.gold_rank(["x", "b", "a"], ["a", "b"]) == 2  # any gold article is a hit
    assert ev.gold_rank(["x", "y"], ["a"]) is None
    ranks = [1, 3, None, 6]
    assert ev.recall_at_k(ranks, 1) == pytest.approx(1 / 4)
    assert ev.recall_at_k(ranks, 5) == pytest.approx(2 / 4)
    assert ev.mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + 0 + 1 / 6) / 4)
    golds = [_gold(["A"], ["a"]), _gold(["B"], ["b"]), _gold([], [])]
    answers = [_answer("A", retrieved=["a", "b"]), _answer("B", retrieved=["a", "b"]), _answer(None, retrieved=["a"])]
    m = ev.compute_metrics(golds, answers, {}, mode="t", reader="r", wall_s=2.0)
    assert (m.recall_at_1, m.recall_at_5, m.mrr) == (0.5, 1.0, 0.75)  # the unanswerable one is left out
    closed = ev.compute_metrics(golds, answers, {}, mode="t", reader="r", wall_s=2.0, retrieval=False)
    assert (closed.recall_at_1, closed.recall_at_5, closed.mrr) == (None, None, None)
    # rankings deeper than the passages read (top_k 1 here) are scored instead of what was read
    deep = ev.compute_metrics(golds, answers, {}, mode="t", reader="r", wall_s=2.0,
                              rankings=[["x", "y", "z", "q", "w", "a"], ["b", "a"], []])
    assert (deep.recall_at_1, deep.recall_at_5, deep.mrr) == (0.5, 0.5, pytest.approx((1 / 6 + 1) / 2))
    with pytest.raises(ValueError, match="rankings"):
        ev.compute_metrics(golds, answers, {}, mode="t", reader="r", wall_s=2.0, rankings=[["a"]])


def test_latency_percentiles_and_throughput() -> None:
    xs = [50.0, 10.0, 40.0, 20.0, 30.0]
    assert ev.percentile(xs, 50) == 30.0
    assert ev.percentile(xs, 95) == pytest.approx(48.0)  # rank 0.95 * 4 = 3.8 -> 40 + 0.8 * 10
    assert ev.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert ev.percentile(xs, 95) == pytest.approx(float(np.percentile(xs, 95)))
    golds = [_gold(["A"], ["a"])] * 5
    m = ev.compute_metrics(golds, [_answer("A", latency=x) for x in xs], {}, mode="t", reader="r", wall_s=2.0)
    assert (m.latency_p50_ms, m.questions_per_s) == (30.0, 2.5)
    d = m.to_dict()
    assert d["latency_p95_ms"] == 48.0 and d["exact"] == 1.0 and d["recall_at_5"] == 0.0
    json.dumps(d)


SQUAD = {
    "version": "v2.0",
    "data": [
        {
            "title": "Alpha",
            "paragraphs": [
                {
                    "context": "Paris is the capital of France.",
                    "qas": [
                        {
                            "id": "a1",
                            "question": "What is the capital of France?",
                            "is_impossible": False,
                            "answers": [{"text": "Paris", "answer_start": 0}],
                        }
                    ],
                },
                {
                    "context": "Berlin is the capital of Germany.",
                    "qas": [
                        {
                            "id": "a2",
                            "question": "What is the capital of Germany?",
                            "is_impossible": False,
                            "answers": [{"text": "Berlin", "answer_start": 0}],
                        }
                    ],
                },
            ],
        },
        {
            "title": "Beta",
            "paragraphs": [
                {
                    "context": "The Danube flows through ten countries.",
                    "qas": [
                        {"id": "b1", "question": "Which river is the shortest?", "is_impossible": True, "answers": []}
                    ],
                },
            ],
        },
    ],
}


@pytest.fixture
def squad_file(tmp_path: Path) -> Path:
    p = tmp_path / "tiny-v2.json"
    p.write_text(json.dumps(SQUAD), encoding="utf-8")
    return p


def test_load_squad_names_paragraphs_and_reads_impossible(squad_file: Path) -> None:
    data = ev.load_squad(squad_file)
    assert [a.doc_id for a in data.articles] == ["Alpha/0", "Alpha/1", "Beta/0"]
    assert data.articles[1].text == "Berlin is the capital of Germany."
    assert data.questions == [
        ev.GoldQuestion("a1", "What is the capital of France?", ("Paris",), ("Alpha/0",)),
        ev.GoldQuestion("a2", "What is the capital of Germany?", ("Berlin",), ("Alpha/1",)),
        ev.GoldQuestion("b1", "Which river is the shortest?", (), ("Beta/0",)),
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"data": [{"title": "T"}]}', "data[0].paragraphs must be a list"),
        ("[1, 2]", "top level.data must be a list"),
    ],
)
def test_bad_squad_files_name_the_file(tmp_path: Path, content: str, message: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(ev.EvalDataError, match=re.escape(message)) as e:
        ev.load_squad(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_bad_testset_lines_name_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text('{"id": "1", "question": "Q?", "answers": [], "doc_ids": []}\n\n{"id": "2"\n', encoding="utf-8")
    with pytest.raises(ev.EvalDataError, match=re.escape(f"{p}:3: not valid JSON")):
        ev.load_testset(p)
    p.write_text('{"id": "1", "question": "Q?", "answers": "Paris", "doc_ids": []}\n', encoding="utf-8")
    with pytest.raises(ev.EvalDataError, match="lists of strings"):
        ev.load_testset(p)
    with pytest.raises(ev.EvalDataError, match="does not exist"):
        ev.load_testset(tmp_path / "missing.jsonl")


def test_cli_reports_a_missing_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = qa_main(["eval", "--squad", str(tmp_path / "nope.json"), "--index", str(tmp_path / "idx")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "nope.json does not exist" in err
    assert not (tmp_path / "idx").exists()


# ------------------------------------------------------------------ end to end with fakes
def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ev.add_arguments(parser)
    return parser.parse_args(list(argv))


def _predictions(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_squad_closed_mode(tmp_path: Path, squad_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = tmp_path / "preds.jsonl"
    settings = Settings(index_dir=tmp_path / "never")
    reader = FixedSpanReader("Paris")
    code = ev.run(
        _args("--squad", str(squad_file), "--closed", "--json", "--predictions", str(preds)),
        settings,
        lambda m: None,
        embedder=HashEmbedder(),
        reader=reader,
    )
    assert code == 0 and reader.loaded == 1
    m = json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout
    # a1 answered "Paris" from its own paragraph; a2's paragraph has no "Paris": abstains (wrong);
    # b1 abstains (right)
    assert m["mode"] == "squad-closed" and m["questions"] == 3
    assert (m["exact"], m["has_ans_exact"], m["no_ans_exact"]) == (0.6667, 0.5, 1.0)
    assert (m["abstain_precision"], m["abstain_recall"]) == (0.5, 1.0)
    assert (m["citation_validity"], m["citation_support"]) == (1.0, 1.0)
    assert m["recall_at_1"] is None and m["mrr"] is None
    rows = _predictions(preds)
    assert [r["id"] for r in rows] == ["a1", "a2", "b1"]
    assert rows[0]["answer"] == "Paris" and rows[0]["retrieved"] == ["Alpha/0"]
    assert rows[1]["answer"] is None and rows[2]["answer"] is None
    assert not (tmp_path / "never").exists()


def test_squad_open_mode_builds_a_throwaway_index(
    tmp_path: Path, squad_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(index_dir=tmp_path / "never")
    code = ev.run(
        _args("--squad", str(squad_file), "--batch-size", "2", "--worst", "5"),
        settings,
        lambda m: None,
        embedder=HashEmbedder(),
        reader=FixedSpanReader("Paris"),
    )
    out = capsys.readouterr().out
    assert code == 0 and not (tmp_path / "never").exists()
    # every question sees all three paragraphs, so "Paris" is answered everywhere:
    # a1 right, a2 wrong (cited in Alpha/0, gold Alpha/1), b1 answered though unanswerable
    assert "squad-open" in out and "33.3%" in out
    assert "recall@5 100.0%" in out and "in a gold article 50.0%" in out
    failures = out.split("worst 2 failures", 1)[1].splitlines()[1:]
    assert "risk-coverage" in out.split("worst", 1)[0]
    assert len(failures) == 2 and failures[0].startswith("  a2  F1 0.00") and "gold: Berlin" in failures[0]
    assert "gold: <unanswerable>" in failures[1] and "predicted: 'Paris'" in failures[1]


def test_testset_mode_is_deterministic_and_writes_predictions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "fr.txt").write_text("France\n\nParis is the capital of France.\n", encoding="utf-8")
    (corpus / "de.txt").write_text("Germany\n\nBerlin is the capital of Germany.\n", encoding="utf-8")
    testset = tmp_path / "set.jsonl"
    rows = [
        {"id": "t1", "question": "What is the capital of France?", "answers": ["Paris"], "doc_ids": ["fr"]},
        {"id": "t2", "question": "What is the capital of Germany?", "answers": ["Berlin"], "doc_ids": ["de"]},
        {"id": "t3", "question": "What is the capital of Spain?", "answers": [], "doc_ids": []},
        {"id": "t4", "question": "Not evaluated (beyond --limit)?", "answers": [], "doc_ids": []},
    ]
    testset.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    settings = Settings(index_dir=tmp_path / "idx", corpus_dir=corpus)
    said: list[str] = []
    outputs = []
    for name in ("p1.jsonl", "p2.jsonl"):
        args = _args("--testset", str(testset), "--limit", "3", "--json", "--predictions", str(tmp_path / name))
        assert ev.run(args, settings, said.append, embedder=HashEmbedder(), reader=FixedSpanReader()) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    first, second = (_predictions(tmp_path / n) for n in ("p1.jsonl", "p2.jsonl"))
    for r in first + second:
        r.pop("latency_ms")
    assert first == second and [r["id"] for r in first] == ["t1", "t2", "t3"]
    assert all(r["answer"] == "Paris" for r in first)
    timing = ("latency_p50_ms", "latency_p95_ms", "questions_per_s", "wall_s")
    assert {k: v for k, v in outputs[0].items() if k not in timing} == {
        k: v for k, v in outputs[1].items() if k not in timing
    }
    m = outputs[0]
    assert (m["mode"], m["reader"], m["questions"], m["exact"]) == ("testset", "fixed", 3, 0.3333)
    assert (m["recall_at_5"], m["citation_validity"], m["citation_support"]) == (1.0, 1.0, 0.5)
    assert any("worst" in s for s in said)  # the failures go to stderr with --json


def test_argument_checks() -> None:
    with pytest.raises(SystemExit):
        _args("--testset", "a.jsonl", "--squad", "b.json")
    with pytest.raises(ValueError, match="--closed needs --squad"):
        ev.run(_args("--testset", "a.jsonl", "--closed"), Settings(), print)
    with pytest.raises(ValueError, match="--batch-size must be >= 1, got 0"):
        ev.run(_args("--squad", "b.json", "--batch-size", "0"), Settings(), print)


def test_calibration_error_and_risk_coverage_count_withheld_candidates() -> None:
    from qa.types import Span

    golds = [_gold(["Paris"]), _gold(["Rome"]), _gold([]), _gold(["Oslo"])]
    withheld_right = Answer("q?", None, 0.3, candidate=Span("d", 0, 4, "Rome", 0.3), min_confidence=0.5)
    answers = [
        _answer("Paris", score=0.9),  # right
        withheld_right,  # its candidate is right although it was withheld
        _answer("Bern", score=0.8),  # an unanswerable question's candidate is never right
        Answer("q?", None, 0.0),  # no candidate at all
    ]
    m = ev.compute_metrics(golds, answers, {}, mode="t", reader="r", wall_s=1.0)
    # Bins: 0.9 right (|1 - 0.9|), 0.8 wrong (|0 - 0.8|), 0.3 right (|1 - 0.3|), 0.0 wrong (0); a quarter each.
    assert m.ece == pytest.approx((0.1 + 0.8 + 0.7 + 0.0) / 4)
    assert [r["right"] for r in m.risk_coverage][::3] == pytest.approx([1.0, 0.5, 2 / 3, 0.5])  # 1, 2, 3, 4 answers
    assert m.risk_coverage[6]["min_confidence"] == 0.3  # 70%: 3 of 4
    assert m.min_confidence == 0.5
    table = ev.format_table(m)
    assert "expected calibration error 40.0%" in table and "risk-coverage" in table
    json.dumps(m.to_dict())


def _calibrate_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ev.add_calibrate_arguments(parser)
    return parser.parse_args(list(argv))


def test_calibrate_fits_the_answerability_features_and_ships_word_stats(
    tmp_path: Path, squad_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qa.calibration import Calibration
    from qa.read.answerability import DEFAULT_FEATURES, MIN_DF, WordStats
    from qa.read.transformers_reader import TransformersReader

    from .conftest import make_tiny_qa_model

    model = make_tiny_qa_model(tmp_path / "reader", fp16=True)
    # Training paragraphs: the held-out title "Alpha" is left out of the word statistics.
    train = {"version": "v2.0", "data": [
        {"title": "Gamma", "paragraphs": [{"context": "Paris bridges open early.", "qas": []}] * MIN_DF},
        {"title": "Alpha", "paragraphs": [{"context": "Berlin Berlin.", "qas": []}] * MIN_DF},
    ]}
    (tmp_path / "train.json").write_text(json.dumps(train), encoding="utf-8")
    monkeypatch.setattr(ev, "make_embedder", lambda settings: HashEmbedder())
    settings = Settings(index_dir=tmp_path / "idx", backend="torch")
    said: list[str] = []
    missing = _calibrate_args("--squad", str(squad_file), "--model", str(model))
    with pytest.raises(ev.EvalDataError, match="--word-stats"):
        ev.calibrate(missing, settings, said.append)
    args = _calibrate_args("--squad", str(squad_file), "--model", str(model),
                           "--word-stats", str(tmp_path / "train.json"))
    assert ev.calibrate(args, settings, said.append) == 0
    cal = Calibration.load(model)
    assert cal is not None and cal.method == "logistic" and cal.extra == DEFAULT_FEATURES
    assert len(cal.weights) == len(DEFAULT_FEATURES)
    assert cal.fitted_on["questions"] == 3 and "score_alone" in cal.fitted_on
    assert WordStats.load(model) == WordStats(MIN_DF, {"pari": MIN_DF, "bridge": MIN_DF, "open": MIN_DF,
                                                       "early": MIN_DF})
    assert "missing_idf_near" in (model / "README.md").read_text(encoding="utf-8")
    reader = TransformersReader(Settings(reader_model=str(model), backend="torch", reader_type_weight=0.0))
    reader.load()
    assert reader.word_stats is not None and reader.calibration == cal
    # Features named on the command line, then the reader's score alone: Platt scaling as before.
    named = _calibrate_args("--squad", str(squad_file), "--model", str(model), "--features", "missing_names")
    assert ev.calibrate(named, settings, said.append) == 0
    picked = Calibration.load(model)
    assert picked is not None and picked.extra == ("missing_names",)
    assert ev.calibrate(_calibrate_args("--squad", str(squad_file), "--model", str(model), "--features", "none"),
                        settings, said.append) == 0
    platt = Calibration.load(model)
    assert platt is not None and platt.method == "platt" and platt.extra == () and platt.weights == ()
    with pytest.raises(SystemExit):
        _calibrate_args("--squad", str(squad_file), "--features", "gap")
