"""Each released RM-R1 checkpoint's pipeline, by name, as data (one model, one table).

Every value comes from RM-R1's repository (RM-R1-UIUC/RM-R1, commit d4c2542); :data:`CITED`
names the file for each. Paths below are relative to that repository. What RM-R1 left to the
trainers' defaults (Adam betas, weight decay, gradient clipping) is taken from the trainer
versions it pinned: OpenRLHF's ``train_sft`` for stage 1, veRL ``e49fb572``'s FSDP workers for
stage 2. docs/guides/recipe.md has the table per preset, with where each emitted config still
differs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict

from rmr1_plugins.config import ConfigError
from rmr1_plugins.recipe.sources import SourceSpec
from rmr1_plugins.recipe.stages import RLVRDefaults, SFTDefaults

SCRIPTS = "rm_r1/scripts"
RLVR = f"{SCRIPTS}/RLVR"
MIX = "rm_r1/dataset/mix_data/mix_data.py"
# The GPU size a preset is checked against unless told otherwise (--gpu-memory-gb), and the part
# of the rollout engine's memory share the weights may take: the rest is its KV cache.
GPU_MEMORY_GB = 80
WEIGHTS_SHARE = 0.8
VERL_YAML = "rm_r1/verl/trainer/config/ppo_trainer.yaml"

# RM-R1's mix, in the order mix_data.py concatenates it (the A/B alternation runs across all three).
RMR1_MIX = (
    SourceSpec("xinlai/Math-Step-DPO-10K"),
    SourceSpec("Vezora/Code-Preference-Pairs", shuffle_seed=42, size=8000),
    SourceSpec("Skywork/Skywork-Reward-Preference-80K-v0.2", exclude={"source": "magpie_ultra"}),
)


class Preset(BaseModel):
    """One checkpoint's pipeline: base model, template, data mix, stage settings, cluster."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    checkpoint: str
    base_model: str
    params_billion: float  # the base model's parameter count (bf16: 2 bytes each)
    template: Literal["rmr1-instruct", "rmr1-reasoning"]
    sources: tuple[SourceSpec, ...] = RMR1_MIX
    distill_fraction: float = 0.12
    max_prompt_tokens: int = 4096
    sft: SFTDefaults | None = None
    rl: RLVRDefaults
    nodes: int
    gpus_per_node: int = 8
    sft_script: str | None = None
    rl_script: str
    notes: tuple[str, ...] = ()

    @property
    def skip_sft(self) -> bool:
        return self.sft is None


def _rl(lr: float, micro: int, nodes: int) -> RLVRDefaults:
    """RM-R1's RLVR settings: only lr, micro batch and cluster size vary between scripts."""
    return RLVRDefaults(
        learning_rate=lr,
        micro_batch=micro,
        loss_aggregation="micro-batch" if micro > 1 else "sequence",
        gpu_memory_utilization=0.5 if nodes == 1 else 0.4,
        save_freq=100 if nodes == 1 else 45,
    )


# Parameter counts of the base models (their model cards): Qwen2.5 and its DeepSeek distillations.
PARAMS = {"7b": 7.62, "14b": 14.77, "32b": 32.76}


def _instruct(size: str, lr: float, micro: int, nodes: int, rl_script: str, *notes: str) -> Preset:
    return Preset(
        name=f"rm-r1-instruct-{size}",
        checkpoint=f"gaotang/RM-R1-Qwen2.5-Instruct-{size.upper()}",
        base_model=f"Qwen/Qwen2.5-{size.upper()}-Instruct",
        params_billion=PARAMS[size],
        template="rmr1-instruct",
        sft=SFTDefaults(),
        rl=_rl(lr, micro, nodes),
        nodes=nodes,
        sft_script=f"{SCRIPTS}/Distill/local/distill_qwen2.5-{size}-instruct.sh",
        rl_script=rl_script,
        notes=notes,
    )


