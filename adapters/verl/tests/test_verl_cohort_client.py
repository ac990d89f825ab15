"""The manager's cohort client against a recording HTTP server on 127.0.0.1: what it sends, how
it retries, when it stops. (The real ``rmr1 serve`` end to end: test_verl_cohorts.py and
test_verl_ray.py; the server's checks of ``id`` and ``settings`` need the core's /cohort.)"""

from __future__ import annotations

import asyncio

import numpy as np

from rmr1_plugins.settings import decisive_settings
from rmr1_plugins.testing.verl import GROUPS, manager, rollouts

ANSWER = {"reward": 0.75, "logs": {"rmr1_group": 3.0}}


class Recorder:
    """An aiohttp server whose handler is ``answer(body, n)``: (status, json, headers)."""

    def __init__(self, answer):
        self.answer, self.bodies, self.url = answer, [], None

    async def __aenter__(self):
        from aiohttp import web

        async def handle(request):
            body = await request.json()
            self.bodies.append(body)
            status, answer, headers = await self.answer(body, len(self.bodies))
            return web.json_response(answer, status=status, headers=headers)

        app = web.Application()
        app.router.add_post("/cohort", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/cohort"
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()


def run(tokenizer, answer, rows, sessions=False, **rmr1):
    """Each row of GROUPS through a two-worker manager's run_single, against ``answer``; with
    ``sessions``, rows carry the ``session_id`` veRL's v1 agent loop gives each rollout."""
    data = rollouts(tokenizer, GROUPS)
    if sessions:
        data.non_tensor_batch["session_id"] = np.array([0, 1, 2, 0, 1, 2], dtype=object)
    worker = None

    async def go():
        nonlocal worker
        async with Recorder(answer) as server:
            worker = manager(tokenizer, cohort_url=server.url, **rmr1)
            try:
                calls = [worker.run_single(data[i : i + 1]) for i in rows]
                outputs = await asyncio.gather(*calls, return_exceptions=True)
            finally:
                await worker.cohorts.aclose()
            return outputs, server.bodies

    loop = asyncio.new_event_loop()
    try:
        outputs, bodies = loop.run_until_complete(go())
    finally:
        loop.close()
    return worker, outputs, bodies


async def ok(body, n):
    return 200, ANSWER, {}


def test_each_request_carries_the_rollout_id_and_the_managers_settings(tokenizer):
    worker, outputs, bodies = run(tokenizer, ok, [0, 1, 3], win=2, loss=-1, order="given")
    assert [o["reward_score"] for o in outputs] == [0.75] * 3
    assert all(o["reward_extra_info"]["rmr1_group"] == 3.0 for o in outputs)
    names = {"key", "id", "size", "prompt", "response", "reference", "settings", "on_split"}
    assert set(bodies[0]) == names and {b["on_split"] for b in bodies} == {"reference"}
    assert sorted(b["key"] for b in bodies) == ["u1", "u1", "u2"] and bodies[0]["size"] == 3
    assert len({b["id"] for b in bodies}) == 3  # one identity per rollout (drawn: no session_id)
    settings = decisive_settings(worker.reward_config)
    assert all(b["settings"] == settings for b in bodies)
    assert settings["win"] == 2 and settings["loss"] == -1 and settings["order"] == "given"
    assert settings["strategy"] == "round-robin"
    _, _, bodies = run(tokenizer, ok, [0], group={"on_split": "drop"})  # the server applies it
    assert bodies[0]["on_split"] == "drop"


def test_the_rollout_id_is_its_uid_and_session_id(tokenizer):
    _, _, bodies = run(tokenizer, ok, [0, 1, 3], sessions=True)
    assert sorted(b["id"] for b in bodies) == ["u1:0", "u1:1", "u2:0"]


def test_an_overloaded_service_is_retried_after_its_retry_after(tokenizer, monkeypatch):
    delays = []

    async def no_wait(seconds):
        delays.append(seconds)

    monkeypatch.setattr("rmr1_plugins.serve.cohort_client.asyncio.sleep", no_wait)

    async def busy_twice(body, n):
        if n <= 2:
            return 503, {"error": "overloaded"}, {"Retry-After": "3"}
        return 200, ANSWER, {}

    _, [out], bodies = run(tokenizer, busy_twice, [0], cohort_timeout_s=60)
    assert out["reward_score"] == 0.75 and out["reward_extra_info"]["rmr1_error"] == 0.0
    assert [d for d in delays if d] == [
        3.0,
        3.0,
    ]  # the server's Retry-After
    assert len(bodies) == 3 and len({b["id"] for b in bodies}) == 1  # a retry, the same rollout


def test_a_refused_request_raises_naming_the_key(tokenizer, caplog):
    async def refuse(body, n):
        return 400, {"error": "settings differ from the server's: 'win' (2.0 here, 1.0 sent)"}, {}

    _, outputs, bodies = run(tokenizer, refuse, [0, 1], win=1)
    from rmr1_plugins.serve.cohort_client import CohortRefused

    assert all(isinstance(o, CohortRefused) for o in outputs) and len(bodies) == 2  # no retry
    assert "'win'" in str(outputs[0]) and "HTTP 400" in str(outputs[0])
    assert "refused" in caplog.text and "'win'" in caplog.text


def test_a_rollout_too_large_gets_the_fallback_without_stopping(tokenizer):
    async def too_large(body, n):
        return 413, {"error": "body over --max-body-bytes"}, {}

    _, [out], _ = run(tokenizer, too_large, [0])
    info = out["reward_extra_info"]
    assert out["reward_score"] == 0.5 and info["rmr1_error"] == info["rmr1_fallback"] == 1.0


def test_no_connection_cap_below_the_group_barrier(tokenizer):
    """The server answers nobody until all 150 rollouts are held: aiohttp's default pool of 100
    connections would leave 50 queued in the client and the held ones waiting for them."""
    held, everyone = 150, asyncio.Event()

    async def barrier(body, n):
        if n == held:
            everyone.set()
        await everyone.wait()
        return 200, ANSWER, {}

    _, outputs, bodies = run(tokenizer, barrier, [0] * held, cohort_timeout_s=20)
    assert len(bodies) == held
    assert [o["reward_extra_info"]["rmr1_error"] for o in outputs] == [0.0] * held
