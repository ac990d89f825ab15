"""``rmr1 recipe run`` end to end on CPU: SmolLM2 teaches, a tiny Llama learns, TRL trains it.

One run (a few minutes on 2 cores) of the whole pipeline on examples/recipe/preferences.jsonl,
then each stage's output is checked on disk. SmolLM2-135M is a real but far too small teacher:
it passes RM-R1's filter only on the example's verdict-tag questions, which it echoes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmr1_plugins.cli import main
from rmr1_plugins.recipe.distill import is_correct
from rmr1_plugins.recipe.sources import read_jsonl
from rmr1_plugins.templates import template_text
from rmr1_plugins.testing import tiny_llama

pytest.importorskip("trl")
EXAMPLE = Path(__file__).parents[2] / "examples" / "recipe" / "preferences.jsonl"
pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, smollm2_dir, readme):
    """The README's demo command, as written there (with this run's folder for -o)."""
    out = tmp_path_factory.mktemp("recipe-run")
    models = {
        "python -m rmr1_plugins.testing smollm2": str(smollm2_dir),
        "python -m rmr1_plugins.testing tiny-llama": str(tiny_llama()),
    }
    argv = readme.argv(readme.command("rmr1 recipe run "), models)
    assert argv[:3] == ["recipe", "run", "examples/recipe/preferences.jsonl"]
    argv[2] = str(EXAMPLE)
    argv[argv.index("-o") + 1] = str(out)
    assert main(argv) == 0
    return out


def test_prepare_wrote_rendered_rows_and_held_out_pairs(run_dir):
    stats = json.loads((run_dir / "data" / "prepare_stats.json").read_text())
    assert stats["parts"] == {"eval": 2, "distill": 5, "rl": 5}
    assert stats["budget_checked"] and stats["over_budget"] == 0
    for part in ("distill", "rl"):
        for row in read_jsonl(run_dir / "data" / f"{part}.jsonl"):
            assert row["context_messages"][0]["content"] == template_text(
                "INSTRUCT_SYSTEM_PROMPT.txt"
            )
            assert row["winner"] in ("model_a", "model_b")
    assert {"context", "response_a", "response_b", "label"} <= set(
        read_jsonl(run_dir / "data" / "eval.jsonl")[0]
    )


def test_distill_kept_only_traces_with_the_right_verdict(run_dir):
    rows = {row["id"]: row for row in read_jsonl(run_dir / "data" / "distill.jsonl")}
    traces = read_jsonl(run_dir / "distill" / "traces.jsonl")
    first = {t["id"]: t for t in traces if t["pass"] == 1}
    second = {t["id"]: t for t in traces if t["pass"] == 2}
    assert set(first) == set(rows)
    assert set(second) == {
        i for i, t in first.items() if not t["correct"]
    }  # pass 2 = the wrong ones
    sft = read_jsonl(run_dir / "distill" / "sft.jsonl")
    assert len(sft) >= 1
    for row in sft:
        assert row["prompt"] == rows[row["id"]]["context_messages"]
        assert is_correct(row["completion"][0]["content"], rows[row["id"]]["winner"])
    stats = json.loads((run_dir / "distill" / "distill_stats.json").read_text())
    assert (
        stats["sft_rows"] == len(sft) == stats["first_pass_correct"] + stats["second_pass_correct"]
    )


def test_both_stages_trained_and_saved_a_checkpoint(run_dir):
    from safetensors.torch import load_file

    summary = json.loads((run_dir / "run_summary.json").read_text())
    student = load_file(Path(tiny_llama()) / "model.safetensors")
    sft = load_file(run_dir / "sft" / "model" / "model.safetensors")
    assert any(not student[k].equal(sft[k]) for k in student)  # the SFT steps moved the weights
    assert summary["sft_log"][0]["loss"] > 0
    assert (run_dir / "rlvr" / "model" / "tokenizer.json").exists()
    rewards = [e["rewards/rmr1_verifiable_reward/mean"] for e in summary["rl_log"] if "reward" in e]
    assert len(rewards) == 2 and all(-1.0 <= r <= 1.0 for r in rewards)


def test_rmr1_score_judged_the_held_out_pairs_with_the_final_checkpoint(run_dir):
    summary = json.loads((run_dir / "run_summary.json").read_text())
    assert summary["rl_model"] == str(run_dir / "rlvr" / "model")
    results = read_jsonl(run_dir / "scores.jsonl")
    held_out = read_jsonl(run_dir / "data" / "eval.jsonl")
    assert [r["id"] for r in results] == [p["id"] for p in held_out]
    assert all(r["judgments"][0]["completion"] for r in results)  # the tiny model wrote something
    assert summary["score_summary"]["pairs"] == 2


def test_skip_sft_trains_rl_only_without_a_teacher(tmp_path):
    """RM-R1's DeepSeek-distilled family: the reasoning template, no stage 1."""
    argv = ["recipe", "run", str(EXAMPLE), "-o", str(tmp_path), "--preset", "cpu-tiny"]
    argv += ["--student", str(tiny_llama()), "--skip-sft", "--template", "rmr1-reasoning"]
    argv += ["--eval-size", "1", "--rl-set", "max_steps=1"]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "run_summary.json").read_text())
    assert summary["prepare"]["parts"] == {"eval": 1, "distill": 0, "rl": 11}
    assert "distill" not in summary and not (tmp_path / "sft").exists()
    (row,) = read_jsonl(tmp_path / "data" / "rl.jsonl")[:1]
    assert [m["role"] for m in row["context_messages"]] == ["user"]  # no system message
    assert len(read_jsonl(tmp_path / "scores.jsonl")) == 1
