"""A scripted judge with injectable faults, and a launcher that serves it with ``rmr1 serve``.

``python tests/serving.py serve --backend votes ...`` runs the real ``rmr1 serve`` command with
this backend registered under the name ``votes``, as a plugin would register it.

The judge reads the response in slot A. For ``r<i>`` it answers, of ``params.n`` samples, the
first ``i % 9`` with ``[[A]]`` and the rest with ``[[B]]``, so with 8 samples the reward is
``(i % 9) / 8``: each request's right answer differs from most others'. Fault markers in the
response:

- ``boom``: the call raises (a failing engine); ``refused``: it connects to a closed port on
  127.0.0.1 (a real refused connection); ``flaky``: fails the first time only;
- ``slow:<s>``: the call sleeps ``s`` seconds; ``mute``: no verdict; ``cut``: no verdict and
  ``finish_reason="length"`` (a truncated judgment).
"""

from __future__ import annotations

import asyncio
import re
import socket
import sys

from rmr1_plugins.backends.base import Backend, BackendError, Generation, SamplingParams

SLOT_A = re.compile(r"\[The Start of Chatbot A's Response\]\n(.*?)\n\[The End of Chatbot A's")


def expected_reward(i: int, samples: int = 8) -> float:
    return min(i % 9, samples) / samples


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens here once the socket is closed


class VotesJudge(Backend):
    name = "votes"

    def __init__(self, model=None, options=None) -> None:
        super().__init__(model or "votes-judge", options)
        self.batches: list[int] = []
        self.seen: set[str] = set()

    def generate(self, conversations, params: SamplingParams):
        return asyncio.run(self.agenerate(conversations, params))

    async def agenerate(self, conversations, params: SamplingParams):
        self.batches.append(len(conversations))
        texts = [_slot_a(conversation[-1]["content"]) for conversation in conversations]
        delay = max((float(m) for t in texts for m in re.findall(r"slow:([\d.]+)", t)), default=0)
        if delay:
            await asyncio.sleep(delay)
        for text in texts:
            if "boom" in text:
                raise BackendError(f"injected failure for {text!r}")
            if "refused" in text:
                await asyncio.open_connection("127.0.0.1", closed_port())
            if "flaky" in text and text not in self.seen:
                self.seen.add(text)
                raise BackendError(f"injected one-off failure for {text!r}")
        return [[_answer(text, j) for j in range(params.n)] for text in texts]


def _slot_a(user: str) -> str:
    found = SLOT_A.search(user)
    return found.group(1) if found else ""


def _answer(text: str, j: int) -> Generation:
    if "cut" in text:
        return Generation("The first response is the first response is the", "length")
    if "mute" in text:
        return Generation("Both are fine.", "stop")
    number = re.search(r"r(\d+)", text)
    wins = int(number.group(1)) % 9 if number else 0
    return Generation(f"<answer>[[{'A' if j < wins else 'B'}]]</answer>", "stop")


def register() -> None:
    from rmr1_plugins.plugins import get_plugins

    get_plugins().registries["backends"].add("votes", VotesJudge, "tests/serving.py")
    get_plugins().registries["backends"].add("votes-requests", RequestsJudge, "tests/serving.py")


class RequestsJudge(VotesJudge):
    """``votes`` as a server API: each conversation is its own request (like ``openai``)."""

    name = "votes-requests"
    independent_requests = True


if __name__ == "__main__":
    from rmr1_plugins.cli import main

    register()
    sys.exit(main(sys.argv[1:]))
