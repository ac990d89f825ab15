"""Judging while groups fill (``reward.group.stream_pairs``) against judging complete groups,
in one run.

    python bench/streaming.py                          # 32 prompts x 8 rollouts, scripted judge
    python bench/streaming.py --prompts 64 --strategy pivot --per-judgment 0.004
    python bench/streaming.py --judge vllm-serve --prompts 2 --rollouts 4   # engines venv

A step of ``--prompts`` x ``--rollouts`` rollouts, each sent on its own to a ``CohortService``
(as veRL's reward workers and ``rmr1 serve``'s ``/cohort`` do) after a log-normal generation
time (median ``--median`` s, ``--sigma``; the same draws for both modes). The scripted judge
serializes its calls and takes ``--per-call`` + ``--per-judgment`` x judgments seconds a call of
at most ``--max-batch-size`` (a throughput-bound engine); ``--judge vllm-serve`` starts
``vllm serve`` of SmolLM2 on 127.0.0.1 and judges through the ``openai`` backend.

Printed per mode (streaming on, off): the reward time after each group's last rollout (p50,
p95), the reward time after the step's last rollout, the judge's busy fraction while rollouts
were still being generated, the total step time, judgments and engine calls, fallbacks and
split members, then the ratios on / off, one judgment batch's latency, and whether both modes
gave the same rewards; with ``--memory``, the peak of the memory Python allocated in each mode
(``tracemalloc``, which slows both down: compare times from runs without it).
Nothing here touches the network but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from cohorts import verdict  # bench/, this script's folder: the same scripted verdict rule

from rmr1_plugins import Scorer
from rmr1_plugins.backends.base import Backend, SamplingParams
from rmr1_plugins.rewards.cohort_table import Member
from rmr1_plugins.rewards.cohorts import CohortService
from rmr1_plugins.rewards.config import RewardConfig

ROOT = Path(__file__).resolve().parents[1]


class Busy:
    """The judge's busy intervals (calls in flight), on ``time.monotonic``."""

    def __init__(self) -> None:
        self.intervals: list[tuple[float, float]] = []
        self.calls = 0
        self.judgments = 0
        self._inside = 0
        self._since = 0.0

    def enter(self, judgments: int) -> None:
        self.calls += 1
        self.judgments += judgments
        if self._inside == 0:
            self._since = time.monotonic()
        self._inside += 1

    def leave(self) -> None:
        self._inside -= 1
        if self._inside == 0:
            self.intervals.append((self._since, time.monotonic()))

    def within(self, start: float, end: float) -> float:
        """Seconds busy between ``start`` and ``end``."""
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in self.intervals)


class ScriptedJudge(Backend):
    """The larger number wins; one call at a time, ``per_call + per_judgment * n`` seconds."""

    name = "scripted-serial"

    def __init__(self, per_call: float, per_judgment: float) -> None:
        super().__init__("scripted-serial")
        self.per_call, self.per_judgment = per_call, per_judgment
        self.busy = Busy()
        self._lock = asyncio.Lock()

    def generate(self, conversations: Any, params: SamplingParams) -> Any:
        raise NotImplementedError("async only")

    async def agenerate(self, conversations: Any, params: SamplingParams) -> Any:
        async with self._lock:
            self.busy.enter(len(conversations))
            try:
                await asyncio.sleep(self.per_call + self.per_judgment * len(conversations))
            finally:
                self.busy.leave()
            return [[verdict(c[-1]["content"])] * params.num_samples for c in conversations]


def timed(backend: Backend) -> Busy:
    """Count ``backend``'s calls and busy time (for a real engine's backend)."""
    busy = Busy()
    inner = backend.agenerate

    async def agenerate(conversations: Any, params: SamplingParams) -> Any:
        busy.enter(len(conversations))
        try:
            return await inner(conversations, params)
        finally:
            busy.leave()

    backend.agenerate = agenerate  # type: ignore[method-assign]
    return busy


def arrivals(args: argparse.Namespace) -> list[list[float]]:
    """Each rollout's generation time (seconds after the step starts), log-normal."""
    rng = random.Random(args.seed)
    mu = math.log(args.median)
    return [
        [rng.lognormvariate(mu, args.sigma) for _ in range(args.rollouts)]
        for _ in range(args.prompts)
    ]


