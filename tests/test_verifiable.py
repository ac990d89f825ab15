import json
import logging
from pathlib import Path

import pytest

from rmr1_plugins.rewards.verifiable import VerifiableReward, verifiable_reward

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
    assert verifiable_reward(completion, label, rule="strict") == strict


def test_bad_label_raises_outside_training_and_is_neutral_inside(caplog):
    with pytest.raises(ValueError, match="label must be 'A', 'B', 'model_a' or 'model_b'"):
        verifiable_reward("<answer>[[A]]</answer>", "tie")
    reward = VerifiableReward(fallback=0.0)
    with caplog.at_level(logging.WARNING):
        rewards = reward(["<answer>[[A]]</answer>"] * 3, ["model_a", None, "C"])
    assert rewards == [1.0, 0.0, 0.0]
    assert "2 of 3 rows" in caplog.text
    assert VerifiableReward(fallback=None)(["x"], [7]) == [None]


def test_unknown_rule_and_length_mismatch_are_errors():
    with pytest.raises(ValueError, match="rule must be one of rmr1-train, strict"):
        VerifiableReward(rule="lenient")
    with pytest.raises(ValueError, match="2 completions but 1 labels"):
        VerifiableReward()(["a", "b"], ["A"])
