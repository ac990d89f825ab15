"""``rmr1 recipe sft|rlvr --trainer openrlhf`` checked by OpenRLHF 0.11.2's own code, on CPU.

OpenRLHF's CLI modules import deepspeed, peft, ray and vllm at the top, which a CPU test
environment does not have (``pip install --no-deps openrlhf==0.11.2``). Their argument parsing
lives in the ``if __name__ == "__main__":`` block, so that block is run as is, with the module's
importable imports and ``train`` replaced by a function that keeps the parsed arguments: the
emitted flags go through OpenRLHF's real parser, ``hierarchize`` and its checks. The data is
then read by OpenRLHF's ``blending_datasets``, ``SFTDataset`` and ``PromptDataset``, and the
reward file is loaded by ``SingleTurnAgentExecutor`` exactly as a rollout actor loads it.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("openrlhf")

from rmr1_plugins.recipe.prepare import PrepareConfig, prepare
from rmr1_plugins.recipe.stages import Launch, emit
from rmr1_plugins.templates import template_text
from rmr1_plugins.testing import tiny_llama

TRACE = "<type>Chat</type>\n<eval>A is right</eval>\n\n<answer>[[A]]</answer>"


def parse_with_openrlhf(module: str, command: list[str]) -> SimpleNamespace:
    """Run ``module``'s ``__main__`` block on the emitted flags and return the parsed args."""
    origin = importlib.util.find_spec(module).origin
    tree = ast.parse(Path(origin).read_text(encoding="utf-8"))
    namespace: dict = {"__name__": "__main__"}
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            with contextlib.suppress(ImportError):  # ray, deepspeed, peft, vllm: used by train()
                exec(compile(ast.Module([node], []), origin, "exec"), namespace)
    (main,) = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
    captured: dict = {}
    namespace["train"] = lambda args: captured.setdefault("args", args)
    argv = command[command.index(module) + 1 :]
    saved, sys.argv = sys.argv, [origin, *argv]
    try:
        exec(compile(ast.Module(main.body, []), origin, "exec"), namespace)
    finally:
        sys.argv = saved
    return captured["args"]


class Strategy:
    """The parts of OpenRLHF's strategy its datasets use."""

    def __init__(self, args):
        self.args = args

    def print(self, *args):
        pass

    def is_rank_0(self):
        return True


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    text = template_text("INSTRUCT_SYSTEM_PROMPT.txt")
    return AutoTokenizer.from_pretrained(tiny_llama(tmp_path_factory.mktemp("m") / "t", text))


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


def test_sft_flags_parse_and_the_loss_covers_only_the_trace(tmp_path, data, tokenizer):
    from openrlhf.datasets import SFTDataset
    from openrlhf.datasets.utils import blending_datasets

    emitted = emit("sft", "openrlhf", Launch("base", data / "sft.jsonl", tmp_path))
    args = parse_with_openrlhf("openrlhf.cli.train_sft", emitted.command)
    assert (args.adam.lr, args.lr_scheduler, args.min_lr_ratio) == (5e-6, "cosine_with_min_lr", 0.1)
    assert (args.lr_warmup_ratio, args.train.batch_size, args.train.max_epochs) == (0.03, 128, 1)
    assert args.data.max_len == 12288 and args.model.pretrain_mode_enable is False

    raw = blending_datasets(args.data.dataset, None, Strategy(args), dataset_split="train")
    dataset = SFTDataset(raw, tokenizer, args.data.max_len, Strategy(args), num_processors=1)
    assert len(dataset) == 1
    input_ids, _, loss_mask = dataset[0]
    trained = tokenizer.decode(input_ids[loss_mask.bool()])
    assert TRACE in trained
    assert "impartial judge" not in trained


