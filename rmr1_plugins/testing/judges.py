"""Scripted judges for fast unit tests, and the plugin that registers them by name.

Each is a :class:`~rmr1_plugins.backends.base.Backend` that answers from the rendered prompt,
without a model; none is the only test of a feature (the real engines are tested against
SmolLM2). By name, once :func:`fake_judges` has registered them as a plugin:

- ``scripted`` (:class:`ScriptedJudge`): answers ``answer(user_message, sample_index)``
  (``[[A]]`` by default), records every batch;
- ``longer-wins`` (:class:`LongerWins`): the longer response wins; ``??`` gets no verdict;
- ``always-a`` (:class:`AlwaysA`): pure position bias, with a verdict probability;
- ``votes`` / ``votes-requests`` (:class:`VotesJudge`): ``r<i>`` in slot A gets the reward
  :func:`expected_reward`; records batch sizes and conversations; injectable faults
  (``boom``, ``refused``, ``flaky``, ``gate:<port>``, ``stuck``, ``slow:<s>``, ``mute``, ``cut``;
  see the class);
- ``ranker`` / ``ranker-requests`` (:class:`RankerJudge`): the larger number wins;
- ``parity-judge``: the recording judge of :mod:`rmr1_plugins.testing.parity`.

The ``-requests`` twins set ``independent_requests`` (each conversation its own request, as a
server API such as ``openai`` is called).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rmr1_plugins.backends.base import (
    Backend,
    BackendError,
    ChatMessages,
    Generation,
    SamplingParams,
)
from rmr1_plugins.hookspecs import KINDS, Register, hookimpl

PLUGIN_NAME = "rmr1-testing"
SLOT_A = re.compile(r"\[The Start of Chatbot A's Response\]\n(.*?)\n\[The End of Chatbot A's")


class ScriptedJudge(Backend):
    """Answers ``answer(user_message, sample_index)`` (default ``[[A]]``) for every sample;
    ``batches`` records every call's conversations."""

    name = "scripted"

    def __init__(
        self,
        answer: Callable[[str, int], str] | None = None,
        model: str | None = "scripted-model",
        options: dict | None = None,
    ) -> None:
        super().__init__(model, options)
        self.answer = answer or (lambda user, i: "<answer>[[A]]</answer>")
        self.batches: list[list[ChatMessages]] = []

    def generate(
        self, conversations: Sequence[ChatMessages], params: SamplingParams
    ) -> list[list[Generation]]:
        self.batches.append(list(conversations))
        return [
            [
                Generation(self.answer(conv[-1]["content"], i), "stop")
                for i in range(params.num_samples)
            ]
            for conv in conversations
        ]


class ScriptedByName(ScriptedJudge):
    """``scripted`` as a configuration names it (``backend: {name: scripted}``): built like
    every backend, from a model and options, with the default answer ``[[A]]``."""

    def __init__(self, model: str | None = None, options: dict | None = None) -> None:
        super().__init__(None, model or "scripted-model", options)


def response_slots(user_message: str) -> tuple[str, str]:
    """The two responses of a rendered RM-R1 single-turn prompt (slot A, slot B)."""

    def between(start: str, end: str) -> str:
        return user_message.split(start)[1].split(end)[0]

    return (
        between("[The Start of Chatbot A's Response]\n", "\n[The End of Chatbot A"),
        between("[The Start of Chatbot B's Response]\n", "\n[The End of Chatbot B"),
    )


def value(text: str) -> float:
    """The number that ends ``text`` (the answers of :func:`rmr1_plugins.testing.group`)."""
    return float(text.split()[-1])


def ranker(user: str, _: int) -> str:
    """An ``answer`` for :class:`ScriptedJudge`, a perfect judge: the answer with the larger
    number (:func:`value`) wins; a ``?`` in either answer gets no verdict."""
    a, b = response_slots(user)
    if "?" in a or "?" in b:
        return "I cannot decide."
    return f"<eval>compared</eval>\n<answer>[[{'A' if value(a) > value(b) else 'B'}]]</answer>"


