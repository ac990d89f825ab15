"""``--preset``: each released checkpoint's pipeline, pinned against RM-R1's own scripts.

The pinned values are read off RM-R1-UIUC/RM-R1 (d4c2542): rm_r1/scripts/RLVR/{local,slurm}/*.sh
(LR, TRAIN_PER_GPU, nodes, GPU_MEM_UTILIZATION, SAVE_EVERY_STEP), rm_r1/scripts/Distill/local/
*.sh and OpenRLHF train_sft's defaults (SFT), rm_r1/verl/trainer/config/ppo_trainer.yaml
(samples, KL, clip) and rm_r1/dataset/mix_data/mix_data.py (the mix). The TRL test at the end runs
where TRL is installed (the engines environment).
"""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

from rmr1_plugins.cli import main
from rmr1_plugins.config import ConfigError
from rmr1_plugins.recipe.prepare import PrepareConfig, PrepareStats, prepare, read_preferences
from rmr1_plugins.recipe.presets import PRESETS, get_preset
from rmr1_plugins.recipe.sources import SourceSpec, read_jsonl
from rmr1_plugins.recipe.stages import Launch, emit

# name: (base model, template, has SFT, RLVR lr, TRAIN_PER_GPU, nodes, GPU_MEM_UTILIZATION, save)
PINNED = {
    "rm-r1-instruct-7b": ("Qwen/Qwen2.5-7B-Instruct", "rmr1-instruct", True, 1e-6, 4, 1, 0.5, 100),
    "rm-r1-instruct-14b": ("Qwen/Qwen2.5-14B-Instruct", "rmr1-instruct", True, 7e-7, 1, 2, 0.4, 45),
    "rm-r1-instruct-32b": ("Qwen/Qwen2.5-32B-Instruct", "rmr1-instruct", True, 5e-7, 1, 4, 0.4, 45),
    "rm-r1-deepseek-7b": (
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "rmr1-reasoning", False, 1e-6, 4, 1, 0.5, 100
    ),
    "rm-r1-deepseek-14b": (
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "rmr1-reasoning", False, 1e-6, 1, 2, 0.4, 45
    ),
    "rm-r1-deepseek-32b": (
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "rmr1-reasoning", False, 8e-7, 1, 4, 0.4, 45
    ),
}  # fmt: skip
SFT_ROW = {
    "id": "r0",
    "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
    "completion": [{"role": "assistant", "content": "<answer>[[B]]</answer>"}],
}
RL_ROW = {"id": "r1", "context_messages": [{"role": "user", "content": "u"}], "winner": "model_b"}


def write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def data(tmp_path):
    return write(tmp_path / "sft.jsonl", [SFT_ROW]), write(tmp_path / "rl.jsonl", [RL_ROW])


def test_the_table_has_every_released_checkpoint():
    assert set(PRESETS) == set(PINNED)
    for name, (base, template, has_sft, *_) in PINNED.items():
        preset = get_preset(name)
        assert (preset.base_model, preset.template, not preset.skip_sft) == (
            base,
            template,
            has_sft,
        )
        assert preset.checkpoint.startswith("gaotang/RM-R1-")
        assert preset.distill_fraction == (0.12 if has_sft else 0.0)
        mix = [(s.path, s.shuffle_seed, s.size, s.exclude) for s in preset.sources]
        assert mix == [
            ("xinlai/Math-Step-DPO-10K", None, None, {}),
            ("Vezora/Code-Preference-Pairs", 42, 8000, {}),
            ("Skywork/Skywork-Reward-Preference-80K-v0.2", None, None, {"source": "magpie_ultra"}),
        ]
    with pytest.raises(ConfigError, match="unknown preset 'rm-r1-70b'"):
        get_preset("rm-r1-70b")


def emit_preset(name, stage, trainer, data, tmp_path):
    preset = get_preset(name)
    world = {"gpus_per_node": preset.gpus_per_node, "nodes": preset.nodes}
    path = data[0] if stage == "sft" else data[1]
    launch = Launch("ckpt", path, tmp_path / f"{name}-{stage}-{trainer}", **world)
    return emit(stage, trainer, launch, preset.sft, preset.rl)


