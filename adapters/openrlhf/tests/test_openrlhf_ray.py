"""OpenRLHF's reward file with whole-group rewards, in rollout actors on local Ray.

OpenRLHF 0.11.2 loads the reward file in each ``RolloutRayActor`` (``async __init__``, through
``SingleTurnAgentExecutor``) and calls ``reward_func`` per sample from the actor loop's default
thread pool. Its ``RolloutRayActor`` imports vLLM, so ``rmr1_plugins.testing.openrlhf.Rollout``
stands in for it with the same ``async __init__`` and ``generate_responses``; the executor, the
reward file, Ray and the cohort actor are real. The ``ranker`` judge
(:mod:`rmr1_plugins.testing.judges`) makes exact round-robin rewards known in advance.
Generations finish in a shuffled order (yields, no waits), so groups interleave in the thread
pool as they do behind vLLM.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import pytest

agent = pytest.importorskip("openrlhf.utils.agent")
transformers = pytest.importorskip("transformers")


from rmr1_plugins.testing import smollm2_checkpoint  # noqa: E402
from rmr1_plugins.testing.openrlhf import Rollout  # noqa: E402

PROMPTS, N = 32, 4  # OpenRLHF's step: rollout.batch_size x n_samples_per_prompt
YAML = (
    "backend: {name: ranker}\nreward: {strategy: round-robin, group: {size: %d, timeout_s: 120}}\n"
)


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(smollm2_checkpoint())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Local Ray (imported here: the other modules check that the reward file never does)."""
    ray = pytest.importorskip("ray")
    config = tmp_path_factory.mktemp("rmr1") / "rmr1.yaml"
    config.write_text(YAML % N)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "env_vars": {"PYTHONPATH": os.pathsep.join(sys.path), "RMR1_CONFIG": str(config)},
            "worker_process_setup_hook": "rmr1_plugins.testing.judges.register_in_worker",
        },
    )
    yield ray
    ray.shutdown()


def test_reward_file_gets_whole_groups_through_the_cohort_actor(cluster, tokenizer):
    ray = cluster
    from rmr1_openrlhf.reward import HELD_THREADS
    from rmr1_openrlhf.reward_func import __file__ as reward_file

    actor = ray.remote(Rollout).options(num_cpus=0)
    engines = [actor.remote(reward_file, tokenizer, seed) for seed in range(2)]
    params = SimpleNamespace(max_tokens=16, logprobs=None)

    def chat(p: int) -> str:
        turns = [{"role": "user", "content": f"Name a number, question {p}."}]
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)

    refs = [  # as OpenRLHF's _dispatch_prompts_to_vllm: one call per prompt, engines in turn
        engines[p % 2].generate_responses.remote(chat(p), "", params, 512, tokenizer, N)
        for p in range(PROMPTS)
    ]
    outputs = [out for group in ray.get(refs) for out in group]
    assert len(outputs) == PROMPTS * N
    logs = [out["extra_logs"] for out in outputs]
    assert sum(float(log["rmr1_split"][0]) for log in logs) == 0
    assert sum(float(log["rmr1_fallback"][0]) for log in logs) == 0
    assert all(float(log["rmr1_group"][0]) == N for log in logs)
    rewards = [float(out["reward"][0]) for out in outputs]
    assert rewards == pytest.approx([k / (N - 1) for _ in range(PROMPTS) for k in range(N)])
    stats, other = ray.get([engine.cohorts.remote() for engine in engines])
    assert stats == other  # one actor for both engines
    assert stats["members"] == PROMPTS * N and stats["complete_cohorts"] == PROMPTS
    assert stats["workers"] == 2 and stats["held"] == 0  # one byte bound share per engine
    # the reward file made room in each engine's loop for every rollout that waits
    assert ray.get([engine.threads.remote() for engine in engines]) == [HELD_THREADS] * 2
