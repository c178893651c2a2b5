"""Offline probe (issue 14): does an answerability check over cheap lexical features beat the margin alone?

Reads every validation question against its own paragraph with a reader (closed mode, raw logits), then
compares, fitted on three validation titles and scored on the other three (each way, the abstention
threshold chosen on the fitting half), a logistic regression on the margin alone with one on the margin
plus eight features. Not part of the product; sklearn comes with sentence-transformers.

    .venv/bin/python tools/probe_answerability.py qa/models/reader train_run/squad-val.json
"""

from __future__ import annotations

import collections
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from qa.bm25 import bm25_tokens
from qa.evaluate import answer_scores, load_squad, whole_paragraph_hit
from qa.read.transformers_reader import TransformersReader
from qa.settings import Settings
from qa.squad_data import read_squad

TRAIN_DATA = ("../shared/qa-train/squad-train-v1.1.json.xz", "../shared/qa-train/nq-qed.json.xz",
              "../shared/qa-train/tydiqa-goldp-en.json.xz", "../shared/squad/squad-dev-subset-v2.0.json")
NAMES = ["margin", "gap2", "fmiss", "nmiss", "wmiss", "smiss", "capmiss", "nummiss", "maxidfmiss"]


def document_frequencies(val_titles: set[str]) -> tuple[dict[str, int], int]:
    """Word document frequencies over the training paragraphs (validation titles left out)."""
    df: collections.Counter[str] = collections.Counter()
    n = 0
    for f in TRAIN_DATA:
        for para in read_squad(f):
            if para.title not in val_titles:
                n += 1
                df.update(set(bm25_tokens(para.context)))
    return dict(df), n


def features(q: str, p: str, cands: list[dict[str, Any]], idf: Any) -> list[float]:
    c = cands[0] if cands else None
    x = c["logit"] - c["null"] if c else -20.0
    gap = c["logit"] - cands[1]["logit"] if len(cands) > 1 and c else 5.0
    qt = bm25_tokens(q)
    miss = [w for w in qt if w not in set(bm25_tokens(p))]
    total = sum(idf(w) for w in qt) or 1e-9
    near: set[str] = set()
    if c:  # the answer's sentence and one on each side
        lo = max(0, p.rfind(". ", 0, c["start"]))
        hi = p.find(". ", c["end"])
        hi = len(p) if hi < 0 else hi
        lo2 = max(0, p.rfind(". ", 0, max(0, lo - 1)))
        hi2 = p.find(". ", hi + 2)
        near = set(bm25_tokens(p[lo2 : len(p) if hi2 < 0 else hi2]))
    caps = re.findall(r"\b[A-Z][a-zA-Z]+\b", q[1:])
    nums = re.findall(r"\d+", q)
    return [x, gap, len(miss) / len(qt) if qt else 0.0, float(len(miss)), sum(idf(w) for w in miss) / total,
            sum(idf(w) for w in qt if w not in near) / total, float(sum(w.lower() not in p.lower() for w in caps)),
            float(sum(n not in p for n in nums)), max((idf(w) for w in miss), default=0.0)]


def main(model: str, val_path: str) -> None:
    from sklearn.linear_model import LogisticRegression

    s = Settings(reader_model=model, reader="transformers", no_answer_margin=0.0, min_confidence=0.0)
    reader = TransformersReader(s)
    reader.load()
    data = load_squad(val_path)
    texts = {a.doc_id: a for a in data.articles}
    val_titles = {d.rsplit("/", 1)[0] for d in texts}
    df, n = document_frequencies(val_titles)

    def idf(w: str) -> float:
        return math.log((n + 1) / (df.get(w, 0) + 0.5))

    rows, f1, ans, fold = [], [], [], []
    titles = sorted(val_titles)
    for i in range(0, len(data.questions), 32):
        batch = data.questions[i : i + 32]
        scored = reader.score_batch([g.question for g in batch], [[whole_paragraph_hit(texts[g.doc_ids[0]])]
                                                                   for g in batch])
        for g, sq in zip(batch, scored, strict=True):
            cands: list[dict[str, Any]] = [
                {"logit": c.logit, "null": c.null, "start": c.start, "end": c.end, "text": c.text}
                for c in sq.candidates[:2]
            ]
            rows.append(features(g.question, texts[g.doc_ids[0]].text, cands, idf))
            f1.append(answer_scores(cands[0]["text"], g.answers)[1] if cands and g.answers else 0.0)
            ans.append(g.answerable)
            fold.append(titles.index(g.doc_ids[0].rsplit("/", 1)[0]) % 2)
    X, F, A, half = np.array(rows), np.array(f1), np.array(ans), np.array(fold)
    right = A & (F >= 0.5)

    def f1_at(score: np.ndarray, idx: np.ndarray, t: float) -> float:
        return float(np.where(score >= t, F[idx], (~A[idx]).astype(float)).mean())

    def best_t(score: np.ndarray, idx: np.ndarray) -> float:
        ts = np.unique(np.quantile(score, np.linspace(0, 1, 201)))
        return float(max(ts, key=lambda t: f1_at(score, idx, t)))

    report: dict[str, Any] = {}
    for label, cols in (("margin alone", [0]), ("margin + wmiss", [0, 4]), ("margin + 8 features", list(range(9)))):
        halves = []
        for k in (0, 1):
            tr, te = np.where(half != k)[0], np.where(half == k)[0]
            m = LogisticRegression(max_iter=1000).fit(X[tr][:, cols], right[tr])
            t = best_t(m.decision_function(X[tr][:, cols]), tr)
            halves.append(f1_at(m.decision_function(X[te][:, cols]), te, t))
        m = LogisticRegression(max_iter=1000).fit(X[:, cols], right)
        score = m.decision_function(X[:, cols])
        every = np.arange(len(F))
        report[label] = {"cross_fitted_f1": float(np.average(halves, weights=[(half == 0).sum(), (half == 1).sum()])),
                         "halves": halves, "in_sample_f1": f1_at(score, every, best_t(score, every)),
                         "coef": dict(zip([NAMES[c] for c in cols], m.coef_[0].round(3).tolist(), strict=True))}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if len(sys.argv) != 3 or not Path(sys.argv[2]).is_file():
        sys.exit("usage: probe_answerability.py MODEL_DIR SQUAD_VAL_JSON")
    main(sys.argv[1], sys.argv[2])
