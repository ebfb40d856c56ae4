"""Writing a file so that no reader ever sees half of it: write a temporary file, then rename.

Sweep trials, DataLoader workers and the sweep driver read caches, stats and state files
while other processes (re)write them. ``os.replace`` within one folder is atomic on POSIX,
so a reader sees the old file or the new one. The temporary name is unique per call (pid
and a random part): two processes writing the same file at once must not share, and
truncate, one temporary file -- a fixed ``<name>.tmp`` did exactly that.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open`` for writing that puts the file at ``path`` only when the block succeeds.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as handle:
        handle.write(text)
    return Path(path)
