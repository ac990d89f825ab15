"""OpenRLHF 0.11.2: ``openrlhf.cli.train_sft`` (deepspeed) and ``train_ppo_ray`` with GRPO.

Flags use 0.11.2's dotted names. The RL reward is a ``reward_func`` file passed as
``--reward.remote_url``; it calls :func:`rmr1_plugins.recipe.reward.reward_func`, so
``rmr1-plugins`` must be installed on every Ray node.
"""

from __future__ import annotations

from rmr1_plugins.recipe.sources import write_jsonl
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

REWARD_FILE = '''"""RM-R1's verifiable reward for OpenRLHF (--reward.remote_url this_file.py)."""

from rmr1_plugins.recipe.reward import reward_func  # noqa: F401
'''
RL_DIFFERENCES = [
    "Differs from RM-R1: advantages divide by the group's std + 1e-9 (RM-R1's veRL: + 1e-6); "
    "with +-1 rewards that std is 0 (advantage 0 either way) or 0.69 or more, so under 0.0002%.",
    "Differs from RM-R1: OpenRLHF 0.11.2 clamps log(pi/pi_old) to +-20 before the ratio (no "
    "flag); it only changes ratios above e^20. Dual-clip stays off (no --actor.dual_clip).",
]
SFT_DIFFERENCES = [
    "Differs from RM-R1: OpenRLHF 0.11.2's train_sft averages tokens over the global batch "
    "(SFTLoss is built token-level, with no flag), so long traces weigh more; RM-R1's OpenRLHF "
    "averaged each micro-batch of one trace, then traces.",
]


def flags(values: dict[str, object], overrides: dict[str, str]) -> list[str]:
    """``{"a.b": 1, "c": True}`` → ``["--a.b", "1", "--c"]``; overrides win.

    An override value of ``true`` or ``""`` sets a switch, ``false`` removes it.
    """
    merged: dict[str, object] = dict(values)
    for key, text in overrides.items():
        merged[key] = {"true": True, "": True, "false": False}.get(text.lower(), text)
    out: list[str] = []
    for key, value in merged.items():
        if value is False:
            continue
        out.append(f"--{key}")
        if isinstance(value, list | tuple):  # nargs flags such as --adam.betas
            out.extend(str(v) for v in value)
        elif value is not True:
            out.append(str(value))
    return out


def _engines(world: int, tensor_parallel: int) -> int:
    """vLLM engines so that engines x tensor parallel size covers every GPU (colocate_all)."""
    if world % tensor_parallel:
        raise StageError(
            f"rollout tensor parallel size {tensor_parallel} must divide the {world} GPUs"
        )
    return world // tensor_parallel


def emit_sft(launch: Launch, d: SFTDefaults) -> Emitted:
    data = launch.out_dir / "data" / "sft.jsonl"
    write_jsonl(data, sft_rows(launch.data))
    values: dict[str, object] = {
        "model.model_name_or_path": launch.model,
        "data.dataset": str(data),
        "data.input_key": "prompt",
        "data.output_key": "completion",  # loss on the response only (no pretrain mode)
        "data.apply_chat_template": True,
        "data.max_len": d.max_length,
        "train.batch_size": d.global_batch,
        "train.micro_batch_size": d.micro_batch,
        "train.max_epochs": d.epochs,
        "adam.lr": d.learning_rate,
        "adam.betas": [d.adam_beta1, d.adam_beta2],
        "adam.weight_decay": d.weight_decay,
        "max_norm": d.max_grad_norm,
        "lr_scheduler": "cosine_with_min_lr",
        "min_lr_ratio": d.min_lr_ratio,
        "lr_warmup_ratio": d.warmup_ratio,
        "ds.zero_stage": 3,
        "ds.param_dtype": "bf16",
        "model.gradient_checkpointing_enable": True,
        "ckpt.output_dir": str(launch.out_dir / "model"),
        "logger.logging_steps": 1,
    }
    launcher = ["deepspeed", "--num_gpus", str(launch.gpus_per_node)]
    if launch.nodes > 1:
        launcher = ["deepspeed", "--hostfile", "${HOSTFILE}"]
    command = [*launcher, "--module", "openrlhf.cli.train_sft", *flags(values, launch.overrides)]
    return Emitted("openrlhf", "sft", command, {"data": data}, list(SFT_DIFFERENCES))


