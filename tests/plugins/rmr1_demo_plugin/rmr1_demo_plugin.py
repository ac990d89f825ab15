"""A demo third-party plugin, one of each kind: a ``final-line`` template and parser (the verdict
written as ``FINAL: A``), a ``demo-shorter`` backend (a judge without a model that prefers the
shorter answer), a ``demo-ladder`` strategy and an ``rmr1 demo-tally`` subcommand. It is the
worked example of docs/plugins.md, which quotes it (tests/test_demo_plugin.py checks the quotes).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Sequence
from typing import Literal

from rmr1_plugins import (
    Backend,
    Generation,
    PairwiseExample,
    SamplingParams,
    Strategy,
    UsageError,
    get_parser,
    hookimpl,
)
from rmr1_plugins.backends.base import BackendOptions
from rmr1_plugins.rewards.strategies import Play

# --- template


class FinalLineTemplate:
    """The conversation, each answer as one JSON string on its own line, then the question."""

    name = "final-line"

    def render(self, example: PairwiseExample) -> list[dict[str, str]]:
        chat = "\n".join(f"{turn.role}: {turn.content}" for turn in example.context)
        answers = f"A: {json.dumps(example.response_a)}\nB: {json.dumps(example.response_b)}"
        question = "Which answer is better? End with FINAL: A or FINAL: B."
        return [{"role": "user", "content": f"{chat}\n\n{answers}\n{question}"}]


# --- parser


class FinalLineParser:
    name = "final-line"

    def parse(self, completion: str) -> str | None:
        found = re.findall(r"FINAL: ([AB])\b", completion)
        return found[-1] if found else None


# --- backend


class ShorterOptions(BackendOptions):
    tie_break: Literal["A", "B"] = "A"  # the verdict when both answers are as long


class ShorterBackend(Backend):
    """A judge without a model: the shorter answer of a ``final-line`` prompt wins."""

    name = "demo-shorter"
    Options = ShorterOptions
    opts: ShorterOptions

    def generate(
        self, conversations: Sequence[Sequence[dict[str, str]]], params: SamplingParams
    ) -> list[list[Generation]]:
        verdicts = [self.judge(messages[-1]["content"]) for messages in conversations]
        return [[Generation(v, finish_reason="stop")] * params.num_samples for v in verdicts]

    def judge(self, prompt: str) -> str:
        try:  # the answer lines: json.dumps keeps each answer on one line
            a, b = (json.loads(line[len("A: ") :]) for line in prompt.splitlines()[-3:-1])
        except (ValueError, TypeError):  # not two JSON lines, or not strings
            return "not a final-line prompt"
        if len(a) == len(b):
            return f"FINAL: {self.opts.tie_break}"
        return "FINAL: A" if len(a) < len(b) else "FINAL: B"


# --- strategy


class LadderStrategy(Strategy):
    """Each completion against the next one (G - 1 pairs); the reward is the mean outcome."""

    name = "demo-ladder"

    def play(self, size: int, rng: random.Random) -> Play:
        if size < 2:
            return [None] * size  # nothing to compare
        pairs = [(i, i + 1) for i in range(size - 1)]
        outcomes = yield pairs  # one (first's, second's) credit per pair, None if excluded
        credit: list[list[float]] = [[] for _ in range(size)]
        for (first, second), scores in zip(pairs, outcomes, strict=True):
            if scores is not None:
                credit[first].append(scores[0])
                credit[second].append(scores[1])
        return [sum(c) / len(c) if c else None for c in credit]

    def comparisons(self, size: int) -> int:
        return max(size - 1, 0)


# --- registration: lazy "module:attr" targets, imported on first use


@hookimpl
def rmr1_register_templates(register):
    register("final-line", "rmr1_demo_plugin:FinalLineTemplate")


@hookimpl
def rmr1_register_parsers(register):
    register("final-line", "rmr1_demo_plugin:FinalLineParser")


@hookimpl
def rmr1_register_backends(register):
    register("demo-shorter", "rmr1_demo_plugin:ShorterBackend")


@hookimpl
def rmr1_register_strategies(register):
    register("demo-ladder", "rmr1_demo_plugin:LadderStrategy")


# --- a subcommand


@hookimpl
def rmr1_add_subcommands(subparsers):
    tally = subparsers.add_parser(
        "demo-tally", help="count the FINAL: verdicts in a JSONL file of completions (demo plugin)"
    )
    tally.add_argument("file", help="JSONL of {completion}")
    tally.set_defaults(func=cmd_tally)


def cmd_tally(args: argparse.Namespace) -> int:
    parser = get_parser("final-line")
    counts = {"A": 0, "B": 0, "none": 0}
    with open(args.file, encoding="utf-8") as handle:
        for line, text in enumerate(handle, 1):
            try:
                row = json.loads(text)
            except ValueError:
                raise UsageError(f"{args.file}, line {line}: not JSON") from None
            completion = row.get("completion") if isinstance(row, dict) else None
            if not isinstance(completion, str):
                raise UsageError(f"{args.file}, line {line}: field 'completion' must be a string")
            counts[parser.parse(completion) or "none"] += 1
    print(json.dumps(counts))
    return 0
