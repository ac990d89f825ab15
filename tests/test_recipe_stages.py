"""``rmr1 recipe sft|rlvr``: RM-R1's hyperparameters in each trainer's configs and commands.

The trainers' own parsers and dataset classes check these files in tests/engines (TRL),
tests/recipe_verl and tests/recipe_openrlhf.
"""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

from rmr1_plugins.cli import main
from rmr1_plugins.recipe.stages import Launch, StageError, emit


@pytest.fixture
def sft_data(tmp_path):
    row = {
        "id": "r0",
        "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        "completion": [{"role": "assistant", "content": "<answer>[[A]]</answer>"}],
    }
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps(row) + "\n")
    return path


@pytest.fixture
def rl_data(tmp_path):
    rows = [
        {"id": f"r{i}", "context_messages": [{"role": "user", "content": f"u{i}"}], "winner": w}
        for i, w in enumerate(["model_a", "model_b"])
    ]
    path = tmp_path / "rl.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def flag_values(command: list[str]) -> dict[str, str | bool]:
    out: dict[str, str | bool] = {}
    for index, arg in enumerate(command):
        if arg.startswith("--"):
            nxt = command[index + 1] if index + 1 < len(command) else "--"
            out[arg[2:]] = True if nxt.startswith("--") else nxt
    return out


def test_trl_sft_config_has_rm_r1_defaults(tmp_path, sft_data):
    emitted = emit("sft", "trl", Launch("Qwen/Qwen2.5-7B-Instruct", sft_data, tmp_path / "trl"))
    config = yaml.safe_load(emitted.files["config"].read_text())
    assert config["learning_rate"] == 5e-6
    assert config["per_device_train_batch_size"] * config["gradient_accumulation_steps"] * 8 == 128
    assert config["max_length"] == 12288
    assert config["num_train_epochs"] == 1
    assert (config["lr_scheduler_type"], config["lr_scheduler_kwargs"]) == (
        "cosine_with_min_lr",
        {"min_lr_rate": 0.1},
    )
    assert config["warmup_steps"] == 0.03
    assert config["completion_only_loss"] is True
    data = [json.loads(line) for line in emitted.files["data"].open()]
    assert set(data[0]) == {"prompt", "completion"}
    assert emitted.command[:4] == ["trl", "sft", "--config", str(emitted.files["config"])]
    assert emitted.files["command"].read_text().startswith("#!/usr/bin/env bash")


def test_trl_grpo_config_batches_like_veRL(tmp_path, rl_data):
    launch = Launch("sft-ckpt", rl_data, tmp_path / "trl", gpus_per_node=8, nodes=2)
    config = yaml.safe_load(emit("rlvr", "trl", launch).files["config"].read_text())
    assert config["reward_funcs"] == ["rmr1_plugins.recipe.reward.rmr1_verifiable_reward"]
    assert config["num_generations"] == 7
    assert config["generation_batch_size"] == 1024 * 7
    per_step = config["per_device_train_batch_size"] * config["gradient_accumulation_steps"] * 16
    assert per_step == 128 * 7
    assert (config["beta"], config["epsilon"], config["entropy_coef"]) == (0.001, 0.2, 0.0)
    assert (config["learning_rate"], config["lr_scheduler_type"]) == (1e-6, "constant")
    assert config["max_completion_length"] == 8192
    data = [json.loads(line) for line in (tmp_path / "trl" / "data" / "rl.jsonl").open()]
    assert data[1] == {"prompt": [{"role": "user", "content": "u1"}], "winner": "model_b"}


def test_batches_that_do_not_divide_are_refused(tmp_path, sft_data):
    with pytest.raises(StageError, match="not divisible"):
        emit("sft", "trl", Launch("m", sft_data, tmp_path, gpus_per_node=3))


def test_openrlhf_commands(tmp_path, sft_data, rl_data):
    sft = emit("sft", "openrlhf", Launch("base", sft_data, tmp_path / "o-sft", gpus_per_node=4))
    assert sft.command[:4] == ["deepspeed", "--num_gpus", "4", "--module"]
    flags = flag_values(sft.command)
    assert flags["data.input_key"] == "prompt" and flags["data.output_key"] == "completion"
    assert (flags["train.batch_size"], flags["adam.lr"], flags["data.max_len"]) == (
        "128",
        "5e-06",
        "12288",
    )
    rl = emit(
        "rlvr",
        "openrlhf",
        Launch(
            "ckpt",
            rl_data,
            tmp_path / "o-rl",
            overrides={"ds.zero_stage": "2", "vllm.enable_sleep": "false"},
        ),
    )
    flags = flag_values(rl.command)
    assert flags["algo.advantage.estimator"] == "group_norm"
    assert flags["train.batch_size"] == str(128 * 7)
    assert flags["rollout.batch_size"] == "1024"
    assert flags["algo.kl.use_loss"] is True and flags["algo.kl.estimator"] == "k3"
    assert flags["ds.zero_stage"] == "2" and "vllm.enable_sleep" not in flags
    reward_file = rl.files["reward"].read_text()
    assert "from rmr1_plugins.recipe.reward import reward_func" in reward_file
    data = [json.loads(line) for line in rl.files["data"].open()]
    assert data[0] == {"prompt": [{"role": "user", "content": "u0"}], "label": "model_a"}


def test_verl_commands(tmp_path, sft_data, rl_data):
    pytest.importorskip("pyarrow")
    sft = emit("sft", "verl", Launch("base", sft_data, tmp_path / "v-sft"))
    assert "data.train_batch_size=128" in sft.command
    assert "optim.min_lr_ratio=0.1" in sft.command
    rl = emit(
        "rlvr",
        "verl",
        Launch("ckpt", rl_data, tmp_path / "v-rl", overrides={"trainer.save_freq": "5"}),
    )
    for override in (
        "algorithm.adv_estimator=grpo",
        "actor_rollout_ref.rollout.n=7",
        "actor_rollout_ref.actor.kl_loss_type=low_var_kl",
        "reward.custom_reward_function.path=pkg://rmr1_plugins.recipe.reward",
        "trainer.save_freq=5",
    ):
        assert override in rl.command


def test_cli_prints_the_script_and_refuses_empty_data(tmp_path, rl_data, capsys):
    out = tmp_path / "grpo"
    argv = ["recipe", "rlvr", "--trainer", "trl", "--data", str(rl_data), "--model", "m"]
    assert main([*argv, "-o", str(out), "--set", "num_generations=4"]) == 0
    script = capsys.readouterr().out
    body = script.split("set -euo pipefail\n")[1].replace("\\\n", " ")
    config = ["--config", str(out / "grpo.yaml")]
    launch = ["--num_processes", "8", "--accelerate_config", "zero3"]
    assert shlex.split(body) == ["trl", "grpo", *config, *launch]
    assert yaml.safe_load((out / "grpo.yaml").read_text())["num_generations"] == 4
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert (
        main(
            [
                "recipe",
                "sft",
                "--trainer",
                "trl",
                "--data",
                str(empty),
                "--model",
                "m",
                "-o",
                str(out),
            ]
        )
        == 2
    )
    assert "nothing to train on" in capsys.readouterr().err
