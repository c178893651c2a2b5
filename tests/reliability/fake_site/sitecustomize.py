"""Loaded by a ``qa`` subprocess whose PYTHONPATH starts with this folder (see ``fake_model_env``).

``QA_TEST_FAKE_EMBEDDER=1``: the embedding model is the tests' FakeEmbedder, so the real CLI and
server start in a second and crash tests spend their time on file writes, not on a model.
``QA_TEST_KILL_AT=<file name>``: the process SIGKILLs itself when the index save fsyncs that file
(``CURRENT``: just before the pointer to the new version is replaced), a crash at an exact point;
``journal.log``: right after a journal record is fsynced; ``journal.log:torn``: after writing half
of a journal record.
"""

import os
import signal

if os.environ.get("QA_TEST_FAKE_EMBEDDER") == "1":
    import qa.embed
    from tests.conftest import FakeEmbedder

    def _fake(*args: object, **kwargs: object) -> FakeEmbedder:
        return FakeEmbedder()

    qa.embed.SentenceTransformerEmbedder = _fake  # type: ignore[assignment,misc]
    qa.embed.make_embedder = _fake  # type: ignore[assignment]

_KILL_AT = os.environ.get("QA_TEST_KILL_AT")
if _KILL_AT:
    from pathlib import Path

    import qa.index

    _fsync_file, _write_atomic = qa.index._fsync_file, qa.index.write_atomic

    def _fsync_then_maybe_die(path: Path) -> None:
        _fsync_file(path)
        if path.name == _KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)

    def _die_before_pointer(path: Path, data: bytes) -> None:
        if path.name == _KILL_AT == qa.index.CURRENT:
            os.kill(os.getpid(), signal.SIGKILL)
        _write_atomic(path, data)

    qa.index._fsync_file = _fsync_then_maybe_die
    qa.index.write_atomic = _die_before_pointer

    import qa.journal

    _journal_fsync, _journal_write = qa.journal._fsync, qa.journal._write_all

    def _journal_fsync_then_maybe_die(fd: int, path: Path) -> None:
        _journal_fsync(fd, path)
        if path.name == _KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)

    def _journal_write_maybe_torn(fd: int, data: bytes) -> None:
        if f"{qa.journal.JOURNAL}:torn" == _KILL_AT:
            _journal_write(fd, data[: len(data) // 2])
            os.fsync(fd)
            os.kill(os.getpid(), signal.SIGKILL)
        _journal_write(fd, data)

    qa.journal._fsync = _journal_fsync_then_maybe_die
    qa.journal._write_all = _journal_write_maybe_torn
