"""kill -9 at any moment: during ``qa index build``, during ``POST /documents``, right after a 2xx.

Afterwards the index loads (or is rebuilt by itself), holds every acknowledged article with its
exact text, and answers. A damaged index file, manifest or pointer is named in a one-line error
and rebuilt; it never produces a traceback or a wrong answer.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from qa.corpus import load_corpus
from qa.errors import IndexCorrupt
from qa.index import CURRENT, MANIFEST, current_version, load_index, staleness
from qa.pipeline import QAPipeline
from qa.settings import Settings
from tests.api.conftest import ScriptedReader
from tests.api.test_server import QA_BIN, Server, _start, _stop
from tests.conftest import SEEDS, FakeEmbedder
from tests.reliability.conftest import AUTH, TOKEN, fake_model_env, listed_ids
from tests.reliability.corpus_gen import article_text, write_corpus

pytestmark = pytest.mark.skipif(not QA_BIN.exists(), reason=f"{QA_BIN} is not installed")


def _pipeline(root: Path, reader: ScriptedReader | None = None) -> QAPipeline:
    """The in-process pipeline over ``root`` with the settings ``qa`` subprocesses use there."""
    s = Settings(index_dir=root / "index", corpus_dir=root / "corpus")
    return QAPipeline(s, embedder=FakeEmbedder(), reader=reader if reader is not None else ScriptedReader())


def _build(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(QA_BIN), "index", "build", str(root / "corpus"), "--index", str(root / "index"),
                             *args], cwd=root, env=env if env is not None else fake_model_env(root),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _fingerprints(root: Path) -> dict[str, str]:
    return {a.doc_id: a.sha256 for a in load_corpus(root / "corpus")}


# The fake embedder ranks poorly; with the widest top_k the article's own passage is among those read.
WIDE = 50


def _assert_answers_about(p: QAPipeline, i: int) -> None:
    """The generated fact of article ``gen-<i>`` is found and cited from that article."""
    p._reader = ScriptedReader({f"elwin{i}": f"Captain Ama Osei{i}"})
    answer = p.ask(f"Who is the harbour master of Elwin{i}?", top_k=WIDE)
    assert answer.text == f"Captain Ama Osei{i}" and answer.citations[0].doc_id == f"gen-{i:04d}", answer


# ---------------------------------------------------------------- (a) during `qa index build`
def _kill_builds_at_random_points(root: Path, kills: int, rng: random.Random, env: dict[str, str],
                                  change: int = 5) -> int:
    """Change the corpus, start a full build, SIGKILL it at a random moment; ``kills`` times.

    After each kill the index on disk is the last complete one (or the new one, if the kill came
    after the switch), never a mix: ``load_index`` verifies every checksum.
    """
    t0 = time.monotonic()
    assert _build(root, env=env).wait(timeout=600) == 0
    full_s = time.monotonic() - t0
    killed = 0
    next_id = 10_000
    for _ in range(kills):
        before = load_index(root / "index").manifest.fingerprints
        for i in range(next_id, next_id + change):  # new articles, and one changed
            (root / "corpus" / f"gen-{i:04d}.txt").write_text(article_text(i, rng), encoding="utf-8")
        victim = root / "corpus" / "gen-0000.txt"
        victim.write_text(victim.read_text(encoding="utf-8") + f"\nAmended {next_id}.\n", encoding="utf-8")
        next_id += change
        proc = _build(root, "--full", env=env)
        time.sleep(rng.uniform(0.05, 0.6) * full_s)  # the first build also warmed the page cache: later ones run faster
        proc.send_signal(signal.SIGKILL)
        rc = proc.wait(timeout=30)
        killed += rc == -signal.SIGKILL
        after = load_index(root / "index").manifest.fingerprints  # complete and verified, whatever the moment
        assert after in (before, _fingerprints(root)), "the index is neither the old nor the new corpus"
    return killed


def test_kill_9_during_index_build_keeps_a_loadable_index(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    write_corpus(tmp_path / "corpus", 300)
    killed = _kill_builds_at_random_points(tmp_path, kills=3, rng=random.Random(seed), env=fake_model_env(tmp_path))
    assert killed >= 2, "the builds finished before they could be killed; make the corpus bigger"
    p = _pipeline(tmp_path)
    p.load(tmp_path / "corpus")  # stale after the kills: rebuilt from the folder
    assert p.index is not None and p.index.manifest.fingerprints == _fingerprints(tmp_path)
    assert staleness(load_index(tmp_path / "index").manifest, _fingerprints(tmp_path), "fake-embedder", 160, 32) is None
    _assert_answers_about(p, 10_003)
    (tmp_path / "corpus" / "gen-0001.txt").unlink()
    assert _build(tmp_path).wait(timeout=120) == 0
    left = sorted(x.name for x in (tmp_path / "index").iterdir() if x.name not in (".writer.lock", ".writer"))
    assert len(left) == 2 and left[0] == CURRENT, left  # the kills' half-written versions are gone


@pytest.mark.slow
def test_kill_9_during_index_build_with_the_real_model(tmp_path: Path) -> None:
    """The real `qa index build` (MiniLM embeddings), killed at random moments.

    60 articles: embedding them takes the real model tens of seconds on two cores already.
    """
    from tests.api.test_server import _env

    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    write_corpus(tmp_path / "corpus", 60)
    env = _env(tmp_path)
    killed = _kill_builds_at_random_points(tmp_path, kills=3, rng=random.Random(seed), env=env)
    assert killed >= 2
    assert _build(tmp_path, env=env).wait(timeout=600) == 0
    assert load_index(tmp_path / "index").manifest.fingerprints == _fingerprints(tmp_path)


@pytest.mark.slow
def test_kill_9_during_index_build_many_times(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    write_corpus(tmp_path / "corpus", 1000)
    killed = _kill_builds_at_random_points(tmp_path, kills=12, rng=random.Random(seed), env=fake_model_env(tmp_path))
    assert killed >= 8
    p = _pipeline(tmp_path)
    p.load(tmp_path / "corpus")
    _assert_answers_about(p, 10_007)


# Files of a version folder, in the order a save writes (and fsyncs) them, then the pointer.
SAVE_STEPS = ["articles.jsonl", "chunks.npz", "vectors.faiss", "postings.npz", MANIFEST, CURRENT]


@pytest.mark.parametrize("step", SAVE_STEPS)
def test_kill_9_at_each_step_of_an_index_save(tmp_path: Path, step: str) -> None:
    (tmp_path / "corpus").mkdir()
    for src in SEEDS.iterdir():
        (tmp_path / "corpus" / src.name).write_bytes(src.read_bytes())
    _pipeline(tmp_path).load(tmp_path / "corpus")
    before = load_index(tmp_path / "index").manifest.fingerprints
    (tmp_path / "corpus" / "gen-0042.txt").write_text(article_text(42, random.Random(0)), encoding="utf-8")
    proc = _build(tmp_path, env=fake_model_env(tmp_path, QA_TEST_KILL_AT=step))
    assert proc.wait(timeout=120) == -signal.SIGKILL
    assert load_index(tmp_path / "index").manifest.fingerprints == before  # the previous index, intact
    p = _pipeline(tmp_path)
    p.load(tmp_path / "corpus")  # sees the new article, rebuilds
    _assert_answers_about(p, 42)


# ---------------------------------------------------------------- (b) during POST /documents, (c) after a 2xx
def _writer(server: Server, ids: list[str], acked: dict[str, str], stop: threading.Event,
            kill_on_first_ack: bool = False) -> None:
    """POST each article in turn; record the ones acknowledged with 2xx."""
    with httpx.Client(timeout=60) as client:
        for doc_id in ids:
            if stop.is_set():
                return
            i = int(doc_id.rsplit("-", 1)[1])
            text = article_text(i, random.Random(i))
            try:
                r = client.post(f"{server.url}/documents", json={"doc_id": doc_id, "text": text}, headers=AUTH)
            except httpx.TransportError:
                return  # the server died mid-request: not acknowledged
            if r.status_code in (200, 201):
                acked[doc_id] = text
                if kill_on_first_ack:
                    os.kill(server.proc.pid, signal.SIGKILL)
                    return
            else:
                assert r.status_code == 503, r.text  # busy is the only refusal allowed


def _check_after_restart(root: Path, acked: dict[str, str], tried: set[str], initial: set[str]) -> None:
    """A restarted server lists every acknowledged article with its exact text, and answers."""
    again = _start(root, fake_model_env(root, QA_API_TOKEN=TOKEN), f"restart-{len(list(root.glob('*.log')))}")
    try:
        listed = listed_ids(again)
        assert set(acked) <= listed, sorted(set(acked) - listed)
        assert listed - set(acked) <= tried | initial  # nothing appears that nobody wrote
        for doc_id in listed & tried:  # acknowledged, or unacknowledged but complete
            text = httpx.get(f"{again.url}/documents/{doc_id}", timeout=30).json()["text"]
            assert text == article_text(int(doc_id.rsplit("-", 1)[1]), random.Random(int(doc_id.rsplit("-", 1)[1])))
        if acked:
            doc_id = sorted(acked)[-1]
            i = int(doc_id.rsplit("-", 1)[1])
            question = {"question": f"Who is the harbour master of Elwin{i}?", "top_k": WIDE}
            r = httpx.post(f"{again.url}/ask", json=question, timeout=60)
            assert r.status_code == 200 and doc_id in r.json()["retrieved"], r.text
    finally:
        _stop(again)
    assert "Traceback" not in again.output(), again.output()


def _kill_during_writes(serve_root: Path, round_: int) -> None:
    rng = random.Random()
    write_corpus(serve_root / "corpus", 100)  # a write then saves several hundred chunks: time to be killed in
    initial = set(_fingerprints(serve_root))
    server = _start(serve_root, fake_model_env(serve_root, QA_API_TOKEN=TOKEN), "first")
    acked: dict[str, str] = {}
    stop = threading.Event()
    ids = [[f"w{round_}{t}-{5000 + t * 100 + k}" for k in range(100)] for t in range(4)]
    threads = [threading.Thread(target=_writer, args=(server, i, acked, stop)) for i in ids]
    for t in threads:
        t.start()
    time.sleep(rng.uniform(0.5, 3.0))
    server.proc.send_signal(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    server.proc.wait(timeout=10)
    print(f"{len(acked)} writes acknowledged before the kill")
    _check_after_restart(serve_root, acked, {d for i in ids for d in i}, initial)


def test_kill_9_during_post_documents(serve_root: Path) -> None:
    _kill_during_writes(serve_root, 0)


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(1, 6))
def test_kill_9_during_post_documents_again(tmp_path: Path, round_: int) -> None:
    import shutil

    shutil.copytree(SEEDS, tmp_path / "corpus")
    _kill_during_writes(tmp_path, round_)


def test_kill_9_right_after_a_write_is_acknowledged(serve_root: Path) -> None:
    initial = set(_fingerprints(serve_root))
    server = _start(serve_root, fake_model_env(serve_root, QA_API_TOKEN=TOKEN), "first")
    acked: dict[str, str] = {}
    ids = [f"ack-{6000 + k}" for k in range(3)]
    _writer(server, ids, acked, threading.Event(), kill_on_first_ack=True)
    server.proc.wait(timeout=10)
    assert list(acked) == ["ack-6000"]
    _check_after_restart(serve_root, acked, set(ids), initial)


@pytest.mark.parametrize("kill_at", ["journal.log", "journal.log:torn"])
def test_kill_9_during_a_journal_append(serve_root: Path, kill_at: str) -> None:
    """Killed after the journal record is fsynced (before the answer), or halfway through it:
    the article file is already durable, so after a restart it is there and answers either way."""
    initial = set(_fingerprints(serve_root))
    server = _start(serve_root, fake_model_env(serve_root, QA_API_TOKEN=TOKEN, QA_TEST_KILL_AT=kill_at), "first")
    doc_id = "gen-0042"
    text = article_text(42, random.Random(42))
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{server.url}/documents", json={"doc_id": doc_id, "text": text}, headers=AUTH, timeout=60)
    assert server.proc.wait(timeout=10) == -signal.SIGKILL
    journal = current_version(serve_root / "index") / "journal.log"
    assert journal.stat().st_size > 0
    _check_after_restart(serve_root, {doc_id: text}, {doc_id}, initial)
    restarted = sorted(serve_root.glob("restart-*.log"))[-1].read_text()
    # the whole record is replayed; the torn one is ignored with a warning and the article re-indexed
    assert ("incomplete write" in restarted and "stale" in restarted) == (kill_at.endswith("torn")), restarted
    assert staleness(load_index(serve_root / "index").manifest, _fingerprints(serve_root), "fake-embedder", 160,
                     32) is None


# ---------------------------------------------------------------- damaged index files
def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip":  # one byte in the middle: same size, only the checksum can tell
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes([data[mid] ^ 0x01]) + data[mid + 1 :])
    elif how == "append":
        path.write_bytes(data + b"\x00junk")


def _index_files(root: Path) -> list[str]:
    version = current_version(root / "index")
    return sorted(p.relative_to(version).as_posix() for p in version.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("built")
    write_corpus(root / "corpus", 12)
    _pipeline(root).load(root / "corpus")
    return root


def test_every_damaged_index_file_is_named_and_rebuilt(built: Path, tmp_path: Path) -> None:
    """Every file of a freshly built version folder, four kinds of damage (a journal's damage is
    tests/test_journal.py's: a torn last record is not an error there)."""
    import shutil

    files = _index_files(built)
    assert len(files) >= 6, files
    reference = _pipeline(built)
    reference.load(built / "corpus")
    expected = reference.ask("Who is the harbour master of Elwin7?", reader=None)
    for rel in files:
        for how in ("empty", "truncate", "flip", "append"):
            root = tmp_path / f"{rel.replace('/', '_')}-{how}"
            shutil.copytree(built, root)
            _damage(current_version(root / "index") / rel, how)
            with pytest.raises(IndexCorrupt) as info:
                load_index(root / "index")
            msg = str(info.value)
            assert rel.split("/")[-1] in msg or "manifest.json" in msg, msg
            assert "rebuild" in msg or "qa index build" in msg
            p = _pipeline(root)
            p.load(root / "corpus")
            assert p.index is not None and p.index.chunks == reference.index.chunks  # type: ignore[union-attr]
            got = p.ask("Who is the harbour master of Elwin7?")
            assert (got.text, got.retrieved) == (expected.text, expected.retrieved)


MANIFEST_DAMAGE = {
    "files not a map": lambda m: {**m, "files": "x"},
    "files null": lambda m: {**m, "files": None},
    "file entry not a map": lambda m: {**m, "files": dict.fromkeys(m["files"], 5)},
    "byte count a string": lambda m: {**m, "files": {k: {**v, "bytes": str(v["bytes"])}
                                                     for k, v in m["files"].items()}},
    "checksums dropped": lambda m: {**m, "files": {}},
    "a checksum dropped": lambda m: {**m, "files": {k: v for k, v in m["files"].items() if k != "chunks.npz"}},
    "fingerprints a list": lambda m: {**m, "fingerprints": list(m["fingerprints"])},
    "fingerprint not a string": lambda m: {**m, "fingerprints": dict.fromkeys(m["fingerprints"], 1)},
    "n_chunks a string": lambda m: {**m, "n_chunks": str(m["n_chunks"])},
    "n_chunks wrong": lambda m: {**m, "n_chunks": m["n_chunks"] + 1},
    "dim missing": lambda m: {k: v for k, v in m.items() if k != "dim"},
    "unknown field": lambda m: {**m, "surprise": 1},
    "a list": lambda m: [m],
    "format a string": lambda m: {**m, "format_version": "1"},
}


@pytest.mark.parametrize("damage", MANIFEST_DAMAGE)
def test_a_manifest_that_is_valid_json_but_wrong_is_corrupt(built: Path, tmp_path: Path, damage: str) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(built, root)
    path = current_version(root / "index") / MANIFEST
    path.write_text(json.dumps(MANIFEST_DAMAGE[damage](json.loads(path.read_text()))))
    with pytest.raises(IndexCorrupt, match=r"manifest\.json|rebuild"):
        load_index(root / "index")
    p = _pipeline(root)
    p.load(root / "corpus")
    _assert_answers_about(p, 7)


@pytest.mark.parametrize("pointer", [b"", b"\n", b"v-", b"v-does-not-exist\n", b"\xff\xfe\x00", b"v-../../x",
                                     b"x" * 5000])
def test_a_damaged_current_pointer_is_named(built: Path, tmp_path: Path, pointer: bytes) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(built, root)
    (root / "index" / CURRENT).write_bytes(pointer)
    with pytest.raises(IndexCorrupt, match="CURRENT"):
        load_index(root / "index")
    p = _pipeline(root)
    p.load(root / "corpus")
    _assert_answers_about(p, 3)


def test_the_cli_and_the_server_name_a_damaged_file_then_rebuild(built: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(built, root)
    _damage(current_version(root / "index") / "vectors.faiss", "flip")
    env = fake_model_env(root)
    status = subprocess.run([str(QA_BIN), "index", "status", "--index", str(root / "index")], cwd=root, env=env,
                            capture_output=True, text=True, timeout=120)
    # status reads only the manifest: it still describes the index; the damage shows on load
    assert "Traceback" not in status.stderr + status.stdout
    server = _start(root, fake_model_env(root, QA_API_TOKEN=TOKEN), "damaged")
    try:
        r = httpx.post(f"{server.url}/ask", json={"question": "Who is the harbour master of Elwin7?", "top_k": WIDE},
                       timeout=60)
        assert r.status_code == 200 and "gen-0007" in r.json()["retrieved"], r.text
    finally:
        _stop(server)
    out = server.output()
    assert "vectors.faiss does not match its checksum" in out and "rebuilding" in out, out
    assert "Traceback" not in out
