"""The whole recipe with TRL in one process: prepare → distill → SFT → GRPO → score.

Writes under ``out_dir``: ``data/`` (prepare), ``distill/`` (traces and ``sft.jsonl``),
``sft/model`` and ``rlvr/model`` (checkpoints), ``scores.jsonl`` (``rmr1 score`` with the final
checkpoint on the held-out pairs) and ``run_summary.json``. TRL is imported only here, inside
the stage functions.

Presets: a checkpoint's name (``rm-r1-instruct-7b``, ... see
:mod:`rmr1_plugins.recipe.presets`) runs that checkpoint's pipeline on one GPU (its batch sizes by
gradient accumulation; use ``rmr1 recipe sft|rlvr`` for several); ``rmr1`` is RM-R1's 7B
hyperparameters on your own sources; ``cpu-tiny`` is a smoke run of a few steps on CPU.
``sft_overrides`` / ``rl_overrides`` (values read as YAML) change single ``SFTConfig`` /
``GRPOConfig`` fields.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rmr1_plugins._imports import require
from rmr1_plugins.config import ConfigError
from rmr1_plugins.recipe.emit_trl import grpo_config, sft_config
from rmr1_plugins.recipe.prepare import PrepareConfig
from rmr1_plugins.recipe.presets import PRESETS
from rmr1_plugins.recipe.sources import SourceSpec
from rmr1_plugins.recipe.stages import RLVRDefaults, SFTDefaults
from rmr1_plugins.scorer_config import ScorerConfig

CPU_TINY: dict[str, dict[str, Any]] = {
    "common": {
        "use_cpu": True,
        "bf16": False,
        "max_steps": 2,
        "gradient_accumulation_steps": 1,
        "gradient_checkpointing": False,
        "model_init_kwargs": {"dtype": "float32"},
    },
    "sft": {"per_device_train_batch_size": 1, "warmup_steps": 0},
    "rl": {
        "per_device_train_batch_size": 2,
        "num_generations": 2,
        "generation_batch_size": 2,
        "max_completion_length": 16,
        "beta": 0.0,  # no reference model on CPU
        "use_vllm": False,
        "vllm_tensor_parallel_size": 1,
    },
}
RMR1_ONE_GPU: dict[str, dict[str, Any]] = {
    "common": {"model_init_kwargs": {"dtype": "bfloat16"}},
    "sft": {},
    "rl": {
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_max_model_length": 4096 + 8192,
        # one GPU: no tensor parallelism, and TRL's 0.3 share leaves room for the training state
        "vllm_tensor_parallel_size": 1,
        "vllm_gpu_memory_utilization": 0.3,
    },
}
HARDWARE = {"rmr1": RMR1_ONE_GPU, "cpu-tiny": CPU_TINY}


@dataclass
class RunConfig:
    sources: list[str | SourceSpec]
    out_dir: Path
    prepare: PrepareConfig
    teacher: ScorerConfig
    student: str
    correction_teacher: ScorerConfig | None = None
    skip_sft: bool = False
    preset: str = "rmr1"
    batch_size: int = 32
    second_pass: bool = True
    sft_overrides: dict[str, str] = field(default_factory=dict)
    rl_overrides: dict[str, str] = field(default_factory=dict)
    score_max_new_tokens: int | None = None


def stage_configs(config: RunConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``SFTConfig`` and ``GRPOConfig`` fields: RM-R1's (the checkpoint preset's, else the
    7B defaults), the hardware preset, then overrides."""
    checkpoint = PRESETS.get(config.preset)
    hardware = HARDWARE.get(config.preset, RMR1_ONE_GPU)
    sft_d = checkpoint.sft if checkpoint and checkpoint.sft else SFTDefaults()
    rl_d = checkpoint.rl if checkpoint else RLVRDefaults()
    sft = sft_config(sft_d) | hardware["common"] | hardware["sft"]
    rl = grpo_config(rl_d) | hardware["common"] | hardware["rl"]
    if "steps_per_generation" in config.rl_overrides:  # TRL takes one of the two
        rl.pop("generation_batch_size", None)
    sft |= {key: yaml.safe_load(value) for key, value in config.sft_overrides.items()}
    rl |= {key: yaml.safe_load(value) for key, value in config.rl_overrides.items()}
    return sft, rl


# transformers 5.25 renamed TrainingArguments' gradient_checkpointing* to activation_checkpointing*
# and warns whenever the old name is set while the new one is not (TRL 1.16's configs set the old
# one by default). Earlier versions know only the old name.
CHECKPOINTING_NAMES = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


