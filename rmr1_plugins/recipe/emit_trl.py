"""TRL: ``trl sft`` / ``trl grpo`` YAML configs (TRL's own CLI, launched through accelerate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rmr1_plugins.recipe.sources import write_jsonl
from rmr1_plugins.recipe.stages import (
    Emitted,
    Launch,
    RLVRDefaults,
    SFTDefaults,
    budget_note,
    per_process_accumulation,
    rl_rows,
    sft_rows,
)

REWARD_FUNC = "rmr1_plugins.recipe.reward.rmr1_verifiable_reward"
# TRL's loss_type for RM-R1's aggregation: "grpo" averages each completion's tokens, then the
# completions; "bnpo" averages the tokens of each per-device micro-batch, as veRL e49fb572 did.
LOSS_TYPE = {"sequence": "grpo", "micro-batch": "bnpo"}
SFT_DIFFERENCES = [
    "Differs from RM-R1: TRL 1.16's SFT loss averages tokens over the whole accumulated batch, so "
    "long traces weigh more; RM-R1 (OpenRLHF, one trace per micro-batch) averaged each trace, "
    "then traces. SFTConfig has no per-sequence option.",
]

RL_DIFFERENCES = [
    "Differs from RM-R1: advantages divide by the group's std + 1e-4 (RM-R1's veRL: + 1e-6); "
    "with +-1 rewards that std is 0 (advantage 0 either way) or 0.69 or more, so under 0.02%.",
]


def sft_config(d: SFTDefaults, world: int = 1) -> dict[str, Any]:
    """``SFTConfig`` keyword arguments for RM-R1 stage 1 (prompt/completion data)."""
    return {
        "learning_rate": d.learning_rate,
        "per_device_train_batch_size": d.micro_batch,
        "gradient_accumulation_steps": per_process_accumulation(
            d.global_batch, d.micro_batch, world, "SFT"
        ),
        "num_train_epochs": d.epochs,
        "max_length": d.max_length,
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr_rate": d.min_lr_ratio},
        "warmup_steps": d.warmup_ratio,  # a float < 1 is a ratio of the total steps
        "adam_beta1": d.adam_beta1,
        "adam_beta2": d.adam_beta2,
        "weight_decay": d.weight_decay,
        "max_grad_norm": d.max_grad_norm,
        "completion_only_loss": True,  # loss on the assistant turn only
        "bf16": True,
        "gradient_checkpointing": True,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
    }


def grpo_config(d: RLVRDefaults, world: int = 1) -> dict[str, Any]:
    """``GRPOConfig`` keyword arguments for RM-R1 stage 2.

    One generation round samples ``prompts_per_step * num_generations`` completions; each
    optimizer step takes ``mini_batch_prompts * num_generations`` of them, as veRL's
    ``train_batch_size`` / ``ppo_mini_batch_size`` did for RM-R1.
    """
    mini = d.mini_batch_prompts * d.num_generations
    return {
        "learning_rate": d.learning_rate,
        "lr_scheduler_type": "constant",
        "num_generations": d.num_generations,
        "temperature": d.temperature,
        "beta": d.kl_coef,  # TRL's KL term is a loss term with the k3 (low_var_kl) estimator
        "epsilon": d.clip,
        "entropy_coef": d.entropy_coef,
        "loss_type": LOSS_TYPE[d.loss_aggregation],
        "scale_rewards": "group",
        "num_iterations": 1,
        "per_device_train_batch_size": d.micro_batch,
        "gradient_accumulation_steps": per_process_accumulation(mini, d.micro_batch, world, "GRPO"),
        "generation_batch_size": d.prompts_per_step * d.num_generations,
        "max_completion_length": d.max_response_tokens,
        "num_train_epochs": d.epochs,
        "adam_beta1": d.adam_beta1,
        "adam_beta2": d.adam_beta2,
        "weight_decay": d.weight_decay,
        "max_grad_norm": d.max_grad_norm,
        "seed": d.data_seed,  # TRL's sampler shuffles the prompts with it
        "vllm_tensor_parallel_size": d.tensor_parallel,
        "vllm_gpu_memory_utilization": d.gpu_memory_utilization,
        # RM-R1 had no trainer-vs-vLLM probability correction, and its KL gradient is the plain
        # k3 loss's; TRL 1.16 turns both on by default (trl_defaults.GRPO_DEFAULTS)
        "vllm_importance_sampling_correction": False,
        "use_bias_correction_kl": False,
        "bf16": True,
        "gradient_checkpointing": True,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
    }


def _write(launch: Launch, config: dict[str, Any], name: str, notes: list[str]) -> Path:
    for key, value in launch.overrides.items():
        config[key] = yaml.safe_load(value)
    path = launch.out_dir / f"{name}.yaml"
    header = "".join(f"# {note}\n" for note in notes)
    path.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _command(name: str, config: Path, launch: Launch) -> list[str]:
    command = ["trl", name, "--config", str(config), "--num_processes", str(launch.world)]
    command += ["--accelerate_config", "zero3"]
    if launch.nodes > 1:
        command += ["--num_machines", str(launch.nodes), "--machine_rank", "${NODE_RANK}"]
        command += ["--main_process_ip", "${MASTER_ADDR}", "--main_process_port", "29500"]
    return command


def emit_sft(launch: Launch, d: SFTDefaults) -> Emitted:
    data = launch.out_dir / "data" / "sft.jsonl"
    write_jsonl(data, sft_rows(launch.data))
    config: dict[str, Any] = {"model_name_or_path": launch.model, "dtype": "bfloat16"}
    config["output_dir"] = str(launch.out_dir / "model")
    config["datasets"] = [{"path": "json", "data_files": str(data), "split": "train"}]
    config |= sft_config(d, launch.world)
    path = _write(launch, config, "sft", SFT_DIFFERENCES)
    command = _command("sft", path, launch)
    return Emitted("trl", "sft", command, {"data": data, "config": path}, list(SFT_DIFFERENCES))


def emit_rlvr(launch: Launch, d: RLVRDefaults) -> Emitted:
    data = launch.out_dir / "data" / "rl.jsonl"
    rows = ({"prompt": r["context_messages"], "winner": r["winner"]} for r in rl_rows(launch.data))
    write_jsonl(data, rows)
    config: dict[str, Any] = {"model_name_or_path": launch.model, "dtype": "bfloat16"}
    config["output_dir"] = str(launch.out_dir / "model")
    config["datasets"] = [{"path": "json", "data_files": str(data), "split": "train"}]
    config["reward_funcs"] = [REWARD_FUNC]
    config |= grpo_config(d, launch.world)
    config |= {"use_vllm": True, "vllm_mode": "colocate"}
    config["vllm_max_model_length"] = d.max_prompt_tokens + d.max_response_tokens
    notes = [budget_note(launch.data, "TRL 1.16 has no prompt-length limit and trains on any")]
    notes += RL_DIFFERENCES
    path = _write(launch, config, "grpo", notes)
    command = _command("grpo", path, launch)
    return Emitted("trl", "rlvr", command, {"data": data, "config": path}, notes)
