"""A ``milvus-lite server`` process on a loopback port, for the tests and the benchmark: several
processes can share one Milvus store this way (Milvus Lite embedded opens a ``.db`` in one process
at a time), through the same gRPC client code that talks to a real Milvus."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT_S = 60.0  # its first start imports Milvus Lite's engine: seconds, more on a busy machine


def command() -> list[str] | None:
    """The ``milvus-lite`` executable (next to this Python, else on PATH), or None."""
    exe = Path(sys.executable).parent / "milvus-lite"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("milvus-lite")
    return [found] if found else None


def free_port() -> int:
    """A loopback port free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Return once the server listens on ``port``.

    Raises:
        RuntimeError: it exited, or did not listen within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"milvus-lite server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"milvus-lite server did not listen on port {port} within {timeout_s:g}s")
        time.sleep(0.1)


def start(data_dir: Path, port: int, timeout_s: float = START_TIMEOUT_S) -> subprocess.Popen[bytes]:
    """Start a server on ``127.0.0.1:port`` keeping its data in ``data_dir``; return once it listens.

    Raises:
        RuntimeError: no ``milvus-lite`` executable, or the server did not come up.
    """
    cmd = command()
    if cmd is None:
        raise RuntimeError("no milvus-lite executable; install it with pip install -e '.[milvus]'")
    proc = subprocess.Popen([*cmd, "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc, timeout_s)
    except BaseException:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def running(data_dir: Path, timeout_s: float = START_TIMEOUT_S) -> Iterator[tuple[str, int]]:
    """A server on a free loopback port while the block runs: yields its URI and process id."""
    port = free_port()
    proc = start(data_dir, port, timeout_s)
    try:
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        stop(proc)
