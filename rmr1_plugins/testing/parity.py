"""The parity case: one chat with a system turn, three completions, a reference, a recording judge.

Every integration's parity test (tests/test_parity.py and one per adapter environment) sends this
case through its trainer's calling convention and compares what it got with the Python API
(:func:`api`): the judge prompts (the exact chat messages the template rendered), the rewards, and
the logged keys of the metrics contract with their values must be equal (:func:`assert_same`).

The judge (``parity-judge``) prefers a correct answer (one that
says 4), then the shorter one, whatever the order: ``4`` > ``The answer is four.`` > ``5``. It
appends every pair it is asked to judge to the JSONL file in its ``record`` option, so prompts
judged in a server subprocess are recorded too. It is one of the judges that
:func:`~rmr1_plugins.testing.judges.fake_judges` registers; :class:`Serve` runs ``rmr1 serve``
with them (:mod:`rmr1_plugins.testing.serving`).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmr1_plugins.backends.base import Backend, BackendOptions, Generation, SamplingParams
from rmr1_plugins.testing.judges import fake_judges, response_slots

SYSTEM = "Be terse."
QUESTION = "What is 2+2?"
PROMPT = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
COMPLETIONS = ["4", "5", "The answer is four."]
REFERENCE = "4"
STRATEGIES = ("reference", "round-robin")
# What the judge's preference gives: against the reference "4" itself a tie (identical texts),
# the other two lose; in round-robin "4" beats both, "four" beats "5".
EXPECTED = {"reference": [0.5, 0.0, 0.0], "round-robin": [1.0, 0.0, 0.5]}
# The fallback case: a completion the judge gives no verdict on (MUTE), with on_unparsed:
# exclude, and (separately) an empty reference. None marks the fallback (TRL's reward; the
# OpenRLHF paths give reward.fallback).
MUTE = "???"
FALLBACK_COMPLETIONS = ["4", "5", MUTE]
EXCLUDE = {"on_unparsed": "exclude"}
EXPECTED_FALLBACK = {"reference": [0.5, 0.0, None], "round-robin": [1.0, 0.0, None]}
# PROMPT through SmolLM2-135M-Instruct's chat template (add_generation_prompt=True), as
# OpenRLHF formats it with --data.apply_chat_template; the openrlhf parity test checks it
# against the real tokenizer.
CHATML = (
    f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n"
    "<|im_start|>assistant\n"
)
SLOT_A = "[The Start of Chatbot A's Response]"
END = "<|im_end|>"  # SmolLM2's end of turn, decoded with the response (special tokens kept)


class RecordingOptions(BackendOptions):
    record: str | None = None


class RecordingJudge(Backend):
    """Prefers the correct, then the shorter response; records every pair it is asked to judge.

    A conversation that holds no pair (the reward service's one-line warm-up call) is answered
    and not recorded: it is no judge prompt.
    """

    name = "parity-judge"
    Options = RecordingOptions
    opts: RecordingOptions
    _lock = threading.Lock()

    def generate(self, conversations, params: SamplingParams) -> list[list[Generation]]:
        pairs = [c for c in conversations if SLOT_A in c[-1]["content"]]
        if self.opts.record and pairs:
            with self._lock, open(self.opts.record, "a", encoding="utf-8") as out:
                for conversation in pairs:
                    out.write(json.dumps([dict(m) for m in conversation]) + "\n")
        return [[verdict(c[-1]["content"])] * params.num_samples for c in conversations]


def preference(text: str) -> tuple[bool, int]:
    return "4" in text or "four" in text.lower(), -len(text)


def verdict(user: str) -> Generation:
    if SLOT_A not in user:
        return Generation("OK", "stop")
    a, b = response_slots(user)
    if MUTE in (a, b):
        return Generation("I cannot decide.", "stop")  # no verdict
    winner = "A" if preference(a) > preference(b) else "B"
    return Generation(f"<eval>{a!r} vs {b!r}</eval>\n<answer>[[{winner}]]</answer>", "stop")


def write_config(folder: Path, name: str, **reward: Any) -> tuple[Path, Path]:
    """A YAML config for one path (judge both orders, record to ``<name>.jsonl``), and the record.

    Both orders are judged so that ``rmr1_health/orders_agree`` is measured.
    """
    record = folder / f"{name}.jsonl"
    config = folder / f"{name}.yaml"
    lines = [
        "order: both",
        f"backend: {{name: parity-judge, options: {{record: {json.dumps(str(record))}}}}}",
    ]
    if reward:
        lines.append(f"reward: {json.dumps(reward)}")
    config.write_text("\n".join(lines) + "\n")
    return config, record


def judge_prompts(record: Path) -> list[str]:
    """The recorded judge prompts, each as canonical JSON, sorted (arrival order varies)."""
    if not record.exists():
        return []
    return sorted(
        json.dumps(json.loads(line), sort_keys=True) for line in record.read_text().splitlines()
    )


@dataclass
class Outcome:
    """What one path gave for the case: judge prompts, one reward and one log per completion."""

    prompts: list[str]
    rewards: list[float | None]
    logs: list[dict[str, Any]]

    @property
    def keys(self) -> list[set[str]]:
        return [set(log) for log in self.logs]


def api(
    folder: Path,
    strategy: str,
    driver: str = "sync",
    completions: list[str] = COMPLETIONS,
    reference: str = REFERENCE,
    **reward: Any,
) -> Outcome:
    """The case through the Python API: :func:`~rmr1_plugins.score_groups` (or, with
    ``driver="async"``, ``ascore_groups``) with the settings of the same YAML file every path
    reads, and the metrics contract's per-sample logs. ``completions``, ``reference`` and
    ``reward`` settings give the fallback cases (an empty reference is none: ``no_reference``)."""
    import asyncio

    from rmr1_plugins import Group, ascore_groups, score_groups
    from rmr1_plugins.rewards.engine import texts_of
    from rmr1_plugins.rewards.metrics import judged_metrics
    from rmr1_plugins.settings import load_reward_settings

    config, record = write_config(folder, f"api-{strategy}-{driver}", **reward)
    with fake_judges():
        settings = load_reward_settings(config, reward={"strategy": strategy})
        scorer = settings.scorer.build_scorer()
    options = settings.reward
    group = Group(PROMPT, completions, reference=reference if reference.strip() else None)
    arguments: dict[str, Any] = {
        "strategy": options.build_strategy(),
        "on_unparsed": options.on_unparsed,
        "seed": options.seed,
        "outcome": options.outcome,
        "skip_invalid": True,  # a group without its reference: rewards None, not an exception
    }
    if driver == "sync":
        [result] = score_groups(scorer, [group], **arguments)
    else:
        [result] = asyncio.run(ascore_groups(scorer, [group], **arguments))
    against = options.build_strategy()
    missing = against.needs_reference and group.reference is None
    kind = "no_reference" if missing else None
    rewards = [options.scale(value, against) for value in result.rewards]
    texts = texts_of(group)
    logs = [
        judged_metrics(result, i, texts, reference=against.needs_reference, kind=kind)
        for i in range(len(completions))
    ]
    return Outcome(judge_prompts(record), rewards, logs)


def assert_same(path: str, got: Outcome, api: Outcome, fallback: float | None = None) -> None:
    """``got`` equals the Python API's outcome: judge prompts, rewards (a fallback, ``None`` in
    the API, is ``fallback`` on this path), and per sample the logged keys and their values."""
    assert_same_judging(path, got, api, fallback)
    assert got.keys == api.keys, f"{path}: logged keys {got.keys} vs {api.keys}"
    assert_same_values(path, got.logs, api.logs)


def assert_same_judging(
    path: str, got: Outcome, api: Outcome, fallback: float | None = None
) -> None:
    """The same judge prompts (as a multiset) and the same rewards as the Python API (its
    ``None``, a fallback, is ``fallback`` on this path)."""
    assert got.prompts == api.prompts, (
        f"{path}: the judge saw other prompts than the Python API:\n"
        f"{path} only: {_users(set(got.prompts) - set(api.prompts))}\n"
        f"Python API only: {_users(set(api.prompts) - set(got.prompts))}\n"
        f"counts: {len(got.prompts)} vs {len(api.prompts)}"
    )
    assert len(got.rewards) == len(api.rewards), f"{path}: {got.rewards} vs {api.rewards}"
    for mine, theirs in zip(got.rewards, api.rewards, strict=True):
        theirs = fallback if theirs is None else theirs  # the path's fallback reward
        same = mine is None if theirs is None else mine is not None and abs(mine - theirs) < 1e-6
        assert same, f"{path}: rewards {got.rewards} vs {api.rewards}"


def assert_same_values(path: str, logs: list[dict[str, Any]], api: list[dict[str, Any]]) -> None:
    """Each logged value equals the Python API's: one key means one thing on every path."""
    differ = {
        f"sample {i}: {key}": (float(mine[key]), float(theirs[key]))
        for i, (mine, theirs) in enumerate(zip(logs, api, strict=True))
        for key in theirs
        if abs(float(mine[key]) - float(theirs[key])) > 1e-6
    }
    assert not differ, f"{path}: logged values (this path, Python API) differ: {differ}"