def _deepseek(size: str, lr: float, micro: int, nodes: int, rl_script: str) -> Preset:
    return Preset(
        name=f"rm-r1-deepseek-{size}",
        checkpoint=f"gaotang/RM-R1-DeepSeek-Distilled-Qwen-{size.upper()}",
        base_model=f"deepseek-ai/DeepSeek-R1-Distill-Qwen-{size.upper()}",
        params_billion=PARAMS[size],
        template="rmr1-reasoning",
        distill_fraction=0.0,  # no stage 1: every pair goes to RL (gaotang/RM-R1-Reasoning-RLVR)
        rl=_rl(lr, micro, nodes),
        nodes=nodes,
        rl_script=rl_script,
    )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _instruct("7b", 1e-6, 4, 1, f"{RLVR}/local/train_rm_r1_rlvr_qwen2.5_instruct_7b.sh"),
        _instruct(
            "14b",
            7e-7,
            1,
            2,
            f"{SCRIPTS}/RLVR/slurm/train_rm_r1_rlvr_qwen2.5_Instruct_14b.sh",
            "RLVR lr 7e-7 is the 2-node slurm script's; the 1-node local script "
            "(RLVR/local/train_rm_r1_rlvr_qwen2.5_instruct_14b.sh) uses 1e-6.",
            "RM-R1's 14B slurm script names gaotang/RM-R1-Reasoning-RLVR (the whole mix) as its "
            "data, the local one gaotang/RM-R1-after-Distill-RLVR; we train on the pairs left "
            "after the distillation share, as the local script does.",
        ),
        _instruct(
            "32b",
            5e-7,
            1,
            4,
            f"{SCRIPTS}/RLVR/slurm/train_rm_r1_rlvr_qwen2.5_Instruct_32b.sh",
            "RM-R1's distill_qwen2.5-32b-instruct.sh passes --pretrain Qwen/Qwen2.5-7B-Instruct "
            "(a copy of the 7B script); we start stage 1 from Qwen2.5-32B-Instruct.",
            "RM-R1's 32B slurm script names gaotang/RM-R1-Reasoning-RLVR as its data; we train "
            "on the pairs left after the distillation share, as the 7B script does.",
        ),
        _deepseek("7b", 1e-6, 4, 1, f"{SCRIPTS}/RLVR/local/train_rm_r1_rlvr_dpsk_distilled_7b.sh"),
        _deepseek(
            "14b", 1e-6, 1, 2, f"{SCRIPTS}/RLVR/slurm/train_rm_r1_rlvr_dpsk_distilled_14b.sh"
        ),
        _deepseek(
            "32b", 8e-7, 1, 4, f"{SCRIPTS}/RLVR/slurm/train_rm_r1_rlvr_dpsk_distilled_32b.sh"
        ),
    )
}

