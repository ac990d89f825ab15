"""Work that grows with a request or a group (guarding, rendering, parsing, strategy fits,
decoding a body), run off the event loop in a thread pool of its own.

Not the loop's default executor: backends run their blocking ``generate`` calls there
(:meth:`~rmr1_plugins.backends.base.Backend.agenerate`), and hung engine calls could fill it,
leaving this work, and so every other request, queued behind them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rmr1-offload")


def off_loop(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> asyncio.Future[T]:
    """``func(*args, **kwargs)`` in the pool, as a future of the running loop."""
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(_POOL, functools.partial(func, *args, **kwargs))
