"""Answerability features: values by hand, the word statistics file, clear errors."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest

from qa.read.answerability import (
    FEATURES,
    MIN_DF,
    WORD_STATS_FILE,
    WordStats,
    WordStatsError,
    feature_values,
    lexical_features,
    near_span,
)

PASSAGE = ("The bridge opened in 1990. It was built by Acme Works. Traffic grew fast. "
           "A second bridge followed in 2004. Nobody remembers why.")


def stats() -> WordStats:
    # "bridge" is common (in 9 of 10 paragraphs), everything else unseen.
    return WordStats(10, {"bridge": 9})


def test_features_of_an_answerable_question_are_all_zero() -> None:
    start = PASSAGE.index("Acme Works")
    values = lexical_features("Who built the bridge?", PASSAGE, start, start + len("Acme Works"), stats())
    assert values == [0.0] * len(FEATURES)


def test_missing_words_names_and_numbers_are_counted_and_weighed_by_rarity() -> None:
    start = PASSAGE.index("Acme Works")
    q = "Who painted the bridge for Zenith in 1990 and 1887?"
    got = dict(zip(FEATURES, lexical_features(q, PASSAGE, start, start + 10, stats()), strict=True))
    # Words (no stopwords): painted, bridge, zenith, 1990, 1887; missing: painted, zenith, 1887.
    assert got["missing_count"] == 3.0 and got["missing_share"] == pytest.approx(3 / 5)
    rare, common = math.log(11 / 0.5), math.log(11 / 9.5)
    assert got["missing_idf"] == pytest.approx(3 * rare / (4 * rare + common))
    # Near the span: its sentence and one either side ("The bridge opened in 1990." .. "Traffic grew fast.").
    assert got["missing_idf_near"] == pytest.approx(got["missing_idf"])
    assert got["missing_names"] == 1.0 and got["missing_numbers"] == 1.0


def test_words_far_from_the_span_count_as_missing_near_it() -> None:
    start = PASSAGE.index("Nobody")
    q = "Who built the bridge?"  # "built" is two sentences before the span's sentence
    got = dict(zip(FEATURES, lexical_features(q, PASSAGE, start, start + 6, stats()), strict=True))
    assert got["missing_idf"] == 0.0 and 0.0 < got["missing_idf_near"] < 1.0
    assert near_span(PASSAGE, start, start + 6) == "A second bridge followed in 2004. Nobody remembers why."


def test_feature_values_follow_the_names_given_and_reject_unknown_ones() -> None:
    start = PASSAGE.index("Acme")
    every = lexical_features("Who built Zenith?", PASSAGE, start, start + 4, stats())
    picked = feature_values(["missing_names", "missing_count"], "Who built Zenith?", PASSAGE, start, start + 4,
                            stats())
    assert picked == [every[FEATURES.index("missing_names")], every[FEATURES.index("missing_count")]]
    with pytest.raises(ValueError, match="unknown answerability feature"):
        feature_values(["gap"], "q", PASSAGE, 0, 1, stats())


def test_word_stats_round_trip_keep_frequent_words_only(tmp_path: Path) -> None:
    texts = ["the bridges opened"] * MIN_DF + ["a rare word"]
    built = WordStats.from_texts(texts)
    assert built.paragraphs == MIN_DF + 1 and built.df == {"bridge": MIN_DF, "opened": MIN_DF}
    assert built.idf("rare") == built.idf("never") > built.idf("bridge")
    assert WordStats.load(tmp_path) is None
    path = built.save(tmp_path)
    assert WordStats.load(tmp_path) == built
    first = path.read_bytes()
    built.save(tmp_path)
    assert path.read_bytes() == first  # same statistics, same bytes (the file lives in git)


def test_a_broken_word_stats_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / WORD_STATS_FILE).write_bytes(b"not gzip")
    with pytest.raises(WordStatsError, match="qa calibrate --word-stats"):
        WordStats.load(tmp_path)
    with gzip.open(tmp_path / WORD_STATS_FILE, "wt") as f:
        f.write("word\t3\n")
    with pytest.raises(WordStatsError, match="#paragraphs"):
        WordStats.load(tmp_path)
