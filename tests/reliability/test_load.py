"""Load: 32 clients on loopback against a real ``qa serve`` (MiniLM embeddings, span reader).

Questions, reads and token-authenticated writes and deletes mixed; a separate poller times
``/healthz``; the server's VmRSS is sampled. Passes when the only refusals are deliberate 503s
(busy, with Retry-After), every acknowledged write is there afterwards with its exact text (and
every acknowledged delete is gone), over HTTP and on disk or after a restart, memory grows less
than 10% after warm-up, and ``/healthz`` answers throughout.
"""

from __future__ import annotations

import random
import shutil
import statistics
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from qa.corpus import load_corpus, sha256_text
from qa.index import load_index
from tests.api.test_server import QA_BIN, Server, _env, _start, _stop
from tests.conftest import SEEDS
from tests.reliability.conftest import AUTH, TOKEN, fake_model_env, listed_ids, rss_kib
from tests.reliability.corpus_gen import article_text

pytestmark = pytest.mark.skipif(not QA_BIN.exists(), reason=f"{QA_BIN} is not installed")

CLIENTS = 32
IDS_PER_CLIENT = 2
QUESTIONS = ["Who is Russia's lead negotiator?", "When was the second Istanbul round?",
             "How many drones did Russia launch?", "Where were the talks held?", "Who won the 2022 FIFA World Cup?"]
SEED_IDS = sorted(p.stem for p in SEEDS.glob("*.txt"))
MAX_RSS_GROWTH = 0.10


@dataclass
class Load:
    """What the clients saw."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    busy: int = 0
    expected: dict[str, str | None] = field(default_factory=dict)  # doc_id -> acknowledged text, None if deleted
    writes_acked: int = 0
    health_ms: list[float] = field(default_factory=list)
    rss_kib: list[tuple[float, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, status: int, ms: float) -> None:
        with self.lock:
            self.latencies.setdefault(kind, []).append(ms)
            self.statuses[(kind, status)] += 1


def _client(server: Server, n: int, until: float, load: Load, write_share: float) -> None:
    rng = random.Random(n)
    own = [f"load-{n:02d}-{k}" for k in range(IDS_PER_CLIENT)]
    state: dict[str, str | None] = {}
    version = 0
    with httpx.Client(base_url=server.url, timeout=120) as c:
        while time.monotonic() < until:
            write = rng.random() < write_share
            pick = rng.random()
            doc_id = rng.choice(own)
            try:
                t0 = time.perf_counter()
                if write and (pick < 0.75 or state.get(doc_id) is None):
                    version += 1
                    text = article_text(n * 10, rng) + f"Version {version} of {doc_id}.\n"
                    kind, r = "write", c.post("/documents", json={"doc_id": doc_id, "text": text}, headers=AUTH)
                elif write:
                    kind, r = "delete", c.delete(f"/documents/{doc_id}", headers=AUTH)
                elif pick < 0.55:
                    kind, r = "ask", c.post("/ask", json={"question": rng.choice(QUESTIONS)})
                elif pick < 0.75:
                    written = [d for d, t in state.items() if t is not None]
                    q = (f"Who is the harbour master of Elwin{int(written[0][5:7]) * 10}?" if written
                         else rng.choice(QUESTIONS))
                    kind, r = "ask", c.get("/ask", params={"q": q})
                elif pick < 0.80:
                    kind, r = "batch", c.post("/ask/batch", json={"questions": rng.sample(QUESTIONS, 3)})
                else:
                    kind, r = "read", c.get(f"/documents/{rng.choice([*SEED_IDS, doc_id])}")
                ms = (time.perf_counter() - t0) * 1000.0
            except httpx.TransportError as e:
                with load.lock:
                    load.errors.append(f"transport error: {e!r}")
                return
            load.record(kind, r.status_code, ms)
            if r.status_code == 503:
                if r.headers.get("retry-after") is None or r.json()["error"]["code"] != "busy":
                    load.errors.append(f"{kind} 503 without Retry-After or not busy: {r.text}")
                with load.lock:
                    load.busy += 1
                time.sleep(rng.uniform(0.05, 0.2))
                continue
            ok = {"ask": {200}, "batch": {200}, "read": {200, 404}, "write": {200, 201}, "delete": {200, 404}}[kind]
            if r.status_code not in ok:
                with load.lock:
                    load.errors.append(f"{kind} {r.status_code}: {r.text[:200]}")
                continue
            if kind == "write":
                state[doc_id] = text
                with load.lock:
                    load.writes_acked += 1
            elif kind == "delete" and r.status_code == 200:
                state[doc_id] = None
    with load.lock:
        load.expected.update(state)


def _poll_health(server: Server, stop: threading.Event, load: Load) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                r = c.get("/healthz")
                ok = r.status_code == 200
            except httpx.TransportError:
                ok = False
            load.health_ms.append((time.perf_counter() - t0) * 1000.0)
            if not ok:
                load.errors.append("healthz did not answer 200")
            stop.wait(0.05)


def _sample_rss(pid: int, stop: threading.Event, load: Load) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        load.rss_kib.append((time.monotonic() - t0, rss_kib(pid)))
        stop.wait(0.25)


def _run(server: Server | Sequence[Server], seconds: float, write_share: float, sample_rss: bool = True) -> Load:
    """``CLIENTS`` clients for ``seconds`` (client n on server n mod the servers), each server's
    /healthz polled throughout, and the first server's RSS sampled (``sample_rss``)."""
    servers = [server] if isinstance(server, Server) else list(server)
    load = Load()
    stop = threading.Event()
    until = time.monotonic() + seconds
    side = [threading.Thread(target=_poll_health, args=(s, stop, load)) for s in servers]
    if sample_rss:
        side.append(threading.Thread(target=_sample_rss, args=(servers[0].proc.pid, stop, load)))
    clients = [threading.Thread(target=_client, args=(servers[n % len(servers)], n, until, load, write_share))
               for n in range(CLIENTS)]
    for t in side + clients:
        t.start()
    for t in clients:
        t.join(timeout=seconds + 300)
    stop.set()
    for t in side:
        t.join(timeout=30)
    return load


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) >= 2 else (values or [0.0])[0]


