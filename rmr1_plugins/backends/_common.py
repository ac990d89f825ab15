"""Helpers shared by the engine backends: stop strings and fitting prompts into a context."""

from __future__ import annotations

import re
from collections.abc import Callable

from rmr1_plugins.backends.base import BackendError, SamplingParams

ANSWER_STOP = "</answer>"
TRUNCATION_MARK = "\n[...]\n"
_OPEN_ANSWER = re.compile(r"<answer>[^<]*\Z")


class PromptTooLongError(BackendError, ValueError):
    """A rendered prompt does not fit the model's context (``max_model_len``)."""


def stop_strings(params: SamplingParams, stop_at_answer: bool) -> list[str]:
    """The caller's stop strings, plus ``</answer>`` when generation should end at the verdict."""
    stops = list(params.stop)
    if stop_at_answer and ANSWER_STOP not in stops:
        stops.append(ANSWER_STOP)
    return stops


def restore_answer_stop(text: str, finish_reason: str | None, stop_at_answer: bool) -> str:
    """Put back a ``</answer>`` that a server stripped when it stopped on it.

    OpenAI-style servers drop the matched stop string from the text; the parsers need the
    closing tag, so it is re-appended when the text ends inside an open ``<answer>`` block.
    """
    if stop_at_answer and finish_reason == "stop" and _OPEN_ANSWER.search(text):
        return text + ANSWER_STOP
    return text


def split_cut(len_a: int, len_b: int, cut: int) -> tuple[int, int]:
    """How many tokens to cut from each response: the longer one first, then both evenly."""
    gap = abs(len_a - len_b)
    first = min(cut, gap)
    rest = cut - first
    cut_long, cut_short = first + (rest + 1) // 2, rest // 2
    return (cut_long, cut_short) if len_a >= len_b else (cut_short, cut_long)


def cut_middle(ids: list[int], keep: int, decode: Callable[[list[int]], str]) -> str:
    """Keep the first and last ``keep / 2`` tokens, joined by :data:`TRUNCATION_MARK`.

    The middle goes because a response's opening (its approach) and its end (its final answer)
    matter most to a judge.
    """
    if keep >= len(ids):
        return decode(ids)
    head = (keep + 1) // 2
    tail = keep - head
    return decode(ids[:head]) + TRUNCATION_MARK + (decode(ids[-tail:]) if tail else "")
