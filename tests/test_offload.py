"""The off-loop thread pools: reading requests apart from judging work, and per process."""

import asyncio
import threading

from rmr1_plugins import offload


def test_requests_are_read_in_a_pool_apart_from_judging_work():
    release = threading.Event()

    async def go():
        # Every judging thread busy (a long fit each): a request is still read.
        busy = [offload.off_loop(release.wait, 30) for _ in range(offload.WORKERS["work"])]
        try:
            return await asyncio.wait_for(offload.off_loop_request(lambda: "read"), 10)
        finally:
            release.set()
            await asyncio.gather(*busy)

    assert asyncio.run(go()) == "read"


def test_a_forked_child_makes_pools_of_its_own(monkeypatch):
    parent = offload._pool("work")
    assert offload._pool("work") is parent
    monkeypatch.setattr(offload.os, "getpid", lambda: -1)  # as in a child after fork()
    child = offload._pool("work")
    assert child is not parent and offload._pool("work") is child
    child.shutdown()
