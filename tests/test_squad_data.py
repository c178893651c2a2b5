"""One SQuAD reader for evaluation and training: the same paragraphs and questions, plain or compressed."""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import pytest

from qa import evaluate, train
from qa.errors import UsageError
from qa.squad_data import SquadDataError, read_squad

from .test_evaluate import SQUAD


def _write(path: Path, obj: object) -> Path:
    raw = json.dumps(obj).encode("utf-8")
    if path.suffix == ".xz":
        raw = lzma.compress(raw)
    elif path.suffix == ".gz":
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("name", ["tiny.json", "tiny.json.gz", "tiny.json.xz"])
def test_evaluation_and_training_read_the_same_questions(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, SQUAD)
    paragraphs = read_squad(path)
    assert [(p.title, p.entry, p.index) for p in paragraphs] == [("Alpha", 0, 0), ("Alpha", 0, 1), ("Beta", 1, 0)]
    assert paragraphs[2].questions[0].answers == ()  # is_impossible

    ev = evaluate.load_squad(path)
    tr = train.load_squad([path])
    by_id = {ex.qid: ex for art in tr for ex in art.examples}
    for gold in ev.questions:
        ex = by_id[gold.id]
        assert gold.question == ex.question
        assert gold.answers == tuple(dict.fromkeys(text for text, _ in ex.answers))
        assert gold.doc_ids == (f"{ex.title}/{ex.paragraph}",)
        article = next(a for a in ev.articles if a.doc_id == gold.doc_ids[0])
        assert article.text == ex.context
        for text, start in ex.answers:  # training's offsets index the same context evaluation cites
            assert ex.context[start : start + len(text)] == text


def test_a_bad_file_names_where_for_both_callers(tmp_path: Path) -> None:
    bad = dict(SQUAD)
    bad["data"] = [{"title": "T", "paragraphs": [{"context": "c", "qas": [{"id": 7, "question": "q?"}]}]}]
    path = _write(tmp_path / "bad.json", bad)
    message = "data[0].paragraphs[0].qas[0].id must be a str"
    with pytest.raises(SquadDataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_squad(path)
    with pytest.raises(evaluate.EvalDataError, match=r"qas\[0\]\.id must be a str"):
        evaluate.load_squad(path)
    with pytest.raises(UsageError, match=r"qas\[0\]\.id must be a str") as e:
        train.load_squad([path])
    assert str(path) in str(e.value)
    with pytest.raises(UsageError, match="does not exist"):
        train.load_squad([tmp_path / "missing.json.xz"])


def test_training_needs_answer_starts_that_evaluation_does_not(tmp_path: Path) -> None:
    data = {"data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "q", "question": "Where is Paris?", "answers": [{"text": "France"}]}]}]}]}
    path = _write(tmp_path / "nostart.json", data)
    assert evaluate.load_squad(path).questions[0].answers == ("France",)
    with pytest.raises(UsageError, match="without answer_start"):
        train.load_squad([path])
