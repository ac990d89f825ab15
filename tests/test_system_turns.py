"""One system-turn rule: a chat with a system turn reaches the judge the same way from every door.

The Python API (and TRL and veRL, which pass chat lists to the same :class:`Group`), the
per-sample reward service behind OpenRLHF's reward file and ``rmr1 serve`` (templated prompts,
label questions), and the cohort service all give the judge one conversation. The adapters'
own tests check the same against their trainer's calling convention.
"""

from __future__ import annotations

import asyncio

import pytest

from rmr1_plugins import Scorer
from rmr1_plugins.rewards.cohorts import CohortService
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.engine import Group, score_groups
from rmr1_plugins.rewards.inputs import Sample, SampleError, as_context, read_label, recover_turns
from rmr1_plugins.rewards.samples import build_example
from rmr1_plugins.rewards.service import RewardService
from rmr1_plugins.serve.app import parse_body
from rmr1_plugins.serve.cohort import member_of
from rmr1_plugins.testing import ScriptedJudge

CHAT = [
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": "2+2?"},
]
TEMPLATED = (
    "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def judge_prompt_from_the_api() -> list:
    backend = ScriptedJudge()
    score_groups(Scorer(backend), [Group(CHAT, ["4"], reference="5")], "reference")
    [[conversation]] = backend.batches
    return conversation


def judge_prompts_from_the_service(samples: list[Sample]) -> list[list]:
    backend = ScriptedJudge()

    async def go():
        service = RewardService(Scorer(backend), RewardConfig(service={"max_wait_ms": 0}))
        await service.start(warmup=False)
        try:
            return await service.rewards(samples)
        finally:
            await service.aclose()

    answers = asyncio.run(go())
    assert all(a.kind is None for a in answers), [a.error for a in answers]
    return [conversation for batch in backend.batches for conversation in batch]


def test_the_system_turn_is_folded_into_the_next_user_turn_everywhere():
    [turn] = as_context(CHAT)
    assert (turn.role, turn.content) == ("user", "Be terse.\n\n2+2?")
    assert [t.model_dump() for t in recover_turns(TEMPLATED)] == [turn.model_dump()]
    expected = judge_prompt_from_the_api()
    assert "Be terse.\n\n2+2?" in expected[-1]["content"]
    body = {
        "query": [TEMPLATED + "4<|im_end|>"] * 2,
        "prompts": [TEMPLATED] * 2,
        "labels": ["5", {"reference": "5", "question": CHAT}],  # recovered turns; label question
    }
    for conversation in judge_prompts_from_the_service(parse_body(body)):
        assert conversation == expected


def test_a_cohort_member_gets_the_context_build_example_gives():
    config = RewardConfig()
    for label in ("5", {"reference": "5", "question": CHAT}, {"reference": "5", "question": "Q"}):
        member = member_of(Sample(TEMPLATED + "4", TEMPLATED, label), config)
        example, _ = build_example(Sample(TEMPLATED + "4", TEMPLATED, label), config)
        assert member.prompt == [m.model_dump() for m in example.context]
    backend = ScriptedJudge()

    async def go():
        service = CohortService(Scorer(backend), RewardConfig(strategy="reference"))
        try:
            return await service.reward(member_of(Sample(TEMPLATED + "4", TEMPLATED, "5"), config))
        finally:
            await service.aclose()

    assert asyncio.run(go()).kind is None
    [[conversation]] = backend.batches
    assert conversation == judge_prompt_from_the_api()


def test_a_trailing_system_turn_is_an_error_not_dropped():
    user, system = {"role": "user", "content": "2+2?"}, {"role": "system", "content": "Be terse."}
    with pytest.raises(ValueError, match="must end with a user turn"):
        as_context([user, system])
    label = {"reference": "4", "question": [user, system]}
    with pytest.raises(SampleError, match="must end with a user turn"):
        read_label(label)
