"""QA_STORE=milvus at the edges: the CLI through its entry points on the seeds (real models, so
integration), and the API over a pipeline on Milvus (fake embedder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qa.corpus import load_corpus
from qa.pipeline import make_filters
from tests.api.conftest import ZANZIBAR_ID, ZANZIBAR_QUESTION, ZANZIBAR_TEXT, make_client, make_pipeline
from tests.conftest import SEEDS
from tests.store.conftest import free_port


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import sys; from qa.cli import {0}; raise SystemExit({0}(sys.argv[1:]))"
    entry = "ask_main" if args[0] == "ask" else "qa_main"
    # the span reader: `qa search` loads a reader it never uses, and the QA model is slow to load
    return subprocess.run([sys.executable, "-c", code.format(entry), *args[1:]], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "QA_READER": "span", **env},
                          timeout=300)


@pytest.fixture(scope="module")
def milvus_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A Milvus Lite store filled from the seeds by `qa index build seeds/`; no local index folder."""
    root = tmp_path_factory.mktemp("milvus_cli")
    env = {"QA_STORE": "milvus", "QA_MILVUS_URI": str(root / "store" / "milvus.db"),
           "QA_INDEX_DIR": str(root / "no-local-index")}
    r = _run(["qa", "index", "build", str(SEEDS)], env)
    assert r.returncode == 0, r.stderr
    assert "indexed 5 articles" in r.stdout and "milvus index" in r.stdout
    assert not (root / "no-local-index").exists()
    return env


@pytest.mark.integration
def test_ask_on_milvus_cites_exact_offsets_in_the_seeds(milvus_env: dict[str, str]) -> None:
    r = _run(["ask", "--json", "--reader", "span", "Who is Russia's lead negotiator?"], milvus_env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["answer"] == "Vladimir Medinsky"
    for c in out["citations"]:
        assert (SEEDS / f"{c['doc_id']}.txt").read_text(encoding="utf-8")[c["start"] : c["end"]] == c["text"]


@pytest.mark.integration
def test_a_replica_needs_no_article_folder(milvus_env: dict[str, str], tmp_path: Path) -> None:
    env = {**milvus_env, "QA_CORPUS_DIR": str(tmp_path / "does-not-exist")}
    r = _run(["ask", "--json", "--reader", "span", "Where were the talks held?"], env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["answer"] and out["citations"]
    for c in out["citations"]:
        assert (SEEDS / f"{c['doc_id']}.txt").read_text(encoding="utf-8")[c["start"] : c["end"]] == c["text"]


@pytest.mark.integration
def test_search_and_status_on_milvus(milvus_env: dict[str, str]) -> None:
    r = _run(["qa", "search", "--json", "-k", "5", "second round of talks in Istanbul"], milvus_env)
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)
    assert len(hits) == 5 and hits[0]["score"] >= hits[-1]["score"]
    for h in hits:
        assert (SEEDS / f"{h['doc_id']}.txt").read_text(encoding="utf-8")[h["start"] : h["end"]] == h["text"]
    r = _run(["qa", "search", "--json", "-k", "50", "--since", "2025-06-01", "talks"], milvus_env)
    assert r.returncode == 0, r.stderr
    dated = {a.doc_id for a in load_corpus(SEEDS) if make_filters(since="2025-06-01").matches(a)}
    assert dated and {h["doc_id"] for h in json.loads(r.stdout)} == dated
    r = _run(["qa", "index", "status", str(SEEDS)], milvus_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 articles" in r.stdout and "up to date" in r.stdout


def test_bad_milvus_settings_and_an_unreachable_store_are_one_line_errors(tmp_path: Path) -> None:
    r = _run(["qa", "search", "talks"], {"QA_STORE": "milvus", "QA_MILVUS_URI": "milvus"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "milvus_uri must be a Milvus Lite file ending in .db" in r.stderr and "'milvus'" in r.stderr
    r = _run(["qa", "search", "talks"], {"QA_STORE": "milvus", "QA_MILVUS_COLLECTION": "no-dashes"})
    assert r.returncode == 2 and "milvus_collection" in r.stderr and "'no-dashes'" in r.stderr
    r = _run(["qa", "index", "status"], {"QA_STORE": "milvus", "QA_MILVUS_URI": f"http://127.0.0.1:{free_port()}"})
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: cannot open the Milvus store http://127.0.0.1:")


def test_the_api_on_milvus_answers_writes_reads_and_deletes(tmp_path: Path) -> None:
    p = make_pipeline(tmp_path, store="milvus", milvus_uri=str(tmp_path / "m.db"))
    with make_client(p) as c:
        ready = c.get("/readyz").json()
        assert ready["ready"] and ready["documents"] == 5 and ready["chunks"] == p.index.n_chunks  # type: ignore[union-attr]
        assert c.post("/documents", json={"doc_id": ZANZIBAR_ID, "text": ZANZIBAR_TEXT}).status_code == 201
        doc = c.get(f"/documents/{ZANZIBAR_ID}")
        assert doc.status_code == 200 and doc.json()["text"] == ZANZIBAR_TEXT
        assert not (tmp_path / "corpus" / f"{ZANZIBAR_ID}.txt").exists()  # the store holds the text
        answer = c.post("/ask", json={"question": ZANZIBAR_QUESTION}).json()
        assert answer["answer"] == "3 March 2031"
        cite = answer["citations"][0]
        assert ZANZIBAR_TEXT[cite["start"] : cite["end"]] == cite["text"] == "3 March 2031"
        passages = c.post("/search", json={"question": ZANZIBAR_QUESTION, "k": 3}).json()["passages"]
        assert passages[0]["doc_id"] == ZANZIBAR_ID
        listed = c.get("/documents", params={"limit": 100}).json()
        assert ZANZIBAR_ID in [d["doc_id"] for d in listed["documents"]] and listed["count"] == 6
        assert c.delete(f"/documents/{ZANZIBAR_ID}").status_code == 200
        assert c.get(f"/documents/{ZANZIBAR_ID}").status_code == 404
        assert c.get("/readyz").json()["documents"] == 5


def test_index_build_if_empty_leaves_a_filled_store_as_it_is(milvus_env: dict[str, str]) -> None:
    before = _run(["qa", "index", "status", str(SEEDS)], milvus_env)
    assert before.returncode == 0 and "5" in before.stdout, before.stderr
    r = _run(["qa", "index", "build", str(SEEDS), "--if-empty"], milvus_env)
    assert r.returncode == 0, r.stderr
    assert "already holds an index (5 articles" in r.stdout and "left as it is (--if-empty)" in r.stdout
    assert "building index" not in r.stderr
    assert _run(["qa", "index", "status", str(SEEDS)], milvus_env).stdout == before.stdout


def test_opening_the_store_settles_pymilvus_scipy_check_before_any_request_thread(tmp_path: Path) -> None:
    """pymilvus checks for scipy.sparse lazily, by executing it by hand; two request threads doing that at
    once failed a search under load (partially initialised scipy.sparse._bsr). Connecting does it once."""
    from pymilvus.client.utils import SciPyHelper

    from qa.settings import Settings
    from qa.store.milvus import MilvusStore

    SciPyHelper._checked = False
    store = MilvusStore(Settings(store="milvus", milvus_uri=str(tmp_path / "m.db")))
    try:
        store.client()
        assert SciPyHelper._checked is True
    finally:
        store.close()
