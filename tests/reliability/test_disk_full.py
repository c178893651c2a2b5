"""A full disk during a write: the API answers 507 with the JSON error shape, nothing changes.

ENOSPC is injected at each point of a write: the article file, the journal record (its write,
its fsync), and each file of a compaction (which then only logs: the write is already in the
journal). After
the refusal the article folder and the saved index are exactly as before (a new article's file is
gone, a replaced or deleted one is back), so a restart finds the index up to date; the server
goes on answering; and the same write succeeds once space is back. A real full file system (a
small tmpfs) is tried too where this machine lets the tests mount one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import qa.documents
import qa.index
import qa.journal
from qa.corpus import load_corpus
from qa.index import current_version, load_index, staleness
from qa.pipeline import QAPipeline
from tests.api.conftest import ZANZIBAR_ID, ZANZIBAR_QUESTION, ZANZIBAR_TEXT, assert_error, make_client, make_pipeline
from tests.conftest import SEEDS

NEW = {"doc_id": ZANZIBAR_ID, "text": ZANZIBAR_TEXT}
SEED_ID = "003_56e07843aefd4aea"


def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _fail_on_fsync_of(name: str) -> Callable[[Path], None]:
    real = qa.index._fsync_file

    def fsync(path: Path) -> None:
        if path.name == name:
            _enospc()
        real(path)

    return fsync


def _fail_on_journal_write() -> Callable[[int, bytes], None]:
    """Writes half the record, then fails (what a disk that fills up mid-record does)."""
    real = qa.journal._write_all

    def write(fd: int, data: bytes) -> None:
        real(fd, data[: len(data) // 2])
        _enospc()

    return write


# (module, attribute, replacement factory): where the disk fills up during a write.
FAULTS: dict[str, tuple[object, str, Callable[[], object]]] = {
    "article file": (qa.documents, "write_atomic", lambda: _enospc),
    "journal write": (qa.journal, "_write_all", _fail_on_journal_write),
    "journal fsync": (qa.journal, "_fsync", lambda: _enospc),
}
# ... and during the compaction that a write past the journal's bound starts.
COMPACTION_FAULTS: dict[str, tuple[object, str, Callable[[], object]]] = {
    "articles.jsonl": (qa.index, "_fsync_file", lambda: _fail_on_fsync_of("articles.jsonl")),
    "chunks.npz": (qa.index.np, "savez", lambda: _enospc),
    "vectors.faiss": (qa.index, "_fsync_file", lambda: _fail_on_fsync_of("vectors.faiss")),
    "bm25": (qa.index, "_fsync_file", lambda: _fail_on_fsync_of("postings.npz")),
    "manifest.json": (qa.index, "_fsync_file", lambda: _fail_on_fsync_of("manifest.json")),
    "CURRENT": (qa.index, "write_atomic", lambda: _enospc),
}


def _snapshot(p: QAPipeline) -> tuple[dict[str, bytes], str, dict[str, str]]:
    """The article folder's files, the current index version and its fingerprints."""
    files = {x.name: x.read_bytes() for x in p.corpus_dir.iterdir()}
    return files, current_version(p.settings.index_dir).name, load_index(p.settings.index_dir).manifest.fingerprints


def _assert_consistent(p: QAPipeline) -> None:
    """Nothing half-done is left, and a restart would find the index up to date with the folder."""
    assert not [x.name for x in p.corpus_dir.iterdir() if x.name.startswith(".")]
    assert not [x.name for x in p.settings.index_dir.iterdir() if x.name.startswith(".tmp")]
    fingerprints = {a.doc_id: a.sha256 for a in load_corpus(p.corpus_dir)}
    manifest = load_index(p.settings.index_dir).manifest
    assert staleness(manifest, fingerprints, p.embedder.name, p.settings.chunk_tokens,
                     p.settings.chunk_overlap_tokens) is None
    assert set(p.index.articles) == set(fingerprints)  # type: ignore[union-attr]


@pytest.fixture
def pipeline(tmp_path: Path) -> QAPipeline:
    return make_pipeline(tmp_path)


@pytest.mark.parametrize(("write", "where"), [(w, f) for w in ("add", "replace", "delete") for f in FAULTS
                                               if not (w == "delete" and f == "article file")])  # no file written
