"""Run a call in a forked child process and fail the test if it does not finish in time.

A quadratic regex holds the GIL for its whole run, so a thread cannot time it out; a child
process can be killed. The limit is a hang guard, not a timing assertion: the inputs are sized so
that the old code takes minutes to hours and the new code well under a second. The child is
forked, so the call can be a closure; it should not import anything new (another thread may hold
the import lock at the fork).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

LIMIT_S = 30.0


def _child(connection: Any, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        connection.send(("ok", function(*args)))
    except BaseException as error:  # report it to the parent, which fails the test
        connection.send(("raised", f"{type(error).__name__}: {error}"))
    finally:
        connection.close()


def finishes(function: Callable[..., Any], *args: Any, limit_s: float = LIMIT_S) -> Any:
    """``function(*args)``'s result, computed in a child; ``AssertionError`` past ``limit_s``."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, function, args), daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(limit_s):
            raise AssertionError(f"{getattr(function, '__name__', function)} ran over {limit_s} s")
        status, value = receiver.recv()
    finally:
        child.kill()
        child.join()
        receiver.close()
    assert status == "ok", value
    return value
