import itertools
import random

import pytest

from qa.chunk import chunk_article, sentence_around, split_sentences
from qa.corpus import load_corpus, make_article

from .conftest import SEEDS, FakeEmbedder

ODD_TEXTS = [
    "Title\r\nFirst line.\r\nSecond “quoted” line with café and naïve.\r\nThird — dash",
    "No trailing newline. Ends here",
    "Emoji 🚀 and combining e\u0301 marks. Zürich, Kyiv — Київ. 東京 is big.",
    "A" * 3000,  # one over-long "word"
    "See https://example.org/" + "/".join(f"segment{i}" for i in range(300)) + " for more.",  # a long URL
    "Before. " + "x" * 1000 + " " + "y" * 999 + ". After.",  # two over-long words in one sentence
    ("word " * 700).strip(),  # one over-long sentence
    "U.S. President Trump spoke.Then it ended.\n\n\nNew paragraph!",
]


def _check(article, chunks, max_tokens, counter) -> None:  # type: ignore[no-untyped-def]
    assert chunks, "every non-empty article yields chunks"
    for c in chunks:
        assert c.text == article.text[c.start : c.end]
        assert c.text.strip() == c.text and c.text
        # whole chunk fits the model: sum of its words' tokens, a lone over-long word's pieces included
        assert sum(counter.count_tokens(c.text.split())) <= max_tokens
    # every word is covered by some chunk
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    for i, ch in enumerate(article.text):
        if not ch.isspace():
            assert i in covered, f"character {i} ({ch!r}) not in any chunk"


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_odd_inputs_round_trip(text: str) -> None:
    e = FakeEmbedder()
    a = make_article("odd", text)
    _check(a, chunk_article(a, e, 64, 16), 64, e)


def test_seed_chunks_round_trip_for_many_settings() -> None:
    e = FakeEmbedder()
    rng = random.Random(0)
    for a in load_corpus(SEEDS):
        for _ in range(5):
            size = rng.randint(20, 250)
            overlap = rng.randint(0, size - 1)
            _check(a, chunk_article(a, e, size, overlap), size, e)


def test_overlap_repeats_trailing_sentences() -> None:
    e = FakeEmbedder()
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    chunks = chunk_article(make_article("x", text), e, 40, 10)
    assert len(chunks) > 2
    assert all(b.start < a.end for a, b in itertools.pairwise(chunks))
    assert all(b.start > a.start for a, b in itertools.pairwise(chunks))


def test_sentence_split_keeps_abbreviations_and_glued_sentences() -> None:
    t = "The U.S. embassy warned. Talks ended.The Kremlin spoke"
    assert [t[s:e] for s, e in split_sentences(t)] == ["The U.S. embassy warned.", "Talks ended.", "The Kremlin spoke"]
    s, e = sentence_around(t, t.index("embassy"), t.index("embassy") + 7)
    assert t[s:e] == "The U.S. embassy warned."


def test_an_unbroken_string_becomes_chunks_within_the_limit() -> None:
    e = FakeEmbedder()
    a = make_article("wall", "A" * 3000)
    chunks = chunk_article(a, e, 64, 16)
    assert len(chunks) >= 3000 // (64 * 4)
    assert max(e.count_tokens([c.text])[0] for c in chunks) <= 64
    assert "".join(c.text for c in chunks) == a.text  # pieces tile the word exactly


def test_a_long_url_is_cut_after_its_separators() -> None:
    e = FakeEmbedder()
    url = "https://example.org/" + "/".join(f"seg{i:03d}" for i in range(300))
    chunks = chunk_article(make_article("url", url), e, 32, 8)
    assert all(e.count_tokens([c.text])[0] <= 32 for c in chunks)
    assert all(c.text.endswith("/") for c in chunks[:-1])


@pytest.mark.integration
def test_real_tokenizer_keeps_a_300_segment_url_within_the_limit(real_embedder) -> None:  # type: ignore[no-untyped-def]
    url = "https://news.example.com/" + "/".join(f"section-{i}-story" for i in range(300))
    a = make_article("url", f"Read it at {url} today.")
    chunks = chunk_article(a, real_embedder, 160, 32)
    counts = real_embedder.count_tokens([c.text for c in chunks])
    assert len(chunks) > 1 and max(counts) <= 160
    assert all(c.text == a.text[c.start : c.end] for c in chunks)
