"""BM25 (Lucene variant, the formula of ``bm25s``) whose postings grow with each added chunk.

Corpus statistics (document frequency, average length, number of chunks) are not stored: they
are computed at query time over the chunks a query may see, so adding or deleting a chunk
changes every score exactly as a rebuild would. Postings are a compressed-sparse-row "base"
(what was saved) plus per-term arrays appended to by writes; both hold chunk row ids.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "his",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "she",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
    ]
)
_TOKEN_RE = re.compile(r"\w+", re.UNICODE)
EMPTY_TOKEN = "\x00empty"  # the BM25 token of a chunk or question without any other


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased word tokens without stopwords, with a light plural/possessive strip."""
    out = []
    for t in _TOKEN_RE.findall(text.lower()):
        if t in _STOPWORDS:
            continue
        if len(t) > 3 and t.endswith("s") and not t.endswith("ss"):
            t = t[:-1]
        out.append(t)
    return out


K1 = 1.5
B = 0.75
VOCAB = "vocab.json"
POSTINGS = "postings.npz"
# Sum scores in an array of every row when the query's postings exceed 1/this of the rows
# (cheaper than sorting them); the results are identical either way.
DENSE_ACCUMULATE_RATIO = 16
# The pruned walk in BM25.top_k gives up for the full one once the postings it walked exceed
# 1/this of the rows.
PRUNE_WALK_RATIO = 16
# Rows outside the walked postings score at most the sum of the other terms' idfs; float32 rounding
# of a contribution (three operations) and of the float64 sums stays far below this factor.
BOUND_SLACK = 1.0 + 1e-4
# See the end of BM25.top_k.
SAMPLE_STRIDE = 16


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
        self._view: _ViewStats | None = None  # what the latest view's queries share

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
    def _query_terms(self, tokens: Sequence[str], view: RowView) -> tuple[dict[int, _QueryTerm], list[int]]:
        """The query's terms that occur in a live row of the view, and their ids in query order
        (a repeated query term counts again, as in bm25s)."""
        terms: dict[int, _QueryTerm] = {}
        order: list[int] = []
        for term in tokens:
            tid = self.vocab.get(term)
            if tid is None:
                continue
            q = terms.get(tid)
            if q is None:
                q = terms[tid] = self._query_term(tid, view)
            if q.df:
                q.count += 1
                order.append(tid)
        return terms, order

    def _query_term(self, tid: int, view: RowView) -> _QueryTerm:
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        if tid < self._n_base_terms:
            lo, hi = self._ptr[tid], self._ptr[tid + 1]
            parts.append((self._docs[lo:hi], self._tf[lo:hi]))
        extra = self._extra.get(tid)
        if extra is not None:
            d = extra.docs[: extra.n]
            cut = int(np.searchsorted(d, view.n_rows))  # appended in row order
            parts.append((d[:cut], extra.tf[:cut]))
        parts = [p for p in parts if len(p[0])]
        if view.alive is None:
            return _QueryTerm(parts, view, sum(len(d) for d, _ in parts))
        dfs = self._view_stats(view).live_df
        df = dfs.get(tid)
        if df is None:  # a mask over the term's postings: O(df), so kept for the view's next query
            df = dfs[tid] = sum(int(np.count_nonzero(view.alive[d])) for d, _ in parts)
        return _QueryTerm(parts, view, df)

    def score(self, tokens: Sequence[str], view: RowView) -> tuple[np.ndarray, np.ndarray]:
        """Rows holding at least one query term, and their BM25 scores, row order (per-term scores in
        float32 as bm25s computes them, summed in float64)."""
        summed = self._sum(tokens, view)
        if isinstance(summed, np.ndarray):
            rows = np.flatnonzero(summed)  # every contribution is > 0 (idf > 0, tf > 0)
            return rows.astype(np.int64), summed[rows]
        return summed

    def _sum(self, tokens: Sequence[str], view: RowView) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Every row's score: as an array over all rows (0 where no term occurs) when the query's
        postings are many, else as (rows, scores) of the rows holding a term, row order."""
        empty = np.empty(0, np.int64), np.empty(0, np.float64)
        if view.n_live == 0:
            return empty
        terms, order = self._query_terms(tokens, view)
        norm = self._view_stats(view).norm
        scored = {tid: q.scored(norm) for tid, q in terms.items() if q.df}
        hits = [scored[tid] for tid in order]
        if not hits:
            return empty
        if len(hits) == 1:
            return hits[0][0].astype(np.int64), hits[0][1].astype(np.float64)
        # Both ways add each row's contributions in query-term order, starting from 0.0, so the
        # sums are the same bits whichever is taken and whatever the row ids.
        total = sum(len(d) for d, _ in hits)
        if total * DENSE_ACCUMULATE_RATIO > view.n_rows:
            acc = np.zeros(view.n_rows, dtype=np.float64)
            for docs, s in hits:
                acc[docs.astype(np.intp)] += s  # a term's rows are distinct
            return acc
        urows, inverse = np.unique(np.concatenate([d for d, _ in hits]), return_inverse=True)
        return urows.astype(np.int64), np.bincount(inverse, weights=np.concatenate([s for _, s in hits]))

    def _view_stats(self, view: RowView) -> _ViewStats:
        """What queries on ``view`` share, kept until a query comes on another view.

        Rows are only ever appended and deleted, so one BM25's views with the same row count and
        live row and token counts see the same live rows: the key identifies the alive mask.
        """
        key = (view.n_rows, view.n_live, view.live_tokens)
        stats = self._view
        if stats is None or stats.key != key:
            avg = view.live_tokens / view.n_live
            norm = (K1 * ((1.0 - B) + B * self._doc_len[: view.n_rows] / avg)).astype(np.float32)
            stats = self._view = _ViewStats(key, norm)  # readers racing here compute the same
        return stats

    def top_k(self, tokens: Sequence[str], k: int, view: RowView) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` rows with a positive score, best first (ties: lower row first).

        The rows and score bits of ranking every row by :meth:`score`, found without scoring every
        row (the MaxScore bound): the rows holding the query's rarest terms are scored in full,
        their common terms looked up by binary search, and the common terms' long postings are not
        walked once the sum of their largest possible contributions (each at most its idf) is below
        the k-th best score found. A query whose rare terms do not settle the top k is scored
        in full, as before.
        """
        if view.n_live == 0 or k < 1:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        terms, order = self._query_terms(tokens, view)
        if not order:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        # Largest possible contribution first; ``outside[i]`` bounds the score of rows that hold
        # none of ``ranked[:i]``.
        ranked = sorted((terms[t] for t in dict.fromkeys(order)), key=lambda q: (-q.bound, q.df))
        outside = [sum(q.bound for q in ranked[i:]) for i in range(len(ranked))]
        norm = self._view_stats(view).norm
        rows: np.ndarray = np.empty(0, np.int32)  # rows scored so far, in full
        acc: np.ndarray = np.empty(0, np.float64)
        walked = 0
        for j, q in enumerate(ranked[:-1]):
            walked += q.df
            if walked * PRUNE_WALK_RATIO > view.n_rows:
                break  # as dear as scoring every row
            new, own = q.scored(norm)
            fresh = np.ones(len(new), dtype=bool)
            for earlier in ranked[:j]:
                fresh &= ~earlier.holds(new)  # rows holding an earlier term are scored already
            new, own = new[fresh], own[fresh]
            part = np.zeros(len(new), dtype=np.float64)
            for tid in order:  # each row's contributions added in query-term order, as score() does
                part += own if terms[tid] is q else terms[tid].lookup(new, norm)
            rows, acc = np.concatenate([rows, new]), np.concatenate([acc, part])
            if len(rows) < k:
                continue  # no k-th score to bound the rest with yet
            kth = _kth_largest(acc, k)
            if outside[j + 1] * BOUND_SLACK < kth:
                return best_rows(rows.astype(np.int64), acc, k)
        summed = self._sum(tokens, view)
        if not isinstance(summed, np.ndarray):
            return best_rows(*summed, k)
        # Rows scoring at least the k-th best of a 1/SAMPLE_STRIDE sample of rows: a few times k
        # rows, found without listing every row that holds a term.
        sample = summed[::SAMPLE_STRIDE]
        floor = _kth_largest(sample, k) if len(sample) > k else 0.0
        rows = np.flatnonzero(summed >= floor) if floor > 0 else np.flatnonzero(summed)
        return best_rows(rows.astype(np.int64), summed[rows], k)

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
        if len(docs) > 1:  # top_k looks rows up by binary search in each term's postings
            ascending = np.diff(docs) > 0
            starts = ptr[1:-1]
            ascending[starts[(starts > 0) & (starts < len(docs))] - 1] = True  # a new term may start lower
            if not ascending.all():
                raise ValueError(f"{folder / POSTINGS}: a term's postings are not in row order")
        vocab = {t: i for i, t in enumerate(terms)}
        if len(vocab) != len(terms):
            raise ValueError(f"{folder / VOCAB} repeats a term")
        return cls(vocab, ptr.astype(np.int64), docs.astype(np.int32), tf.astype(np.float32),
                   doc_len.astype(np.int32))