class LongerWins(Backend):
    """A scripted judge for unit tests: the longer response wins; pairs containing ``??`` get
    a judgment without a verdict. ``batches`` records the size of every backend call, ``seen``
    every conversation sent."""

    name = "longer-wins"

    def __init__(self, model: str | None = "scripted", options: dict | None = None) -> None:
        super().__init__(model, options)
        self.batches: list[int] = []
        self.seen: list[ChatMessages] = []

    def generate(
        self, conversations: Sequence[ChatMessages], params: SamplingParams
    ) -> list[list[Generation]]:
        self.batches.append(len(conversations))
        self.seen.extend(conversations)
        out = []
        for conversation in conversations:
            a, b = response_slots(conversation[-1]["content"])
            winner = "A" if len(a) > len(b) else "B"
            text = f"<eval>{len(a)} vs {len(b)}</eval><answer>[[{winner}]]</answer>"
            if "??" in a + b:
                text = "no idea"
            out.append([Generation(text, "stop") for _ in range(params.num_samples)])
        return out


class AlwaysA(Backend):
    """A scripted judge with pure position bias, for the judge-health tests: every judgment is
    ``[[A]]`` with the verdict probability ``prob`` (option, default 0.9) for slot A as shown."""

    name = "always-a"

    def __init__(self, model: str | None = "scripted", options: dict | None = None) -> None:
        super().__init__(model, None)
        self.prob = float((options or {}).get("prob", 0.9))

    def generate(
        self, conversations: Sequence[ChatMessages], params: SamplingParams
    ) -> list[list[Generation]]:
        text = "<eval>A, always.</eval><answer>[[A]]</answer>"
        return [
            [
                Generation(text, "stop", prob_a=self.prob, prob_letter="A")
                for _ in range(params.num_samples)
            ]
            for _ in conversations
        ]


def expected_reward(i: int, samples: int = 8) -> float:
    return min(i % 9, samples) / samples


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens here once the socket is closed


class VotesJudge(Backend):
    """Reads the response in slot A. For ``r<i>`` it answers, of ``params.num_samples`` samples,
    the first ``i % 9`` with ``[[A]]`` and the rest with ``[[B]]`` (so with 8 samples the reward
    is ``(i % 9) / 8``: each request's right answer differs from most others'). Fault markers:

    - ``boom``: the call raises (a failing engine); ``refused``: it connects to a closed port on
      127.0.0.1 (a real refused connection); ``flaky``: fails the first time only;
    - ``gate:<port>``: the call connects to 127.0.0.1:<port> and waits for a line from it (a
      test holds the sample in the judge for as long as it likes, without a clock);
    - ``stuck``: the call waits, in a thread, for an event nobody sets (a hung engine call that
      no cancellation ends); it prints ``votes judge: stuck`` to stderr first;
    - ``slow:<s>``: the call sleeps ``s`` seconds; ``mute``: no verdict; ``cut``: no verdict and
      ``finish_reason="length"`` (a truncated judgment).
    """

    name = "votes"

    def __init__(self, model=None, options=None) -> None:
        super().__init__(model or "votes-judge", options)
        self.batches: list[int] = []
        self.conversations: list[ChatMessages] = []
        self.failed_once: set[str] = set()

    def generate(self, conversations, params: SamplingParams):
        return asyncio.run(self.agenerate(conversations, params))

    async def agenerate(self, conversations, params: SamplingParams):
        self.batches.append(len(conversations))
        self.conversations.extend(conversations)
        # reading the prompts in a thread: a judge's work is not the server's event loop's
        texts = await asyncio.to_thread(lambda: [_slot_a(c[-1]["content"]) for c in conversations])
        delay = max((float(m) for t in texts for m in re.findall(r"slow:([\d.]+)", t)), default=0)
        if delay:
            await asyncio.sleep(delay)
        if any("stuck" in t for t in texts):
            print("votes judge: stuck", file=sys.stderr, flush=True)
            await asyncio.to_thread(threading.Event().wait)
        for port in {int(m) for t in texts for m in re.findall(r"gate:(\d+)", t)}:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reader.readline()
            writer.close()
        for text in texts:
            if "boom" in text:
                raise BackendError(f"injected failure for {text!r}")
            if "refused" in text:
                await asyncio.open_connection("127.0.0.1", closed_port())
            if "flaky" in text and text not in self.failed_once:
                self.failed_once.add(text)
                raise BackendError(f"injected one-off failure for {text!r}")
        return [[_answer(text, j) for j in range(params.num_samples)] for text in texts]


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


class RequestsJudge(VotesJudge):
    """``votes`` as a server API: each conversation is its own request (like ``openai``)."""

    name = "votes-requests"
    independent_requests = True


