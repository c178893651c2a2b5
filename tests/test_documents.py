import json
from pathlib import Path

import pytest

from qa.errors import DocumentNotFound, InvalidDocument
from qa.index import load_index

from .test_index import _pipeline


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a\\b", "..", "x\n", "\x00", ".hidden", "a" * 200])
def test_bad_doc_ids_are_refused(tmp_path: Path, seeds_copy: Path, bad: str) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    p.load(seeds_copy)
    with pytest.raises(InvalidDocument):
        p.add_document(bad, "Some text.")
    assert sorted(x.name for x in seeds_copy.iterdir()) == sorted(
        x.name for x in (Path(__file__).parents[1] / "seeds").iterdir()
    )


def test_add_replace_delete_are_durable_and_incremental(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    p.load(seeds_copy)
    before = p.embedder.embedded  # type: ignore[attr-defined]
    art, replaced = p.add_document("zanzibar", "The Zanzibar summit opened on 3 March.", title="Zanzibar summit")
    assert not replaced and art.text == "The Zanzibar summit opened on 3 March." and art.title == "Zanzibar summit"
    assert json.loads((seeds_copy / "zanzibar.json").read_text(encoding="utf-8"))["text"] == art.text
    assert p.embedder.embedded - before <= 2  # type: ignore[attr-defined]  # only the new article
    assert "zanzibar" in load_index(tmp_path / "idx").articles  # persisted
    assert any(h.chunk.doc_id == "zanzibar" for h in p.search("Zanzibar summit", 3))

    _, replaced = p.add_document("zanzibar", "Replaced text about Mombasa.")
    assert replaced and "Mombasa" in p.document("zanzibar").text

    p.delete_document("zanzibar")
    assert not (seeds_copy / "zanzibar.txt").exists()
    assert "zanzibar" not in load_index(tmp_path / "idx").articles
    with pytest.raises(DocumentNotFound):
        p.document("zanzibar")
    with pytest.raises(DocumentNotFound):
        p.delete_document("zanzibar")


def test_write_survives_a_crash_before_the_index_update(
    tmp_path: Path, seeds_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    p.load(seeds_copy)
    import qa.store.local as mod

    def crash(*a: object, **k: object) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(mod, "write_record", crash)
    with pytest.raises(SystemExit):
        p.add_document("late", "Written just before the crash.")
    monkeypatch.undo()
    fresh = _pipeline(tmp_path, seeds_copy)
    fresh.load(seeds_copy)  # stale index detected, rebuilt from the folder
    assert "late" in fresh.index.articles  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "title"), [("ok", "bad\x00title"), ("lone \ud800 surrogate", None), ("ok", "t" * 301), ("x" * 13, "y")]
)
def test_bad_text_and_titles_are_refused(tmp_path: Path, seeds_copy: Path, text: str, title: str | None) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    p.settings = p.settings.model_copy(update={"max_document_chars": 12})
    p.load(seeds_copy)
    with pytest.raises(InvalidDocument):
        p.add_document("newdoc", text, title=title)
    assert not (seeds_copy / "newdoc.txt").exists() and not (seeds_copy / "newdoc.json").exists()


def test_a_title_does_not_count_towards_the_text_limit(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    p.settings = p.settings.model_copy(update={"max_document_chars": 12})
    p.load(seeds_copy)
    art, _ = p.add_document("newdoc", "x" * 12, title="A title longer than the text")
    assert art.text == "x" * 12 and art.title == "A title longer than the text"


def test_lru_cache_is_safe_under_threads() -> None:
    import threading

    from qa.cache import LRUCache

    cache: LRUCache[int, int] = LRUCache(8)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(300):
                keys = [(seed * 7 + i + j) % 40 for j in range(5)]
                assert cache.get_or_compute(keys, lambda ks: [k * 2 for k in ks]) == [k * 2 for k in keys]
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache) <= 8


def _clashing_folder(root: Path) -> Path:
    root.mkdir()
    (root / "foo.md").write_text("# Markdown foo\nThe Orinoco delta flooded in March.", encoding="utf-8")
    (root / "foo.txt").write_text("Text foo\nThe Zambezi bridge opened in May after long delays.", encoding="utf-8")
    (root / "bar.txt").write_text("Bar\nNothing in common with the others.", encoding="utf-8")
    return root


def test_files_sharing_a_stem_get_distinct_ids_and_exact_citations(tmp_path: Path) -> None:
    corpus = _clashing_folder(tmp_path / "c")
    p = _pipeline(tmp_path, corpus)
    p.load(corpus)
    assert sorted(p.index.articles) == ["bar", "foo.md", "foo.txt"]  # type: ignore[union-attr]
    for c in p.index.chunks:  # type: ignore[union-attr]
        assert p.index.articles[c.doc_id].text[c.start : c.end] == c.text  # type: ignore[union-attr]
    hit = p.search("Zambezi bridge", 1)[0]
    assert hit.chunk.doc_id == "foo.txt" and "Zambezi" in hit.chunk.text


def test_deleting_one_of_two_same_stem_files_stays_deleted_after_a_restart(tmp_path: Path) -> None:
    corpus = _clashing_folder(tmp_path / "c")
    p = _pipeline(tmp_path, corpus)
    p.load(corpus)
    p.delete_document("foo.txt")
    assert not (corpus / "foo.txt").exists() and (corpus / "foo.md").exists()
    again = _pipeline(tmp_path, corpus)
    again.load(corpus)
    assert sorted(again.index.articles) == ["bar", "foo"]  # type: ignore[union-attr]  # foo.md alone: its stem
    with pytest.raises(DocumentNotFound):
        again.document("foo.txt")


def test_writing_an_ambiguous_or_aliased_id_is_refused(tmp_path: Path) -> None:
    corpus = _clashing_folder(tmp_path / "c")
    p = _pipeline(tmp_path, corpus)
    p.load(corpus)
    with pytest.raises(InvalidDocument, match="ambiguous"):
        p.add_document("foo", "A third foo.")
    with pytest.raises(InvalidDocument, match="'bar'"):
        p.add_document("bar.txt", "bar.txt holds article 'bar'.")
    _, replaced = p.add_document("foo.md", "# Markdown foo\nReplaced in place.")
    assert replaced and (corpus / "foo.md").read_text(encoding="utf-8").endswith("Replaced in place.")
    assert sorted(p.index.articles) == ["bar", "foo.md", "foo.txt"]  # type: ignore[union-attr]


def test_an_index_never_holds_two_articles_under_one_id(fake_embedder) -> None:  # type: ignore[no-untyped-def]
    from qa.corpus import make_article
    from qa.errors import CorpusError
    from qa.index import build_index

    arts = [make_article("same", "One text.", "a/same.txt"), make_article("same", "Another text.", "b/same.md")]
    with pytest.raises(CorpusError, match=r"a/same\.txt and b/same\.md"):
        build_index(arts, fake_embedder, 64, 16, 50_000)


def test_ids_that_still_collide_refuse_the_folder_naming_both(tmp_path: Path) -> None:
    from qa.corpus import load_corpus
    from qa.errors import CorpusError

    for name in ("a.md", "a.txt", "a.md.txt"):
        (tmp_path / name).write_text(f"{name}\nbody", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"a\.md.* and .*a\.md\.txt"):
        load_corpus(tmp_path)
