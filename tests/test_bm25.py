"""BM25 top-k: the pruned walk (MaxScore bound) and the sampled floor return exactly what ranking
every row's full score returns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import qa.bm25
from qa.bm25 import BM25, RowView, best_rows


def _zipf(vocab: int) -> np.ndarray:
    p = 1.0 / np.arange(1, vocab + 1) ** 1.1
    return p / p.sum()


def _zipf_docs(rng: np.random.Generator, n_docs: int, vocab: int) -> list[list[str]]:
    return [[f"w{j}" for j in rng.choice(vocab, int(rng.integers(3, 40)), p=_zipf(vocab))] for _ in range(n_docs)]


def _views(docs: list[list[str]], rng: np.random.Generator) -> list[RowView]:
    lens = np.array([len(d) for d in docs])
    alive = rng.random(len(docs)) > 0.2
    return [RowView(len(docs), None, len(docs), int(lens.sum())),
            RowView(len(docs), alive, int(alive.sum()), int(lens[alive].sum()))]


def _queries(rng: np.random.Generator, vocab: int, n: int) -> list[list[str]]:
    # a rare term or two among common ones, all common, repeats, and an unknown term
    out = [[f"w{j}" for j in rng.choice(vocab, int(rng.integers(2, 7)), p=_zipf(vocab))] for _ in range(n)]
    return [*out, ["w0", "w1", "w2"], ["w300", "w0", "w300", "w1"], ["w5", "nope", "w250"], ["w0"]]


@pytest.mark.parametrize(("prune_ratio", "dense_ratio"), [(16, 16), (1, 16), (10**6, 10**6), (10**6, 0)])
def test_top_k_is_exactly_the_best_of_every_row_scored(
    prune_ratio: int, dense_ratio: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever way top_k takes (pruned walk, sampled floor over all rows, sparse sum), its rows
    and score bits are those of sorting every row's score, deleted rows and appended rows included."""
    monkeypatch.setattr(qa.bm25, "PRUNE_WALK_RATIO", prune_ratio)
    monkeypatch.setattr(qa.bm25, "DENSE_ACCUMULATE_RATIO", dense_ratio)
    rng = np.random.default_rng(7)
    vocab = 3000
    docs = _zipf_docs(rng, 3000, vocab)
    bm = BM25.build(docs[:2000])
    for i in range(2000, 3000, 50):
        bm.add(docs[i : i + 50])
    full_sums = 0
    original_sum = BM25._sum

    def counting_sum(self: BM25, tokens: list[str], view: RowView) -> object:
        nonlocal full_sums
        full_sums += 1
        return original_sum(self, tokens, view)

    monkeypatch.setattr(BM25, "_sum", counting_sum)
    queries = _queries(rng, vocab, 150)
    for view in _views(docs, rng):
        for q in queries:
            for k in (1, 10, 30):
                got = bm.top_k(q, k, view)
                want = best_rows(*bm.score(q, view), k)
                assert got[0].tolist() == want[0].tolist(), (q, k)
                assert got[1].tolist() == want[1].tolist(), (q, k)
                if view.alive is not None:
                    assert view.alive[got[0]].all()
    n_calls = 2 * len(queries) * 3
    scored_in_full = full_sums - n_calls  # each check above calls score() -> _sum once itself
    if prune_ratio <= 16:
        assert 0 < scored_in_full < n_calls  # both ways taken: some queries pruned, some not
    if prune_ratio == 1:
        assert scored_in_full < n_calls / 4  # a walk of up to every row's worth of postings: most prune
    if prune_ratio == 10**6:
        assert scored_in_full == n_calls  # the walk never starts: every query is summed over all rows


def test_the_bound_holds_for_rows_outside_the_walk() -> None:
    """A row holding only common terms many times over still loses to the rare-term rows when the
    bound says it must, and wins when it can."""
    docs = [["rare", "x"]] * 3 + [["common"] * 30] * 1 + [["common", "y"]] * 200
    bm = BM25.build(docs)
    view = RowView(len(docs), None, len(docs), sum(len(d) for d in docs))
    for q, k in ((["rare", "common"], 2), (["rare", "common"], 4), (["common", "rare"], 5)):
        got = bm.top_k(q, k, view)
        want = best_rows(*bm.score(q, view), k)
        assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
    assert bm.top_k(["rare", "common"], 4, view)[0].tolist() == [0, 1, 2, 3]


def test_load_refuses_postings_out_of_row_order(tmp_path: Path) -> None:
    bm = BM25.build([["a", "b"], ["a"], ["b", "c"], ["a", "c"]])
    bm.add([["a", "c"]])
    bm.save(tmp_path, None)
    again = BM25.load(tmp_path)  # base then appended rows: in row order
    view = RowView(5, None, 5, 9)
    assert again.top_k(["a", "c"], 5, view)[0].tolist() == bm.top_k(["a", "c"], 5, view)[0].tolist()
    with np.load(tmp_path / "postings.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["docs"][[0, 1]] = arrays["docs"][[1, 0]]  # term "a": rows 1, 0, ...
    with (tmp_path / "postings.npz").open("wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match="not in row order"):
        BM25.load(tmp_path)


def test_document_frequencies_follow_each_views_deletions() -> None:
    """Live document frequencies are kept per view; a view with more rows deleted, or an older
    one again, scores as a BM25 that never saw another view does."""
    rng = np.random.default_rng(3)
    docs = _zipf_docs(rng, 1500, 300)
    lens = np.array([len(d) for d in docs])
    shared = BM25.build(docs)
    fewer = rng.random(len(docs)) > 0.1
    more = fewer & (rng.random(len(docs)) > 0.3)
    views = [RowView(len(docs), a, int(a.sum()), int(lens[a].sum())) for a in (fewer, more, fewer)]
    for view in views:
        for q in _queries(rng, 300, 40):
            fresh = BM25.build(docs)  # no counts kept from any other view
            got, want = shared.top_k(q, 10, view), fresh.top_k(q, 10, view)
            assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist(), q
