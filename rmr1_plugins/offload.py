"""Work that grows with a request or a group (guarding, rendering, parsing, strategy fits,
decoding a body), run off the event loop in thread pools of its own.

Not the loop's default executor: backends run their blocking ``generate`` calls there
(:meth:`~rmr1_plugins.backends.base.Backend.agenerate`), and hung engine calls could fill it,
leaving this work, and so every other request, queued behind them. Reading requests
(:func:`off_loop_request`: decoding a body, building its samples) has a pool apart from the
judging work (:func:`off_loop`: planning, fits), so long fits or a judge's slow start-up in the
one never hold up the other. Each process makes its own pools on first use: a forked child does
not inherit its parent's threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

WORKERS = {"work": 4, "requests": 2}
_pools: dict[str, tuple[int, ThreadPoolExecutor]] = {}
_lock = threading.Lock()


def _pool(kind: str) -> ThreadPoolExecutor:
    with _lock:
        found = _pools.get(kind)
        if found is None or found[0] != os.getpid():
            executor = ThreadPoolExecutor(WORKERS[kind], thread_name_prefix=f"rmr1-{kind}")
            found = _pools[kind] = (os.getpid(), executor)
        return found[1]


def submit(func: Callable[..., T], /, *args: Any) -> concurrent.futures.Future[T]:
    """``func(*args)`` in the judging work's pool, as a thread future: its callbacks run even
    if the event loop that awaited it has closed."""
    return _pool("work").submit(func, *args)


def off_loop(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> asyncio.Future[T]:
    """``func(*args, **kwargs)`` in the judging work's pool, as a future of the running loop."""
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(_pool("work"), functools.partial(func, *args, **kwargs))


def off_loop_request(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> asyncio.Future[T]:
    """``func(*args, **kwargs)`` in the request-reading pool, as a future of the running loop."""
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(_pool("requests"), functools.partial(func, *args, **kwargs))
