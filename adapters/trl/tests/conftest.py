"""Fixtures for the TRL extension: a scripted judge for unit tests, SmolLM2 for real runs."""

from __future__ import annotations

import pytest

from rmr1_plugins import Scorer
from rmr1_plugins.backends.base import Backend, Generation


def slots(user: str) -> tuple[str, str]:
    """The two responses of a rendered RM-R1 single-turn prompt."""

    def between(start: str, end: str) -> str:
        return user.split(start)[1].split(end)[0]

    return (
        between("[The Start of Chatbot A's Response]\n", "\n[The End of Chatbot A"),
        between("[The Start of Chatbot B's Response]\n", "\n[The End of Chatbot B"),
    )


class LongerWins(Backend):
    """A scripted judge: the longer response wins; it refuses pairs containing ``??``."""

    name = "longer-wins"

    def __init__(self) -> None:
        super().__init__("scripted")
        self.batches: list[int] = []

    def generate(self, conversations, params):
        self.batches.append(len(conversations))
        out = []
        for conversation in conversations:
            a, b = slots(conversation[-1]["content"])
            winner = "A" if len(a) > len(b) else "B"
            text = f"<eval>{len(a)} vs {len(b)}</eval><answer>[[{winner}]]</answer>"
            if "??" in a + b:
                text = "no idea"
            out.append([Generation(text, "stop") for _ in range(params.n)])
        return out


@pytest.fixture
def judge():
    backend = LongerWins()
    return Scorer(backend), backend


@pytest.fixture(scope="session")
def smollm2_dir():
    from rmr1_plugins.testing import smollm2_checkpoint

    return smollm2_checkpoint()


@pytest.fixture(scope="session")
def tiny_policy():
    from rmr1_plugins.testing import tiny_llama

    return tiny_llama()