def emit_rlvr(launch: Launch, d: RLVRDefaults) -> Emitted:
    data = launch.out_dir / "data" / "rl.jsonl"
    rows = ({"prompt": r["context_messages"], "label": r["winner"]} for r in rl_rows(launch.data))
    write_jsonl(data, rows)
    reward = launch.out_dir / "reward_func.py"
    reward.write_text(REWARD_FILE, encoding="utf-8")
    values: dict[str, object] = {
        "actor.model_name_or_path": launch.model,
        "data.prompt_dataset": str(data),
        "data.input_key": "prompt",
        "data.label_key": "label",
        "data.apply_chat_template": True,
        "reward.remote_url": str(reward),
        "algo.advantage.estimator": "group_norm",  # GRPO
        "rollout.n_samples_per_prompt": d.num_generations,
        "rollout.temperature": d.temperature,
        "rollout.batch_size": d.prompts_per_step,
        "train.batch_size": d.mini_batch_prompts * d.num_generations,  # counted in samples
        "train.micro_batch_size": d.micro_batch,
        "rollout.micro_batch_size": d.micro_batch,
        "train.max_epochs": 1,
        "train.num_episodes": d.epochs,
        "data.max_len": d.max_prompt_tokens + d.max_response_tokens,
        "rollout.max_new_tokens": d.max_response_tokens,
        "algo.kl.use_loss": True,  # KL as a loss term, none in the reward
        "algo.kl.estimator": "k3",  # veRL's low_var_kl
        "algo.kl.init_coef": d.kl_coef,
        "actor.entropy_coef": d.entropy_coef,
        "actor.eps_clip": d.clip,
        "actor.loss_agg_mode": "seq-mean-token-mean",
        "actor.adam.lr": d.learning_rate,
        "actor.adam.betas": [d.adam_beta1, d.adam_beta2],
        "actor.adam.weight_decay": d.weight_decay,
        "actor.max_norm": d.max_grad_norm,
        "actor.lr_scheduler": "constant",
        "actor.lr_warmup_ratio": 0.0,
        "actor.num_nodes": launch.nodes,
        "actor.num_gpus_per_node": launch.gpus_per_node,
        "ref.num_nodes": launch.nodes,
        "ref.num_gpus_per_node": launch.gpus_per_node,
        "vllm.num_engines": _engines(launch.world, d.tensor_parallel),
        "vllm.tensor_parallel_size": d.tensor_parallel,
        "vllm.gpu_memory_utilization": d.gpu_memory_utilization,
        "vllm.enable_sleep": True,
        "train.colocate_all": True,
        "ds.zero_stage": 3,
        "ds.param_dtype": "bf16",
        "actor.gradient_checkpointing_enable": True,
        "ckpt.output_dir": str(launch.out_dir / "model"),
        "ckpt.save_hf": True,
        "logger.logging_steps": 1,
        "train.seed": d.data_seed,  # the prompt order (and vLLM's seed); OpenRLHF's default: 42
    }
    command = ["python3", "-m", "openrlhf.cli.train_ppo_ray", *flags(values, launch.overrides)]
    notes = [
        "Start Ray first (`ray start --head`; `ray start --address=HEAD:6379` on other nodes),",
        "or submit with `ray job submit --address=http://HEAD:8265 -- <this command>`.",
        "rmr1-plugins must be installed on every node: the reward file imports it.",
        budget_note(
            launch.data, "OpenRLHF would cut a longer prompt from the left, system prompt first"
        ),
        *RL_DIFFERENCES,
    ]
    if d.loss_aggregation == "micro-batch":
        notes.append(MICRO_BATCH_DIFFERENCE.format(n=d.micro_batch, trainer="OpenRLHF 0.11.2"))
    return Emitted("openrlhf", "rlvr", command, {"data": data, "reward": reward}, notes)