def _users(prompts: set[str]) -> list[str]:
    """The user messages of some judge prompts, for a readable failure."""
    return sorted(json.loads(p)[-1]["content"] for p in prompts)


def check_judge_saw_the_system_turn(prompts: list[str]) -> None:
    """The pinned fact: the system turn reaches the judge, folded into the user's question."""
    assert prompts, "the judge was never asked"
    for prompt in prompts:
        user = json.loads(prompt)[-1]["content"]
        assert f"{SYSTEM}\n\n{QUESTION}" in user, user[:400]


def openrlhf_body(completions: list[str], label: Any = REFERENCE) -> dict[str, Any]:
    """``/get_reward``'s body as OpenRLHF sends it: templated query (with the end token) and
    prompt, and the ``--data.label_key`` column."""
    return {
        "query": [CHATML + c + END for c in completions],
        "prompts": [CHATML] * len(completions),
        "labels": [label] * len(completions),
    }


def from_openrlhf(record: Path, answers: list[dict[str, Any]]) -> Outcome:
    """The outcome of one OpenRLHF answer per completion (the reward file's or the server's)."""
    rewards: list[float | None] = [float(_item(answer["rewards"], 0)) for answer in answers]
    return Outcome(judge_prompts(record), rewards, [openrlhf_logs(answer) for answer in answers])