@dataclass
class _ViewStats:
    """Per view: K1 * (1 - B + B * length / average length) of every row, and the live document
    frequencies counted so far (views with deleted rows only)."""

    key: tuple[int, int, int]
    norm: np.ndarray
    live_df: dict[int, int] = field(default_factory=dict)


class _QueryTerm:
    """One query term over one view: its postings as row-sorted parts (not yet filtered by
    ``alive``), its live document frequency and idf, and how often the query holds it."""

    __slots__ = ("alive", "count", "df", "idf", "parts")

    def __init__(self, parts: list[tuple[np.ndarray, np.ndarray]], view: RowView, df: int) -> None:
        self.parts = parts
        self.alive = view.alive
        self.df = df
        self.idf = np.float32(np.log(1.0 + (view.n_live - self.df + 0.5) / (self.df + 0.5)))
        self.count = 0

    @property
    def bound(self) -> float:
        """The most this term adds to a row's score: tf / (norm + tf) < 1, so idf per occurrence."""
        return float(self.idf) * self.count

    def _live(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.alive is None:
            return self.parts
        out = []
        for d, tf in self.parts:
            keep = self.alive[d]
            out.append((d[keep], tf[keep]))
        return out

    def scored(self, norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Live rows holding the term, and the term's float32 score in each."""
        live = self._live()
        docs = live[0][0] if len(live) == 1 else np.concatenate([d for d, _ in live])
        tf = live[0][1] if len(live) == 1 else np.concatenate([t for _, t in live])
        return docs, tf * self.idf / (norm[docs] + tf)

    def _find(self, rows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each part: which of ``rows`` it holds, and where."""
        found = []
        for docs, _ in self.parts:
            pos = np.searchsorted(docs, rows)
            hit = pos < len(docs)
            hit[hit] = docs[pos[hit]] == rows[hit]
            found.append((hit, pos[hit]))
        return found

    def holds(self, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` (live) hold the term."""
        out = np.zeros(len(rows), dtype=bool)
        for hit, _ in self._find(rows):
            out |= hit
        return out

    def lookup(self, rows: np.ndarray, norm: np.ndarray) -> np.ndarray:
        """The term's score in each of ``rows`` (live), 0 where it does not occur: the same float32
        bits as :meth:`scored`, element by element."""
        out = np.zeros(len(rows), dtype=np.float32)
        for (hit, pos), (_, tf) in zip(self._find(rows), self.parts, strict=True):
            t = tf[pos]
            out[hit] = t * self.idf / (norm[rows[hit]] + t)
        return out


def _kth_largest(values: np.ndarray, k: int) -> float:
    """The ``k``-th largest of ``values`` (1 <= k <= len(values))."""
    return float(values[np.argpartition(values, len(values) - k)[len(values) - k]])


def best_rows(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of scored rows, best first, ties to the lower row (rows in any order)."""
    if len(rows) > k:
        kth = _kth_largest(scores, k)
        keep = np.flatnonzero(scores >= kth)  # ties at the cut too, so that lower rows win them
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))[:k]
    return rows[order], scores[order]
