"""Both official RM-R1 rules reproduce RM-R1's recorded results; no parser ever raises."""

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmr1_plugins import get_parser, parse_parts, train_reward
from rmr1_plugins.parsing import find_blocks

ROWS = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "demo_outputs.jsonl").read_text().splitlines()
]
A, B = "<answer>[[A]]</answer>", "<answer>[[B]]</answer>"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["variant"])
def test_official_rules_agree_with_recorded_results(row):
    assert get_parser("rmr1-eval").parse(row["completion"]) == row["eval_parse"]
    assert train_reward(row["completion"], row["label"]) == row["train_reward"]
    assert get_parser("strict").parse(row["completion"]) == row["eval_parse"]


def test_deepseek_output_has_think_end_without_start():
    row = next(r for r in ROWS if r["variant"] == "deepseek")
    assert "</think>" in row["completion"] and "<think>" not in row["completion"]
    assert get_parser("strict").parse(row["completion"]) == "A"


def test_instruct_demo_parts_are_extracted():
    row = next(r for r in ROWS if r["variant"] == "instruct")
    parts = parse_parts(row["completion"])
    assert parts.task_type == "Chat"
    assert parts.rubric and "Comprehensiveness" in parts.rubric
    assert parts.eval_text and parts.solution is None


QUIRKS = {
    # name: (completion, strict, rmr1-eval, rmr1-train verdict)
    "extra trailing </answer>": (f"<eval>x</eval>\n{A}</answer>", "A", "A", "A"),
    "echoed template then verdict": (f"format <answer>[[A/B]]</answer> ... {B}", "B", "B", "B"),
    "changes its mind": (f"I think {A}" + " hmm" * 30 + f" final: {B}", "B", None, "B"),
    "changes its mind within 80 chars": (f"I think {A} no, {B}", "B", None, None),
    "verdict in thinking only": (f"{A}</think>no answer here", None, "A", "A"),
    "answer too early for the train rule": (A + "x" * 100, "A", "A", None),
    "spaces inside the markup": ("<answer> [[ B ]] </answer>", "B", None, None),
    "both in the tail": (f"{A} {B}", "B", None, None),
    "first thought, then a spaced verdict": (
        "I first thought [[B]].\n<answer>[[ A ]]</answer>",
        "A",  # strict allows whitespace inside the markup ...
        "B",  # ... RM-R1's eval rule sees only the exact "[[B]]"
        None,
    ),
    "newlines inside the markup": ("<answer>\n[[A]]\n</answer>", "A", "A", None),
    "bare verdict without tags": ("The better one is [[A]].", None, "A", None),
    "lowercase verdict": ("<answer>[[a]]</answer>", None, None, None),
    "one verdict in thinking, the other after": (f"{A}</think>{B}", "B", None, None),
    "nothing": ("I cannot decide.", None, None, None),
    "empty": ("", None, None, None),
}


@pytest.mark.parametrize("name", sorted(QUIRKS))
def test_real_output_quirks(name):
    completion, strict, eval_rule, train_rule = QUIRKS[name]
    assert get_parser("strict").parse(completion) == strict
    assert get_parser("rmr1-eval").parse(completion) == eval_rule
    assert get_parser("rmr1-train").parse(completion) == train_rule


def test_train_rule_window_is_exactly_80_characters():
    fits = A + "y" * (80 - len(A))
    assert train_reward(fits, "model_a") == 1.0
    assert train_reward(fits + "y", "model_a") == -1.0
    assert train_reward(fits, "B") == -1.0


def test_train_reward_rejects_a_label_outside_a_b():
    with pytest.raises(ValueError, match="label must be"):
        train_reward(A, "tie")


def test_several_eval_blocks_are_all_kept():
    parts = parse_parts(
        "<type>Reasoning</type><solution>4</solution><eval>one</eval><eval>two</eval>"
    )
    assert (parts.task_type, parts.solution, parts.eval_text) == ("Reasoning", "4", "one\ntwo")


@given(st.text())
def test_parsers_never_raise(text):
    for name in ("strict", "rmr1-eval", "rmr1-train"):
        assert get_parser(name).parse(text) in ("A", "B", None)
    parse_parts(text)
    assert train_reward(text, "A") in (1.0, -1.0)


@given(st.lists(st.sampled_from(["<eval>", "</eval>", "x", "<ev", "al>", "\n", "</"])))
def test_find_blocks_matches_the_lazy_regex(pieces):
    text = "".join(pieces)
    assert find_blocks(text, "eval") == re.findall(r"<eval>(.*?)</eval>", text, re.DOTALL)
