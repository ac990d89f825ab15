"""Megabyte-sized hostile inputs finish in linear time: the guard, response extraction, chat-turn
recovery and the parsers. Each input took the old code minutes to hours
(docs/guides/reliability.md);
``finishes`` fails the test after 30 s instead of hanging the suite."""

from __future__ import annotations

import pytest

from rmr1_plugins import get_parser, parse_parts
from rmr1_plugins.guards import neutralize_example, neutralize_markup
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.inputs import Sample, extract_response, recover_turns
from rmr1_plugins.rewards.samples import build_example
from rmr1_plugins.testing.hang_guard import finishes

MB = 1_000_000
SPACES = " " * MB
END = RewardConfig().inputs.end_tokens
PARSERS = ("strict", "rmr1-eval", "rmr1-train")


@pytest.mark.parametrize(
    ("text", "expected_start"),
    [
        ("<" + SPACES, "<    "),  # old: 16k spaces took 22 s, growing with the square
        ("<" + SPACES + "/" + SPACES, "<    "),
        ("<" + SPACES + "/" + SPACES + "think>", "&lt;   "),
        ("[" + SPACES, "[    "),
        ("[[" + SPACES, "[[   "),
        ("\n" + SPACES + "user" + SPACES, "\n    "),
        ("<\u00a0" * (MB // 2), "<\u00a0<"),
        ("[[\u200bA]] " * (MB // 7), "[ [A] ] "),
    ],
    ids=["lt+spaces", "lt+spaces+slash", "tag", "bracket", "brackets", "turn", "lt+nbsp", "zw"],
)
def test_guard_is_linear(text, expected_start):
    safe = finishes(neutralize_markup, text)
    assert safe.startswith(expected_start)
    assert "[[A]]" not in safe and "</think>" not in safe


def test_end_token_strip_is_linear():
    # Old: one copy of the response per stripped token; 1,000,000 "</s>" took 153 s.
    query = "PROMPT the answer" + "</s>" * MB
    assert finishes(extract_response, query, "PROMPT", END) == "the answer"
    mixed = "PROMPT 4" + "<|im_end|>\n </s>\t<|endoftext|>" * (MB // 32)
    assert finishes(extract_response, mixed, "PROMPT", END) == "4"


@pytest.mark.parametrize(
    "start",
    ["<|im_start|>user\n", "<|start_header_id|>user<|end_header_id|>\n\n", "<start_of_turn>user\n"],
    ids=["chatml", "llama3", "gemma"],
)
def test_turn_recovery_is_linear(start):
    # Old: the lazy pattern rescanned to the end from every turn start (224 KB took 26 s).
    assert finishes(recover_turns, start * (MB // len(start))) is None
    prompt = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n" + start * (MB // len(start))
    turns = finishes(recover_turns, prompt)
    assert turns is not None
    assert [(t.role, t.content) for t in turns] == [("user", "What is 2+2?")]


def test_a_whole_hostile_sample_is_built_and_guarded_in_linear_time():
    prompt = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n" + "<|im_start|>user\n" * (MB // 17)
    query = prompt + "4 <" + SPACES + "</think>" + "</s>" * (MB // 4)

    def build() -> tuple[str, str]:
        example, _ = build_example(Sample(query, prompt, "4"), RewardConfig())
        guarded = neutralize_example(example)
        return example.context[0].content, guarded.response_a[-20:]

    question, tail = finishes(build)
    assert question == "What is 2+2?"
    assert tail == " " * 6 + "&lt;/think&gt;"


@pytest.mark.parametrize(
    ("text", "verdicts"),
    [
        ("<answer>" + SPACES, [None, None, None]),
        ("<answer>[[ " + SPACES, [None, None, None]),
        ("<answer>[[A" + SPACES, [None, None, None]),
        ("<answer>[[A]] " * (MB // 14), [None, "A", None]),
        ("<answer>[[B]]</answer>" * (MB // 22), ["B", "B", "B"]),
        ("[[A]" * (MB // 4), [None, None, None]),
        ("</think>" * (MB // 8), [None, None, None]),
        ("<eval>" * (MB // 6), [None, None, None]),
        ("<type>" + SPACES + "</type" * (MB // 6), [None, None, None]),
    ],
    ids=["answer", "open", "letter", "answers", "closed", "brackets", "thinks", "evals", "types"],
)
def test_parsers_are_linear(text, verdicts):
    parsers = [get_parser(name) for name in PARSERS]  # looked up before the fork

    def parse_all() -> list[str | None]:
        parse_parts(text)
        return [parser.parse(text) for parser in parsers]

    assert finishes(parse_all) == verdicts
