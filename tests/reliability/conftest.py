"""Reliability fixtures: ``qa`` subprocesses (real, or with the fake embedder), process memory, a token.

The server helpers are those of tests/api/test_server.py; ``fake_model_env`` adds the environment
that swaps the embedding model for the FakeEmbedder inside the real ``qa`` entry point.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.api.test_server import QA_BIN, Server, _env
from tests.conftest import ROOT, SEEDS

FAKE_SITE = Path(__file__).resolve().parent / "fake_site"
TOKEN = "reliability-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def fake_model_env(root: Path, **extra: str) -> dict[str, str]:
    """``qa`` environment for ``root`` (corpus/, index/) with the FakeEmbedder and the span reader."""
    return _env(root, PYTHONPATH=f"{FAKE_SITE}{os.pathsep}{ROOT}", QA_TEST_FAKE_EMBEDDER="1", **extra)


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def listed_ids(server: Server) -> set[str]:
    ids: set[str] = set()
    cursor: str | None = None
    while True:
        r = httpx.get(f"{server.url}/documents", params={"cursor": cursor} if cursor else {}, timeout=60)
        assert r.status_code == 200, r.text
        ids |= {d["doc_id"] for d in r.json()["documents"]}
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return ids


@pytest.fixture
def serve_root(tmp_path: Path) -> Path:
    """A folder with corpus/ (a copy of the seeds) for a ``qa serve`` subprocess."""
    if not QA_BIN.exists():
        pytest.skip(f"{QA_BIN} is not installed")
    shutil.copytree(SEEDS, tmp_path / "corpus")
    return tmp_path