def test_disk_full_during_a_write_is_507_and_changes_nothing(pipeline: QAPipeline, monkeypatch: pytest.MonkeyPatch,
                                                             where: str, write: str) -> None:
    target, attr, fault = FAULTS[where]
    with make_client(pipeline) as c:
        if write == "replace":
            assert c.post("/documents", json=NEW).status_code == 201
        before = _snapshot(pipeline)
        monkeypatch.setattr(target, attr, fault())
        if write == "delete":
            r = c.delete(f"/documents/{SEED_ID}")
        else:
            r = c.post("/documents", json={**NEW, "text": ZANZIBAR_TEXT + (" Changed." if write == "replace" else "")})
        err = assert_error(r, 507, "insufficient_storage")
        assert "disk is full" in err["message"] and "nothing was changed" in err["message"]
        assert _snapshot(pipeline) == before
        _assert_consistent(pipeline)
        # the server goes on: reads and questions answer from the previous index
        assert c.get("/healthz").status_code == 200
        assert c.get(f"/documents/{SEED_ID}").status_code == 200
        assert c.post("/ask", json={"question": ZANZIBAR_QUESTION}).status_code == 200
        monkeypatch.undo()  # space is back: the same write goes through
        if write == "delete":
            assert c.delete(f"/documents/{SEED_ID}").status_code == 200
        else:
            assert c.post("/documents", json={**NEW, "text": ZANZIBAR_TEXT + " Again."}).status_code in (200, 201)
        _assert_consistent(pipeline)


@pytest.mark.parametrize("where", COMPACTION_FAULTS)
def test_disk_full_during_compaction_keeps_the_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     where: str) -> None:
    """The write that starts a compaction is acknowledged from the journal; the compaction that
    fails leaves the previous version and its journal, and the next write compacts."""
    p = make_pipeline(tmp_path, journal_compact_min_chunks=0, journal_compact_fraction=0.01)
    target, attr, fault = COMPACTION_FAULTS[where]
    with make_client(p) as c:
        version = current_version(p.settings.index_dir)
        monkeypatch.setattr(target, attr, fault())
        assert c.post("/documents", json=NEW).status_code == 201
        p.wait_for_compaction()
        assert current_version(p.settings.index_dir) == version  # not compacted
        _assert_consistent(p)  # the journal has the write
        assert c.post("/ask", json={"question": ZANZIBAR_QUESTION}).json()["answer"] == "3 March 2031"
        monkeypatch.undo()
        assert c.delete(f"/documents/{SEED_ID}").status_code == 200
        p.wait_for_compaction()
        assert current_version(p.settings.index_dir) != version  # compacted now
        assert not (current_version(p.settings.index_dir) / qa.journal.JOURNAL).exists()
        _assert_consistent(p)


def test_other_storage_errors_are_503_without_paths(pipeline: QAPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(pipeline.corpus_dir))

    monkeypatch.setattr(qa.documents, "write_atomic", read_only)
    with make_client(pipeline) as c:
        err = assert_error(c.post("/documents", json=NEW), 503, "storage_unavailable")
        assert "nothing was changed" in err["message"]
    assert not (pipeline.corpus_dir / f"{ZANZIBAR_ID}.txt").exists()


# ---------------------------------------------------------------- a real full file system
@contextlib.contextmanager
def _small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True, timeout=10)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_really_full_disk(tmp_path: Path) -> None:
    """Writes into a 1 MiB tmpfs until it is full: every refusal is a 507, every 2xx is kept."""
    import shutil

    with _small_tmpfs(tmp_path / "disk", "1m") as disk:
        shutil.copytree(SEEDS, disk / "corpus")
        p = make_pipeline(disk)
        acked, refused = set(), 0
        with make_client(p) as c:
            for i in range(200):
                r = c.post("/documents", json={"doc_id": f"filler-{i}", "text": f"Filler {i}. " + "x " * 4000})
                if r.status_code == 201:
                    acked.add(f"filler-{i}")
                else:
                    assert_error(r, 507, "insufficient_storage")
                    refused += 1
                    if refused >= 3:
                        break
            assert refused >= 3, "the disk never filled up"
            assert c.get("/healthz").status_code == 200
            listed = {d["doc_id"] for d in c.get("/documents").json()["documents"]}
            assert acked <= listed
        _assert_consistent(p)
        fresh = make_pipeline(disk, load=False)
        fresh.load(disk / "corpus", rebuild=False)  # up to date: no rebuild needed, none attempted
        assert acked <= set(fresh.index.articles)  # type: ignore[union-attr]
