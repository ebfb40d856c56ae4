"""How every command reports an error the user can fix: one line ``<command>: <message>``
on stderr and exit code 2 (the project's errors already name the file, the key and the fix,
so a traceback would only bury them).

Exit codes of every ``ajepa-*`` command (README, "Exit codes"):
0 done; 1 a bug (a traceback: please report it); 2 a request that cannot run as given
(bad config, spec, file, folder layout, audio or checkpoint: the line says what to fix);
3 the run diverged (non-finite loss; the line names the step); 130 interrupted (Ctrl-C;
resumable). ``AJEPA_DEBUG=1`` shows the traceback behind any of these.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from ajepa.contracts import DivergedError, UserError

USAGE_ERROR = 2  # the exit code of a request that cannot run as given
DIVERGED = 3  # the exit code of a run whose loss became non-finite
INTERRUPTED = 130
# What a user can cause and fix: the project's own errors, and the OS's about their paths
# (a missing folder, an out_dir that is a file, no permission), which name the path.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, OSError)


def debugging() -> bool:
    return os.environ.get("AJEPA_DEBUG", "") not in ("", "0")


def fail(prog: str, message: object) -> int:
    """Print ``prog: message`` to stderr; returns :data:`USAGE_ERROR` for ``return fail(...)``."""
    print(f"{prog}: {message}", file=sys.stderr)
    return USAGE_ERROR


def guarded(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body, turning the errors a user can fix into one line and an exit
    code (module docstring); anything else is a bug and keeps its traceback."""
    if debugging():
        return body()
    try:
        return body()
    except DivergedError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return DIVERGED
    except USER_ERRORS as err:
        if isinstance(err, OSError) and err.filename is not None:
            return fail(prog, f"{err.strerror or err}: {err.filename}")
        return fail(prog, err)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command again to resume", file=sys.stderr)
        return INTERRUPTED
