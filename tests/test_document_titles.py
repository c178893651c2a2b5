"""A write's title is the article's metadata: the stored text is exactly the text given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qa.corpus import load_corpus
from qa.errors import InvalidDocument

from .conftest import FakeEmbedder
from .test_index import _pipeline

TEXT = "The Zanzibar summit opened on 3 March 2031 in Stone Town. Delegates from twelve countries attended."


def _files(corpus: Path, stem: str) -> list[str]:
    return sorted(p.name for p in corpus.iterdir() if p.name.split(".", 1)[0] == stem)


def test_the_title_is_stored_beside_the_exact_text_and_survives_a_rebuild(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    p.load(seeds_copy)
    art, replaced = p.add_document("zanzibar", TEXT, title="  Zanzibar   summit opens ")
    assert not replaced and art.text == TEXT and art.title == "Zanzibar summit opens"
    assert _files(seeds_copy, "zanzibar") == ["zanzibar.json"]
    record = json.loads((seeds_copy / "zanzibar.json").read_text(encoding="utf-8"))
    assert record["text"] == TEXT and record["title"] == "Zanzibar summit opens"
    chunks = [c for c in p.index.chunks if c.doc_id == "zanzibar"]  # type: ignore[union-attr]
    assert chunks and all(art.text[c.start : c.end] == c.text for c in chunks)
    assert chunks[0].start == 0 and "Zanzibar summit opens" not in "".join(c.text for c in chunks)
    # The folder reads back to the same article (a rebuild), and a restart finds the index current.
    again = {a.doc_id: a for a in load_corpus(seeds_copy)}["zanzibar"]
    assert (again.text, again.title, again.sha256) == (art.text, art.title, art.sha256)
    fresh = _pipeline(tmp_path, seeds_copy)
    messages: list[str] = []
    fresh.load(seeds_copy, notify=messages.append)
    assert fresh.document("zanzibar").title == "Zanzibar summit opens" and not messages


def test_adding_or_dropping_a_title_changes_the_version_and_the_file_kind(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    p.load(seeds_copy)
    plain, _ = p.add_document("zanzibar", TEXT)
    assert _files(seeds_copy, "zanzibar") == ["zanzibar.txt"] and plain.title == "The Zanzibar summit opened on " \
        "3 March 2031 in Stone Town. Delegates from twelve countries attended."  # a .txt's first line, as ever
    titled, replaced = p.add_document("zanzibar", TEXT, title="Zanzibar summit opens")
    assert replaced and _files(seeds_copy, "zanzibar") == ["zanzibar.json"]  # the text file was replaced
    assert titled.text == plain.text and titled.sha256 != plain.sha256  # a new title is a new version (ETag)
    retitled, _ = p.add_document("zanzibar", TEXT, title="Zanzibar summit: day one")
    assert retitled.sha256 != titled.sha256 and p.document("zanzibar").title == "Zanzibar summit: day one"
    same, replaced = p.add_document("zanzibar", TEXT, title="Zanzibar summit: day one")
    assert replaced and same.sha256 == retitled.sha256
    dropped, _ = p.add_document("zanzibar", TEXT)
    assert _files(seeds_copy, "zanzibar") == ["zanzibar.txt"] and dropped.sha256 == plain.sha256
    assert {a.doc_id: a.text for a in load_corpus(seeds_copy)}["zanzibar"] == TEXT
    assert sum(1 for d in p.index.articles if d.startswith("zanzibar")) == 1  # type: ignore[union-attr]


class FailingEmbedder(FakeEmbedder):
    """Fails to embed any text containing ``marker``: a write that fails after its file is written."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def embed_batch(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        if any(self.marker in t for t in texts):
            raise RuntimeError("embedding failed")
        return super().embed_batch(texts, show_progress)


def test_a_failed_write_that_added_a_title_puts_the_text_file_back(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy, FailingEmbedder("Pemba"))
    p.load(seeds_copy)
    p.add_document("zanzibar", TEXT)
    with pytest.raises(RuntimeError, match="embedding failed"):
        p.add_document("zanzibar", "The ferry to Pemba reopened.", title="Ferry news")
    assert _files(seeds_copy, "zanzibar") == ["zanzibar.txt"]
    assert (seeds_copy / "zanzibar.txt").read_text(encoding="utf-8") == TEXT == p.document("zanzibar").text


def test_writes_that_would_replace_an_archive_or_a_named_file_are_refused(tmp_path: Path, seeds_copy: Path) -> None:
    archive = [{"id": "1", "text": "The Orinoco delta flooded in March."}, {"id": "2", "text": "Ferries resumed."}]
    (seeds_copy / "arch.json").write_text(json.dumps(archive), encoding="utf-8")
    (seeds_copy / "foo.md").write_text("# Markdown foo\nThe Zambezi bridge opened.", encoding="utf-8")
    (seeds_copy / "foo.txt").write_text("Text foo\nThe harbour reopened.", encoding="utf-8")
    p = _pipeline(tmp_path, seeds_copy)
    p.load(seeds_copy)
    for title in (None, "A title"):
        with pytest.raises(InvalidDocument, match="archive"):
            p.add_document("arch", "Not an archive.", title=title)
    assert json.loads((seeds_copy / "arch.json").read_text(encoding="utf-8")) == archive
    with pytest.raises(InvalidDocument, match="keeps the extension"):
        p.add_document("foo.md", "# Markdown foo\nReplaced.", title="Foo")
    assert _files(seeds_copy, "foo") == ["foo.md", "foo.txt"]
    assert {"arch/1", "arch/2", "foo.md", "foo.txt"} <= set(p.index.articles)  # type: ignore[union-attr]