# Where each value comes from (besides the per-preset scripts named in the table).
CITED: dict[str, str] = {
    "sources": f"{MIX} (collect_math_dpo_10k, collect_code_data_sky, get_smaller_dataset_sky)",
    "alternation": f"{MIX} (CURRENT_NUM % 2 across the concatenated sources)",
    "distill_fraction": "RM-R1 paper, section 4 (8,753 pairs, about 12%)",
    "max_prompt_tokens": f"RLVR scripts (MAX_PROMPT_LENGTH=4096); {VERL_YAML} "
    "(filter_overlong_prompts: True)",
    "sft": "Distill/local/distill_qwen2.5-*-instruct.sh (lr, batch, epochs, max_len, micro 1); "
    "rm_r1/OpenRLHF/openrlhf/cli/train_sft.py defaults (cosine_with_min_lr, min lr 0.1x, "
    "warmup 0.03, adam_betas 0.9/0.95, l2 0, max_norm 1.0)",
    "sft_loss": "rm_r1/OpenRLHF/openrlhf/models/loss.py GPTLMLoss (token mean of one micro-batch "
    "of 1 trace, accumulated over 128)",
    "rl": f"RLVR scripts (LR, TRAIN_BS, PPO_MINI_BS, lengths, TRAIN_PER_GPU, entropy 0, "
    f"constant lr); {VERL_YAML} (rollout.n 7, temperature 1.0, kl_loss_coef 0.001 low_var_kl, "
    "clip 0.2, grad_clip 1.0, ppo_epochs 1)",
    "rl_loss": "veRL e49fb572 dp_actor (masked mean over each micro-batch / gradient "
    "accumulation), micro-batch = TRAIN_PER_GPU",
    "rollout": f"{VERL_YAML} (rollout.tensor_model_parallel_size 4); RLVR scripts "
    "(GPU_MEM_UTILIZATION)",
    "data_seed": "rm_r1/verl/trainer/ppo/ray_trainer.py (generator seed data.get('seed', 1))",
    "rl_optimizer": "veRL e49fb572 fsdp_workers (AdamW betas 0.9/0.999, weight decay 0.01: the "
    f"optim section of {VERL_YAML} sets neither)",
    "reward": "rm_r1/verl/utils/reward_score/lm_as_judge.py (last 80 characters)",
    "teacher": "rm_r1/dataset/reasoning_chain_generation/generate_Antropic_First_Time.py "
    "(claude-3-7-sonnet, max_tokens 8192, API-default temperature); generate_OpenAI_Second_Time.py "
    "(o3, no max_tokens or temperature set)",
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def rollout_rl(
    rl: RLVRDefaults, tensor_parallel: int | None = None, memory: float | None = None
) -> RLVRDefaults:
    """``rl`` with the rollout's tensor parallel size and memory share replaced where given."""
    return replace(
        rl,
        tensor_parallel=rl.tensor_parallel if tensor_parallel is None else tensor_parallel,
        gpu_memory_utilization=rl.gpu_memory_utilization if memory is None else memory,
    )


def check_fit(
    preset: Preset, rl: RLVRDefaults, gpus_per_node: int, gpu_gb: float = GPU_MEMORY_GB
) -> str:
    """Check that the rollout engine can hold the model: bf16 weights ÷ tensor parallel size
    within :data:`WEIGHTS_SHARE` of the memory share of a ``gpu_gb`` GPU. Returns a one-line
    summary; raises :class:`ConfigError` saying what to change when it does not fit."""
    tp, share = rl.tensor_parallel, rl.gpu_memory_utilization
    if tp < 1 or gpus_per_node % tp:
        raise ConfigError(
            f"{preset.name}: rollout tensor parallel size {tp} must divide the {gpus_per_node} "
            "GPUs per node (--rollout-tp)"
        )
    if not 0 < share <= 1:
        raise ConfigError(f"{preset.name}: rollout memory share {share} must be in (0, 1]")
    weights = 2 * preset.params_billion
    room = WEIGHTS_SHARE * share * gpu_gb
    summary = (
        f"{preset.name}: bf16 weights {weights:.1f} GB / TP {tp} = {weights / tp:.1f} GB per GPU; "
        f"{WEIGHTS_SHARE:.0%} of the rollout share {share} x {gpu_gb:g} GB = {room:.1f} GB"
    )
    if weights / tp <= room:
        return summary
    fixes = [
        f"tensor parallel {t}" for t in (2, 4, 8) if t <= gpus_per_node and weights / t <= room
    ]
    if (need := weights / tp / (WEIGHTS_SHARE * gpu_gb)) <= 0.9:
        fixes.append(f"memory share {need:.2f}")
    fixes.append(f"a GPU of {weights / tp / (WEIGHTS_SHARE * share):.0f} GB")
    raise ConfigError(
        f"{summary}: the model does not fit; use {' or '.join(fixes)} "
        "(--rollout-tp, --rollout-memory, --gpu-memory-gb)"
    )


def preset_sources(preset: Preset, paths: list[str]) -> list[SourceSpec]:
    """The preset's mix, or the same mix read from local copies given in the preset's order."""
    if not paths:
        return list(preset.sources)
    if len(paths) != len(preset.sources):
        names = ", ".join(s.path for s in preset.sources)
        raise ConfigError(
            f"--preset {preset.name} mixes {len(preset.sources)} sources ({names}); give none "
            f"(read them by name) or a local copy of each, in that order; got {len(paths)}"
        )
    return [
        SourceSpec(
            path,
            split=spec.split,
            subset=spec.subset,
            shuffle_seed=spec.shuffle_seed,
            size=spec.size,
            exclude=spec.exclude,
        )
        for path, spec in zip(paths, preset.sources, strict=True)
    ]