SLOT_B = re.compile(r"\[The Start of Chatbot B's Response\]\n(.*?)\n\[The End of Chatbot B's")


class RankerJudge(Backend):
    """A perfect pairwise judge: the response with the larger number wins (for in-group rewards).

    ``slow:<s>`` in either response delays the call; ``boom`` makes it fail.
    """

    name = "ranker"

    def generate(self, conversations, params: SamplingParams):
        return asyncio.run(self.agenerate(conversations, params))

    async def agenerate(self, conversations, params: SamplingParams):
        pairs, delay, boom = await asyncio.to_thread(_read_pairs, conversations)
        if delay:
            await asyncio.sleep(delay)
        if boom:
            raise BackendError("injected failure")
        return [[_ranked(a, b)] * params.num_samples for a, b in pairs]


class RankerRequests(RankerJudge):
    """``ranker`` as a server API: each conversation is its own request, so a slow one holds up
    no other (a batched engine call holds up its whole batch)."""

    name = "ranker-requests"
    independent_requests = True


def _read_pairs(conversations) -> tuple[list[tuple[str, str]], float, bool]:
    """The two responses of each prompt, the longest ``slow:`` delay, whether ``boom`` is in."""
    pairs = []
    for conversation in conversations:
        user = conversation[-1]["content"]
        a, b = SLOT_A.search(user), SLOT_B.search(user)
        pairs.append((a.group(1) if a else "", b.group(1) if b else ""))
    texts = " ".join(a + " " + b for a, b in pairs)
    delay = max((float(m) for m in re.findall(r"slow:([\d.]+)", texts)), default=0)
    return pairs, delay, "boom" in texts


def _ranked(a: str, b: str) -> Generation:
    def number(text: str) -> float:
        found = re.findall(r"(\d+(?:\.\d+)?)", text)
        return float(found[0]) if found else 0.0

    return Generation(f"<answer>[[{'A' if number(a) > number(b) else 'B'}]]</answer>", "stop")


BACKENDS: dict[str, Any] = {
    "scripted": ScriptedByName,
    "longer-wins": LongerWins,
    "always-a": AlwaysA,
    "votes": VotesJudge,
    "votes-requests": RequestsJudge,
    "ranker": RankerJudge,
    "ranker-requests": RankerRequests,
    "parity-judge": "rmr1_plugins.testing.parity:RecordingJudge",
}


@hookimpl
def rmr1_register_backends(register: Register) -> None:
    for name, target in BACKENDS.items():
        register(name, target)


@contextlib.contextmanager
def registered(plugin: object, name: str) -> Iterator[None]:
    """``plugin`` (a module or object with ``@hookimpl`` functions) registered with the process's
    plugins for the block, as an installed plugin would be; what it registered is gone after.
    Re-entrant: a plugin already registered under ``name`` stays as it is."""
    from rmr1_plugins.plugins import get_plugins

    plugins = get_plugins()
    if plugins.manager.get_plugin(name) is not None:
        yield
        return
    before = {kind: set(plugins.registries[kind].entries) for kind in KINDS}
    plugins.manager.register(plugin, name=name)
    try:
        for kind in KINDS:  # every plugin's hook again: a same-target entry is kept as it is
            plugins._call_register(kind)
        yield
    finally:
        plugins.manager.unregister(name=name)
        for kind in KINDS:
            registry = plugins.registries[kind]
            for added in set(registry.entries) - before[kind]:
                del registry.entries[added]
                registry._resolved.pop(added, None)


def backends_registered(backends: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """A test's own backends (``{name: class}``) registered as one plugin for the block."""

    class TestBackends:
        @hookimpl
        def rmr1_register_backends(self, register: Register) -> None:
            for name, target in backends.items():
                register(name, target)

    return registered(TestBackends(), "test-backends: " + ", ".join(sorted(backends)))


def fake_judges() -> contextlib.AbstractContextManager[None]:
    """The judges above registered by name for the block (the ``fake_judges`` fixture)."""
    return registered(sys.modules[__name__], PLUGIN_NAME)


_FOR_GOOD: list[contextlib.AbstractContextManager[None]] = []


def register_in_worker() -> None:
    """Register the judges for the rest of the process: for a worker process that a test
    starts (a Ray worker's setup hook), never for the test process itself."""
    block = fake_judges()
    block.__enter__()
    _FOR_GOOD.append(block)  # kept: a collected block would close, unregistering the judges
