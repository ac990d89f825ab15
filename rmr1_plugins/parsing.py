"""Verdict parsers. None of them raises on any string: no verdict is ``None``, not an exception.

- ``strict``: the last ``<answer>[[X]]</answer>`` after the last ``</think>`` (what most
  users want).
- ``rmr1-eval``: RM-R1's benchmark rule: both ``[[A]]`` and ``[[B]]`` anywhere, or neither, is
  no verdict; otherwise whichever occurs.
- ``rmr1-train``: RM-R1's RL reward rule: only the last 80 characters count, and the verdict is
  the one whose full ``<answer>[[X]]</answer>`` occurs there without the other's.

The two RM-R1 rules are kept exact: literal, case-sensitive strings, no whitespace inside.
``strict`` allows whitespace inside the markup, so ``<answer>[[ A ]]</answer>`` is A for it and
no verdict for them (docs/concepts/judge.md lists the disagreements). All run in linear time.
"""

from __future__ import annotations

import re
from typing import Protocol

from rmr1_plugins.schema import ParsedParts, Verdict, normalize_label

TRAIN_TAIL_CHARS = 80
_STRICT_ANSWER = re.compile(r"<answer>\s*\[\[\s*([AB])\s*\]\]\s*</answer>")
_THINK_END = "</think>"
_SECTIONS = ("type", "rubric", "solution", "eval")


class VerdictParser(Protocol):
    """Reads the judge's verdict from its completion."""

    name: str

    def parse(self, completion: str) -> Verdict | None: ...


def after_last_think(completion: str) -> str:
    """The text after the last ``</think>``, or all of it when there is none."""
    _, found, tail = completion.rpartition(_THINK_END)
    return tail if found else completion


class StrictParser:
    """The last well-formed ``<answer>[[A]]</answer>`` / ``[[B]]`` after the last ``</think>``."""

    name = "strict"

    def parse(self, completion: str) -> Verdict | None:
        matches = _STRICT_ANSWER.findall(after_last_think(completion))
        return matches[-1] if matches else None


class RMR1EvalParser:
    """RM-R1's benchmark rule: exactly one of ``[[A]]`` / ``[[B]]`` anywhere in the output."""

    name = "rmr1-eval"

    def parse(self, completion: str) -> Verdict | None:
        has_a, has_b = "[[A]]" in completion, "[[B]]" in completion
        if has_a == has_b:
            return None
        return "A" if has_a else "B"


class RMR1TrainParser:
    """RM-R1's RL reward rule on the last 80 characters; see :func:`train_reward`."""

    name = "rmr1-train"

    def parse(self, completion: str) -> Verdict | None:
        tail = completion[-TRAIN_TAIL_CHARS:]
        has_a = "<answer>[[A]]</answer>" in tail
        has_b = "<answer>[[B]]</answer>" in tail
        if has_a == has_b:
            return None
        return "A" if has_a else "B"


def train_reward(completion: str, label: object) -> float:
    """RM-R1's verifiable reward: +1.0 iff the label's verdict alone is in the last 80 chars.

    ``label`` is ``"A"``/``"B"`` or RM-R1's ``"model_a"``/``"model_b"``; any other label raises
    ``ValueError`` (a dataset bug, not a judge error). Every judge error gives -1.0.
    """
    return 1.0 if RMR1TrainParser().parse(completion) == normalize_label(label) else -1.0


def parse_parts(completion: str) -> ParsedParts:
    """Extract ``<type>``, ``<rubric>``, ``<solution>`` and all ``<eval>`` blocks; never raises."""
    text = after_last_think(completion)
    found = {name: find_blocks(text, name) for name in _SECTIONS}
    task_type = found["type"][0].strip() if found["type"] else None
    return ParsedParts(
        task_type=task_type if task_type in ("Chat", "Reasoning") else None,
        rubric=found["rubric"][0].strip() if found["rubric"] else None,
        solution=found["solution"][0].strip() if found["solution"] else None,
        eval_text="\n".join(block.strip() for block in found["eval"]) or None,
    )


def find_blocks(text: str, tag: str) -> list[str]:
    """The contents of every ``<tag>...</tag>`` block, in order, not nested.

    The same result as ``re.findall(r"<tag>(.*?)</tag>", text, re.DOTALL)``, several times
    faster (``str.find`` instead of a lazy regex over a long completion).
    """
    opening, closing = f"<{tag}>", f"</{tag}>"
    blocks = []
    start = text.find(opening)
    while start >= 0:
        end = text.find(closing, start + len(opening))
        if end < 0:
            break
        blocks.append(text[start + len(opening) : end])
        start = text.find(opening, end + len(closing))
    return blocks
