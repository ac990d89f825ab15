"""Real TRL trainers on CPU: a tiny random policy, rewarded by the RM-R1 judge extension."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rmr1_trl import AsyncRMR1Reward, RMR1Reward

from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.scorer_config import ScorerConfig
from rmr1_plugins.settings import RewardSettings

ROOT = Path(__file__).parents[3]
EXAMPLES = ROOT / "examples"
PROMPTS = EXAMPLES / "data" / "grpo_prompts" / "train.jsonl"

pytestmark = pytest.mark.model


def dataset(conversational: bool = True):
    from datasets import Dataset

    rows = [json.loads(line) for line in PROMPTS.read_text().splitlines()]
    if not conversational:
        rows = [{**row, "prompt": row["prompt"][0]["content"]} for row in rows]
    return Dataset.from_list(rows)


def train(trainer_cls, config_cls, policy, reward, output_dir, **overrides):
    args = dict(
        output_dir=str(output_dir),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=12,
        max_steps=2,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=0,
    )
    trainer = trainer_cls(
        model=str(policy),
        reward_funcs=[reward],
        args=config_cls(**{**args, **overrides}),
        train_dataset=dataset(),
    )
    trainer.train()
    return trainer


def test_grpo_with_smollm2_judge(tiny_policy, smollm2_dir, tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    config = RewardSettings(
        scorer=ScorerConfig(
            template="rmr1-reasoning",  # no 600-token system prompt: 4x less judge prefill on CPU
            backend={"name": "hf", "model": str(smollm2_dir), "options": {"dtype": "float32"}},
            sampling={"max_new_tokens": 16},
        ),
        reward=RewardConfig(strategy="round-robin"),
    )
    reward = RMR1Reward(config)
    # 2 prompts x 2 completions per step: two groups judged in one batch, one pair each
    trainer = train(GRPOTrainer, GRPOConfig, tiny_policy, reward, tmp_path, num_generations=2)

    logs = [entry for entry in trainer.state.log_history if "rewards/rmr1_reward/mean" in entry]
    assert len(logs) == 2  # one log per step, both with our reward
    for entry in logs:
        assert math.isfinite(entry["rewards/rmr1_reward/mean"])
        assert 0 <= entry["rewards/rmr1_reward/mean"] <= 1  # a win rate
        # two pairs per step, fewer only if a policy's two completions are identical
        assert entry["rmr1_reward/judgments"] in (0, 1, 2)
        assert 0 <= entry["rmr1_unparsed_comparisons"] <= 1  # one comparison per row
        assert entry["rmr1_split"] == 0
    assert sum(entry["rmr1_reward/judgments"] for entry in logs) > 0
    # TRL keeps the last generation batch for its completions table
    rewards = list(trainer._logs["rewards"]["rmr1_reward"])
    assert len(rewards) == 4 and all(math.isfinite(r) for r in rewards)
    verdicts = list(trainer._logs["extra"]["rmr1_reward_verdicts"])
    rationale = list(trainer._logs["extra"]["rmr1_reward_rationale"])
    assert len(verdicts) == len(rationale) == 4
    assert all(v.startswith("vs #") for v in verdicts)
    judged = [text for text, v in zip(rationale, verdicts, strict=True) if "votes" in v]
    assert all(text.strip() for text in judged)  # SmolLM2 really wrote judgments


@pytest.mark.parametrize("trainer_name", ["grpo", "rloo"])
def test_async_reward_in_grpo_and_rloo(trainer_name, tiny_policy, tmp_path):
    """The async variant on TRL's event-loop thread, judged against the reference column."""
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    trainer_cls, config_cls, extra = {
        "grpo": (GRPOTrainer, GRPOConfig, {}),
        "rloo": (RLOOTrainer, RLOOConfig, {"beta": 0.0}),  # no reference model in memory
    }[trainer_name]
    config = RewardSettings(
        scorer=ScorerConfig(backend={"name": "constant"}),  # always prefers slot A
        reward=RewardConfig(strategy="reference"),
    )
    reward = AsyncRMR1Reward(config)
    trainer = train(trainer_cls, config_cls, tiny_policy, reward, tmp_path, max_steps=1, **extra)
    [entry] = [e for e in trainer.state.log_history if "rewards/rmr1_reward/mean" in e]
    assert entry["rewards/rmr1_reward/mean"] == 1.0  # each completion sat in slot A
    assert entry["rmr1_reward/judgments"] == 4
    # judge health through the trainer's own log_metric: a judge with pure position bias
    assert entry["rmr1_health/slot_a"] == 1.0 and entry["rmr1_health/unparsed"] == 0.0
    assert entry["rmr1_health/orders_agree"] == 0.0  # one order: none agreed (the contract)
    assert entry["rmr1_fallback"] == 0.0 and entry["rmr1_reference"] == 1.0  # the contract


def test_trl_cli_with_the_example_config(tiny_policy, smollm2_dir, tmp_path):
    """The documented command, with the example files, shrunk to a tiny policy and judge."""
    env = {
        **os.environ,
        "RMR1_CONFIG": str(EXAMPLES / "rmr1_judge.yaml"),
        "RMR1_TEMPLATE": "rmr1-reasoning",
        "RMR1_BACKEND__MODEL": str(smollm2_dir),
        "RMR1_BACKEND__OPTIONS__DTYPE": "float32",
        "RMR1_SAMPLING__MAX_NEW_TOKENS": "16",
        "RMR1_ORDER": "given",  # one judgment per pair keeps the CPU run short
    }
    trl = Path(sys.executable).with_name("trl")
    command = [str(trl), "grpo", "--config", str(EXAMPLES / "trl_grpo.yaml")]
    command += ["--model_name_or_path", str(tiny_policy), "--output_dir", str(tmp_path / "out")]
    command += ["--max_steps", "1", "--per_device_train_batch_size", "4", "--num_generations", "2"]
    command += ["--max_completion_length", "8", "--use_cpu", "true", "--bf16", "false"]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    [logged] = [line for line in output.splitlines() if "'rewards/rmr1_reward/mean'" in line]
    assert "'rmr1_reward/judgments'" in logged
    assert (tmp_path / "out" / "model.safetensors").exists()