@pytest.mark.parametrize("name", PINNED)
def test_trl_configs_pin_rm_r1_values(name, data, tmp_path):
    _, _, has_sft, lr, micro, nodes, _, _ = PINNED[name]
    world = 8 * nodes
    rl = emit_preset(name, "rlvr", "trl", data, tmp_path)
    grpo = yaml.safe_load(rl.files["config"].read_text())
    assert grpo["learning_rate"] == lr and grpo["lr_scheduler_type"] == "constant"
    assert grpo["per_device_train_batch_size"] == micro
    # 128 prompts x 7 samples per optimizer step, 1024 prompts per generation round
    assert micro * world * grpo["gradient_accumulation_steps"] == 128 * 7
    assert grpo["generation_batch_size"] == 1024 * 7
    assert (grpo["num_generations"], grpo["temperature"], grpo["beta"]) == (7, 1.0, 0.001)
    assert (grpo["epsilon"], grpo["entropy_coef"], grpo["max_completion_length"]) == (0.2, 0, 8192)
    # one response per micro-batch: per-response mean ("grpo"); four: token mean per micro-batch
    assert grpo["loss_type"] == ("grpo" if micro == 1 else "bnpo")
    assert (grpo["adam_beta1"], grpo["adam_beta2"], grpo["weight_decay"]) == (0.9, 0.999, 0.01)
    assert grpo["max_grad_norm"] == 1.0
    if not has_sft:
        return
    sft = yaml.safe_load(
        emit_preset(name, "sft", "trl", data, tmp_path).files["config"].read_text()
    )
    assert (sft["learning_rate"], sft["max_length"], sft["num_train_epochs"]) == (5e-6, 12288, 1)
    assert sft["per_device_train_batch_size"] * world * sft["gradient_accumulation_steps"] == 128
    assert (sft["adam_beta1"], sft["adam_beta2"], sft["weight_decay"]) == (0.9, 0.95, 0.0)
    assert sft["lr_scheduler_kwargs"] == {"min_lr_rate": 0.1} and sft["warmup_steps"] == 0.03


def verl_values(command: list[str], module: str) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in command[command.index(module) + 1 :])


@pytest.mark.parametrize("name", PINNED)
def test_verl_overrides_pin_rm_r1_values(name, data, tmp_path):
    _, _, has_sft, lr, micro, nodes, memory, save = PINNED[name]
    rl = verl_values(
        emit_preset(name, "rlvr", "verl", data, tmp_path).command, "verl.trainer.main_ppo"
    )
    prefix = "actor_rollout_ref.actor."
    assert float(rl[prefix + "optim.lr"]) == lr
    assert rl[prefix + "ppo_micro_batch_size_per_gpu"] == str(micro)
    assert rl[prefix + "loss_agg_mode"] == "seq-mean-token-mean"
    assert (rl[prefix + "optim.betas"], rl[prefix + "optim.weight_decay"]) == (
        "[0.9,0.999]",
        "0.01",
    )
    assert (rl["data.train_batch_size"], rl[prefix + "ppo_mini_batch_size"]) == ("1024", "128")
    assert (rl["trainer.nnodes"], rl["trainer.save_freq"]) == (str(nodes), str(save))
    assert float(rl["actor_rollout_ref.rollout.gpu_memory_utilization"]) == memory
    assert rl["actor_rollout_ref.rollout.n"] == "7"
    assert (rl[prefix + "kl_loss_coef"], rl[prefix + "kl_loss_type"]) == ("0.001", "low_var_kl")
    if has_sft:
        sft = verl_values(
            emit_preset(name, "sft", "verl", data, tmp_path).command, "verl.trainer.sft_trainer"
        )
        assert (sft["optim.lr"], sft["optim.betas"], sft["optim.weight_decay"]) == (
            "5e-06",
            "[0.9,0.95]",
            "0.0",
        )


