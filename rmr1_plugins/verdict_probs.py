"""The judge's probability of A against B, read from the log-probabilities at its verdict letter.

A hard verdict throws away how sure the judge was. Backends asked for it
(``sampling.verdict_probs``) return each generated token with its top alternatives; this module
finds the token that wrote the letter of the verdict (``[[A]]`` or ``[[B]]``) and compares the
probability of that token with the probability of the same token written with the other letter.
It works whatever the tokenizer does with ``[[A]]`` (``A`` alone, ``[[A``, ``A]]``) and for a
verdict that is not the last thing written: it reads the last ``[[X]]`` of the completion and
says which letter that was, and the scorer keeps the probability only when the parser's verdict
is that letter (a completion the parser reads differently, or not at all, gets none).

An alternative missing from the top-k list is less likely than every listed one; it is counted
as probability 0, so a judge sure of its letter gives 1.0 or 0.0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

_VERDICT = re.compile(r"\[\[\s*([AB])\s*\]\]")
_OTHER = {"A": "B", "B": "A"}
TOP_LOGPROBS = 5  # alternatives requested per generated token


class TokenChoice(NamedTuple):
    """One generated token: its text, its log-probability and the top alternatives'."""

    text: str
    logprob: float
    top: Mapping[str, float]


class VerdictProb(NamedTuple):
    """The letter written at the last ``[[X]]`` and P(A) / (P(A) + P(B)) read there."""

    letter: str
    prob_a: float


def verdict_prob_a(tokens: Sequence[TokenChoice]) -> VerdictProb | None:
    """P(A) / (P(A) + P(B)) at the letter of the last ``[[A]]``/``[[B]]`` written, as shown.

    ``None`` when the completion holds no such verdict.
    """
    text = "".join(token.text for token in tokens)
    last = None
    for last in _VERDICT.finditer(text):  # noqa: B007 - keep the last match
        pass
    if last is None:
        return None
    letter, offset = last.group(1), last.start(1)
    start = 0
    for token in tokens:
        end = start + len(token.text)
        if start <= offset < end:
            other = token.text[: offset - start] + _OTHER[letter] + token.text[offset - start + 1 :]
            written = math.exp(token.logprob)
            alternative = math.exp(token.top[other]) if other in token.top else 0.0
            total = written + alternative
            if total == 0:
                return None
            return VerdictProb(letter, written / total if letter == "A" else alternative / total)
        start = end
    return None


def probability_fields(read: VerdictProb | None) -> dict[str, Any]:
    """``Generation`` fields for a verdict probability that was read (or not)."""
    if read is None:
        return {"prob_a": None, "prob_letter": None}
    return {"prob_a": read.prob_a, "prob_letter": read.letter}
