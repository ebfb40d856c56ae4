"""How every command reports an error the user can fix: one line ``<command>: <message>``
on stderr and exit code 2 (the project's errors already name the file, the key and the fix,
so a traceback would only bury them)."""

from __future__ import annotations

import sys

USAGE_ERROR = 2  # the exit code of a request that cannot run as given


def fail(prog: str, message: object) -> int:
    """Print ``prog: message`` to stderr; returns :data:`USAGE_ERROR` for ``return fail(...)``."""
    print(f"{prog}: {message}", file=sys.stderr)
    return USAGE_ERROR
