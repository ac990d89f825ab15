"""A veRL training step at scale for veRL's real RewardLoopManager on local Ray (tests, bench).

Rollouts are built from one tokenised prompt and tiled, so 1,024 x 7 rows take no time to make;
the ``ranker`` judge of tests/serving.py (registered in every Ray process by scripted_judges.py
through ``VERL_USE_EXTERNAL_MODULES``) makes exact in-group rewards known in advance.
"""

from __future__ import annotations

import random

from conftest import rollouts, verl_config

from rmr1_plugins.testing import tiny_llama


def step(tokenizer, prompts, n=7):
    """A step of ``prompts`` groups of ``n`` rollouts ("pick 1" ... "pick n", shuffled within
    each group), tokenised once and tiled: a ranker judge gives rollout "pick k" the round-robin
    win rate (k - 1) / (n - 1)."""
    import numpy as np
    import torch
    from verl import DataProto

    row = rollouts(tokenizer, [("u", "Pick a number.", "pick 5", ["pick 1"])])
    responses = [
        tokenizer(f"pick {k}", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for k in range(1, n + 1)
    ]
    rng = random.Random(7)
    ks = [k for _ in range(prompts) for k in rng.sample(range(1, n + 1), n)]
    width = row.batch["responses"].shape[-1]
    prompt = row.batch["prompts"][0]
    resp = torch.full((len(ks), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(ks), prompt.shape[0] + width), dtype=torch.long)
    mask[:, : prompt.shape[0]] = row.batch["attention_mask"][0, : prompt.shape[0]]
    for i, k in enumerate(ks):
        resp[i, : len(responses[k - 1])] = torch.tensor(responses[k - 1])
        mask[i, prompt.shape[0] : prompt.shape[0] + len(responses[k - 1])] = 1
    prompts_t = prompt.repeat(len(ks), 1)
    objects = lambda values: np.array(values, dtype=object)  # noqa: E731
    extra = row.non_tensor_batch
    data = DataProto.from_dict(
        tensors={
            "prompts": prompts_t,
            "responses": resp,
            "attention_mask": mask,
            "input_ids": torch.cat([prompts_t, resp], dim=1),
        },
        non_tensors={
            "uid": objects([f"g{i // n}" for i in range(len(ks))]),
            **{key: objects([extra[key][0]] * len(ks)) for key in extra if key != "uid"},
        },
    )
    return data, [(k - 1) / (n - 1) for k in ks]


def stream(manager, data, seed=11):
    """What veRL's agent loop does: each rollout, as it finishes, to a random reward worker."""
    workers = manager.reward_loop_worker_handles
    rng = random.Random(seed)
    order = list(range(len(data)))
    rng.shuffle(order)
    refs = {i: rng.choice(workers).compute_score.remote(data[i : i + 1]) for i in order}
    import ray

    outputs = ray.get([refs[i] for i in range(len(data))], timeout=600)
    return outputs


def step_config(tmp_path, prompts, n, workers, **rmr1):
    judge = tmp_path / "ranker.yaml"
    judge.write_text("backend: {name: ranker}\n")
    config = verl_config(
        tiny_llama(), n=n, rmr1={"strategy": "round-robin", "config": str(judge), **rmr1}
    )
    config.reward.num_workers = workers
    config.data = {"train_batch_size": prompts}
    return config
