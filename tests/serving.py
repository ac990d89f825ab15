"""A scripted judge with injectable faults, and a launcher that serves it with ``rmr1 serve``.

``python tests/serving.py serve --backend votes ...`` runs the real ``rmr1 serve`` command with
this backend registered under the name ``votes``, as a plugin would register it; :class:`Server`
starts it as a subprocess on 127.0.0.1 for the tests.

The judge reads the response in slot A. For ``r<i>`` it answers, of ``params.num_samples``
samples, the first ``i % 9`` with ``[[A]]`` and the rest with ``[[B]]``, so with 8 samples the
reward is
``(i % 9) / 8``: each request's right answer differs from most others'. Fault markers in the
response:

- ``boom``: the call raises (a failing engine); ``refused``: it connects to a closed port on
  127.0.0.1 (a real refused connection); ``flaky``: fails the first time only;
- ``gate:<port>``: the call connects to 127.0.0.1:<port> and waits for a line from it (a test
  holds the sample in the judge for as long as it likes, without a clock);
- ``stuck``: the call waits, in a thread, for an event nobody sets (a hung engine call that
  no cancellation ends); it prints ``votes judge: stuck`` to stderr first;
- ``slow:<s>``: the call sleeps ``s`` seconds; ``mute``: no verdict; ``cut``: no verdict and
  ``finish_reason="length"`` (a truncated judgment).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from rmr1_plugins.backends.base import Backend, BackendError, Generation, SamplingParams

LAUNCHER = Path(__file__)
PROMPT = "<|im_start|>user\nSay something.<|im_end|>\n<|im_start|>assistant\n"
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
            if "flaky" in text and text not in self.seen:
                self.seen.add(text)
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


class Server:
    """``rmr1 serve`` in a subprocess, with this file's judges registered; ``url`` is its reward
    endpoint. Used by the core tests and the OpenRLHF adapter's (one launcher for both)."""

    def __init__(
        self,
        *flags: str,
        env: dict[str, str] | None = None,
        backend: str = "votes",
        num_samples: int | None = 8,
        startup_s: float = 60,
    ) -> None:
        argv = [sys.executable, str(LAUNCHER), "serve", "--backend", backend, "--port", "0"]
        argv += ["--num-samples", str(num_samples)] if num_samples else []
        argv += ["--log-every-s", "0", *flags]
        self.process = subprocess.Popen(
            argv,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(sys.path),  # the test run's own imports
                "RMR1_REWARD__SERVICE__RETRY_BACKOFF_S": "0.05",
                **(env or {}),
            },
        )
        self.terminated = False
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        try:
            ready = self._wait_for("rmr1 serve: ready at ", startup_s)
        except AssertionError:
            self.stop()
            raise
        self.url = ready.split(" at ", 1)[1].strip()
        self.base = self.url.rsplit("/", 1)[0]

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.base + path, timeout=30) as response:
            return json.load(response)

    def post(self, path: str, body: object) -> tuple[int, dict]:
        """``(status, JSON body)`` of a POST, error statuses included."""
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.put(line)

    def _wait_for(self, text: str, timeout: float = 60) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.log.append(line)
            if text in line:
                return line
        raise AssertionError(f"server never printed {text!r}:\n{''.join(self.log)}")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.base.split("//", 1)[1].rsplit(":", 1)
        return host, int(port)

    def logged(self) -> str:
        """Everything the server has written to stderr so far."""
        while True:
            try:
                self.log.append(self.lines.get_nowait())
            except queue.Empty:
                return "".join(self.log)

    def terminate(self) -> None:
        """SIGTERM, once: a second one could land after the server's own shutdown."""
        if not self.terminated and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.terminated = True

    def stop(self) -> int:
        self.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def register() -> None:
    from rmr1_plugins.plugins import get_plugins

    get_plugins().registries["backends"].add("votes", VotesJudge, "tests/serving.py")
    get_plugins().registries["backends"].add("votes-requests", RequestsJudge, "tests/serving.py")
    get_plugins().registries["backends"].add("ranker", RankerJudge, "tests/serving.py")
    get_plugins().registries["backends"].add("ranker-requests", RankerRequests, "tests/serving.py")


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


if __name__ == "__main__":
    from rmr1_plugins.cli import main

    register()
    sys.exit(main(sys.argv[1:]))
