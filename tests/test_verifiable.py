import json
import logging
from pathlib import Path

import pytest

from rmr1_plugins.rewards.verifiable import (
    VerifiableReward,
    grade,
    openrlhf_verifiable_reward,
    verifiable_reward,
    verl_verifiable_reward,
)

DEMO = [json.loads(line) for line in (Path(__file__).parent / "data" / "demo_outputs.jsonl").open()]


def test_official_rule_reproduces_rmr1_on_real_completions():
    for row in DEMO:
        assert verifiable_reward(row["completion"], row["label"]) == row["train_reward"]
        wrong = "model_b" if row["label"] == "model_a" else "model_a"
        assert verifiable_reward(row["completion"], wrong) == -1.0


@pytest.mark.parametrize(
    ("completion", "label", "official", "strict"),
    [
        ("<answer>[[A]]</answer>", "A", 1.0, 1.0),
        ("<answer>[[A]]</answer>", "model_b", -1.0, -1.0),
        # the verdict followed by more than ~58 characters: official rule misses it
        ("<answer>[[B]]</answer>" + " and that is final." * 5, "B", -1.0, 1.0),
        ("<answer>[[A]]</answer><answer>[[B]]</answer>", "B", -1.0, 1.0),  # both: official -1
        ("<answer>[[ B ]]</answer>", "B", -1.0, 1.0),  # spaces: only strict reads it
        ("no verdict at all", "A", -1.0, -1.0),
    ],
)
def test_rules(completion, label, official, strict):
    assert verifiable_reward(completion, label) == official
    assert verifiable_reward(completion, label, parser="strict") == strict


def test_bad_label_raises_outside_training_and_is_neutral_inside(caplog):
    with pytest.raises(ValueError, match="label must be 'A', 'B', 'model_a' or 'model_b'"):
        verifiable_reward("<answer>[[A]]</answer>", "tie")
    reward = VerifiableReward()
    with caplog.at_level(logging.WARNING):
        rewards = reward(["<answer>[[A]]</answer>"] * 3, ["model_a", None, "C"])
    assert rewards == [1.0, None, None]  # one rule: None, the neutral number where it cannot be
    assert "2 of 3 rows" in caplog.text
    assert verl_verifiable_reward("d", "x", 7) == {
        "score": 0.0,
        "rmr1_correct": 0.0,
        "rmr1_bad_input": 1.0,
    }


def test_unknown_rule_and_length_mismatch_are_errors():
    with pytest.raises(ValueError, match="parser must be one of rmr1-train, strict"):
        VerifiableReward(parser="lenient")
    with pytest.raises(ValueError, match="2 completions but 1 labels"):
        VerifiableReward()(["a", "b"], ["A"])


def test_one_grade_behind_every_trainer_shape_and_end_tokens_kept_for_openrlhf():
    # RM-R1 read the last 80 characters *with* the end-of-sequence token: 52 characters after
    # the verdict plus "<|im_end|>" (10) push it out of the window; TRL and veRL, which decode
    # without end tokens, see it.
    completion = "<answer>[[A]]</answer>" + "x" * 52
    assert grade(completion, "A").correct
    prompt = "<|im_start|>user\nWho wins?<|im_end|>\n<|im_start|>assistant\n"
    out = openrlhf_verifiable_reward([prompt + completion + "<|im_end|>"], [prompt], ["A"])
    assert out["rewards"] == [-1.0] and out["extra_logs"] == {
        "rmr1_correct": [0.0],
        "rmr1_bad_input": [0.0],
    }
    score = verl_verifiable_reward("d", completion, "A")
    assert score == {"score": 1.0, "rmr1_correct": 1.0, "rmr1_bad_input": 0.0}
    with pytest.raises(ValueError, match="parser must be one of"):
        grade("x", "A", parser="lenient")  # a wrong rule is a setup error, not a bad label