def _report(load: Load, seconds: float, warm_s: float) -> float:
    """Print the figures; returns the RSS growth after warm-up."""
    total = sum(load.statuses.values())
    warm = next(k for t, k in load.rss_kib if t >= warm_s)
    end = load.rss_kib[-1][1]
    growth = (end - warm) / warm
    print(f"\n{total} requests in {seconds:.0f}s ({total / seconds:.1f}/s) from {CLIENTS} clients; "
          f"{len(load.errors)} errors; {load.busy} deliberate 503 busy; {load.writes_acked} writes acknowledged")
    for kind, ms in sorted(load.latencies.items()):
        print(f"  {kind:6} n={len(ms):5}  p50 {_pct(ms, 50):7.1f} ms  p95 {_pct(ms, 95):7.1f} ms")
    print(f"  statuses {dict(sorted(load.statuses.items()))}")
    print(f"  /healthz n={len(load.health_ms)} p50 {_pct(load.health_ms, 50):.1f} ms  max {max(load.health_ms):.1f} ms")
    print(f"  VmRSS {load.rss_kib[0][1] / 1024:.0f} MiB at start, {warm / 1024:.0f} MiB after {warm_s:.0f}s warm-up, "
          f"{end / 1024:.0f} MiB at the end ({growth:+.1%})")
    every = max(1, len(load.rss_kib) // 12)
    print("  VmRSS MiB over time: " + ", ".join(f"{t:.0f}s {k / 1024:.0f}" for t, k in load.rss_kib[::every]))
    return growth


def _verify(server: Server, load: Load) -> int:
    """Every acknowledged write is served with its exact text; every acknowledged delete is gone."""
    listed = listed_ids(server)
    checked = 0
    for doc_id, text in load.expected.items():
        r = httpx.get(f"{server.url}/documents/{doc_id}", timeout=60)
        if text is None:
            assert r.status_code == 404 and doc_id not in listed, doc_id
        else:
            assert r.status_code == 200 and doc_id in listed, (doc_id, r.text)
            assert r.json()["text"] == text and r.json()["sha256"] == sha256_text(text)
        checked += 1
    return checked


def _verify_on_disk(root: Path, load: Load) -> None:
    """What a restart would load: the folder and the saved index agree and hold every acknowledged write."""
    corpus = {a.doc_id: a.sha256 for a in load_corpus(root / "corpus")}
    assert load_index(root / "index").manifest.fingerprints == corpus
    for doc_id, text in load.expected.items():
        assert corpus.get(doc_id) == (sha256_text(text) if text is not None else None), doc_id


def _load_test(root: Path, seconds: float, warm_s: float, write_share: float, restart: bool, check_rss: bool) -> None:
    env = _env(root, QA_API_TOKEN=TOKEN)
    server = _start(root, env, "load")
    try:
        load = _run(server, seconds, write_share)
        growth = _report(load, seconds, warm_s)
        assert not load.errors, load.errors[:10]
        assert load.writes_acked >= 1 and sum(n for (k, _), n in load.statuses.items() if k == "ask") >= CLIENTS
        checked = _verify(server, load)
        print(f"  {checked} documents verified over HTTP after the run")
        _verify_on_disk(root, load)
        if check_rss:  # a short run ends while caches and allocator pools are still filling up
            assert growth < MAX_RSS_GROWTH, f"VmRSS grew {growth:.1%} after warm-up"
    finally:
        _stop(server)
    log = server.output()
    assert "Traceback" not in log and TOKEN not in log and "harbour master" not in log and "negotiator" not in log
    if restart:
        again = _start(root, env, "load-restart")
        try:
            print(f"  {_verify(again, load)} documents verified after a restart")
        finally:
            _stop(again)


@pytest.fixture
def load_root(tmp_path: Path) -> Path:
    shutil.copytree(SEEDS, tmp_path / "corpus")
    return tmp_path


def test_load_32_clients_briefly(load_root: Path) -> None:
    _load_test(load_root, seconds=6.0, warm_s=2.0, write_share=0.05, restart=False, check_rss=False)


@pytest.mark.slow
def test_load_32_clients_for_60_seconds(load_root: Path) -> None:
    _load_test(load_root, seconds=60.0, warm_s=20.0, write_share=0.20, restart=True, check_rss=True)


# ---------------------------------------------------------------- overload
def test_overload_is_503_with_retry_after_and_healthz_still_answers(load_root: Path) -> None:
    server = _start(load_root, fake_model_env(load_root, QA_MAX_CONCURRENT_REQUESTS="2", QA_MAX_QUEUED_REQUESTS="2"),
                    "overload")
    try:
        results: list[httpx.Response] = []
        health: list[float] = []
        lock = threading.Lock()

        def burst() -> None:
            with httpx.Client(base_url=server.url, timeout=120) as c:
                r = c.post("/ask/batch", json={"questions": QUESTIONS * 6})
            with lock:
                results.append(r)

        threads = [threading.Thread(target=burst) for _ in range(16)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            t0 = time.perf_counter()
            assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
            health.append((time.perf_counter() - t0) * 1000.0)
            time.sleep(0.02)
        for t in threads:
            t.join()
    finally:
        _stop(server)
    statuses = Counter(r.status_code for r in results)
    print(f"\noverload: {dict(statuses)}; /healthz max {max(health, default=0):.1f} ms over {len(health)} polls")
    assert set(statuses) <= {200, 503} and statuses[503] >= 1 and statuses[200] >= 2, statuses
    for r in results:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "busy", r.text


def test_the_queue_is_bounded_and_served_in_turn(tmp_path: Path) -> None:
    """One slot, one queue place: the second request waits and is answered, the third is refused at once."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.api.conftest import ScriptedReader, api_settings, make_client, make_pipeline

    hold = threading.Event()
    reader = ScriptedReader(hold=hold)
    p = make_pipeline(tmp_path, reader=reader)
    api = api_settings(max_concurrent_requests=1, max_queued_requests=1, queue_timeout_s=30.0)
    with make_client(p, api) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(c.post, "/ask", json={"question": "Who?"})
        try:
            assert reader.started.wait(10)
            second = pool.submit(c.post, "/ask", json={"question": "Who else?"})
            deadline = time.monotonic() + 10
            while c.app.state.service._waiting[False] < 1 and time.monotonic() < deadline:  # type: ignore[attr-defined]
                time.sleep(0.01)
            t0 = time.perf_counter()
            third = c.post("/ask", json={"question": "And who else?"})
            assert third.status_code == 503 and third.headers["retry-after"] == "1"
            assert third.json()["error"]["code"] == "busy" and time.perf_counter() - t0 < 2.0  # refused at once
        finally:
            hold.set()
        assert first.result(timeout=30).status_code == 200
        assert second.result(timeout=30).status_code == 200  # it waited its turn
