"""``rmr1 recipe sft|rlvr --trainer verl`` checked by veRL 0.9.1's own code, on CPU.

The emitted Hydra overrides are composed against veRL's real ``ppo_trainer.yaml`` and
``sft_trainer_engine.yaml`` and put through ``validate_config`` (what ``main_ppo`` runs before
starting Ray); the Parquet files are read by ``RLHFDataset`` and veRL's multi-turn SFT dataset;
the reward path is loaded by ``get_custom_reward_fn``. Run in an environment with verl 0.9.1
(transformers < 5.11), e.g. the ``verl`` nox session.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

verl = pytest.importorskip("verl")

from hydra import compose, initialize_config_dir  # noqa: E402

from rmr1_plugins.recipe.prepare import PrepareConfig, prepare  # noqa: E402
from rmr1_plugins.recipe.stages import Launch, emit  # noqa: E402
from rmr1_plugins.templates import template_text  # noqa: E402
from rmr1_plugins.testing import tiny_llama  # noqa: E402

CONFIG_DIR = str(Path(verl.__file__).parent / "trainer" / "config")
TRACE = "<type>Chat</type>\n<rubric>r</rubric>\n<eval>B is right</eval>\n\n<answer>[[B]]</answer>"


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A tiny Llama whose tokenizer was trained on the RM-R1 prompt, so prompts stay short."""
    text = template_text("INSTRUCT_SYSTEM_PROMPT.txt") + template_text(
        "INSTRUCT_SINGLE_USER_PROMPT_TEMPLATE.txt"
    )
    return tiny_llama(tmp_path_factory.mktemp("student") / "tiny", vocab_text=text)


@pytest.fixture(scope="module")
def tokenizer(student):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(student)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    pairs = [
        {"input": f"What is {i}+{i}?", "accepted": str(2 * i), "rejected": "7"} for i in range(4)
    ]
    (folder / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    prepare(
        [str(folder / "pairs.jsonl")],
        folder,
        PrepareConfig(max_prompt_tokens=None, distill_fraction=0.5),
    )
    row = json.loads((folder / "distill.jsonl").read_text().splitlines()[0])
    sft = {
        "prompt": row["context_messages"],
        "completion": [{"role": "assistant", "content": TRACE}],
    }
    (folder / "sft.jsonl").write_text(json.dumps(sft) + "\n")
    return folder


def hydra_overrides(command: list[str], module: str) -> list[str]:
    return command[command.index(module) + 1 :]


def test_rlvr_overrides_compose_validate_and_load(tmp_path, data, student, tokenizer):
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.dataset.rl_dataset import RLHFDataset

    emitted = emit("rlvr", "verl", Launch(str(student), data / "rl.jsonl", tmp_path))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(
            "ppo_trainer", overrides=hydra_overrides(emitted.command, "verl.trainer.main_ppo")
        )
    actor = cfg.actor_rollout_ref.actor
    assert cfg.algorithm.adv_estimator == "grpo" and cfg.algorithm.use_kl_in_reward is False
    assert (actor.use_kl_loss, actor.kl_loss_coef, actor.kl_loss_type) == (
        True,
        0.001,
        "low_var_kl",
    )
    assert (actor.entropy_coeff, actor.clip_ratio, actor.optim.lr) == (0, 0.2, 1e-6)
    assert (cfg.data.train_batch_size, actor.ppo_mini_batch_size) == (1024, 128)
    assert (cfg.actor_rollout_ref.rollout.n, cfg.actor_rollout_ref.rollout.temperature) == (7, 1.0)
    assert (cfg.data.max_prompt_length, cfg.data.max_response_length) == (4096, 8192)
    validate_config(cfg, need_reference_policy(cfg), need_critic(cfg))  # as main_ppo does

    dataset = RLHFDataset(data_files=cfg.data.train_files, tokenizer=tokenizer, config=cfg.data)
    rows = [json.loads(line) for line in (data / "rl.jsonl").open()]
    assert len(dataset) == len(rows) == 2  # filter_overlong_prompts kept them all
    item = dataset[0]
    assert item["raw_prompt"] == rows[0]["context_messages"]
    assert item["reward_model"] == {"style": "rule", "ground_truth": rows[0]["winner"]}

    winner = rows[0]["winner"]
    right = "<answer>[[A]]</answer>" if winner == "model_a" else "<answer>[[B]]</answer>"
    assert get_custom_reward_fn(cfg)(
        data_source=item["data_source"], solution_str=right, ground_truth=winner
    ) == {"score": 1.0, "rmr1_correct": 1.0, "rmr1_bad_input": 0.0}
    assert reward_through_the_manager(cfg, tokenizer, item, right) == 1.0
    assert reward_through_the_manager(cfg, tokenizer, item, "no verdict") == -1.0


def reward_through_the_manager(cfg, tokenizer, item, response: str) -> float:
    """One rollout scored the way veRL's reward loop does it (reward manager, ``run_single``)."""
    import numpy as np
    import torch
    from verl import DataProto
    from verl.trainer.ppo.reward import load_reward_manager

    manager = load_reward_manager(cfg, tokenizer)
    prompt = torch.tensor([tokenizer.encode("prompt", add_special_tokens=False)])
    answer = tokenizer.encode(response, add_special_tokens=False)
    responses = torch.tensor([[*answer, tokenizer.eos_token_id, *[tokenizer.pad_token_id] * 3]])
    mask = torch.cat([torch.ones_like(prompt), (responses != tokenizer.pad_token_id).long()], -1)
    data = DataProto.from_dict(
        tensors={"prompts": prompt, "responses": responses, "attention_mask": mask,
                 "input_ids": torch.cat([prompt, responses], -1)},
        non_tensors={key: np.array([item[key]], dtype=object)
                     for key in ("data_source", "reward_model", "extra_info", "raw_prompt")},
    )  # fmt: skip
    result = manager.loop.run_until_complete(manager.run_single(data))
    assert set(result["reward_extra_info"]) == {"score", "rmr1_correct", "rmr1_bad_input"}
    return result["reward_score"]


def test_sft_overrides_compose_and_the_loss_covers_only_the_trace(
    tmp_path, data, student, tokenizer
):
    # What verl.trainer.sft_trainer.create_sft_dataset builds when no custom class is set
    # (importing sft_trainer itself pulls in the rollout servers: uvicorn, fastapi).
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    emitted = emit("sft", "verl", Launch(str(student), data / "sft.jsonl", tmp_path))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(
            "sft_trainer_engine",
            overrides=hydra_overrides(emitted.command, "verl.trainer.sft_trainer"),
        )
    assert (cfg.optim.lr, cfg.optim.lr_scheduler_type, cfg.optim.min_lr_ratio) == (
        5e-6,
        "cosine",
        0.1,
    )
    assert (cfg.optim.lr_warmup_steps_ratio, cfg.data.train_batch_size, cfg.data.max_length) == (
        0.03,
        128,
        12288,
    )
    assert cfg.trainer.total_epochs == 1 and cfg.model.path == str(student)

    dataset = MultiTurnSFTDataset(cfg.data.train_files, tokenizer, config=cfg.data, processor=None)
    item = dataset[0]
    trained = item["input_ids"][item["loss_mask"].bool()]
    text = tokenizer.decode(trained)
    assert TRACE in text
    assert "impartial judge" not in text  # the system prompt is not trained on
    assert len(trained) < len(item["input_ids"]) // 2


def assert_no_dual_clip(actor_config) -> None:
    """veRL 0.9.1's own policy loss, with the emitted actor config, is RM-R1's PPO clip loss
    (max(-A r, -A clip(r, 0.8, 1.2)), no dual-clip bound), where veRL's default clip_ratio_c 3
    caps a negative advantage's loss."""
    import dataclasses

    import torch
    from verl.trainer.ppo.core_algos import compute_policy_loss_vanilla
    from verl.utils.config import omega_conf_to_dataclass

    actor = omega_conf_to_dataclass(actor_config)
    old, new = torch.zeros(1, 3), torch.tensor([[2.0, 0.1, -0.5]])  # ratios 7.4, 1.1, 0.6
    advantages, mask = torch.full((1, 3), -1.0), torch.ones(1, 3)
    ratio = new.exp()
    rm_r1 = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(0.8, 1.2)).mean()
    loss, _ = compute_policy_loss_vanilla(old, new, advantages, mask, "token-mean", config=actor)
    assert loss.item() == pytest.approx(rm_r1.item())
    default = dataclasses.replace(actor, clip_ratio_c=3.0)  # the first token's loss capped at 3
    capped, _ = compute_policy_loss_vanilla(
        old, new, advantages, mask, "token-mean", config=default
    )
    assert capped.item() < rm_r1.item() - 1