async def step(
    args: argparse.Namespace, backend: Backend, busy: Busy, stream: bool, times: list[list[float]]
) -> dict[str, Any]:
    config = RewardConfig(
        strategy=args.strategy,
        group={"stream_pairs": stream, "timeout_s": 600.0},
        service={
            "max_batch_size": args.max_batch_size,
            "max_wait_ms": args.max_wait_ms,
            "timeout_s": 3600.0,
            "max_concurrent_batches": args.max_concurrent_batches,
        },
    )
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens)
    scorer = Scorer(backend, sampling=sampling, cache_size=0)
    cohorts = CohortService(scorer, config, max_pending=1 << 20)  # a whole step waits here
    await cohorts.judge.start(warmup=False)
    calls, judgments = busy.calls, busy.judgments
    started = time.monotonic()

    async def rollout(i: int, j: int) -> tuple[float, float, float, bool, bool]:
        await asyncio.sleep(times[i][j])
        arrived = time.monotonic()
        value = (j + 3 * i) % args.rollouts + 1  # distinct numbers within a group, any size
        member = Member(f"p{i}", args.rollouts, f"Pick a number, prompt {i}.", f"{value}0", None)
        answer = await cohorts.reward(member)
        split = answer.kind in ("partial", "alone")
        return arrived, time.monotonic(), answer.reward, answer.fallback, split

    done = await asyncio.gather(
        *(rollout(i, j) for i in range(args.prompts) for j in range(args.rollouts))
    )
    await cohorts.aclose()
    groups = [done[i * args.rollouts : (i + 1) * args.rollouts] for i in range(args.prompts)]
    after_group = [max(d[1] for d in g) - max(d[0] for d in g) for g in groups]
    last_arrival = max(d[0] for d in done)
    last_answer = max(d[1] for d in done)
    generating = last_arrival - started
    many = len(after_group) > 1
    quantiles = statistics.quantiles(after_group, n=20, method="inclusive") if many else after_group
    return {
        "group_p50": statistics.median(after_group),
        "group_p95": quantiles[-1],
        "step_after": last_answer - last_arrival,
        "busy_generating": busy.within(started, last_arrival) / generating,
        "step": last_answer - started,
        "judgments": busy.judgments - judgments,
        "calls": busy.calls - calls,
        "early": cohorts.stats["early_pairs"],
        "fallbacks": sum(d[3] for d in done),
        "split": sum(d[4] for d in done),
        "rewards": [d[2] for d in done],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--judge", choices=["scripted", "vllm-serve"], default="scripted")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--strategy", default="round-robin")
    parser.add_argument("--median", type=float, default=2.0, help="median generation time, s")
    parser.add_argument("--sigma", type=float, default=0.5, help="log-normal sigma")
    parser.add_argument("--per-call", type=float, default=0.02, help="scripted: s per call")
    parser.add_argument("--per-judgment", type=float, default=0.003, help="scripted: s each")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--max-concurrent-batches", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=16, help="vllm-serve: per verdict")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory", action="store_true", help="peak traced memory per mode")
    parser.add_argument("--model", help="vllm-serve: checkpoint (default: SmolLM2-135M)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--log-dir", default=str(ROOT / "bench" / "results"))
    return parser.parse_args(argv)


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]], batch_s: float) -> None:
    on, off = results["on"], results["off"]
    print(
        f"\n{args.prompts} prompts x {args.rollouts} rollouts, {args.strategy}, judge {args.judge}"
        f", generation log-normal (median {args.median:g} s, sigma {args.sigma:g})"
    )
    rows = [
        ("reward time after a group's last rollout, p50 (s)", "group_p50", "{:.3f}"),
        ("reward time after a group's last rollout, p95 (s)", "group_p95", "{:.3f}"),
        ("reward time after the step's last rollout (s)", "step_after", "{:.3f}"),
        ("judge busy while generating (fraction)", "busy_generating", "{:.2f}"),
        ("total step time (s)", "step", "{:.2f}"),
        ("judgments", "judgments", "{}"),
        ("engine calls", "calls", "{}"),
        ("pairs sent early", "early", "{}"),
        ("fallbacks (timeouts included)", "fallbacks", "{}"),
        ("members judged without their whole group (split)", "split", "{}"),
    ]
    if "peak_mib" in on:
        rows.append(("peak traced memory (MiB)", "peak_mib", "{:.0f}"))
    print(f"  {'':52} {'stream on':>10} {'stream off':>10} {'on/off':>8}")
    for label, key, fmt in rows:
        a, b = on[key], off[key]
        ratio = f"{a / b:.2f}" if isinstance(b, float) and b else ""
        print(f"  {label:52} {fmt.format(a):>10} {fmt.format(b):>10} {ratio:>8}")
    print(f"  one judgment batch's latency (s): {batch_s:.3f}")
    print(
        "  step reward time after last rollout / batch latency: "
        f"on {on['step_after'] / batch_s:.2f}, off {off['step_after'] / batch_s:.2f}"
    )
    same = on["rewards"] == off["rewards"]
    drawn = RewardConfig(strategy=args.strategy).build_strategy().draws_positions
    why = " (expected: off, its positions are drawn at random; on, arrival order)" if drawn else ""
    print(f"  same rewards on and off: {same}{why}")


async def measure_batch(backend: Backend, busy: Busy, args: argparse.Namespace) -> float:
    """One full batch's latency on the judge (``--max-batch-size`` judgments in one call)."""
    if isinstance(backend, ScriptedJudge):
        return backend.per_call + backend.per_judgment * args.max_batch_size
    conversation = [
        {"role": "user", "content": "Which is better, 10 or 20? Answer [[A]] or [[B]]."}
    ]
    start = time.monotonic()
    await backend.agenerate(
        [conversation] * args.max_batch_size, SamplingParams(max_new_tokens=args.max_new_tokens)
    )
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    server = None
    if args.judge == "vllm-serve":
        sys.path.insert(0, str(ROOT / "bench"))
        from throughput import Server, set_up

        from rmr1_plugins.backends.openai import OpenAIBackend

        set_up(args)
        server = Server(args)
        print(f"vllm serve ready after {server.wait_ready():.0f} s", flush=True)
        backend: Backend = OpenAIBackend(
            "judge", {"base_url": server.base + "/v1", "max_concurrency": args.max_batch_size}
        )
        busy = timed(backend)
    else:
        backend = ScriptedJudge(args.per_call, args.per_judgment)
        busy = backend.busy
    try:
        times = arrivals(args)

        async def run() -> tuple[dict[str, dict[str, Any]], float]:
            batch_s = await measure_batch(backend, busy, args)
            results = {}
            for mode in ("on", "off"):
                print(f"streaming {mode} ...", flush=True)
                if args.memory:
                    tracemalloc.start()
                results[mode] = await step(args, backend, busy, mode == "on", times)
                if args.memory:
                    results[mode]["peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
                    tracemalloc.stop()
            return results, batch_s

        results, batch_s = asyncio.run(run())
        report(args, results, batch_s)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