def openrlhf_logs(answer: dict[str, Any], index: int = 0) -> dict[str, Any]:
    """One sample's logs from OpenRLHF's answer shape (a list or tensor per key)."""
    return {k: _item(v, index) for k, v in answer["extra_logs"].items()}


def _item(value: Any, index: int) -> Any:
    value = value.tolist() if hasattr(value, "tolist") else value
    return value[index] if isinstance(value, list) else value


def post_each(url: str, completions: list[str], label: Any = REFERENCE) -> list[dict[str, Any]]:
    """One request per completion, all at once, as OpenRLHF's rollouts ask for rewards."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(completions)) as pool:
        bodies = [openrlhf_body([c], label) for c in completions]
        return list(pool.map(lambda body: post(url, body), bodies))


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


class Serve:
    """``rmr1 serve --config CONFIG`` with ``parity-judge`` registered, on 127.0.0.1."""

    def __init__(self, config: Path, *flags: str) -> None:
        argv = [
            sys.executable,
            "-m",
            "rmr1_plugins.testing.serving",
            "serve",
            "--config",
            str(config),
            "--port",
            "0",
        ]
        self.process = subprocess.Popen(
            [*argv, "--no-warmup", "--log-every-s", "0", *flags],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        lines: queue.Queue[str] = queue.Queue()
        stderr = self.process.stderr
        assert stderr is not None
        threading.Thread(target=lambda: [*map(lines.put, stderr)], daemon=True).start()
        seen: list[str] = []
        end = time.monotonic() + 60
        while time.monotonic() < end and self.process.poll() is None:
            try:
                seen.append(lines.get(timeout=0.2))
            except queue.Empty:
                continue
            if "ready at " in seen[-1]:
                self.url = seen[-1].split("ready at ", 1)[1].strip()
                self.base = self.url.rsplit("/", 1)[0]
                return
        self.stop()
        raise AssertionError("rmr1 serve did not start:\n" + "".join(seen))

    def __enter__(self) -> Serve:
        return self

    def __exit__(self, *_: object) -> None:
        assert self.stop() == 0

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