@pytest.mark.parametrize("name", ["rm-r1-instruct-7b", "rm-r1-instruct-32b", "rm-r1-deepseek-32b"])
def test_each_presets_overrides_compose_and_validate(tmp_path, data, student, name):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from rmr1_plugins.recipe.presets import get_preset

    preset = get_preset(name)
    shape = {"gpus_per_node": preset.gpus_per_node, "nodes": preset.nodes}
    launch = Launch(str(student), data / "rl.jsonl", tmp_path / "rl", **shape)
    rl = emit("rlvr", "verl", launch, rl=preset.rl)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("ppo_trainer", overrides=hydra_overrides(rl.command, "verl.trainer.main_ppo"))
    actor = cfg.actor_rollout_ref.actor
    assert (actor.optim.lr, actor.loss_agg_mode) == (preset.rl.learning_rate, "seq-mean-token-mean")
    assert list(actor.optim.betas) == [0.9, 0.999] and actor.optim.weight_decay == 0.01
    assert actor.ppo_micro_batch_size_per_gpu == preset.rl.micro_batch
    assert cfg.trainer.nnodes == preset.nodes
    # RM-R1's rollout (tensor parallel 4, the preset's memory share) and data order (seed 1)
    rollout = cfg.actor_rollout_ref.rollout
    assert (rollout.tensor_model_parallel_size, cfg.data.seed) == (4, 1)
    assert rollout.gpu_memory_utilization == preset.rl.gpu_memory_utilization
    validate_config(cfg, need_reference_policy(cfg), need_critic(cfg))  # as main_ppo does
    assert_no_dual_clip(cfg.actor_rollout_ref.actor)
    if preset.sft is not None:
        launch = Launch(str(student), data / "sft.jsonl", tmp_path / "sft", **shape)
        sft = emit("sft", "verl", launch, sft=preset.sft)
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
            cfg = compose(
                "sft_trainer_engine",
                overrides=hydra_overrides(sft.command, "verl.trainer.sft_trainer"),
            )
        assert list(cfg.optim.betas) == [0.9, 0.95] and cfg.optim.weight_decay == 0.0
        assert cfg.optim.clip_grad == 1.0