def flag_values(command: list[str]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    key = None
    for arg in command:
        if arg.startswith("--"):
            key = arg[2:]
            values[key] = []
        elif key is not None:
            values[key].append(arg)
    return values


@pytest.mark.parametrize("name", PINNED)
def test_openrlhf_flags_pin_rm_r1_values(name, data, tmp_path):
    _, _, has_sft, lr, micro, nodes, memory, _ = PINNED[name]
    rl = flag_values(emit_preset(name, "rlvr", "openrlhf", data, tmp_path).command)
    assert float(rl["actor.adam.lr"][0]) == lr
    assert rl["actor.loss_agg_mode"] == ["seq-mean-token-mean"]
    assert rl["actor.adam.betas"] == ["0.9", "0.999"] and rl["actor.adam.weight_decay"] == ["0.01"]
    assert rl["train.micro_batch_size"] == [str(micro)] and rl["actor.num_nodes"] == [str(nodes)]
    assert rl["train.batch_size"] == [str(128 * 7)] and rl["rollout.batch_size"] == ["1024"]
    assert float(rl["vllm.gpu_memory_utilization"][0]) == memory
    if has_sft:
        sft = flag_values(emit_preset(name, "sft", "openrlhf", data, tmp_path).command)
        assert sft["adam.betas"] == ["0.9", "0.95"] and sft["adam.weight_decay"] == ["0.0"]
        assert (sft["train.batch_size"], sft["train.micro_batch_size"]) == (["128"], ["1"])


@pytest.mark.parametrize("trainer", ["trl", "verl", "openrlhf"])
def test_each_emitted_script_states_where_it_differs(trainer, data, tmp_path):
    script = emit_preset("rm-r1-instruct-7b", "sft", trainer, data, tmp_path).script()
    assert "# Differs from RM-R1:" in script  # every trainer's SFT loss is a global token mean
    rl = emit_preset("rm-r1-instruct-7b", "rlvr", trainer, data, tmp_path).script()
    if trainer != "trl":  # TRL's bnpo reproduces the 7B micro-batch mean; the others cannot
        assert "micro-batch of 4 responses" in rl
    rl14 = emit_preset("rm-r1-instruct-14b", "rlvr", trainer, data, tmp_path).script()
    assert "micro-batch of" not in rl14


def test_cli_preset_emits_the_same_as_the_table_and_notes_the_source(data, tmp_path, capsys):
    argv = ["recipe", "rlvr", "--preset", "rm-r1-instruct-32b", "--trainer", "verl"]
    assert main([*argv, "--data", str(data[1]), "--model", "ckpt", "-o", str(tmp_path / "a")]) == 0
    script = capsys.readouterr().out
    direct = emit_preset("rm-r1-instruct-32b", "rlvr", "verl", data, tmp_path)
    assert "actor_rollout_ref.actor.optim.lr=5e-07" in script and "trainer.nnodes=4" in script
    assert f"data.train_files={tmp_path / 'a' / 'data' / 'rl.parquet'}" in script
    assert len([a for a in direct.command if "=" in a]) == script.count(
        "=", script.index("python3")
    )
    assert "train_rm_r1_rlvr_qwen2.5_Instruct_32b.sh" in script
    assert "Qwen/Qwen2.5-7B-Instruct" in script  # the note on RM-R1's 32B distill script


def test_cli_preset_model_defaults_and_refusals(data, tmp_path, capsys):
    out = str(tmp_path / "o")
    # DeepSeek: RL starts from the base model; it has no SFT stage
    argv = ["recipe", "rlvr", "--preset", "rm-r1-deepseek-7b", "--trainer", "trl"]
    assert main([*argv, "--data", str(data[1]), "-o", out]) == 0
    config = yaml.safe_load((tmp_path / "o" / "grpo.yaml").read_text())
    assert config["model_name_or_path"] == "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
    capsys.readouterr()
    argv = ["recipe", "sft", "--preset", "rm-r1-deepseek-7b", "--trainer", "trl"]
    assert main([*argv, "--data", str(data[0]), "-o", out]) == 2
    assert "has no SFT stage" in capsys.readouterr().err
    # Instruct: SFT starts from the base model; RL needs the SFT checkpoint
    argv = ["recipe", "sft", "--preset", "rm-r1-instruct-14b", "--trainer", "trl"]
    assert main([*argv, "--data", str(data[0]), "-o", out, "--nodes", "1"]) == 0
    config = yaml.safe_load((tmp_path / "o" / "sft.yaml").read_text())
    assert config["model_name_or_path"] == "Qwen/Qwen2.5-14B-Instruct"
    assert config["gradient_accumulation_steps"] == 16  # --nodes 1 wins over the preset's 2
    capsys.readouterr()
    argv = ["recipe", "rlvr", "--preset", "rm-r1-instruct-14b", "--trainer", "trl"]
    assert main([*argv, "--data", str(data[1]), "-o", out]) == 2
    assert "give --model: the SFT checkpoint" in capsys.readouterr().err


# --- the data mix -------------------------------------------------------------------------


def code_rows(count):
    return [
        {"input": f"Task {i}?", "accepted": f"good {i}", "rejected": f"bad {i}"}
        for i in range(count)
    ]


def test_shuffled_source_takes_the_rows_datasets_shuffle_takes(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = code_rows(50)
    source = str(write(tmp_path / "code.jsonl", rows))
    spec = SourceSpec(source, shuffle_seed=42, size=20)
    prefs = read_preferences([spec], PrepareConfig(max_prompt_tokens=None), PrepareStats())
    theirs = datasets.Dataset.from_list(rows).shuffle(seed=42).select(range(20))
    assert [p.context[0].content for p in prefs] == theirs["input"]
    assert [p.id for p in prefs][:3] != ["code-1", "code-2", "code-3"]  # really shuffled


def test_preset_mix_from_local_copies(tmp_path, capsys):
    math = write(tmp_path / "math.jsonl", [
        {"prompt": f"{i}+1?", "initial_reason_steps": "So ", "full_chosen": f"{i + 1}",
         "full_rejected": "0"} for i in range(3)
    ])  # fmt: skip
    code = write(tmp_path / "code.jsonl", code_rows(8010))
    sky = write(tmp_path / "sky.jsonl", [
        {"chosen": [{"role": "user", "content": f"Hi {i}"},
                    {"role": "assistant", "content": "Hello"}],
         "rejected": [{"role": "user", "content": f"Hi {i}"},
                      {"role": "assistant", "content": "Go"}],
         "source": "magpie_ultra" if i == 1 else "helpsteer2"} for i in range(3)
    ])  # fmt: skip
    out = tmp_path / "out"
    argv = ["recipe", "prepare", "--preset", "rm-r1-deepseek-7b", str(math), str(code), str(sky)]
    assert main([*argv, "-o", str(out), "--max-prompt-tokens", "0"]) == 0
    stats = json.loads((out / "prepare_stats.json").read_text())
    assert stats["read"] == 3 + 8000 + 3 and stats["excluded"] == 1
    assert stats["parts"] == {"eval": 0, "distill": 0, "rl": 8005}  # DeepSeek: RL only
    assert stats["winners"] == {"model_a": 4003, "model_b": 4002}
    rows = read_jsonl(out / "rl.jsonl")
    ids = {r["id"] for r in rows if r["id"].startswith("code-")}
    numpy = pytest.importorskip("numpy")

    kept = numpy.random.default_rng(42).permutation(8010)[:8000]
    assert ids == {f"code-{int(i) + 1}" for i in kept}
    assert "sky-2" not in {r["id"] for r in rows}  # the magpie_ultra row
    assert all(r["context_messages"][0]["role"] == "user" for r in rows)  # reasoning template
    capsys.readouterr()
    assert main([*argv[:-1], "-o", str(out), "--max-prompt-tokens", "0"]) == 2
    assert "give none (read them by name) or a local copy of each" in capsys.readouterr().err


# --- the prompt-length filter is always on --------------------------------------------------


def test_prepare_refuses_without_a_tokenizer_rather_than_skipping(tmp_path, capsys):
    source = str(write(tmp_path / "code.jsonl", code_rows(2)))
    with pytest.raises(ConfigError, match="no tokenizer for the prompt-length filter"):
        prepare([source], tmp_path / "out", PrepareConfig())
    assert main(["recipe", "prepare", source, "-o", str(tmp_path / "out")]) == 2
    assert "--max-prompt-tokens 0 to keep every prompt" in capsys.readouterr().err
    assert not (tmp_path / "out" / "rl.jsonl").exists()


def test_prepare_refuses_a_tokenizer_it_cannot_load(tmp_path, capsys):
    pytest.importorskip("transformers")
    source = str(write(tmp_path / "code.jsonl", code_rows(2)))
    missing = str(tmp_path / "no-such-tokenizer")
    argv = ["recipe", "prepare", source, "-o", str(tmp_path / "out"), "--tokenizer", missing]
    assert main(argv) == 2
    assert f"cannot load the tokenizer '{missing}'" in capsys.readouterr().err


def test_a_preset_counts_with_its_base_models_tokenizer():
    from argparse import Namespace

    from rmr1_plugins.recipe.cli import prepare_config

    preset = get_preset("rm-r1-instruct-32b")
    args = Namespace(
        distill_fraction=None, max_prompt_tokens=4096, template=None, placement="alternate",
        eval_size=0, tokenizer=None, seed=42, split="train", subset=None, limit=None,
        skip_invalid=False, exclude=[],
    )  # fmt: skip
    config = prepare_config(args, preset, preset.base_model)
    assert (config.tokenizer, config.max_prompt_tokens) == ("Qwen/Qwen2.5-32B-Instruct", 4096)
    assert (config.template, config.distill_fraction) == ("rmr1-instruct", 0.12)
    args.tokenizer, args.max_prompt_tokens = "/local/qwen", 0
    config = prepare_config(args, preset, preset.base_model)
    assert (config.tokenizer, config.max_prompt_tokens) == ("/local/qwen", None)


@pytest.mark.parametrize(
    ("stats", "says"),
    [
        (None, "Prompt lengths unknown"),
        ({"budget_checked": False}, "did not check prompt lengths"),
        (
            {"budget_checked": True, "over_budget": 3, "max_prompt_tokens": 4096, "tokenizer": "q"},
            "dropped 3 prompts over 4096 tokens of q",
        ),
    ],
)
def test_the_trl_note_says_what_prepare_did_with_long_prompts(stats, says, data, tmp_path):
    if stats is not None:
        (data[1].parent / "prepare_stats.json").write_text(json.dumps(stats))
    emitted = emit("rlvr", "trl", Launch("ckpt", data[1], tmp_path / "rl"))
    script = emitted.script()
    assert says in script and "TRL 1.16 has no prompt-length limit" in script
    assert "were dropped by" not in script  # the old note claimed this whatever happened
    assert says in emitted.files["config"].read_text()  # and so does the config itself


# --- TRL's own parser (engines environment) --------------------------------------------------


@pytest.mark.parametrize("name", PINNED)
def test_trl_parses_each_presets_configs(name, data, tmp_path):
    pytest.importorskip("trl")
    from trl.scripts.grpo import make_parser as grpo_parser
    from trl.scripts.sft import make_parser as sft_parser

    cpu = ["--use_cpu", "true", "--bf16", "false", "--use_vllm", "false"]
    _, _, has_sft, lr, micro, *_ = PINNED[name]
    config = emit_preset(name, "rlvr", "trl", data, tmp_path).files["config"]
    _, grpo, _, _ = grpo_parser().parse_args_and_config(["--config", str(config), *cpu])
    assert (grpo.learning_rate, grpo.per_device_train_batch_size) == (lr, micro)
    assert grpo.loss_type == ("grpo" if micro == 1 else "bnpo")
    assert (grpo.adam_beta2, grpo.weight_decay) == (0.999, 0.01)
    assert not grpo.vllm_importance_sampling_correction and not grpo.use_bias_correction_kl
    assert (grpo.vllm_tensor_parallel_size, grpo.seed) == (4, 1)
    if has_sft:
        config = emit_preset(name, "sft", "trl", data, tmp_path).files["config"]
        _, sft, _, _ = sft_parser().parse_args_and_config(["--config", str(config), *cpu[:4]])
        assert (sft.adam_beta2, sft.weight_decay, sft.learning_rate) == (0.95, 0.0, 5e-6)


def test_the_trl_defaults_table_lists_every_grpo_default_as_trl_has_it(data, tmp_path):
    pytest.importorskip("trl")
    import dataclasses

    from transformers import TrainingArguments
    from trl import GRPOConfig

    from rmr1_plugins.recipe.trl_defaults import GRPO_DEFAULTS

    fields = {f.name: f for f in dataclasses.fields(GRPOConfig)}
    own = set(fields) - {f.name for f in dataclasses.fields(TrainingArguments)}
    assert own <= set(GRPO_DEFAULTS), sorted(own - set(GRPO_DEFAULTS))
    for key, (default, verdict) in GRPO_DEFAULTS.items():
        assert fields[key].default == default, key
        assert verdict.split(":")[0] in {"set", "same", "n/a", "differs"}, key
    emitted = yaml.safe_load(
        emit_preset("rm-r1-instruct-7b", "rlvr", "trl", data, tmp_path).files["config"].read_text()
    )
    for key, (_, verdict) in GRPO_DEFAULTS.items():
        if verdict.startswith("set"):  # what the table says is set is in the config
            assert key in emitted, key


def test_script_quotes_survive_the_shell(data, tmp_path):
    rl = emit_preset("rm-r1-instruct-7b", "rlvr", "openrlhf", data, tmp_path)
    body = rl.script().split("set -euo pipefail\n", 1)[1].replace("\\\n", "")
    assert shlex.split(body) == rl.command


def test_recipe_run_takes_the_checkpoint_presets_hyperparameters(tmp_path):
    from rmr1_plugins.recipe.run import RunConfig, stage_configs
    from rmr1_plugins.settings import load_config

    def fields(preset):
        config = RunConfig(
            sources=[], out_dir=tmp_path, prepare=PrepareConfig(), teacher=load_config(),
            student="s", preset=preset, rl_overrides={"beta": "0.002"},
        )  # fmt: skip
        return stage_configs(config)

    sft, rl = fields("rm-r1-instruct-32b")
    assert (rl["learning_rate"], rl["per_device_train_batch_size"], rl["loss_type"]) == (
        5e-7,
        1,
        "grpo",
    )
    assert rl["gradient_accumulation_steps"] == 128 * 7  # one GPU keeps the global batch
    assert rl["beta"] == 0.002 and rl["use_vllm"] is True  # overrides and one-GPU settings
    # one GPU: no tensor parallelism, TRL's 0.3 share beside the training state; RM-R1's seed
    assert (rl["vllm_tensor_parallel_size"], rl["vllm_gpu_memory_utilization"]) == (1, 0.3)
    assert rl["seed"] == 1 and rl["vllm_importance_sampling_correction"] is False
    assert (sft["adam_beta2"], sft["weight_decay"]) == (0.95, 0.0)
    _, rl = fields("rmr1")
    assert (rl["learning_rate"], rl["loss_type"]) == (1e-6, "bnpo")  # RM-R1's 7B
    _, rl = fields("cpu-tiny")
    assert rl["use_vllm"] is False and rl["max_completion_length"] == 16


# --- the rollout, RM-R1's data order and veRL's extra clipping, per preset x trainer ----------
# rm_r1/verl/trainer/config/ppo_trainer.yaml: rollout.tensor_model_parallel_size 4; the RLVR
# scripts' GPU_MEM_UTILIZATION (PINNED); ray_trainer.py: the sampler's seed data.get("seed", 1).
RMR1_ROLLOUT_TP = 4
RMR1_DATA_SEED = 1


@pytest.mark.parametrize("name", PINNED)
def test_every_trainer_emits_rm_r1s_rollout_and_data_order(name, data, tmp_path):
    memory = PINNED[name][6]
    world = 8 * PINNED[name][5]
    grpo = yaml.safe_load(
        emit_preset(name, "rlvr", "trl", data, tmp_path).files["config"].read_text()
    )
    assert grpo["vllm_tensor_parallel_size"] == RMR1_ROLLOUT_TP
    assert grpo["vllm_gpu_memory_utilization"] == memory and grpo["seed"] == RMR1_DATA_SEED
    # TRL 1.16 defaults RM-R1's run did not have
    assert grpo["vllm_importance_sampling_correction"] is False
    assert grpo["use_bias_correction_kl"] is False
    verl = verl_values(
        emit_preset(name, "rlvr", "verl", data, tmp_path).command, "verl.trainer.main_ppo"
    )
    assert verl["actor_rollout_ref.rollout.tensor_model_parallel_size"] == str(RMR1_ROLLOUT_TP)
    assert float(verl["actor_rollout_ref.rollout.gpu_memory_utilization"]) == memory
    assert verl["data.seed"] == str(RMR1_DATA_SEED) and verl["data.shuffle"] == "true"
    assert float(verl["actor_rollout_ref.actor.clip_ratio_c"]) >= 1e9  # dual-clip off
    orl = flag_values(emit_preset(name, "rlvr", "openrlhf", data, tmp_path).command)
    assert orl["vllm.tensor_parallel_size"] == [str(RMR1_ROLLOUT_TP)]
    assert orl["vllm.num_engines"] == [str(world // RMR1_ROLLOUT_TP)]
    assert float(orl["vllm.gpu_memory_utilization"][0]) == memory
    assert orl["train.seed"] == [str(RMR1_DATA_SEED)] and "actor.dual_clip" not in orl


@pytest.mark.parametrize("trainer", ["trl", "verl", "openrlhf"])
def test_each_rl_script_names_the_clipping_and_epsilon_it_cannot_change(trainer, data, tmp_path):
    script = emit_preset("rm-r1-instruct-14b", "rlvr", trainer, data, tmp_path).script()
    says = {"trl": "std + 1e-4", "verl": "+-20", "openrlhf": "std + 1e-9"}[trainer]
    assert says in script


@pytest.mark.parametrize("name", PINNED)
def test_each_preset_fits_as_rm_r1_ran_it(name):
    from rmr1_plugins.recipe.presets import check_fit

    preset = get_preset(name)
    assert "per GPU" in check_fit(preset, preset.rl, preset.gpus_per_node)


@pytest.mark.parametrize(
    ("name", "tp", "gpu", "fix"),
    [
        ("rm-r1-deepseek-32b", 1, 80, "tensor parallel 4"),  # 65.5 GB in 0.4 x 80
        ("rm-r1-instruct-14b", 1, 80, "tensor parallel 2"),  # 29.5 GB: over 80% of 32 GB
        ("rm-r1-instruct-32b", 4, 40, "tensor parallel 8"),  # a 40 GB GPU
    ],
)
def test_a_preset_that_does_not_fit_says_what_to_change(name, tp, gpu, fix):
    from rmr1_plugins.recipe.presets import check_fit, rollout_rl

    preset = get_preset(name)
    with pytest.raises(ConfigError, match="does not fit") as caught:
        check_fit(preset, rollout_rl(preset.rl, tp), preset.gpus_per_node, gpu)
    assert fix in str(caught.value) and "--rollout-tp" in str(caught.value)
    # 7B fits on one GPU with any tensor parallel size
    small = get_preset("rm-r1-instruct-7b")
    check_fit(small, rollout_rl(small.rl, 1), small.gpus_per_node, gpu)


def test_cli_rollout_flags_reach_every_trainer_and_refuse_what_does_not_fit(data, tmp_path, capsys):
    argv = ["recipe", "rlvr", "--preset", "rm-r1-deepseek-32b", "--data", str(data[1])]
    assert main([*argv, "--trainer", "verl", "-o", str(tmp_path / "a"), "--rollout-tp", "8"]) == 0
    script = capsys.readouterr().out
    assert "rollout.tensor_model_parallel_size=8" in script and "# Fits: " in script
    code = main([*argv, "--trainer", "openrlhf", "-o", str(tmp_path / "b"), "--rollout-tp", "1"])
    assert code == 2 and "does not fit" in capsys.readouterr().err
    code = main([*argv, "--trainer", "trl", "-o", str(tmp_path / "c"), "--rollout-tp", "3"])
    assert code == 2 and "must divide the 8 GPUs" in capsys.readouterr().err
    argv = ["recipe", "rlvr", "--trainer", "trl", "--data", str(data[1]), "--model", "m"]
    assert main([*argv, "-o", str(tmp_path / "d"), "--rollout-memory", "0.6"]) == 0
    grpo = yaml.safe_load((tmp_path / "d" / "grpo.yaml").read_text())
    assert grpo["vllm_gpu_memory_utilization"] == 0.6 and grpo["vllm_tensor_parallel_size"] == 4
