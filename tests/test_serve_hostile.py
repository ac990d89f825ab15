"""A real ``rmr1 serve`` keeps answering while it works on a 2 MB hostile request.

The hostile sample combines the three inputs that were quadratic (docs/guides/reliability.md): a
prompt
ending in 30,000 unclosed ChatML turn starts, a response holding ``<`` and a million spaces (the
guard, on by default in ``rmr1 serve``), and 100,000 trailing ``</s>``. The old code held the
event loop (and the GIL) for hours on it; the client timeout is only a hang guard.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from rmr1_plugins.testing.judges import expected_reward
from rmr1_plugins.testing.serving import PROMPT, Server, body, post

aiohttp = pytest.importorskip("aiohttp")

HANG_GUARD_S = 60


def hostile_body() -> dict:
    prompt = PROMPT + "<|im_start|>user\n" * 30_000
    query = prompt + "r3 <" + " " * 1_000_000 + "done" + "</s>" * 100_000
    return {"query": [query], "prompts": [prompt], "labels": ["reference"]}


def test_small_requests_are_answered_while_a_hostile_megabyte_is_processed():
    server = Server("--timeout-s", "60", "--max-wait-ms", "5")
    try:

        async def scenario():
            timeout = aiohttp.ClientTimeout(total=HANG_GUARD_S)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                hostile = asyncio.create_task(post(session, server.url, hostile_body()))
                small = [await post(session, server.url, body(f"r{i}")) for i in range(1, 6)]
                return await hostile, small

        hostile, small = asyncio.run(scenario())
    finally:
        assert server.stop() == 0
    for i, (status, answer) in enumerate(small, start=1):
        assert status == 200 and answer["rewards"] == [expected_reward(i)], answer
    status, answer = hostile
    assert status == 200 and "error" not in answer, answer
    assert answer["rewards"] == [expected_reward(3)]  # judged for real, not a fallback


def test_sigterm_ends_the_process_even_with_a_judge_thread_that_never_returns():
    # Before: Python joined the hung judge thread at exit, so the process never ended.
    server = Server("--shutdown-timeout-s", "1", "--timeout-s", "300")
    answers: list = []
    client = threading.Thread(
        target=lambda: answers.append(server.post("/get_reward", body("r1 stuck")))
    )
    client.start()
    try:
        server._wait_for("votes judge: stuck")  # the judge thread is now blocked for good
        server.terminate()
        assert server.process.wait(timeout=HANG_GUARD_S) == 0  # a hang guard, not a timing
    finally:
        if server.process.poll() is None:
            server.process.kill()
    client.join(HANG_GUARD_S)
    log = server.logged()
    assert "judge threads still running" in log and "rmr1 serve: stopped;" in log
    [(status, answer)] = answers
    assert status == 200 and "stopped" in answer["error"], answer  # the fallback, not a hang
