"""veRL 0.9.1: ``verl.trainer.sft_trainer`` (torchrun) and ``verl.trainer.main_ppo`` with GRPO.

Both take Hydra overrides. The SFT data is a Parquet file with a ``messages`` column (veRL's
multi-turn SFT dataset puts the loss on assistant turns only); the RL data is a Parquet file with
``data_source``, ``prompt`` (chat messages), ``ability``, ``reward_model`` (``style``,
``ground_truth`` = ``model_a``/``model_b``) and ``extra_info``. The reward is
``compute_score`` from :mod:`rmr1_plugins.recipe.reward`, set with the ``reward.*`` keys (veRL
0.9.1 silently ignores the legacy top-level ``custom_reward_function`` keys).
"""

from __future__ import annotations

from rmr1_plugins.recipe.sources import write_parquet
from rmr1_plugins.recipe.stages import (
    MICRO_BATCH_DIFFERENCE,
    Emitted,
    Launch,
    RLVRDefaults,
    SFTDefaults,
    StageError,
    budget_note,
    rl_rows,
    sft_rows,
)

DATA_SOURCE = "rmr1"
REWARD_PATH = "pkg://rmr1_plugins.recipe.reward"
# veRL 0.9.1's vanilla policy loss adds dual-clip (clip_ratio_c, default 3.0: a negative
# advantage's loss is capped at -A * 3) which RM-R1's veRL did not have; a bound no ratio reaches
# turns it off (the key must stay above 1).
NO_DUAL_CLIP = 1e9
RL_DIFFERENCES = [
    "Differs from RM-R1: veRL 0.9.1 clamps log(pi/pi_old) to +-20 before the ratio (no key); "
    "it only changes ratios above e^20, which the 0.2 clip already cuts for A > 0.",
]
SFT_DIFFERENCES = [
    "Differs from RM-R1: veRL 0.9.1's SFT loss (verl/workers/utils/losses.py, sft_loss) is a "
    "token mean over the global batch, with no per-sequence mode, so long traces weigh more; "
    "RM-R1 (OpenRLHF, one trace per micro-batch) averaged each trace, then traces.",
]


def overrides(values: dict[str, object], extra: dict[str, str]) -> list[str]:
    """Hydra ``key=value`` overrides; ``extra`` (the user's) replaces keys with the same name."""
    merged = {key: _hydra(value) for key, value in values.items()} | extra
    return [f"{key}={value}" for key, value in merged.items()]


