"""`vcemcli ... | head`: the reader may close our standard output before we are done."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable


def quiet_on_closed_stdout(main: Callable[..., int]) -> Callable[..., int]:
    """End quietly (status 1) when standard output is closed under us, as `cat` does, instead
    of printing a BrokenPipeError traceback into the terminal of an administrator who only
    wanted the first lines."""

    @functools.wraps(main)
    def run(*args: object, **kwargs: object) -> int:
        try:
            status = main(*args, **kwargs)
            sys.stdout.flush()
            return status
        except BrokenPipeError:
            # Python would flush stdout again at exit and report the same error: point the
            # descriptor at /dev/null so that last flush has somewhere to go.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return 1

    return run
