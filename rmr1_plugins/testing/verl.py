"""veRL's side of the tests: rollouts as its reward loop receives them, the config it reads, and
a training step at scale for its real ``RewardLoopManager`` on local Ray (tests, bench).

veRL, torch and numpy are imported inside the functions. A step's rollouts are built from one
tokenised prompt and tiled, so 1,024 x 7 rows take no time to make; the ``ranker`` judge of
:mod:`rmr1_plugins.testing.judges` (registered in every Ray worker by Ray's
``worker_process_setup_hook``: :func:`~rmr1_plugins.testing.judges.register_in_worker`) makes
exact in-group rewards known in advance.
"""

from __future__ import annotations

import random
from typing import Any

from rmr1_plugins.testing import tiny_llama

GROUPS = [
    ("u1", "Pick a number.", "pick 5", ["pick 3", "pick 9", "pick 1"]),
    ("u2", "Pick a number.", "pick 5", ["pick 7", "pick 2", "pick 8"]),  # same prompt, new uid
]


def rollouts(
    tokenizer: Any, groups: list, prompt_length: int = 48, response_length: int = 24
) -> Any:
    """A DataProto like veRL's reward loop receives: one row per rollout.

    ``groups`` is a list of ``(uid, question, reference, [responses])``. Prompts are chat-templated
    and left-padded, responses right-padded and ended with EOS, as the rollout produces them.
    """
    import numpy as np
    import torch
    from verl import DataProto

    rows = [(uid, q, ref, r) for uid, q, ref, responses in groups for r in responses]
    prompts, responses, masks, inputs = [], [], [], []
    for _, question, _, response in rows:
        chat = [{"role": "user", "content": question}]
        text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        p_ids = tokenizer(text, add_special_tokens=False)["input_ids"][-prompt_length:]
        r_ids = tokenizer(response, add_special_tokens=False)["input_ids"][: response_length - 1]
        r_ids = [*r_ids, tokenizer.eos_token_id]
        pad = tokenizer.pad_token_id
        p_row = [pad] * (prompt_length - len(p_ids)) + p_ids
        r_row = r_ids + [pad] * (response_length - len(r_ids))
        mask = [0] * (prompt_length - len(p_ids)) + [1] * (len(p_ids) + len(r_ids))
        mask += [0] * (response_length - len(r_ids))
        prompts.append(p_row)
        responses.append(r_row)
        masks.append(mask)
        inputs.append(p_row + r_row)
    tensors = {
        "prompts": torch.tensor(prompts),
        "responses": torch.tensor(responses),
        "attention_mask": torch.tensor(masks),
        "input_ids": torch.tensor(inputs),
    }
    objects = lambda values: np.array(values, dtype=object)  # noqa: E731
    non_tensors = {
        "uid": objects([uid for uid, *_ in rows]),
        "data_source": objects(["demo"] * len(rows)),
        "raw_prompt": objects([[{"role": "user", "content": q}] for _, q, _, _ in rows]),
        "reward_model": objects([{"ground_truth": ref, "style": "model"} for _, _, ref, _ in rows]),
        "extra_info": objects([{"question": q, "split": "train"} for _, q, _, _ in rows]),
    }
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensors)


def verl_config(tokenizer_dir: Any = None, n: int = 3, rmr1: Any = None, **reward: Any) -> Any:
    """The parts of veRL's trainer config that the reward loop reads."""
    from omegaconf import OmegaConf

    config = {
        "actor_rollout_ref": {
            "model": {"path": str(tokenizer_dir), "tokenizer_path": None},
            "rollout": {"n": n, "val_kwargs": {"n": 1}},
        },
        "reward": {
            "num_workers": 1,
            "custom_reward_function": {"path": None, "name": "compute_score"},
            "reward_manager": {"source": "register", "name": "rmr1", "module": {"path": None}},
            "reward_model": {"enable": False},
            "sandbox_fusion": {"url": None},
            **reward,
        },
    }
    if rmr1 is not None:
        config["reward"]["rmr1"] = rmr1
    return OmegaConf.create(config)


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


def manager(tokenizer: Any, workers: int = 2, **rmr1: Any) -> Any:
    """veRL's own reward manager, built from its config (``reward_manager.name: rmr1``), over the
    tiny Llama's tokenizer, with round-robin groups of 3."""
    from verl.trainer.ppo.reward import load_reward_manager

    config = verl_config(tiny_llama(), n=3, rmr1={"strategy": "round-robin", **rmr1})
    config.reward.num_workers = workers
    return load_reward_manager(config, tokenizer)