def _hydra(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def emit_sft(launch: Launch, d: SFTDefaults) -> Emitted:
    data = launch.out_dir / "data" / "sft.parquet"
    write_parquet(
        data, [{"messages": r["prompt"] + r["completion"]} for r in sft_rows(launch.data)]
    )
    values: dict[str, object] = {
        "model.path": launch.model,
        "data.train_files": str(data),
        "data.messages_key": "messages",
        "data.max_length": d.max_length,
        "data.truncation": "right",
        "data.train_batch_size": d.global_batch,
        "data.micro_batch_size_per_gpu": d.micro_batch,
        "data.max_token_len_per_gpu": d.max_length,
        "optim.lr": d.learning_rate,
        "optim.lr_scheduler_type": "cosine",
        "optim.min_lr_ratio": d.min_lr_ratio,
        "optim.lr_warmup_steps_ratio": d.warmup_ratio,
        "optim.betas": [d.adam_beta1, d.adam_beta2],
        "optim.weight_decay": d.weight_decay,
        "optim.clip_grad": d.max_grad_norm,
        "trainer.total_epochs": d.epochs,
        "trainer.default_local_dir": str(launch.out_dir / "checkpoints"),
        "trainer.n_gpus_per_node": launch.gpus_per_node,
        "trainer.nnodes": launch.nodes,
        "trainer.logger": ["console"],
        "checkpoint.save_contents": ["model", "optimizer", "extra", "hf_model"],
    }
    launcher = ["torchrun", "--nnodes", str(launch.nodes)]
    launcher += ["--nproc_per_node", str(launch.gpus_per_node)]
    if launch.nodes > 1:
        launcher += ["--node_rank", "${NODE_RANK}", "--master_addr", "${MASTER_ADDR}"]
    else:
        launcher += ["--standalone"]
    command = [*launcher, "-m", "verl.trainer.sft_trainer", *overrides(values, launch.overrides)]
    return Emitted("verl", "sft", command, {"data": data}, list(SFT_DIFFERENCES))


def rl_records(rows: list[dict]) -> list[dict]:
    """veRL's RL dataset rows; the ground truth is RM-R1's ``model_a``/``model_b`` label."""
    return [
        {
            "data_source": DATA_SOURCE,
            "prompt": row["context_messages"],
            "ability": "reward_modeling",
            "reward_model": {"style": "rule", "ground_truth": row["winner"]},
            "extra_info": {"index": index, "id": str(row.get("id", index))},
        }
        for index, row in enumerate(rows)
    ]


def emit_rlvr(launch: Launch, d: RLVRDefaults) -> Emitted:
    if d.prompts_per_step % d.mini_batch_prompts:
        raise StageError("prompts per step must be a multiple of the mini-batch")
    data = launch.out_dir / "data" / "rl.parquet"
    write_parquet(data, rl_records(rl_rows(launch.data)))
    values: dict[str, object] = {
        "algorithm.adv_estimator": "grpo",
        "algorithm.use_kl_in_reward": False,
        "data.train_files": str(data),
        "data.val_files": str(data),
        "data.prompt_key": "prompt",
        "data.max_prompt_length": d.max_prompt_tokens,
        "data.max_response_length": d.max_response_tokens,
        "data.filter_overlong_prompts": True,
        "data.truncation": "error",
        "data.train_batch_size": d.prompts_per_step,
        "data.shuffle": True,
        "data.seed": d.data_seed,  # veRL 0.9.1's default (null) shuffles differently each run
        "actor_rollout_ref.model.path": launch.model,
        "actor_rollout_ref.model.enable_gradient_checkpointing": True,
        "actor_rollout_ref.actor.optim.lr": d.learning_rate,
        "actor_rollout_ref.actor.ppo_mini_batch_size": d.mini_batch_prompts,
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": d.micro_batch,
        "actor_rollout_ref.actor.ppo_epochs": 1,
        "actor_rollout_ref.actor.use_kl_loss": True,
        "actor_rollout_ref.actor.kl_loss_coef": d.kl_coef,
        "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
        "actor_rollout_ref.actor.entropy_coeff": d.entropy_coef,
        "actor_rollout_ref.actor.clip_ratio": d.clip,
        "actor_rollout_ref.actor.clip_ratio_c": NO_DUAL_CLIP,
        "actor_rollout_ref.actor.loss_agg_mode": "seq-mean-token-mean",
        "actor_rollout_ref.actor.optim.betas": [d.adam_beta1, d.adam_beta2],
        "actor_rollout_ref.actor.optim.weight_decay": d.weight_decay,
        "actor_rollout_ref.actor.optim.clip_grad": d.max_grad_norm,
        "actor_rollout_ref.rollout.name": "vllm",
        "actor_rollout_ref.rollout.n": d.num_generations,
        "actor_rollout_ref.rollout.temperature": d.temperature,
        "actor_rollout_ref.rollout.tensor_model_parallel_size": d.tensor_parallel,
        "actor_rollout_ref.rollout.gpu_memory_utilization": d.gpu_memory_utilization,
        "actor_rollout_ref.rollout.max_num_batched_tokens": d.max_prompt_tokens
        + d.max_response_tokens,
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": d.micro_batch,
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": d.micro_batch,
        "reward.custom_reward_function.path": REWARD_PATH,
        "reward.custom_reward_function.name": "compute_score",
        "trainer.total_epochs": d.epochs,
        "trainer.n_gpus_per_node": launch.gpus_per_node,
        "trainer.nnodes": launch.nodes,
        "trainer.val_before_train": False,
        "trainer.test_freq": -1,
        "trainer.save_freq": d.save_freq,
        "trainer.logger": ["console"],
        "trainer.default_local_dir": str(launch.out_dir / "checkpoints"),
    }
    command = ["python3", "-m", "verl.trainer.main_ppo", *overrides(values, launch.overrides)]
    notes = [
        "Multi-node: start Ray on every node first and run this on the head node.",
        "rmr1-plugins must be installed on every node: the reward is pkg://rmr1_plugins...",
        budget_note(launch.data, "veRL's filter_overlong_prompts drops any left, as RM-R1's did"),
        *RL_DIFFERENCES,
    ]
    if d.loss_aggregation == "micro-batch":
        notes.append(MICRO_BATCH_DIFFERENCE.format(n=d.micro_batch, trainer="veRL 0.9.1"))
    return Emitted("verl", "rlvr", command, {"data": data}, notes)
