"""Durability helpers shared by the corpus folder, the index versions and the write journal."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (new, renamed or removed files) durable. Some file
    systems refuse to fsync directories; that is not an error."""
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
