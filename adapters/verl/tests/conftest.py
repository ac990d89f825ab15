"""Fixtures for the veRL extension: real tokenised rollouts in a DataProto, veRL configs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rmr1_plugins import Scorer
from rmr1_plugins.testing import LongerWins

sys.path.insert(0, str(Path(__file__).parents[3] / "tests"))  # the core tests' shared cases


@pytest.fixture(scope="session")
def tokenizer():
    """The tiny Llama's byte-level tokenizer: real tokenisation, no weights needed."""
    from transformers import AutoTokenizer

    from rmr1_plugins.testing import tiny_llama

    return AutoTokenizer.from_pretrained(tiny_llama())


@pytest.fixture(scope="session")
def smollm2_dir():
    from rmr1_plugins.testing import smollm2_checkpoint

    return smollm2_checkpoint()


def rollouts(tokenizer, groups, prompt_length=48, response_length=24):
    """A DataProto like veRL's reward loop receives: one row per rollout.

    ``groups`` is a list of ``(uid, question, reference, [responses])``. Prompts are chat-templated
    and left-padded, responses right-padded and ended with EOS, as the rollout produces them.
    """
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


def verl_config(tokenizer_dir=None, n=3, rmr1=None, **reward):
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


def longer_wins_scorer() -> tuple[Scorer, LongerWins]:
    """A scorer over the scripted judge, and the judge (to count its calls)."""
    backend = LongerWins()
    return Scorer(backend), backend
