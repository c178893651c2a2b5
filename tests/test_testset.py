"""Sanity checks for the hand-written evaluation set ``tests/data/qa_testset.jsonl``.

Standard library + pytest only: the set must stay valid regardless of the QA code.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTSET = ROOT / "tests" / "data" / "qa_testset.jsonl"
SEEDS = ROOT / "seeds"

UNANSWERABLE_TYPES = {"unanswerable", "unanswerable_on_topic", "unanswerable_off_topic"}
REQUIRED = {"id": str, "question": str, "answers": list, "doc_ids": list}


def _load() -> list[dict]:
    records = []
    with TESTSET.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:  # pragma: no cover - reported by the assert
                pytest.fail(f"line {lineno} is not valid JSON: {exc}")
            assert isinstance(rec, dict), f"line {lineno} is not a JSON object"
            records.append(rec)
    return records


def _seed_texts() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt"))}


RECORDS = _load()
TEXTS = _seed_texts()


def _is_unanswerable(rec: dict) -> bool:
    return rec.get("type") in UNANSWERABLE_TYPES or not rec["answers"]


def test_fields_and_types():
    for rec in RECORDS:
        for key, typ in REQUIRED.items():
            assert key in rec, f"{rec.get('id')}: missing {key!r}"
            assert isinstance(rec[key], typ), f"{rec['id']}: {key!r} must be {typ.__name__}"
        assert rec["id"].strip() and rec["question"].strip(), rec
        for a in rec["answers"]:
            assert isinstance(a, str) and a and a == a.strip(), f"{rec['id']}: bad answer {a!r}"
        for d in rec["doc_ids"]:
            assert isinstance(d, str) and d, f"{rec['id']}: bad doc_id {d!r}"
        assert len(set(rec["answers"])) == len(rec["answers"]), f"{rec['id']}: duplicate answers"
        assert len(set(rec["doc_ids"])) == len(rec["doc_ids"]), f"{rec['id']}: duplicate doc_ids"
        if "type" in rec:
            assert isinstance(rec["type"], str)


def test_ids_and_questions_unique():
    ids = [r["id"] for r in RECORDS]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    questions = [r["question"].strip().lower() for r in RECORDS]
    assert len(questions) == len(set(questions)), "duplicate question texts"


def test_doc_ids_exist():
    assert TEXTS, "no seed articles found"
    for rec in RECORDS:
        for d in rec["doc_ids"]:
            assert d in TEXTS, f"{rec['id']}: unknown doc_id {d!r}"


def test_answers_verbatim_in_docs():
    for rec in RECORDS:
        if _is_unanswerable(rec):
            continue
        assert rec["doc_ids"], f"{rec['id']}: answerable question without doc_ids"
        texts = [TEXTS[d] for d in rec["doc_ids"]]
        for a in rec["answers"]:
            assert any(a in t for t in texts), f"{rec['id']}: {a!r} not found verbatim in {rec['doc_ids']}"
        # every listed article must actually support the question with at least one wording
        for d in rec["doc_ids"]:
            assert any(a in TEXTS[d] for a in rec["answers"]), f"{rec['id']}: {d} contains none of the answers"


def test_answer_sources_consistent():
    """Where present, ``answer_sources`` says which wording occurs in which listed article."""
    for rec in RECORDS:
        src = rec.get("answer_sources")
        if src is None:
            # no per-article map: every wording must occur in every listed article
            for d in rec["doc_ids"]:
                for a in rec["answers"]:
                    assert a in TEXTS[d], f"{rec['id']}: {a!r} missing from {d} (add answer_sources)"
            continue
        assert set(src) == set(rec["doc_ids"]), f"{rec['id']}: answer_sources keys != doc_ids"
        seen = set()
        for d, answers in src.items():
            assert answers, f"{rec['id']}: {d} lists no answer"
            for a in answers:
                assert a in rec["answers"], f"{rec['id']}: {a!r} not among answers"
                assert a in TEXTS[d], f"{rec['id']}: {a!r} not in {d}"
                seen.add(a)
        assert seen == set(rec["answers"]), f"{rec['id']}: answers without a source"


def test_unanswerable_have_no_gold():
    for rec in RECORDS:
        if rec.get("type") in UNANSWERABLE_TYPES:
            assert rec["answers"] == [] and rec["doc_ids"] == [], rec["id"]
        if not rec["answers"]:
            assert rec["doc_ids"] == [], f"{rec['id']}: unanswerable question with doc_ids"
            assert rec.get("type") in UNANSWERABLE_TYPES, f"{rec['id']}: empty answers but type {rec.get('type')!r}"


def test_counts():
    assert len(RECORDS) >= 60
    unanswerable = [r for r in RECORDS if _is_unanswerable(r)]
    assert len(unanswerable) >= 12
    on_topic = [r for r in unanswerable if r.get("type") == "unanswerable_on_topic"]
    assert len(on_topic) >= 6
    multi = [r for r in RECORDS if len(r["doc_ids"]) >= 2]
    assert len(multi) >= 8
    assert sum(r.get("type") == "paraphrase" for r in RECORDS) >= 10
    per_doc = Counter(d for r in RECORDS for d in r["doc_ids"])
    for d in TEXTS:
        assert per_doc[d] >= 8, f"{d} covered by only {per_doc[d]} questions"
