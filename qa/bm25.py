"""BM25 (Lucene variant, the formula of ``bm25s``) whose postings grow with each added chunk.

Corpus statistics (document frequency, average length, number of chunks) are not stored: they
are computed at query time over the chunks a query may see, so adding or deleting a chunk
changes every score exactly as a rebuild would. Postings are a compressed-sparse-row "base"
(what was saved) plus per-term arrays appended to by writes; both hold chunk row ids.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

K1 = 1.5
B = 0.75
VOCAB = "vocab.json"
POSTINGS = "postings.npz"
# Sum scores in an array of every row when the query's postings exceed 1/this of the rows
# (cheaper than sorting them); the results are identical either way.
DENSE_ACCUMULATE_RATIO = 16


@dataclass(frozen=True)
class RowView:
    """The rows one query may see: ids below ``n_rows`` whose ``alive`` entry is true (all when
    ``alive`` is None), with the number of those rows and their total token count."""

    n_rows: int
    alive: np.ndarray | None
    n_live: int
    live_tokens: int


class _Growable:
    """Row ids and term frequencies of one term's appended postings (capacity doubles)."""

    __slots__ = ("docs", "n", "tf")

    def __init__(self) -> None:
        self.docs = np.empty(4, dtype=np.int32)
        self.tf = np.empty(4, dtype=np.float32)
        self.n = 0

    def append(self, doc: int, tf: int) -> None:
        if self.n == len(self.docs):
            self.docs = np.concatenate([self.docs, np.empty_like(self.docs)])
            self.tf = np.concatenate([self.tf, np.empty_like(self.tf)])
        self.docs[self.n] = doc
        self.tf[self.n] = tf
        self.n += 1


