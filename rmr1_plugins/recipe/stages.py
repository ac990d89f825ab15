"""Stage 1 (SFT) and stage 2 (RLVR) as runnable configs and commands for TRL, OpenRLHF and veRL.

The defaults are RM-R1's hyperparameters (see :class:`SFTDefaults` and :class:`RLVRDefaults`);
batch sizes are global and are split over ``gpus_per_node * nodes`` processes. ``overrides``
are passed through in the trainer's own vocabulary (TRL config keys, OpenRLHF flag names without
``--``, veRL Hydra overrides) and win over the defaults.

:func:`emit` writes, under ``out_dir``: the data in the format the trainer reads (``data/``), its
config file where it takes one, and ``command.sh``; it returns the same as an :class:`Emitted`.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rmr1_plugins.errors import UsageError
from rmr1_plugins.recipe.sources import read_jsonl

Stage = Literal["sft", "rlvr"]
TRAINERS = ("trl", "openrlhf", "verl")
# How RM-R1's pinned veRL averaged the policy loss: tokens within each micro-batch, then micro-
# batches. With one response per micro-batch (14B/32B) every response weighs the same
# ("sequence"); with four (7B) tokens are pooled over those four ("micro-batch").
LossAggregation = Literal["sequence", "micro-batch"]
MICRO_BATCH_DIFFERENCE = (
    "Differs from RM-R1: its veRL averaged tokens over each micro-batch of {n} responses; "
    "{trainer} has no such mode, so seq-mean-token-mean (each response weighs the same) is used."
)


@dataclass(frozen=True)
class SFTDefaults:
    """RM-R1 stage 1: distillation SFT, loss on the assistant turn only."""

    learning_rate: float = 5e-6
    global_batch: int = 128
    micro_batch: int = 1
    epochs: int = 1
    max_length: int = 12288
    min_lr_ratio: float = 0.1
    warmup_ratio: float = 0.03
    adam_beta1: float = 0.9  # OpenRLHF train_sft's defaults, which RM-R1's SFT ran with
    adam_beta2: float = 0.95
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0


@dataclass(frozen=True)
class RLVRDefaults:
    """RM-R1 stage 2: GRPO with the verifiable reward, KL as a loss term (k3 / low_var_kl)."""

    learning_rate: float = 1e-6  # RM-R1: 1e-6 (7B/14B), 8e-7 (DeepSeek-32B), 5e-7 (Instruct-32B)
    num_generations: int = 7
    temperature: float = 1.0
    kl_coef: float = 0.001
    entropy_coef: float = 0.0
    clip: float = 0.2
    prompts_per_step: int = 1024
    mini_batch_prompts: int = 128
    micro_batch: int = 4
    max_prompt_tokens: int = 4096
    max_response_tokens: int = 8192
    epochs: int = 1
    loss_aggregation: LossAggregation = "micro-batch"  # micro_batch responses per loss mean
    adam_beta1: float = 0.9  # veRL's FSDP AdamW defaults, which RM-R1's RLVR ran with
    adam_beta2: float = 0.999
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    gpu_memory_utilization: float = 0.5  # the rollout engine's share of each GPU's memory
    tensor_parallel: int = 4  # rollout tensor parallel size (RM-R1's ppo_trainer.yaml)
    data_seed: int = 1  # RM-R1's veRL shuffles the prompts with data.get("seed", 1)
    save_freq: int = 100


@dataclass
class Launch:
    """Where and how big: the model to start from, the input data and the cluster shape."""

    model: str
    data: Path
    out_dir: Path
    gpus_per_node: int = 8
    nodes: int = 1
    overrides: dict[str, str] = field(default_factory=dict)

    @property
    def world(self) -> int:
        return self.gpus_per_node * self.nodes


@dataclass
class Emitted:
    """What a stage needs: the command line, the files written for it, and notes for the user."""

    trainer: str
    stage: str
    command: list[str]
    files: dict[str, Path]
    notes: list[str] = field(default_factory=list)

    def script(self) -> str:
        lines = ["#!/usr/bin/env bash", f"# RM-R1 {self.stage} stage for {self.trainer}."]
        lines += [f"# {note}" for note in self.notes]
        groups: list[list[str]] = []
        for arg in self.command:  # one flag (with its value) or Hydra override per line
            if not groups or arg.startswith("-") or "=" in arg:
                groups.append([])
            groups[-1].append(_quote(arg))
        lines += ["set -euo pipefail", " \\\n  ".join(" ".join(g) for g in groups)]
        return "\n".join(lines) + "\n"


def _quote(arg: str) -> str:
    """Shell-quote, leaving ``${VAR}`` placeholders for the shell to expand."""
    return f'"{arg}"' if re.fullmatch(r"\$\{\w+\}", arg) else shlex.quote(arg)


class StageError(UsageError, ValueError):
    """The requested stage cannot be set up as asked (bad data, batch sizes that do not divide)."""


def per_process_accumulation(global_batch: int, micro_batch: int, world: int, what: str) -> int:
    """Gradient accumulation steps so that ``micro * world * steps == global``."""
    if global_batch % (micro_batch * world):
        raise StageError(
            f"{what}: global batch {global_batch} is not divisible by micro batch {micro_batch} "
            f"x {world} processes; change the micro batch or the number of GPUs"
        )
    return global_batch // (micro_batch * world)


def sft_rows(path: Path) -> list[dict[str, Any]]:
    """The distilled SFT rows (``prompt``/``completion`` messages), checked."""
    rows = read_jsonl(path)
    if not rows:
        raise StageError(f"{path} has no rows: stage 1 has nothing to train on")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row.get("prompt"), list) or not isinstance(row.get("completion"), list):
            raise StageError(f"{path}, line {number}: expected 'prompt' and 'completion' messages")
    return [{"prompt": row["prompt"], "completion": row["completion"]} for row in rows]


def rl_rows(path: Path) -> list[dict[str, Any]]:
    """The RL rows (``context_messages``, ``winner``) written by ``rmr1 recipe prepare``."""
    rows = read_jsonl(path)
    if not rows:
        raise StageError(f"{path} has no rows: stage 2 has nothing to train on")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row.get("context_messages"), list) or "winner" not in row:
            raise StageError(f"{path}, line {number}: expected 'context_messages' and 'winner'")
    return rows


def budget_note(data: Path, trainer_does: str) -> str:
    """What ``rmr1 recipe prepare`` did about long prompts, from ``prepare_stats.json`` beside
    ``data``; ``trainer_does`` says what the trainer would do with a prompt over the budget."""
    path = data.parent / "prepare_stats.json"
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"Prompt lengths unknown (no {path.name} beside the data); {trainer_does}."
    if not stats.get("budget_checked"):
        return f"`rmr1 recipe prepare` did not check prompt lengths; {trainer_does}."
    return (
        f"`rmr1 recipe prepare` dropped {stats.get('over_budget', 0)} prompts over "
        f"{stats.get('max_prompt_tokens')} tokens of {stats.get('tokenizer')} (RM-R1 drops them "
        f"too); {trainer_does}."
    )


def emit(
    stage: Stage,
    trainer: str,
    launch: Launch,
    sft: SFTDefaults | None = None,
    rl: RLVRDefaults | None = None,
    notes: Sequence[str] = (),
) -> Emitted:
    """Write the data, config and ``command.sh`` of one stage for one trainer.

    ``notes`` (e.g. which preset and RM-R1 script) head the trainer's own notes in the script.
    """
    if trainer not in TRAINERS:
        raise StageError(f"unknown trainer {trainer!r}; choose one of {', '.join(TRAINERS)}")
    from importlib import import_module

    module = import_module(f"rmr1_plugins.recipe.emit_{trainer}")
    launch.out_dir.mkdir(parents=True, exist_ok=True)
    if stage == "sft":
        emitted = module.emit_sft(launch, sft or SFTDefaults())
    else:
        rl = rl or RLVRDefaults()
        if rl.tensor_parallel < 1 or launch.gpus_per_node % rl.tensor_parallel:
            raise StageError(
                f"rollout tensor parallel size {rl.tensor_parallel} must divide the "
                f"{launch.gpus_per_node} GPUs per node (--rollout-tp)"
            )
        emitted = module.emit_rlvr(launch, rl)
    emitted.notes[:0] = notes
    script = launch.out_dir / "command.sh"
    script.write_text(emitted.script(), encoding="utf-8")
    script.chmod(0o755)
    emitted.files["command"] = script
    return emitted
