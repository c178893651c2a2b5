from pathlib import Path

import pytest

from qa.corpus import detect_date, detect_title, load_corpus
from qa.errors import CorpusError

from .conftest import SEEDS


def test_seed_corpus_loads_exact_text() -> None:
    arts = load_corpus(SEEDS)
    assert [a.doc_id for a in arts] == sorted(p.stem for p in SEEDS.glob("*.txt"))
    for a in arts:
        assert a.text == (SEEDS / f"{a.doc_id}.txt").read_bytes().decode("utf-8")


def test_title_and_date_detection() -> None:
    arts = {a.doc_id: a for a in load_corpus(SEEDS)}
    assert arts["000_9d76441e7a41c4fe"].title == "Russia Invites Ukraine to Direct Talks as Victory Day Truce Ends"
    assert arts["003_56e07843aefd4aea"].date == "2025-06-02"
    assert detect_title("\n\n# **Hello** world\nbody") == "Hello world"
    assert detect_date("no date here") is None


def test_nested_ids_crlf_and_bad_files_are_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.md").write_bytes("Title\r\nCaf\u00e9 \u201cquoted\u201d text".encode())
    (tmp_path / "empty.txt").write_text("   \n")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    (tmp_path / "ignored.csv").write_text("x")
    with caplog.at_level("WARNING"):
        arts = load_corpus(tmp_path)
    assert [a.doc_id for a in arts] == ["sub/a"]
    assert arts[0].text == "Title\r\nCaf\u00e9 \u201cquoted\u201d text"  # CRLF kept, no normalisation
    assert "empty.txt" in caplog.text and "latin1.txt" in caplog.text and "UTF-8" in caplog.text


def test_missing_or_empty_corpus_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "nope")
    with pytest.raises(CorpusError, match="no readable"):
        load_corpus(tmp_path)
