"""Retrieval stage: dense (FAISS) and BM25 candidates fused by reciprocal rank fusion."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from qa.cache import LRUCache
from qa.embed import Embedder
from qa.index import EMPTY_TOKEN, SearchIndex, bm25_tokens
from qa.store.base import StoreView
from qa.types import Filters, Hit


class Retriever(Protocol):
    """Questions in, ranked chunks out (best first), from one store view."""

    @property
    def index(self) -> StoreView: ...

    def embed_questions(self, questions: list[str]) -> np.ndarray: ...

    def retrieve_batch(self, questions: list[str], k: int, qvecs: np.ndarray | None = None,
                       filters: Filters | None = None) -> list[list[Hit]]: ...

    def retrieve(self, question: str, k: int, filters: Filters | None = None) -> list[Hit]: ...


class FusedRetrieval:
    """What every hybrid retriever shares: the fusion settings, checked, and the question
    embedder with its LRU cache of question vectors."""

    def __init__(self, embedder: Embedder, candidates_k: int, rrf_k: int, cache_size: int = 1024) -> None:
        if candidates_k < 1:
            raise ValueError(f"candidates_k must be >= 1, got {candidates_k}")
        if rrf_k < 1:
            raise ValueError(f"rrf_k must be >= 1, got {rrf_k}")
        self.embedder = embedder
        self.candidates_k = candidates_k
        self.rrf_k = rrf_k
        self._cache: LRUCache[str, np.ndarray] = LRUCache(cache_size)

    def embed_questions(self, questions: list[str]) -> np.ndarray:
        """Question vectors, with a small LRU cache (repeated questions skip the model)."""
        if not questions:
            return np.zeros((0, self.embedder.dim), np.float32)
        return np.stack(self._cache.get_or_compute(questions, lambda qs: list(self.embedder.embed_batch(qs))))


class HybridRetriever(FusedRetrieval):
    """Reciprocal rank fusion of dense and BM25 rankings.

    ``Hit.score`` is the fused RRF score; ``Hit.dense`` the cosine similarity of question and
    chunk, which readers use as evidence relevance.
    """

    def __init__(
        self, index: SearchIndex, embedder: Embedder, candidates_k: int, rrf_k: int, cache_size: int = 1024
    ) -> None:
        super().__init__(embedder, candidates_k, rrf_k, cache_size)
        self.index = index

    def retrieve_batch(self, questions: list[str], k: int, qvecs: np.ndarray | None = None,
                       filters: Filters | None = None) -> list[list[Hit]]:
        """The top ``k`` chunks of each question; with ``filters``, of the matching articles only
        (both searches are restricted, so the top k fills from them)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        index = self.index  # one snapshot: a write meanwhile changes none of what is read here
        restrict = None if filters is None or filters.empty else index.rows_matching(filters)
        n = index.n_chunks if restrict is None else int(restrict.sum())
        if n == 0 or not questions:
            return [[] for _ in questions]
        if qvecs is None:
            qvecs = self.embed_questions(questions)
        ck = min(max(self.candidates_k, k), n)
        dense_scores, dense_ids = index.dense_search(qvecs, ck, restrict)
        out = []
        for qi, (q, qv) in enumerate(zip(questions, qvecs, strict=True)):
            # Ties are ordered by chunk (doc_id, start), not by row, so that an index grown by
            # writes ranks exactly as one rebuilt from the same articles.
            dense_ranked = sorted(
                ((cid, s) for cid, s in zip(dense_ids[qi].tolist(), dense_scores[qi].tolist(), strict=True)
                 if cid >= 0), key=lambda cs: (-cs[1], self._key(cs[0])))
            rows, scores = index.bm25_search(bm25_tokens(q) or [EMPTY_TOKEN], ck, restrict)
            bm_ranked = sorted(zip(rows.tolist(), scores.tolist(), strict=True),
                               key=lambda cs: (-cs[1], self._key(cs[0])))
            fused: dict[int, float] = {}
            dense: dict[int, float] = {}
            for rank, (cid, s) in enumerate(dense_ranked):
                fused[cid] = fused.get(cid, 0.0) + 1.0 / (self.rrf_k + rank + 1)
                dense[cid] = float(s)
            for rank, (cid, _) in enumerate(bm_ranked):
                fused[cid] = fused.get(cid, 0.0) + 1.0 / (self.rrf_k + rank + 1)
            best = sorted(fused, key=lambda c: (-fused[c], self._key(c)))[:k]
            hits = []
            for r, cid in enumerate(best):
                cos = dense.get(cid)
                if cos is None:
                    cos = float(np.dot(index.vector(cid), qv))
                hits.append(Hit(index.chunk(cid), fused[cid], cos, r))
            out.append(hits)
        return out

    def _key(self, row: int) -> tuple[str, int]:
        c = self.index.chunk(row)
        return c.doc_id, c.start

    def retrieve(self, question: str, k: int, filters: Filters | None = None) -> list[Hit]:
        return self.retrieve_batch([question], k, filters=filters)[0]