def checkpointing_fields(config_class: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with gradient checkpointing under the name ``config_class`` (a TRL config)
    takes: on transformers with ``activation_checkpointing``, the new names, set explicitly
    (from ``fields`` or the class's default for the old name), so that no deprecation warning
    is printed; else unchanged."""
    known = {f.name: f for f in dataclasses.fields(config_class)}
    fields = dict(fields)
    for old, new in CHECKPOINTING_NAMES.items():
        if new not in known or new in fields:
            continue
        value = fields.pop(old) if old in fields else known[old].default
        if value is not None and value is not dataclasses.MISSING:
            fields[new] = value
    return fields


def train_sft(data: Path, model: str, out_dir: Path, fields: dict[str, Any]) -> list[dict]:
    """TRL ``SFTTrainer`` on prompt/completion data (loss on the completion only).

    Saves the model and tokenizer to ``out_dir``; returns TRL's log history.
    """
    trl = require("trl", "recipe")
    datasets = require("datasets", "recipe")
    dataset = datasets.load_dataset("json", data_files=str(data), split="train")
    dataset = dataset.select_columns(["prompt", "completion"])
    args = trl.SFTConfig(output_dir=str(out_dir), **checkpointing_fields(trl.SFTConfig, fields))
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=dataset)
    trainer.train()
    trainer.save_model(str(out_dir))
    return trainer.state.log_history


def train_grpo(data: Path, model: str, out_dir: Path, fields: dict[str, Any]) -> list[dict]:
    """TRL ``GRPOTrainer`` with RM-R1's verifiable reward on the ``winner`` column.

    Saves the model and tokenizer to ``out_dir``; returns TRL's log history.
    """
    trl = require("trl", "recipe")
    datasets = require("datasets", "recipe")
    from rmr1_plugins.recipe.reward import rmr1_verifiable_reward

    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line]
    dataset = datasets.Dataset.from_list(
        [{"prompt": row["context_messages"], "winner": row["winner"]} for row in rows]
    )
    args = trl.GRPOConfig(output_dir=str(out_dir), **checkpointing_fields(trl.GRPOConfig, fields))
    trainer = trl.GRPOTrainer(
        model=model, reward_funcs=[rmr1_verifiable_reward], args=args, train_dataset=dataset
    )
    trainer.train()
    trainer.save_model(str(out_dir))
    return trainer.state.log_history


def _backend(config: ScorerConfig, who: str) -> Any:
    try:
        return config.build_backend()
    except ValueError as error:  # e.g. no --teacher-model
        raise ConfigError(f"{who}: {error}") from None


def _say(message: str) -> None:
    print(f"[rmr1 recipe run] {message}", file=sys.stderr, flush=True)


def run(config: RunConfig) -> dict[str, Any]:
    """Run every stage; returns (and writes to ``run_summary.json``) what each one produced."""
    from rmr1_plugins.cli import main as rmr1_main
    from rmr1_plugins.recipe.distill import distill
    from rmr1_plugins.recipe.prepare import prepare

    out = config.out_dir
    sft_fields, rl_fields = stage_configs(config)
    prep = dataclasses.replace(
        config.prepare,
        tokenizer=config.prepare.tokenizer or config.student,
        distill_fraction=0.0 if config.skip_sft else config.prepare.distill_fraction,
    )
    _say("prepare: building RM-R1 rows")
    prepared = prepare(config.sources, out / "data", prep)
    summary: dict[str, Any] = {"prepare": dataclasses.asdict(prepared)}
    if prepared.parts["rl"] == 0 or prepared.parts["eval"] == 0:
        raise ConfigError(f"prepare left no RL or eval pairs: {prepared.parts}")
    model = config.student
    if not config.skip_sft:
        if prepared.parts["distill"] == 0:
            raise ConfigError("prepare left no pairs to distil; raise --distill-fraction")
        _say("distill: generating teacher traces")
        teacher = _backend(config.teacher, "teacher")
        second = None
        try:
            if config.correction_teacher is not None and config.second_pass:
                second = _backend(config.correction_teacher, "correction teacher")
            distilled = distill(
                out / "data" / "distill.jsonl",
                out / "distill",
                teacher,
                config.teacher.sampling.params(),
                batch_size=config.batch_size,
                second_pass=config.second_pass,
                correction=(second, config.correction_teacher.sampling.params())
                if second and config.correction_teacher
                else None,
            )
        finally:
            teacher.close()
            if second is not None:
                second.close()
        summary["distill"] = dataclasses.asdict(distilled)
        if distilled.sft_rows == 0:
            raise ConfigError(
                f"distillation kept no trace: none of {distilled.rows} rows got the right verdict "
                f"(pass 1: {distilled.first_pass_correct}, pass 2: {distilled.second_pass_correct}"
                "); stage 1 would train on nothing. Use a stronger teacher, more rows or a larger "
                "--teacher-max-new-tokens, or --skip-sft"
            )
        _say(f"sft: {distilled.sft_rows} rows")
        sft_dir = out / "sft" / "model"
        summary["sft_log"] = train_sft(out / "distill" / "sft.jsonl", model, sft_dir, sft_fields)
        model = summary["sft_model"] = str(sft_dir)
    _say(f"rlvr: GRPO on {prepared.parts['rl']} prompts")
    rl_dir = out / "rlvr" / "model"
    summary["rl_log"] = train_grpo(out / "data" / "rl.jsonl", model, rl_dir, rl_fields)
    model = summary["rl_model"] = str(rl_dir)
    _say("score: judging the held-out pairs with the final checkpoint")
    scores = out / "scores.jsonl"
    argv = ["score", str(out / "data" / "eval.jsonl"), "-o", str(scores)]
    argv += ["--backend", "hf", "--model", model, "--template", prep.template]
    tokens = config.score_max_new_tokens or (16 if config.preset == "cpu-tiny" else None)
    if tokens:
        argv += ["--max-new-tokens", str(tokens)]
    if rmr1_main(argv) != 0:
        raise ConfigError(f"rmr1 {' '.join(argv)} failed")
    summary["scores"] = str(scores)
    summary["score_summary"] = score_summary(scores)
    (out / "run_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def score_summary(path: Path) -> dict[str, Any]:
    """Pairs judged, how many got a verdict, and accuracy against the labels."""
    results = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    verdicts = [r for r in results if r["verdict"] is not None]
    correct = sum(r["verdict"] == r["label"] for r in verdicts)
    return {
        "pairs": len(results),
        "with_verdict": len(verdicts),
        "accuracy": correct / len(results) if results else None,
    }
