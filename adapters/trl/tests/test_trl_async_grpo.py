"""TRL 1.16's experimental async GRPO scores each complete group in one call.

``trl.experimental.async_grpo`` runs the reward functions in a spawned child process (so they are
pickled) and calls them once per prompt group from ``_AsyncRolloutLoop._score_group``, with the
dataset columns but without ``trainer_state``, ``log_extra`` or ``log_metric``. These tests build
TRL's real rollout loop (no vLLM server is contacted to score) and give its ``_score_group`` the
RM-R1 reward after a pickle round trip, as the child receives it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle

import pytest
from rmr1_trl import AsyncRMR1Reward, RMR1Reward

pytest.importorskip("trl.experimental.async_grpo")

PROMPT = [{"role": "user", "content": "Name a fruit."}]
COMPLETIONS = ["fig", "banana", "kiwi!", "plum"]  # longer wins: win rates 0, 1, 2/3, 1/3
WIN_RATES = [0.0, 1.0, 2 / 3, 1 / 3]


def rollout_loop(reward, num_generations=4):
    """TRL's own rollout loop, as its spawned child builds it, with ``reward`` pickled."""
    from accelerate.state import PartialState
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl.experimental.async_grpo.async_rollout_worker import _AsyncRolloutLoop

    from rmr1_plugins.testing import tiny_llama

    PartialState()  # as TRL's _child_main does first
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama())
    tokenizer.response_template = {}  # no tool calls to parse (TRL knows no tiny-Llama template)
    spawn = multiprocessing.get_context("spawn")
    return _AsyncRolloutLoop(
        model_name="policy",
        dataset=Dataset.from_list([{"prompt": PROMPT, "reference": "apple"}]),
        reward_funcs=[pickle.loads(pickle.dumps(reward))],
        processing_class=tokenizer,
        eos_token_ids=[0],
        rollout_buffer=spawn.Queue(),
        model_version_value=spawn.Value("i", 0),
        heartbeat_value=spawn.Value("d", 0.0),
        failed_event=spawn.Event(),
        exception_info_queue=spawn.Queue(maxsize=1),
        metrics_queue=spawn.Queue(),
        num_generations=num_generations,
    )


def score_group(loop, completions=COMPLETIONS):
    """One complete group through ``_score_group``, built as ``_generate_loop`` builds it."""
    from trl.experimental.async_grpo.async_rollout_worker import RolloutGroup, TrainingSequence

    n = len(completions)
    group = RolloutGroup(
        prompts=[PROMPT] * n,
        reward_kwargs={"reference": ["apple"] * n},
        completions=[[{"role": "assistant", "content": c}] for c in completions],
        completions_ids=[[1, 2]] * n,
        completions_sequences=[
            [TrainingSequence([1, 2], [0, 1], [0.0, 0.0], rollout_id=f"0-{i}")] for i in range(n)
        ],
        tool_call_counts=[0] * n,
        tool_failure_counts=[0] * n,
        model_version=0,
        group_id=0,
        env_rewards=[None] * n,
        rollout_rewards=[None] * n,
    )
    return asyncio.run(loop._score_group(group))


@pytest.fixture
def config(tmp_path, fake_judges):
    """The judge by configuration, as the child must get it: the scripted ``longer-wins`` judge,
    registered as a plugin registers a backend."""
    path = tmp_path / "rmr1.yaml"
    path.write_text("backend: {name: longer-wins}\nreward: {strategy: round-robin}\n")
    return path


@pytest.mark.parametrize("cls", [RMR1Reward, AsyncRMR1Reward])
def test_each_group_is_judged_whole_in_one_call(cls, config):
    parent = cls(config)
    loop = rollout_loop(parent)
    samples = score_group(loop)
    rewards = [s.metrics["rewards/rmr1_reward"] for s in samples]
    assert rewards == pytest.approx(WIN_RATES)
    assert [s.advantage > 0 for s in samples] == [False, True, True, False]
    child = loop.reward_funcs[0]
    assert child._scorer.get().backend.batches == [6]  # one judge call: the group's 6 pairs
    assert parent._scorer is None  # the parent never built a judge


def test_a_configured_group_size_must_match_num_generations(config):
    """No trainer to read num_generations from: ``reward.group.size``, when set, is checked
    against the group TRL hands over (one whole group per call)."""
    loop = rollout_loop(RMR1Reward(config, group={"size": 8}), 4)
    with pytest.raises(Exception, match="num_generations=8"):
        score_group(loop)
    loop = rollout_loop(RMR1Reward(config, group={"size": 4}), 4)
    assert [s.metrics["rewards/rmr1_reward"] for s in score_group(loop)] == pytest.approx(WIN_RATES)
