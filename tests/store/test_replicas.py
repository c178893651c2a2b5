"""Stateless replicas: two ``qa serve`` processes (fake embedder, span reader, no article folder,
no local index) on one ``milvus-lite server``, answering as one service.

What one replica writes, the other reads and answers at once; a replica's caches (question
vectors, parsed passages, the article list) never serve what another replica replaced; ETags
and If-Match hold across replicas; concurrent writes of one id converge on the later one; a
``kill -9`` loses no acknowledged write; and the 32-client load test of
tests/reliability/test_load.py, spread over both, sees no error but ``503 busy``.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from qa.corpus import sha256_text
from tests.api.conftest import ZANZIBAR_ID, ZANZIBAR_QUESTION, ZANZIBAR_TEXT
from tests.api.test_server import QA_BIN, Server, _launch, _stop, _wait_ready
from tests.conftest import SEEDS
from tests.reliability.conftest import AUTH, TOKEN, listed_ids
from tests.reliability.test_load import CLIENTS, _run, _verify
from tests.store.conftest import build_store, free_port, replica_env, start_milvus_server, stop

pytestmark = pytest.mark.skipif(not QA_BIN.exists(), reason=f"{QA_BIN} is not installed")
VISIBLE_S = 1.0  # the bound: a write through one replica is read through the other within it


@dataclass
class Replicas:
    a: Server
    b: Server
    uri: str
    root: Path

    def launch(self, name: str) -> Server:
        """One more replica on the same store (not waited for)."""
        return _launch(self.root / name, replica_env(self.root / name, self.uri), name)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("replicas")
    port = free_port()
    milvus = start_milvus_server(root / "milvus", port)
    uri = f"http://127.0.0.1:{port}"
    try:
        corpus = root / "seeds"
        shutil.copytree(SEEDS, corpus)
        build_store(corpus, replica_env(root / "builder", uri))
        launched = [_launch(root / n, replica_env(root / n, uri), n) for n in ("a", "b")]  # load side by side
        try:
            a, b = (_wait_ready(s) for s in launched)
            yield Replicas(a, b, uri, root)
        finally:
            for s in launched:
                _stop(s)
        for s in launched:
            log = s.output()
            assert "Traceback" not in log and TOKEN not in log, log
    finally:
        stop(milvus)
    for n in ("a", "b"):  # stateless: nothing written beside the log
        assert not (root / n / "corpus").exists() and not (root / n / "index").exists()


def _until(check: object, timeout_s: float) -> float:
    """Seconds until ``check()`` is true (polled); fails after ``timeout_s``."""
    t0 = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - t0 < timeout_s, f"not within {timeout_s}s"
        time.sleep(0.02)
    return time.monotonic() - t0


def _found_by_search(server: Server, doc_id: str, question: str) -> bool:
    r = httpx.post(f"{server.url}/search", json={"question": question, "k": 3}, timeout=30)
    assert r.status_code == 200, r.text
    return any(p["doc_id"] == doc_id for p in r.json()["passages"])


def _put(server: Server, doc_id: str, text: str, **headers: str) -> httpx.Response:
    return httpx.put(f"{server.url}/documents/{doc_id}", json={"text": text}, headers={**AUTH, **headers}, timeout=60)


def test_a_write_on_a_is_answered_on_b_within_a_second_and_a_delete_on_b_is_gone_on_a(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    assert _put(a, ZANZIBAR_ID, ZANZIBAR_TEXT).status_code == 201
    took = _until(lambda: httpx.get(f"{b.url}/documents/{ZANZIBAR_ID}", timeout=10).status_code == 200, VISIBLE_S)
    took = max(took, _until(lambda: _found_by_search(b, ZANZIBAR_ID, ZANZIBAR_QUESTION), VISIBLE_S))
    print(f"\nwritten on A, read and retrieved on B after {took * 1000:.0f} ms")
    answer = httpx.post(f"{b.url}/ask", json={"question": ZANZIBAR_QUESTION}, timeout=60).json()
    assert answer["answer"] == "3 March 2031", answer
    cite = answer["citations"][0]
    assert cite["doc_id"] == ZANZIBAR_ID and ZANZIBAR_TEXT[cite["start"] : cite["end"]] == cite["text"]
    # /readyz's counts: this replica's writes at once, another's after QA_STORE_CHECK_S at most
    _until(lambda: httpx.get(f"{b.url}/readyz", timeout=10).json()["documents"] == 6, 0.5 + VISIBLE_S)

    assert httpx.delete(f"{b.url}/documents/{ZANZIBAR_ID}", headers=AUTH, timeout=60).status_code == 200
    took = _until(lambda: httpx.get(f"{a.url}/documents/{ZANZIBAR_ID}", timeout=10).status_code == 404, VISIBLE_S)
    assert not _found_by_search(a, ZANZIBAR_ID, ZANZIBAR_QUESTION)
    assert ZANZIBAR_ID not in listed_ids(a)
    answer = httpx.post(f"{a.url}/ask", json={"question": ZANZIBAR_QUESTION}, timeout=60).json()
    assert all(c["doc_id"] != ZANZIBAR_ID for c in answer["citations"]), answer
    print(f"deleted on B, gone on A after {took * 1000:.0f} ms")


def test_an_answer_on_b_follows_a_replacement_on_a(replicas: Replicas) -> None:
    """B's caches (question vectors, parsed passages) are keyed by content, never by doc id and
    offsets: after A replaces the article, B answers from the new text at once."""
    a, b = replicas.a, replicas.b
    doc_id = "zanzibar-replaced"
    old = ZANZIBAR_TEXT
    # The same length (the same chunk offsets) with the date elsewhere: a parse cached by doc id and
    # offsets would put the old date's entity over other words.
    new = ZANZIBAR_TEXT.replace("opened on 3 March 2031 in Stone Town,", "in Stone Town opened on 9 March 2032,")
    assert len(new) == len(old) and new != old
    assert _put(a, doc_id, old).status_code == 201
    first = httpx.post(f"{b.url}/ask", json={"question": ZANZIBAR_QUESTION}, timeout=60).json()
    assert first["answer"] == "3 March 2031", first
    assert _put(a, doc_id, new).status_code == 200
    again = httpx.post(f"{b.url}/ask", json={"question": ZANZIBAR_QUESTION}, timeout=60).json()
    assert again["answer"] == "9 March 2032", again
    for c in again["citations"]:
        text = httpx.get(f"{b.url}/documents/{c['doc_id']}", timeout=10).json()["text"]
        assert text[c["start"] : c["end"]] == c["text"]
    assert httpx.delete(f"{b.url}/documents/{doc_id}", headers=AUTH, timeout=60).status_code == 200


def test_etags_and_if_match_hold_across_replicas(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    doc_id = "etag-across"
    v1, v2, v3 = (f"Version {n} of the harbour report from Elwin." for n in (1, 2, 3))
    e1 = _put(a, doc_id, v1).headers["etag"]
    got = httpx.get(f"{b.url}/documents/{doc_id}", timeout=10)
    assert got.headers["etag"] == e1 == f'"{sha256_text(v1)}"'
    r = _put(b, doc_id, v2, **{"If-Match": e1})
    assert r.status_code == 200, r.text
    e2 = r.headers["etag"]
    stale = _put(a, doc_id, v3, **{"If-Match": e1})  # A never saw v2, but checks against the store
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "precondition_failed", stale.text
    for s in (a, b):
        got = httpx.get(f"{s.url}/documents/{doc_id}", timeout=10)
        assert (got.json()["text"], got.headers["etag"]) == (v2, e2)
    assert httpx.delete(f"{a.url}/documents/{doc_id}", headers=AUTH, timeout=60).status_code == 200


def test_concurrent_puts_of_one_id_on_two_replicas_converge(replicas: Replicas) -> None:
    """No lock across replicas: both writes are acknowledged and the later write stamp wins on
    both replicas, whole (never chunks of one version with the text of the other)."""
    a, b = replicas.a, replicas.b
    doc_id = "contended"
    results: dict[str, int] = {}

    def put(server: Server, text: str) -> None:
        results[server.url] = _put(server, doc_id, text).status_code

    for rnd in range(5):
        texts = {s.url: f"Round {rnd}: the harbour master of Elwin{rnd} is Captain {name} Osei." * 3
                 for s, name in ((a, "Ama"), (b, "Kofi"))}
        results.clear()
        threads = [threading.Thread(target=put, args=(s, texts[s.url])) for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert set(results.values()) <= {200, 201} and len(results) == 2, results
        seen = {httpx.get(f"{s.url}/documents/{doc_id}", timeout=10).json()["text"] for s in (a, b)}
        assert len(seen) == 1 and seen <= set(texts.values()), seen
        current = seen.pop()
        passages = httpx.post(f"{b.url}/search", json={"question": f"harbour master of Elwin{rnd}", "k": 10,
                                                       "filters": {"doc_ids": [doc_id]}}, timeout=30).json()
        assert passages["passages"] and all(current[p["start"] : p["end"]] == p["text"]
                                            for p in passages["passages"]), passages
    httpx.delete(f"{a.url}/documents/{doc_id}", headers=AUTH, timeout=60)


def test_kill_9_of_a_replica_during_writes_loses_no_acknowledged_article(replicas: Replicas) -> None:
    victim = _wait_ready(replicas.launch("victim"))
    acked: dict[str, str] = {}
    sent: dict[str, str] = {}
    lock = threading.Lock()
    stop_writing = threading.Event()

    def writer(w: int) -> None:
        with httpx.Client(base_url=victim.url, timeout=60) as c:
            for i in range(10_000):
                if stop_writing.is_set():
                    return
                doc_id, text = f"kill-{w}-{i}", f"Dispatch {i} of writer {w}: the ferry to Elwin{w} left at dawn."
                with lock:
                    sent[doc_id] = text
                try:
                    r = c.put(f"/documents/{doc_id}", json={"text": text}, headers=AUTH)
                except httpx.TransportError:
                    return  # killed mid-request: not acknowledged
                if r.status_code in (200, 201):
                    with lock:
                        acked[doc_id] = text

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    _until(lambda: len(acked) >= 20, 60)
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(10)
    stop_writing.set()
    for t in threads:
        t.join(60)
    other = replicas.a
    for doc_id, text in acked.items():
        r = httpx.get(f"{other.url}/documents/{doc_id}", timeout=10)
        assert r.status_code == 200 and r.json()["text"] == text, (doc_id, r.text)
    unacked = [d for d in sent if d not in acked]
    for doc_id in unacked:  # in flight when killed: there whole, or not at all
        r = httpx.get(f"{other.url}/documents/{doc_id}", timeout=10)
        assert r.status_code == 404 or r.json()["text"] == sent[doc_id], (doc_id, r.text)
    print(f"\n{len(acked)} acknowledged writes before kill -9, all read through another replica; "
          f"{len(unacked)} in flight")
    for doc_id in sent:
        httpx.delete(f"{other.url}/documents/{doc_id}", headers=AUTH, timeout=60)


def _load_across(replicas: Replicas, seconds: float, write_share: float) -> None:
    """tests/reliability/test_load.py's 32 clients, every other one on the other replica; then every
    acknowledged write (and delete) is checked through both replicas."""
    servers = [replicas.a, replicas.b]
    load = _run(servers, seconds, write_share, sample_rss=False)
    total = sum(load.statuses.values())
    print(f"\n{total} requests in {seconds:.0f}s over 2 replicas from {CLIENTS} clients; {len(load.errors)} errors; "
          f"{load.busy} deliberate 503 busy; {load.writes_acked} writes acknowledged; "
          f"statuses {dict(sorted(load.statuses.items()))}")
    assert not load.errors, load.errors[:10]
    assert load.writes_acked >= 1
    for s in servers:
        print(f"  {_verify(s, load)} documents verified through {s.url}")


def test_load_32_clients_across_two_replicas_briefly(replicas: Replicas) -> None:
    _load_across(replicas, seconds=6.0, write_share=0.10)


@pytest.mark.slow
def test_load_32_clients_across_two_replicas_for_60_seconds(replicas: Replicas) -> None:
    _load_across(replicas, seconds=60.0, write_share=0.20)
