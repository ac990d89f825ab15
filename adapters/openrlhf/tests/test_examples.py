"""The OpenRLHF examples are commands OpenRLHF 0.11.2 accepts, with files this package reads."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest
from rmr1_openrlhf import reward_file_path

from rmr1_plugins.rewards.inputs import Sample
from rmr1_plugins.rewards.samples import build_example
from rmr1_plugins.settings import load_reward_settings

pytest.importorskip("openrlhf")
from openrlhf.utils.config import hierarchize

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
OPENRLHF = Path(importlib.util.find_spec("openrlhf").submodule_search_locations[0])


def preprocess_data(*args):
    """OpenRLHF's prompt/label builder, loaded by path (its package imports ``datasets``)."""
    path = OPENRLHF / "datasets" / "prompts_dataset.py"
    spec = importlib.util.spec_from_file_location("openrlhf_prompts_dataset", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.preprocess_data(*args)


def train_ppo_ray_parser() -> argparse.ArgumentParser:
    """OpenRLHF's own argument parser, from its source (the module itself needs ray and GPUs)."""
    source = (OPENRLHF / "cli" / "train_ppo_ray.py").read_text()
    main = source.split('if __name__ == "__main__":', 1)[1].split("args = parser.parse_args()")[0]
    namespace = {"argparse": argparse, "os": os, "datetime": datetime}
    exec(textwrap.dedent(main), namespace)
    return namespace["parser"]


def dry_run(script: str) -> list[str]:
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # `python` is this interpreter
    env = {**os.environ, "DRY_RUN": "1", "PATH": path}
    done = subprocess.run(
        ["bash", str(EXAMPLES / script)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    argv = shlex.split(done.stdout)
    assert argv[:3] == ["ray", "job", "submit"]
    return argv


@pytest.mark.parametrize("script", ["openrlhf_grpo.sh", "openrlhf_grpo_serve.sh"])
def test_example_commands_parse_with_openrlhfs_own_parser(script):
    argv = dry_run(script)
    train = argv[argv.index("openrlhf.cli.train_ppo_ray") + 1 :]
    args = hierarchize(train_ppo_ray_parser().parse_args(train))
    assert args.data.label_key == "reference" and args.data.input_key == "prompt"
    assert args.algo.advantage.estimator == "group_norm"
    assert args.rollout.n_samples_per_prompt == 8
    if script == "openrlhf_grpo.sh":
        assert args.reward.remote_url == str(reward_file_path())
        runtime_env = json.loads(argv[4].split("=", 1)[1])
        assert runtime_env["env_vars"]["RMR1_CONFIG"].endswith("examples/rmr1-openrlhf.yaml")
    else:
        assert args.reward.remote_url.endswith(":5000/get_reward")
        # evaluation's samples per prompt fill the server's groups too (OpenRLHF's default: 4)
        assert args.eval.n_samples_per_prompt == args.rollout.n_samples_per_prompt


def test_example_config_loads_with_training_settings():
    settings = load_reward_settings(EXAMPLES / "rmr1-openrlhf.yaml")
    scorer, reward = settings.scorer, settings.reward
    assert scorer.order == "both" and scorer.neutralize_markup is True
    assert scorer.backend.name == "openai" and reward.service.timeout_s < 180


def test_example_rows_become_judgeable_pairs_the_way_openrlhf_builds_them():
    transformers = pytest.importorskip("transformers")
    from rmr1_plugins.testing import smollm2_checkpoint

    tokenizer = transformers.AutoTokenizer.from_pretrained(smollm2_checkpoint())
    reward = load_reward_settings(EXAMPLES / "rmr1-openrlhf.yaml").reward
    for line in (EXAMPLES / "openrlhf_prompts.jsonl").read_text().splitlines():
        row = json.loads(line)
        prompt, label = preprocess_data(
            row, None, "prompt", "reference", tokenizer.apply_chat_template
        )
        example, _ = build_example(Sample(prompt + "An answer.<|im_end|>", prompt, label), reward)
        # the template's default system turn is folded into the user turn (docs/concepts/rewards.md)
        system = prompt.split("<|im_start|>system\n")[1].split("<|im_end|>")[0]
        assert example.context[-1].content == f"{system}\n\n{row['prompt']}"
        assert example.response_a == "An answer." and example.response_b == row["reference"]
