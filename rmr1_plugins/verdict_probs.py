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

A log-probability a server should never send (NaN, +Infinity, or above 0: a probability over 1)
makes the reading *invalid*: the verdict keeps no probability (the hard verdict stands), the
scorer counts it (``stats["invalid_probs"]``, and judge health through the judgment's
``prob_invalid``), and nothing raises.
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
    """The letter written at the last ``[[X]]`` and P(A) / (P(A) + P(B)) read there (``None``:
    the log-probabilities there were invalid)."""

    letter: str
    prob_a: float | None


LOGPROB_SLACK = 1e-4  # a server's rounding may put a sure token's log-probability just above 0


def valid_logprob(value: float) -> bool:
    """Whether ``value`` can be a log-probability: not NaN, at most 0 (−inf is probability 0)."""
    return value <= LOGPROB_SLACK  # False for NaN and +inf


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
            logprobs = [token.logprob, *([token.top[other]] if other in token.top else [])]
            if not all(valid_logprob(value) for value in logprobs):
                return VerdictProb(letter, None)
            written = math.exp(min(token.logprob, 0.0))
            alternative = math.exp(min(token.top[other], 0.0)) if other in token.top else 0.0
            total = written + alternative
            if total == 0:
                return None
            return VerdictProb(letter, written / total if letter == "A" else alternative / total)
        start = end
    return None


def probability_fields(tokens: Sequence[TokenChoice] | None) -> dict[str, Any]:
    """``Generation`` fields for the verdict probability read from a completion's ``tokens``
    (``None``: no log-probabilities; each backend reads them from its engine's own shape)."""
    read = None if tokens is None else verdict_prob_a(tokens)
    if read is None:
        return {"prob_a": None, "prob_letter": None}
    if read.prob_a is None:
        return {"prob_a": None, "prob_letter": None, "prob_invalid": True}
    return {"prob_a": read.prob_a, "prob_letter": read.letter}
