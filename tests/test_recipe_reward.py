"""The stage-2 verifiable reward in TRL, OpenRLHF and veRL calling conventions."""

from __future__ import annotations

import logging
import pickle

import pytest

from rmr1_plugins.recipe.reward import compute_score, reward_func, rmr1_verifiable_reward

RIGHT_A = "<eval>A is right</eval>\n\n<answer>[[A]]</answer>"
RIGHT_B = "<eval>B is right</eval>\n\n<answer>[[B]]</answer>"


def test_trl_standard_and_conversational_completions():
    completions = [RIGHT_A, RIGHT_B, "no verdict", RIGHT_A + "x" * 60]
    winners = ["model_a", "model_a", "model_a", "model_a"]
    assert rmr1_verifiable_reward(prompts=["p"] * 4, completions=completions, winner=winners) == [
        1.0,
        -1.0,
        -1.0,
        -1.0,  # the verdict is no longer in the last 80 characters
    ]
    conversational = [[{"role": "assistant", "content": RIGHT_B}]]
    got = rmr1_verifiable_reward(
        prompts=[[{"role": "user", "content": "q"}]],
        completions=conversational,
        winner=["B"],
        completion_ids=[[1, 2]],
        trainer_state=None,
        log_metric=print,
    )
    assert got == [1.0]


def test_trl_bad_label_gives_none_and_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        got = rmr1_verifiable_reward(
            prompts=["p", "p"], completions=[RIGHT_A, RIGHT_A], winner=["tie", "A"]
        )
    assert got == [None, 1.0]
    assert "first: 'tie'" in caplog.text
    with pytest.raises(ValueError, match="needs the dataset column 'winner'"):  # a setup error
        rmr1_verifiable_reward(prompts=["p"], completions=[RIGHT_A])


def test_trl_reward_is_picklable_and_named():
    clone = pickle.loads(pickle.dumps(rmr1_verifiable_reward))
    assert clone.__name__ == "rmr1_verifiable_reward"
    assert clone(prompts=["p"], completions=[RIGHT_A], winner=["model_a"]) == [1.0]


def test_openrlhf_reward_func_reads_the_response_after_the_prompt():
    prompt = "<|im_start|>user\nWho wins? <answer>[[B]]</answer><|im_end|>\n<|im_start|>assistant\n"
    query = prompt + RIGHT_A + "<|im_end|>"
    out = reward_func([query], [prompt], ["model_a"])
    logs = {"rmr1_correct": [1.0], "rmr1_bad_input": [0.0]}
    assert out == {"rewards": [1.0], "scores": [1.0], "extra_logs": logs}
    out = reward_func([query], [prompt], [""])  # OpenRLHF's label when --data.label_key is unset
    logs = {"rmr1_correct": [0.0], "rmr1_bad_input": [1.0]}
    assert out == {"rewards": [0.0], "scores": [0.5], "extra_logs": logs}


def test_verl_compute_score_always_returns_the_same_keys():
    assert compute_score("rmr1", RIGHT_B, "model_b") == {
        "score": 1.0,
        "rmr1_correct": 1.0,
        "rmr1_bad_input": 0.0,
    }
    assert compute_score("rmr1", RIGHT_B, "model_a", extra_info={"index": 0}) == {
        "score": -1.0,
        "rmr1_correct": 0.0,
        "rmr1_bad_input": 0.0,
    }
    assert compute_score("rmr1", RIGHT_B, None) == {
        "score": 0.0,
        "rmr1_correct": 0.0,
        "rmr1_bad_input": 1.0,
    }