def test_rlvr_flags_parse_and_the_reward_file_scores_through_openrlhf(tmp_path, data, tokenizer):
    from openrlhf.datasets import PromptDataset
    from openrlhf.datasets.utils import blending_datasets
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    emitted = emit("rlvr", "openrlhf", Launch("sft-ckpt", data / "rl.jsonl", tmp_path))
    args = parse_with_openrlhf("openrlhf.cli.train_ppo_ray", emitted.command)
    assert args.algo.advantage.estimator == "group_norm"
    assert (args.rollout.n_samples_per_prompt, args.rollout.batch_size, args.train.batch_size) == (
        7,
        1024,
        896,
    )
    assert (args.algo.kl.use_loss, args.algo.kl.estimator, args.algo.kl.init_coef) == (
        True,
        "k3",
        0.001,
    )
    assert (args.actor.entropy_coef, args.actor.eps_clip_low_high) == (0.0, (0.2, 0.2))
    assert (args.data.max_len, args.rollout.max_new_tokens) == (4096 + 8192, 8192)
    assert args.reward.remote_url == [str(emitted.files["reward"])]

    raw = blending_datasets(args.data.prompt_dataset, None, Strategy(args), dataset_split="train")
    dataset = PromptDataset(raw, tokenizer, Strategy(args))
    rows = [json.loads(line) for line in (data / "rl.jsonl").open()]
    assert len(dataset) == len(rows) == 2
    prompt, label = dataset.prompts[0], dataset.labels[0]
    assert label == rows[0]["winner"]
    assert prompt == tokenizer.apply_chat_template(
        rows[0]["context_messages"], tokenize=False, add_generation_prompt=True
    )

    executor = SingleTurnAgentExecutor(args.reward.remote_url)
    right = "<answer>[[A]]</answer>" if label == "model_a" else "<answer>[[B]]</answer>"
    for response, reward in ((right + "<|im_end|>", 1.0), ("no verdict<|im_end|>", -1.0)):
        (info,) = asyncio.run(
            executor._fetch_rewards_via_func([prompt + response], [prompt], [label])
        )
        assert info["rewards"] == [reward]
    (info,) = asyncio.run(executor._fetch_rewards_via_func([prompt + right], [prompt], [""]))
    assert (info["rewards"], info["extra_logs"]) == (
        [0.0],
        {"rmr1_correct": [0.0], "rmr1_bad_input": [1.0]},
    )


@pytest.mark.parametrize("name", ["rm-r1-instruct-7b", "rm-r1-instruct-32b", "rm-r1-deepseek-32b"])
def test_each_presets_flags_pass_openrlhfs_parser(tmp_path, data, name):
    from rmr1_plugins.recipe.presets import get_preset

    preset = get_preset(name)
    shape = {"gpus_per_node": preset.gpus_per_node, "nodes": preset.nodes}
    rl = emit(
        "rlvr", "openrlhf", Launch("c", data / "rl.jsonl", tmp_path / "rl", **shape), rl=preset.rl
    )
    args = parse_with_openrlhf("openrlhf.cli.train_ppo_ray", rl.command)
    assert args.actor.adam.lr == preset.rl.learning_rate
    assert args.actor.loss_agg_mode == "seq-mean-token-mean"
    assert tuple(args.actor.adam.betas) == (0.9, 0.999) and args.actor.adam.weight_decay == 0.01
    assert (args.actor.num_nodes, args.train.micro_batch_size) == (
        preset.nodes,
        preset.rl.micro_batch,
    )
    # RM-R1's rollout: tensor parallel 4 over every GPU, the preset's memory share, seed 1
    assert (args.vllm.tensor_parallel_size, args.train.seed) == (4, 1)
    assert args.vllm.num_engines * 4 == preset.nodes * preset.gpus_per_node
    assert args.vllm.gpu_memory_utilization == preset.rl.gpu_memory_utilization
    assert args.actor.dual_clip is None
    if preset.sft is not None:
        launch = Launch("b", data / "sft.jsonl", tmp_path / "sft", **shape)
        sft = emit("sft", "openrlhf", launch, sft=preset.sft)
        args = parse_with_openrlhf("openrlhf.cli.train_sft", sft.command)
        assert tuple(args.adam.betas) == (0.9, 0.95) and args.adam.weight_decay == 0.0
        assert args.max_norm == 1.0
