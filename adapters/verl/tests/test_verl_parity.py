"""Parity: veRL's reward loop gets the Python API's judge prompts, rewards and logged keys.

The parity case (rmr1_plugins.testing.parity) as veRL's rollouts carry it: one ``DataProto`` row per
completion, the chat prompt (with its system turn) in ``raw_prompt`` and
``extra_info["question"]``, the reference in ``reward_model.ground_truth``. Three ways in, each
built by veRL's own ``load_reward_manager`` and called as its ``RewardLoopWorker`` calls it
(``run_single`` for every row, concurrently, on the manager's loop):

- veRL's ``naive`` manager with our ``compute_score`` (reference rewards);
- the ``rmr1`` manager with the reference and the round-robin strategy;
- the ``rmr1`` manager of two reward workers sending every rollout to ``rmr1 serve``'s cohort
  endpoint (round-robin), a real server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from rmr1_plugins.testing import parity as case
from rmr1_plugins.testing import tiny_llama
from rmr1_plugins.testing.judges import fake_judges
from rmr1_plugins.testing.verl import rollouts, verl_config


@pytest.fixture(scope="module", autouse=True)
def judge():
    with fake_judges():
        yield


def case_rollouts(tokenizer):
    """The case's three rollouts, with the chat prompt as veRL's dataset carries it."""
    data = rollouts(tokenizer, [("u1", case.QUESTION, case.REFERENCE, case.COMPLETIONS)])
    size = len(case.COMPLETIONS)
    raw = np.empty(size, dtype=object)
    for i in range(size):
        raw[i] = np.array([dict(m) for m in case.PROMPT], dtype=object)  # as parquet gives it
    data.non_tensor_batch["raw_prompt"] = raw
    info = np.empty(size, dtype=object)
    for i in range(size):
        info[i] = {"question": [dict(m) for m in case.PROMPT], "split": "train"}
    data.non_tensor_batch["extra_info"] = info
    return data


def run_rows(manager, data):
    """What ``RewardLoopWorker.compute_score_batch`` does: every row concurrently, one loop."""

    async def run():
        return await asyncio.gather(
            *(manager.run_single(data[i : i + 1]) for i in range(len(data)))
        )

    return manager.loop.run_until_complete(run())


def outcome(record, outputs):
    logs = [verl_logs(out["reward_extra_info"]) for out in outputs]
    return case.Outcome(case.judge_prompts(record), [o["reward_score"] for o in outputs], logs)


def verl_logs(info: dict) -> dict:
    """The per-sample logs in veRL's ``reward_extra_info``; ``score`` is the reward itself."""
    return {key: value for key, value in info.items() if key != "score"}


def test_compute_score_in_verls_naive_manager(tokenizer, tmp_path):
    from verl.trainer.ppo.reward import load_reward_manager

    config, record = case.write_config(tmp_path, "compute-score")
    manager = load_reward_manager(
        verl_config(
            tiny_llama(),
            n=len(case.COMPLETIONS),
            custom_reward_function={
                "path": "pkg://rmr1_verl.reward",
                "name": "compute_score",
                "reward_kwargs": {"config": str(config)},
            },
            reward_manager={"source": "register", "name": "naive", "module": {"path": None}},
        ),
        tokenizer,
    )
    got = outcome(record, run_rows(manager, case_rollouts(tokenizer)))
    case.assert_same("veRL compute_score", got, case.api(tmp_path, "reference"))
    case.check_judge_saw_the_system_turn(got.prompts)


@pytest.mark.parametrize("strategy", case.STRATEGIES)
def test_rmr1_manager(tokenizer, tmp_path, strategy):
    from verl.trainer.ppo.reward import load_reward_manager

    config, record = case.write_config(tmp_path, f"manager-{strategy}")
    rmr1 = {"config": str(config), "strategy": strategy}
    manager = load_reward_manager(
        verl_config(tiny_llama(), n=len(case.COMPLETIONS), rmr1=rmr1), tokenizer
    )
    got = outcome(record, run_rows(manager, case_rollouts(tokenizer)))
    case.assert_same(f"veRL rmr1 manager {strategy}", got, case.api(tmp_path, strategy))
    assert all(log["rmr1_fallback"] == 0.0 for log in got.logs)  # judged as a whole group


def test_rmr1_manager_through_rmr1_serve_cohorts(tokenizer, tmp_path):
    from verl.trainer.ppo.reward import load_reward_manager

    config, record = case.write_config(tmp_path, "cohort", strategy="round-robin")
    with case.Serve(config) as server:
        # the manager's settings must be the server's (its config file): it sends them along
        rmr1 = {"config": str(config), "cohort_url": f"{server.base}/cohort"}
        verl = verl_config(tiny_llama(), n=len(case.COMPLETIONS), rmr1=rmr1)
        verl.reward.num_workers = 2  # no worker sees a whole group: the server holds it
        manager = load_reward_manager(verl, tokenizer)
        outputs = run_rows(manager, case_rollouts(tokenizer))
    got = outcome(record, outputs)
    case.assert_same(
        "veRL rmr1 manager via rmr1 serve cohorts", got, case.api(tmp_path, "round-robin")
    )
    assert all(log["rmr1_fallback"] == 0.0 for log in got.logs)


@pytest.mark.parametrize("name", ["mute", "empty"])
def test_compute_score_fallbacks_match_the_python_api(tmp_path, name):
    """The fallback case through ``compute_score`` (as veRL's reward loop awaits it): an unparsed
    judgment with on_unparsed: exclude, and an empty reference, give the Python API's rewards
    (veRL's fallback score) and logged values."""
    from rmr1_verl.reward import compute_score

    from rmr1_plugins.rewards.config import RewardConfig

    completions, reference, reward = {
        "mute": (case.FALLBACK_COMPLETIONS, case.REFERENCE, case.EXCLUDE),
        "empty": (case.COMPLETIONS, "", {}),
    }[name]
    config, record = case.write_config(tmp_path, f"compute-score-{name}", **reward)
    info = {"question": [dict(m) for m in case.PROMPT]}

    async def run():
        calls = (
            compute_score("parity", c, reference, info, config=str(config)) for c in completions
        )
        return await asyncio.gather(*calls)

    outputs = asyncio.run(run())
    got = case.Outcome(
        case.judge_prompts(record), [o["score"] for o in outputs], [verl_logs(o) for o in outputs]
    )
    api = case.api(tmp_path, "reference", completions=completions, reference=reference, **reward)
    case.assert_same(f"veRL compute_score {name}", got, api, RewardConfig().fallback_reward)
