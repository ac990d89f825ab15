"""Whole-group rewards for OpenRLHF from a real ``rmr1 serve`` process.

OpenRLHF 0.11.2's ``SingleTurnAgentExecutor`` asks for each sample's reward on its own, over
HTTP (``_fetch_rewards_via_http``). With ``reward.group.size`` set and an in-group strategy, the
server holds each sample until its prompt's group is whole. The server runs the scripted
``ranker`` judge of rmr1_plugins.testing.judges (the larger number wins: exact round-robin
rewards); the client, the server, HTTP and the cohort service are real.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

agent = pytest.importorskip("openrlhf.utils.agent")
transformers = pytest.importorskip("transformers")

from rmr1_plugins.rewards.metrics import KEYS  # noqa: E402
from rmr1_plugins.testing import smollm2_checkpoint  # noqa: E402
from rmr1_plugins.testing.openrlhf import Engine  # noqa: E402
from rmr1_plugins.testing.serving import Server  # noqa: E402


def ranker_server(*flags: str, backend: str = "ranker") -> Server:
    """``rmr1 serve --backend ranker`` (rmr1_plugins.testing.judges) in its own process."""
    return Server("--no-warmup", *flags, backend=backend, num_samples=None, startup_s=120)


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(smollm2_checkpoint())


def chat(tokenizer, question: str) -> str:
    turns = [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


async def rollout(executor, tokenizer, prompt, label, response):
    params = SimpleNamespace(max_tokens=16, logprobs=None)
    engine = Engine(tokenizer, response)
    return await executor.execute(prompt, label, params, 512, tokenizer, engine)


def test_openrlhf_gets_in_group_rewards_for_concurrent_prompts(tokenizer):
    server = ranker_server(
        "--group-size", "4", "--strategy", "round-robin", "--group-timeout-s", "60"
    )
    try:
        executor = agent.SingleTurnAgentExecutor(server.url)
        prompts = [chat(tokenizer, f"Name a number, question {q}.") for q in range(3)]
        # 3 prompts x 4 samples, all in flight at once, interleaved (as several rollout actors)
        jobs = [(p, f"The answer is {v}.") for v in (3, 1, 4, 2) for p in prompts]

        async def step():
            return await asyncio.gather(*(rollout(executor, tokenizer, p, "", r) for p, r in jobs))

        outputs = asyncio.run(step())
        stats = server.get("/stats")
    finally:
        assert server.stop() == 0
    win_rate = {3: 2 / 3, 1: 0.0, 4: 1.0, 2: 1 / 3}  # round-robin among the prompt's 4 samples
    for (_, response), output in zip(jobs, outputs, strict=True):
        value = int(response.split()[-1].rstrip("."))
        assert output["reward"] == [pytest.approx(win_rate[value])], response
        logs = output["extra_logs"]
        assert logs["rmr1_group"] == [4.0] and logs["rmr1_fallback"] == [0.0]
        assert logs["rmr1_split"] == [0.0] and logs["rmr1_judgments"] == [3.0]
        assert list(logs) == list(KEYS)  # the metrics contract
    assert stats["cohorts"]["complete_cohorts"] == 3 and stats["cohorts"]["answered"] == 12
    assert stats["reward"].get("samples", 0) == 0  # the reference path was never used


def test_partial_groups_and_deadlines_on_a_real_server(tokenizer):
    # One engine call per pair (as the openai backend makes): a hung judgment holds up no
    # other cohort's, which a batched engine call would.
    server = ranker_server(
        "--group-size", "4", "--group-timeout-s", "1", "--timeout-s", "3", "--fallback", "0.25",
        backend="ranker-requests",
    )  # fmt: skip
    try:
        executor = agent.SingleTurnAgentExecutor(server.url)
        partial, alone, slow = (chat(tokenizer, f"Question {q}?") for q in "abc")

        async def step():
            return await asyncio.gather(
                *(rollout(executor, tokenizer, partial, "", f"It is {v}.") for v in (5, 9, 7)),
                rollout(executor, tokenizer, alone, "6", "It is 8."),  # vs its reference 6
                rollout(executor, tokenizer, alone.replace("b?", "b!"), "", "It is 8."),
                *(rollout(executor, tokenizer, slow, "", f"{v} slow:30") for v in (1, 2)),
            )

        *three, vs_reference, no_reference, late_a, late_b = asyncio.run(step())
        stats = server.get("/stats")
    finally:
        assert server.stop() == 0
    assert [o["reward"] for o in three] == [[0.0], [1.0], [0.5]]  # the 3 that came, in-group
    assert all(o["extra_logs"]["rmr1_split"] == [1.0] for o in three)  # an incomplete group
    assert all(o["extra_logs"]["rmr1_reference"] == [0.0] for o in three)
    assert all(o["extra_logs"]["rmr1_group"] == [3.0] for o in three)
    alone = vs_reference["extra_logs"]  # alone in its group: judged against its reference
    assert vs_reference["reward"] == [1.0] and alone["rmr1_split"] == alone["rmr1_reference"] == [
        1.0
    ]
    assert no_reference["reward"] == [0.25]
    assert no_reference["extra_logs"]["rmr1_no_reference"] == [1.0]
    for late in (late_a, late_b):  # the judge hangs: the deadline answers with the fallback
        assert late["reward"] == [0.25] and late["extra_logs"]["rmr1_timeout"] == [1.0]
    assert stats["cohorts"]["partial_cohorts"] == 4 and stats["cohorts"]["timeout"] == 2


def test_the_cohort_endpoint_for_verl(tokenizer):
    server = ranker_server("--group-timeout-s", "30", "--max-pending", "6")
    try:

        def ask(value, key="uid-1", size=3, **extra):
            body = {"key": key, "size": size, "prompt": [{"role": "user", "content": "Pick."}]}
            return server.post("/cohort", {**body, "response": f"pick {value}", **extra})

        async def group():
            return await asyncio.gather(*(asyncio.to_thread(ask, v) for v in (2, 9, 4)))

        answers = asyncio.run(group())
        bad = ask(1, size=0)
        huge = ask(1, size=10_000)
        missing = server.post("/cohort", {"key": "k", "size": 2, "prompt": "Pick."})
        stats = server.get("/stats")
    finally:
        assert server.stop() == 0
    assert [(status, a["reward"]) for status, a in answers] == [(200, 0.0), (200, 1.0), (200, 0.5)]
    assert all(a["group"] == 3 and a["kind"] is None and not a["fallback"] for _, a in answers)
    assert bad[0] == 400 and "field 'size'" in bad[1]["error"]
    assert huge[0] == 413 and "max_group_size" in huge[1]["error"]
    assert missing[0] == 400 and "field 'response'" in missing[1]["error"]
    assert stats["cohorts"]["members"] == 3


def test_a_step_of_128_prompts_x_7_keeps_every_group_whole(tokenizer):
    """RM-R1's group size with every sample of the step in flight at once through the real
    client: no split, no fallback, exact rewards (1,024 x 7: bench/openrlhf_cohorts.py)."""
    from rmr1_plugins.testing.openrlhf import cohort_server, step, summary

    server = cohort_server(128, 7)
    try:
        results = step(server.url, tokenizer, 128, 7)
        stats = server.get("/stats")["cohorts"]
    finally:
        assert server.stop() == 0
    assert summary(results) == {"samples": 896, "split": 0, "fallback": 0, "inexact": 0}
    assert stats["complete_cohorts"] == 128 and stats.get("partial_cohorts", 0) == 0
    assert stats["answered"] == 896