class BM25:
    """Postings of every chunk row, scored at query time for the query's terms.

    Not thread-safe for writers; ``add`` and readers must be serialised by the caller (the index
    holds a readers-writer lock). Readers pass a :class:`RowView`, so rows added after their
    snapshot, or deleted as of it, are invisible to them.
    """

    def __init__(self, vocab: dict[str, int], ptr: np.ndarray, docs: np.ndarray, tf: np.ndarray,
                 doc_len: np.ndarray) -> None:
        self.vocab = vocab
        self._ptr = ptr
        self._docs = docs
        self._tf = tf
        self._n_base_terms = len(ptr) - 1
        self._extra: dict[int, _Growable] = {}
        self._doc_len = doc_len
        self.n_rows = len(doc_len)
        # K1 * (1 - B + B * length / average length) of every row, for one (rows, tokens) view
        self._norm: tuple[tuple[int, int, int], np.ndarray] | None = None

    # ------------------------------------------------------------ building
    @classmethod
    def build(cls, token_lists: Sequence[Sequence[str]]) -> BM25:
        """Index ``token_lists[i]`` as row i."""
        vocab: dict[str, int] = {}
        ids: list[int] = []
        lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
        for tokens in token_lists:
            ids.extend([vocab.setdefault(t, len(vocab)) for t in tokens])
        n = max(len(token_lists), 1)
        terms = np.asarray(ids, dtype=np.int64)
        rows = np.repeat(np.arange(len(token_lists), dtype=np.int64), lengths)
        key, counts = np.unique(terms * n + rows, return_counts=True)  # sorted by term, then row
        term_of = key // n
        ptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_of, minlength=len(vocab)), out=ptr[1:])
        return cls(vocab, ptr, (key % n).astype(np.int32), counts.astype(np.float32), lengths.astype(np.int32))

    def add(self, token_lists: Sequence[Sequence[str]]) -> None:
        """Append rows ``n_rows``, ``n_rows + 1``, ... for ``token_lists``."""
        first = self.n_rows
        need = first + len(token_lists)
        if need > len(self._doc_len):
            grown = np.empty(max(need, 2 * len(self._doc_len)), dtype=np.int32)
            grown[:first] = self._doc_len[:first]
            self._doc_len = grown
        for i, tokens in enumerate(token_lists):
            row = first + i
            self._doc_len[row] = len(tokens)
            for term, tf in Counter(tokens).items():
                tid = self.vocab.setdefault(term, len(self.vocab))
                post = self._extra.get(tid)
                if post is None:
                    post = self._extra[tid] = _Growable()
                post.append(row, tf)
        self.n_rows = need

    def doc_lengths(self, n_rows: int) -> np.ndarray:
        """Token counts of rows ``0..n_rows-1``."""
        return self._doc_len[:n_rows]

    # ------------------------------------------------------------ scoring
    def _postings(self, tid: int, view: RowView) -> tuple[np.ndarray, np.ndarray]:
        parts_d, parts_t = [], []
        if tid < self._n_base_terms:
            lo, hi = self._ptr[tid], self._ptr[tid + 1]
            parts_d.append(self._docs[lo:hi])
            parts_t.append(self._tf[lo:hi])
        extra = self._extra.get(tid)
        if extra is not None:
            d = extra.docs[: extra.n]
            cut = int(np.searchsorted(d, view.n_rows))  # appended in row order
            parts_d.append(d[:cut])
            parts_t.append(extra.tf[:cut])
        if not parts_d:
            return np.empty(0, np.int32), np.empty(0, np.float32)
        docs = parts_d[0] if len(parts_d) == 1 else np.concatenate(parts_d)
        tf = parts_t[0] if len(parts_t) == 1 else np.concatenate(parts_t)
        if view.alive is not None:
            keep = view.alive[docs]
            docs, tf = docs[keep], tf[keep]
        return docs, tf

    def score(self, tokens: Sequence[str], view: RowView) -> tuple[np.ndarray, np.ndarray]:
        """Rows holding at least one query term, and their BM25 scores, row order (per-term scores in
        float32 as bm25s computes them, summed in float64)."""
        if view.n_live == 0:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        norm = self._row_norm(view)
        per_term: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        hits: list[tuple[np.ndarray, np.ndarray]] = []
        for term in tokens:  # a repeated query term counts again, as in bm25s
            tid = self.vocab.get(term)
            if tid is None:
                continue
            if tid not in per_term:
                docs, tf = self._postings(tid, view)
                df = len(docs)
                if df:
                    idf = np.float32(np.log(1.0 + (view.n_live - df + 0.5) / (df + 0.5)))
                    per_term[tid] = (docs, tf * idf / (norm[docs] + tf))
                else:
                    per_term[tid] = (docs, np.empty(0, np.float64))
            docs, s = per_term[tid]
            if len(docs):
                hits.append((docs, s))
        if not hits:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        if len(hits) == 1:
            return hits[0][0].astype(np.int64), hits[0][1]
        # Both ways add each row's contributions in query-term order, starting from 0.0, so the
        # sums are the same bits whichever is taken and whatever the row ids.
        total = sum(len(d) for d, _ in hits)
        if total * DENSE_ACCUMULATE_RATIO > view.n_rows:
            acc = np.zeros(view.n_rows, dtype=np.float64)
            for docs, s in hits:
                acc[docs] += s  # a term's rows are distinct
            rows = np.flatnonzero(acc)  # every contribution is > 0 (idf > 0, tf > 0)
            return rows.astype(np.int64), acc[rows]
        urows, inverse = np.unique(np.concatenate([d for d, _ in hits]), return_inverse=True)
        return urows.astype(np.int64), np.bincount(inverse, weights=np.concatenate([s for _, s in hits]))

    def _row_norm(self, view: RowView) -> np.ndarray:
        key = (view.n_rows, view.n_live, view.live_tokens)
        cached = self._norm
        if cached is not None and cached[0] == key:
            return cached[1]
        avg = view.live_tokens / view.n_live
        norm = (K1 * ((1.0 - B) + B * self._doc_len[: view.n_rows] / avg)).astype(np.float32)
        self._norm = (key, norm)  # readers racing here compute the same array
        return norm

    def top_k(self, tokens: Sequence[str], k: int, view: RowView) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` rows with a positive score, best first (ties: lower row first)."""
        rows, scores = self.score(tokens, view)
        if len(rows) > k:
            kth = scores[np.argpartition(scores, len(scores) - k)[len(scores) - k]]
            keep = np.flatnonzero(scores >= kth)  # ties at the cut too, so that lower rows win them
            rows, scores = rows[keep], scores[keep]
        order = np.lexsort((rows, -scores))[:k]
        return rows[order], scores[order]

    # ------------------------------------------------------------ persistence
    def save(self, folder: Path, alive: np.ndarray | None) -> list[Path]:
        """Write base and appended postings as one base, dropping rows where ``alive`` is false;
        returns the files written (not yet fsynced)."""
        n_terms = len(self.vocab)
        base_terms = np.repeat(np.arange(self._n_base_terms, dtype=np.int64), np.diff(self._ptr))
        terms = [base_terms] + [np.full(p.n, t, np.int64) for t, p in self._extra.items()]
        docs = [self._docs] + [p.docs[: p.n] for p in self._extra.values()]
        tfs = [self._tf] + [p.tf[: p.n] for p in self._extra.values()]
        t_all, d_all, f_all = np.concatenate(terms), np.concatenate(docs), np.concatenate(tfs)
        if alive is not None:
            keep = alive[d_all]
            t_all, d_all, f_all = t_all[keep], d_all[keep], f_all[keep]
        order = np.argsort(t_all, kind="stable")  # base rows precede appended rows within a term
        ptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(np.bincount(t_all, minlength=n_terms), out=ptr[1:])
        folder.mkdir(parents=True, exist_ok=True)
        terms_by_id = sorted(self.vocab, key=self.vocab.__getitem__)
        (folder / VOCAB).write_text(json.dumps(terms_by_id, ensure_ascii=False), encoding="utf-8")
        with (folder / POSTINGS).open("wb") as f:
            np.savez(f, ptr=ptr, docs=d_all[order].astype(np.int32), tf=f_all[order],
                     doc_len=self._doc_len[: self.n_rows])
        return [folder / VOCAB, folder / POSTINGS]

    @classmethod
    def load(cls, folder: Path) -> BM25:
        """Read what :meth:`save` wrote; ValueError if the arrays do not fit together."""
        terms = json.loads((folder / VOCAB).read_text(encoding="utf-8"))
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise ValueError(f"{folder / VOCAB} is not a list of terms")
        with np.load(folder / POSTINGS, allow_pickle=False) as z:
            ptr, docs, tf, doc_len = z["ptr"], z["docs"], z["tf"], z["doc_len"]
        if (len(ptr) != len(terms) + 1 or ptr[0] != 0 or ptr[-1] != len(docs) or len(tf) != len(docs)
                or np.any(np.diff(ptr) < 0) or (len(docs) and (docs.min() < 0 or docs.max() >= len(doc_len)))):
            raise ValueError(f"{folder / POSTINGS} does not match {VOCAB}")
        vocab = {t: i for i, t in enumerate(terms)}
        if len(vocab) != len(terms):
            raise ValueError(f"{folder / VOCAB} repeats a term")
        return cls(vocab, ptr.astype(np.int64), docs.astype(np.int32), tf.astype(np.float32),
                   doc_len.astype(np.int32))
