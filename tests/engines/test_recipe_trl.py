"""The recipe against real TRL, datasets and tokenizers (no weights are trained here).

- the TRL configs ``rmr1 recipe sft|rlvr --trainer trl`` writes are read by TRL's own CLI parser
  and its dataset loader, and name a reward function TRL can import;
- ``prepare``'s token budget counts what the student's chat template really produces;
- a ``datasets.load_dataset`` source (a local dataset folder, no network) goes through the same
  path as a hub name.
"""

from __future__ import annotations

import importlib
import json

import pytest

from rmr1_plugins.recipe.prepare import PrepareConfig, prepare
from rmr1_plugins.recipe.reward import rmr1_verifiable_reward
from rmr1_plugins.recipe.sources import read_jsonl
from rmr1_plugins.recipe.stages import Launch, emit

pytest.importorskip("trl")
CPU = ["--use_cpu", "true", "--bf16", "false"]  # the config asks for bf16 GPUs; this is a CPU box


@pytest.fixture
def data(tmp_path):
    sft = tmp_path / "sft.jsonl"
    sft.write_text(
        json.dumps(
            {
                "id": "r0",
                "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                "completion": [{"role": "assistant", "content": "<answer>[[B]]</answer>"}],
            }
        )
        + "\n"
    )
    rl = tmp_path / "rl.jsonl"
    rl.write_text(
        json.dumps(
            {
                "id": "r1",
                "context_messages": [{"role": "user", "content": "u"}],
                "winner": "model_b",
            }
        )
        + "\n"
    )
    return sft, rl


def test_trl_parses_the_emitted_sft_config_and_loads_its_data(tmp_path, data):
    from trl import get_dataset
    from trl.scripts.sft import make_parser

    emitted = emit("sft", "trl", Launch("base-model", data[0], tmp_path / "sft"))
    _, training, model, mixture = make_parser().parse_args_and_config(
        ["--config", str(emitted.files["config"]), *CPU]
    )
    assert model.model_name_or_path == "base-model"
    assert (training.learning_rate, training.max_length, training.num_train_epochs) == (
        5e-6,
        12288,
        1,
    )
    assert training.per_device_train_batch_size * training.gradient_accumulation_steps * 8 == 128
    assert training.lr_scheduler_type == "cosine_with_min_lr"
    assert training.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    assert training.completion_only_loss is True
    train = get_dataset(mixture)["train"]
    assert train.column_names == ["prompt", "completion"]
    assert train[0]["completion"][0]["content"] == "<answer>[[B]]</answer>"


def test_trl_parses_the_emitted_grpo_config_and_imports_the_reward(tmp_path, data):
    from trl import get_dataset
    from trl.scripts.grpo import make_parser

    emitted = emit("rlvr", "trl", Launch("sft-ckpt", data[1], tmp_path / "rl", gpus_per_node=4))
    script, training, _, mixture = make_parser().parse_args_and_config(
        ["--config", str(emitted.files["config"]), *CPU, "--use_vllm", "false"]
    )
    assert (training.num_generations, training.temperature, training.beta) == (7, 1.0, 0.001)
    assert training.generation_batch_size == 7168
    assert training.max_completion_length == 8192
    (name,) = script.reward_funcs
    module, attr = name.rsplit(".", 1)  # how `trl grpo` resolves a dotted reward name
    assert getattr(importlib.import_module(module), attr) is rmr1_verifiable_reward
    row = get_dataset(mixture)["train"][0]
    assert row == {"prompt": [{"role": "user", "content": "u"}], "winner": "model_b"}
    assert rmr1_verifiable_reward(
        prompts=[row["prompt"]], completions=["<answer>[[B]]</answer>"], winner=[row["winner"]]
    ) == [1.0]


def test_token_budget_uses_the_students_chat_template(tmp_path, smollm2_dir):
    from rmr1_plugins.backends.hf import HFBackend
    from rmr1_plugins.plugins import get_template
    from rmr1_plugins.schema import PairwiseExample

    long_answer = "word " * 3000
    rows = [
        {"input": "Short?", "accepted": "Yes.", "rejected": "No."},
        {"input": "Long?", "accepted": long_answer, "rejected": "No."},
    ]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pair = PairwiseExample(
        context=[{"role": "user", "content": "Short?"}], response_a="Yes.", response_b="No."
    )
    # What the hf backend feeds the model: chat template, then add_special_tokens=False.
    tokens = len(HFBackend(str(smollm2_dir)).render(get_template("rmr1-instruct").render(pair)))
    config = PrepareConfig(tokenizer=str(smollm2_dir), max_prompt_tokens=tokens, distill_fraction=0)
    stats = prepare([str(source)], tmp_path / "out", config)
    assert (stats.budget_checked, stats.over_budget, stats.pairs) == (True, 1, 1)
    config.max_prompt_tokens = tokens - 1  # one token less and the short pair goes too
    assert prepare([str(source)], tmp_path / "out2", config).over_budget == 2


def test_a_datasets_folder_source_goes_through_load_dataset(tmp_path):
    folder = tmp_path / "my-preferences"
    folder.mkdir()
    rows = [{"prompt": "2+2?", "chosen": "4", "rejected": "5"}] * 3
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats = prepare(
        [str(folder)], tmp_path / "out", PrepareConfig(max_prompt_tokens=None, distill_fraction=0)
    )
    assert stats.parts["rl"] == 3
    assert read_jsonl(tmp_path / "out" / "rl.jsonl")[0]["id"].startswith("my-preferences-")


def test_a_parquet_source(tmp_path):
    from rmr1_plugins.recipe.sources import write_parquet

    rows = [{"input": "Reverse xs.", "accepted": "xs[::-1]", "rejected": "xs.sort()"}] * 2
    write_parquet(tmp_path / "code.parquet", rows)
    stats = prepare(
        [str(tmp_path / "code.parquet")], tmp_path / "out", PrepareConfig(max_prompt_tokens=None)
    )
    assert stats.pairs == 2 and stats.winners == {"model_a": 1, "model_b": 1}
