"""One writer per index folder, across processes: an advisory file lock (``filelock``) that a
build, a server's writes and its compactions hold while they change the folder.

The lock is released by the operating system when its process dies (``flock`` semantics), so a
``kill -9`` never leaves the folder locked. Beside it, ``.writer`` says who holds it (pid, what,
since when) so that the one who waits can be told.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import filelock

from qa.errors import IndexBusy

LOCK_FILE = ".writer.lock"
OWNER_FILE = ".writer"


def _command() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return " ".join([name, *sys.argv[1:2]]) if name in ("qa", "ask") else name


def holder(index_dir: Path) -> str:
    """Who holds the lock of ``index_dir``, as the waiter's message says it."""
    try:
        text = (index_dir / OWNER_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or "another process"


@contextlib.contextmanager
def hold(index_dir: Path | str, timeout_s: float, what: str) -> Iterator[None]:
    """Hold the writer lock of ``index_dir`` while the block runs; ``what`` names the work.

    Raises:
        IndexBusy: another process held it for more than ``timeout_s`` seconds (the message says who).
    """
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(index_dir / LOCK_FILE), thread_local=False, is_singleton=False)
    try:
        lock.acquire(timeout=max(0.0, timeout_s), poll_interval=0.02)
    except filelock.Timeout:
        raise IndexBusy(f"{index_dir}/ is being written by {holder(index_dir)}; waited {timeout_s:g}s "
                        "(QA_WRITE_TIMEOUT_S); retry when it has finished") from None
    owner = index_dir / OWNER_FILE
    try:
        with contextlib.suppress(OSError):
            owner.write_text(f"pid {os.getpid()} ({_command()}, {what}, since {time.strftime('%H:%M:%S')})\n",
                             encoding="utf-8")
        yield
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()
