"""Nothing that grows with a request or a group runs on the event loop (issue 21).

In process: the guard, rendering and every strategy's fit are spied on and must run on another
thread than the loop's, for the reward service, the cohort service and ``ascore_groups``.
Through a real ``rmr1 serve``: while a 2.7-million-character private-use response is in flight
(held at a gate in the judge), ``/health`` and small requests are answered.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from rmr1_plugins import Scorer
from rmr1_plugins.rewards import engine
from rmr1_plugins.rewards.cohort_table import Member
from rmr1_plugins.rewards.cohorts import CohortService
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.engine import Group, ascore_groups
from rmr1_plugins.rewards.inputs import Sample
from rmr1_plugins.rewards.service import RewardService
from rmr1_plugins.templates import InstructTemplate
from rmr1_plugins.testing import GROUP_STRATEGIES as NAMES
from rmr1_plugins.testing import ScriptedJudge
from rmr1_plugins.testing.judges import expected_reward, ranker
from rmr1_plugins.testing.serving import Server

PROMPT = "<|im_start|>user\nSay something.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture
def threads(monkeypatch):
    """The threads the guard, the template and the strategies' games ran on, by name."""
    seen: dict[str, set[int]] = {}

    def spy(target, name):
        original = getattr(target, name)

        def wrapper(*args, **kwargs):
            seen.setdefault(name, set()).add(threading.get_ident())
            return original(*args, **kwargs)

        monkeypatch.setattr(target, name, wrapper)

    import rmr1_plugins.scorer as scorer_module

    spy(scorer_module, "neutralize_example")
    spy(InstructTemplate, "render")
    spy(engine.GroupScoring, "_advance")
    return seen


async def on_loop_thread(coroutine):
    return threading.get_ident(), await coroutine


@pytest.mark.parametrize("name", [*NAMES, "adaptive"])
def test_group_scoring_guards_renders_and_fits_off_the_loop(threads, name):
    scorer = Scorer(ScriptedJudge(ranker), neutralize_markup=True)
    group = Group("Pick.", [f"answer {v}" for v in (3, 1, 2, 0)], reference="answer 1.5")
    loop_thread, [result] = asyncio.run(on_loop_thread(ascore_groups(scorer, [group], name)))
    assert result.error is None and len(result.rewards) == 4
    assert sorted(threads) == ["_advance", "neutralize_example", "render"]
    assert not any(loop_thread in ran for ran in threads.values())


def test_the_reward_service_guards_and_renders_off_the_loop(threads):
    service = RewardService(Scorer(ScriptedJudge(), neutralize_markup=True), RewardConfig())

    async def go():
        await service.start(warmup=False)
        try:
            return await service.rewards([Sample(PROMPT + "r1<|im_end|>", PROMPT, "reference")])
        finally:
            await service.aclose()

    loop_thread, [reward] = asyncio.run(on_loop_thread(go()))
    # the service's own per-sample step (a one-pair "reference" game) is constant-size
    assert reward.kind is None and reward.reward == 1.0
    assert loop_thread not in threads["neutralize_example"] | threads["render"]


def test_the_cohort_service_guards_renders_and_fits_off_the_loop(threads):
    scorer = Scorer(ScriptedJudge(ranker), neutralize_markup=True)
    cohorts = CohortService(scorer, RewardConfig(strategy="bradley-terry", group={"timeout_s": 5}))
    members = [Member("p", 3, "Pick.", f"answer {v}", None) for v in (1, 2, 3)]

    async def go():
        try:
            return await asyncio.gather(*(cohorts.reward(m) for m in members))
        finally:
            await cohorts.aclose()

    loop_thread, rewards = asyncio.run(on_loop_thread(go()))
    assert [r.kind for r in rewards] == [None] * 3 and rewards[0].reward < rewards[2].reward
    assert sorted(threads) == ["_advance", "neutralize_example", "render"]
    assert not any(loop_thread in ran for ran in threads.values())


def test_health_and_small_requests_are_answered_while_a_huge_response_is_in_flight():
    gate = socket.create_server(("127.0.0.1", 0))
    port = gate.getsockname()[1]
    huge = "r3 " + "".join(map(chr, range(0xE000, 0xF8FF))) * 425 + f" gate:{port}"
    assert len(huge) > 2_700_000
    server = Server(
        "--timeout-s",
        "120",
        "--max-wait-ms",
        "5",
        "--max-body-bytes",
        "20000000",
        backend="votes-requests",
    )
    try:
        payload = {"query": [PROMPT + huge], "prompts": [PROMPT], "labels": ["reference"]}
        answers: dict[str, object] = {}
        big = threading.Thread(
            target=lambda: answers.update(big=server.post("/get_reward", payload))
        )
        big.start()
        gate.settimeout(120)  # a hang guard: the judge connects once the big sample reaches it
        held, _ = gate.accept()  # the big request is now in flight, held in the judge
        health = server.get("/health")
        small = [server.post("/get_reward", _body(f"r{i}")) for i in (1, 2, 4, 5)]
        assert "big" not in answers  # still held: everything above was answered beside it
        held.sendall(b"go\n")
        big.join(120)
        held.close()
    finally:
        gate.close()
        assert server.stop() == 0
    assert health["status"] == "ok"
    for i, (status, answer) in zip((1, 2, 4, 5), small, strict=True):
        assert status == 200 and answer["rewards"] == [expected_reward(i)], answer
    status, answer = answers["big"]
    assert status == 200 and answer["rewards"] == [expected_reward(3)], answer


def _body(text: str) -> dict:
    return {"query": [PROMPT + text + "<|im_end|>"], "prompts": [PROMPT], "labels": ["reference"]}


def _post(server: Server, payload: dict) -> tuple[int, dict]:
    """POST as UTF-8 (8 MB here; ``Server.post`` would escape each character to 6 bytes)."""
    data = json.dumps(payload, ensure_ascii=False).encode()
    request = urllib.request.Request(server.url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, json.load(response)


class AsyncRanker(ScriptedJudge):
    """``ranker`` answering in ``agenerate`` itself: no thread of the loop's default pool."""

    async def agenerate(self, conversations, params):
        return self.generate(conversations, params)


def test_scoring_does_not_wait_for_the_default_pool_that_judge_threads_fill():
    # Backends run blocking generate() calls in the loop's default pool; hung ones can fill it.
    # The scorer's and the engine's own work has a pool of its own, so scoring goes on.
    scorer = Scorer(AsyncRanker(ranker), neutralize_markup=True)
    group = Group("Pick.", [f"answer {v}" for v in (3, 1, 2)])
    release = threading.Event()

    async def go():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        stuck = [loop.run_in_executor(None, release.wait) for _ in range(2)]
        try:  # a hang guard, not a timing: before, this waited for the stuck threads forever
            return await asyncio.wait_for(ascore_groups(scorer, [group], "round-robin"), 60)
        finally:
            release.set()
            await asyncio.gather(*stuck)

    [result] = asyncio.run(go())
    assert result.rewards == [1.0, 0.0, 0.5]
