"""``python -m qa.bench --scale-child CONFIG OUT``: one synthetic corpus size in a fresh process
(started by ``qa.bench.cli._scale_in_child``, so that the size's peak RSS is its own)."""

from __future__ import annotations

import sys

from qa.bench.cli import _scale_child_main

if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--scale-child":
    sys.exit(_scale_child_main(sys.argv[2], sys.argv[3]))
