"""Offline probe (issue 14): do the reader's own outputs, beside the shipped answerability features,
make a better confidence?

``dump`` reads the validation questions (open or closed mode) or the news test set with the shipped
reader and stores every raw candidate (logits, no-answer logit, type fit, passage) as JSON; ``fit``
then compares feature sets with the product's own fitting code (``qa calibrate``'s logistic fit,
leave-one-title-out F1 and threshold rule), fitted on the open-mode rows and applied unchanged to the
closed-mode rows and to the test set. Not part of the product.

    .venv/bin/python tools/probe_reader_features.py dump open /tmp/probe/open.json
    .venv/bin/python tools/probe_reader_features.py dump closed /tmp/probe/closed.json
    .venv/bin/python tools/probe_reader_features.py dump testset /tmp/probe/test.json
    .venv/bin/python tools/probe_reader_features.py fit /tmp/probe x,missing_idf,missing_idf_near,gap ...

Features of the top candidate (the one the shipped calibration ranks first): ``x`` (the reader's
score), the shipped ``missing_idf`` and ``missing_idf_near``, ``null`` (its window's no-answer logit),
``gap`` (x over the best candidate that does not overlap it, capped at 10), ``agree`` (the softmax
mass of x on candidates overlapping it or sharing a word with it), ``xagg`` (log-sum-exp of x over
the candidates overlapping it, in place of x), ``softmax_top`` (x minus the log-sum-exp of every
candidate's x), ``len`` (log of 1 + its words), ``fit`` (answer-type fit), ``rank0`` (1 when it was
read in the first retrieved passage).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from qa.bm25 import bm25_tokens
from qa.calibration import Calibration, default_threshold, sigmoid
from qa.evaluate import (
    _calibration_fit,
    _valid_questions,
    answer_all,
    answer_scores,
    load_squad,
    open_answers,
    read_closed,
)
from qa.read.answerability import WordStats, feature_values
from qa.read.transformers_reader import ScoredQuestion, ScoredSpan, TransformersReader
from qa.settings import Settings

MODEL = Path("qa/models/reader")
SQUAD = Path("train_run/squad-val.json")
TESTSET = Path("tests/data/qa_testset.jsonl")


def _record(q: str, hits: list[Any], s: ScoredQuestion) -> dict[str, Any]:
    return {"q": q, "hits": [[h.chunk.doc_id, h.chunk.start] for h in hits],
            "cands": [{"doc": c.doc_id, "s": c.start, "e": c.end, "t": c.text, "logit": c.logit, "null": c.null,
                       "fit": c.fit, "ps": c.passage_start, "p": c.passage} for c in s.candidates]}


def dump(mode: str, out: Path) -> None:
    from qa.embed import make_embedder
    from qa.pipeline import QAPipeline
    from qa.read import make_reader

    raw = Settings().model_copy(update={"reader_model": str(MODEL), "no_answer_margin": 0.0, "min_confidence": 0.0,
                                        "reader": "transformers"})
    rows: list[dict[str, Any]] = []
    if mode == "testset":
        pipe = QAPipeline(raw)
        pipe.load()
        reader = pipe.reader
        assert isinstance(reader, TransformersReader)
        for line in TESTSET.read_text().splitlines():
            g = json.loads(line)
            hits = pipe.search(g["question"])
            rows.append({**_record(g["question"], hits, reader.score_batch([g["question"]], [hits])[0]),
                         "answers": g["answers"], "title": "news"})
    else:
        data = load_squad(SQUAD)
        golds = _valid_questions(data.questions, raw.max_question_chars)
        emb = make_embedder(raw)
        reader = make_reader(raw, emb, "transformers")
        reader.load()
        assert isinstance(reader, TransformersReader)
        reader.calibration = None  # raw scores
        seen: list[dict[str, Any]] = []
        score_batch = reader.score_batch

        def recording(questions: Any, hits: Any) -> list[ScoredQuestion]:
            got = score_batch(questions, hits)
            seen.extend(_record(q, list(h), s) for q, h, s in zip(questions, hits, got, strict=True))
            return got

        reader.score_batch = recording  # type: ignore[method-assign]
        say = lambda m: print(m, file=sys.stderr)  # noqa: E731
        if mode == "open":
            args = argparse.Namespace(squad=SQUAD, top_k=None, batch_size=16)
            open_answers(golds, data, args, raw, say, emb, reader, lambda g, a: None)
        else:
            by_id = {a.doc_id: a for a in data.articles}
            answer_all(golds, lambda b: read_closed(reader, b, by_id, raw), 16, lambda g, a: None)
        for g, r in zip(golds, seen, strict=True):
            rows.append({**r, "answers": list(g.answers), "title": g.doc_ids[0].rsplit("/", 1)[0]})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"type_weight": reader.type_weight, "rows": rows}))
    print(f"wrote {out} ({len(rows)} questions)", file=sys.stderr)


def _overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a["doc"] == b["doc"] and a["s"] < b["e"] and b["s"] < a["e"])


def _features(row: dict[str, Any], type_weight: float, cal: Calibration,
              stats: WordStats) -> tuple[str, dict[str, float]] | None:
    cands = row["cands"]
    if not cands:
        return None
    # The reader's own score (passage-normalised, type-adjusted), as the product ranks by it.
    xs = [ScoredSpan(c["doc"], c["s"], c["e"], c["t"], c["logit"], "", fit=c["fit"], null=c["null"])
          .adjusted(type_weight, passage_norm=True) for c in cands]
    lex = [feature_values(("missing_idf", "missing_idf_near"), row["q"], c["p"], c["s"] - c["ps"], c["e"] - c["ps"],
                          stats) for c in cands]
    i = max(range(len(cands)), key=lambda k: cal.probability(xs[k], lex[k]))
    c, x = cands[i], xs[i]
    words = set(bm25_tokens(c["t"]))
    top = max(xs)
    mass = [math.exp(v - top) for v in xs]
    others = [xs[k] for k in range(len(cands)) if k != i and not _overlaps(cands[k], c)]
    near = [xs[k] for k in range(len(cands)) if _overlaps(cands[k], c)]
    agree = sum(m for k, m in enumerate(mass) if _overlaps(cands[k], c) or set(bm25_tokens(cands[k]["t"])) & words)
    return c["t"], {
        "x": x, "missing_idf": lex[i][0], "missing_idf_near": lex[i][1], "null": c["null"],
        "gap": min(x - max(others), 10.0) if others else 10.0, "agree": agree / sum(mass),
        "xagg": max(near) + math.log(sum(math.exp(v - max(near)) for v in near)),
        "softmax_top": x - top - math.log(sum(mass)), "len": math.log(1 + len(c["t"].split())),
        "fit": 1.0 if c["fit"] is None else c["fit"],
        "rank0": float(bool(row["hits"]) and row["hits"][0] == [c["doc"], c["ps"]]),
    }


def _table(path: Path, cal: Calibration, stats: WordStats) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    titles = sorted({r["title"] for r in data["rows"]})
    out = []
    for r in data["rows"]:
        got = _features(r, data["type_weight"], cal, stats)
        text, feats = got if got is not None else (None, None)
        f1 = answer_scores(text, r["answers"])[1] if text is not None and r["answers"] else 0.0
        out.append({"f": feats, "f1": f1, "answerable": bool(r["answers"]), "title": titles.index(r["title"]),
                    "right": bool(r["answers"] and text is not None and f1 >= 0.5)})
    return out


def _f1(tab: list[dict[str, Any]], probs: list[float], threshold: float) -> tuple[float, float, float]:
    """F1, HasAns F1 and NoAns accuracy when answers below ``threshold`` are withheld."""
    got = [(t["f1"] if p >= threshold else 0.0) if t["answerable"] else float(p < threshold)
           for t, p in zip(tab, probs, strict=True)]
    has = [g for g, t in zip(got, tab, strict=True) if t["answerable"]]
    no = [g for g, t in zip(got, tab, strict=True) if not t["answerable"]]
    return sum(got) / len(got), sum(has) / max(len(has), 1), sum(no) / max(len(no), 1)


def _apply(w: list[float], b: float, rows: list[list[float]]) -> list[float]:
    return [sigmoid(b + sum(wk * v for wk, v in zip(w, r, strict=True))) for r in rows]


def fit(folder: Path, feature_sets: list[list[str]]) -> None:
    cal = Calibration.load(MODEL)
    stats = WordStats.load(MODEL)
    assert cal is not None and stats is not None, "the shipped reader has a calibration and word statistics"
    tables = {m: _table(folder / f"{m}.json", cal, stats) for m in ("open", "closed", "test")}

    def rows(tab: list[dict[str, Any]], names: list[str]) -> list[list[float]]:
        return [[t["f"][n] if t["f"] else (-40.0 if n in ("x", "xagg") else 0.0) for n in names] for t in tab]

    print("features | open F1 at the default threshold / leave-one-title-out | closed F1 / HasAns / NoAns | "
          "test set F1 / HasAns / NoAns")
    for names in feature_sets:
        op = tables["open"]
        w, b, probs, _, loto = _calibration_fit(rows(op, names), [t["right"] for t in op], [t["f1"] for t in op],
                                                [t["answerable"] for t in op], [t["title"] for t in op])
        th, f1_at, _, _ = default_threshold(probs, [t["f1"] for t in op], [t["answerable"] for t in op])
        closed = _f1(tables["closed"], _apply(w, b, rows(tables["closed"], names)), th)
        test = _f1(tables["test"], _apply(w, b, rows(tables["test"], names)), th)
        print(f"{'+'.join(names)} | {f1_at:.4f} (t {th:.2f}) / {loto if loto is None else round(loto, 4)} | "
              + " / ".join(f"{v:.3f}" for v in closed) + " | " + " / ".join(f"{v:.3f}" for v in test))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("mode", choices=["open", "closed", "testset"])
    d.add_argument("out", type=Path)
    f = sub.add_parser("fit")
    f.add_argument("folder", type=Path, help="holds open.json, closed.json and test.json from dump")
    f.add_argument("sets", nargs="+", help="comma-separated feature names, one set per argument")
    a = p.parse_args()
    if a.cmd == "dump":
        dump(a.mode, a.out)
    else:
        fit(a.folder, [s.split(",") for s in a.sets])


if __name__ == "__main__":
    main()
