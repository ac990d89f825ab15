"""Cohort mode against reference mode at RM-R1's step size, in one run.

    python bench/cohorts.py                       # 1,024 prompts x 7 rollouts, both judges
    python bench/cohorts.py --prompts 256 --cost 0.2 --max-batch-size 512

Each rollout is its own request, as OpenRLHF and veRL's reward workers send them, all arriving
at once (``--spread S`` spreads them evenly over S seconds). Reference mode judges each against
a reference answer (``RewardService.rewards``); cohort mode holds them until their group of
``--rollouts`` is whole and judges it with ``--strategy`` (``CohortService``), through the same
batching service, judging each pair as soon as both of its rollouts are there
(``reward.group.stream_pairs``, the default); ``whole`` is cohort mode with streaming off. The judge
is scripted (the larger number wins) and serializes its calls:
once with no cost, once with ``--cost`` seconds a call, whatever its size (as ``hf`` and the
offline ``vllm`` engine roughly behave for small batches).

With veRL installed (the ``verl`` nox environment), one more mode, ``naive``, is veRL 0.9.1's own
per-sample ``naive`` reward manager (``NaiveRewardManager.run_single``, tokenised rollouts) with
``rmr1_verl``'s ``compute_score``: each rollout judged against its reference in a call of its own,
with no batching across rollouts (``--no-naive`` leaves it out).

Printed per mode and judge: engine calls, judgments (pairs sent), fallbacks, members judged
without their whole group (split), the reward time after the last rollout (from the last
request's arrival to its last answer) and, with ``--memory``, the peak of the memory Python
allocated during the mode (``tracemalloc``; it slows every mode down), then the ratios
cohort / reference. Nothing here touches the network.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from rmr1_plugins import Scorer
from rmr1_plugins.backends.base import Backend, Generation, SamplingParams
from rmr1_plugins.rewards.cohort_table import Member
from rmr1_plugins.rewards.cohorts import CohortService
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.inputs import Sample
from rmr1_plugins.rewards.service import RewardService

SLOT = "[The Start of Chatbot {}'s Response]\n"


class SerialJudge(Backend):
    """The response with the larger number wins; one call at a time, ``cost`` seconds each."""

    name = "serial"

    def __init__(self, cost: float) -> None:
        super().__init__("serial")
        self.cost = cost
        self.calls = 0
        self.judgments = 0
        self._lock = asyncio.Lock()

    def generate(self, conversations: Any, params: SamplingParams) -> Any:
        raise NotImplementedError("async only")

    async def agenerate(self, conversations: Any, params: SamplingParams) -> Any:
        async with self._lock:
            self.calls += 1
            self.judgments += len(conversations)
            if self.cost:
                await asyncio.sleep(self.cost)
            return [[verdict(c[-1]["content"])] * params.num_samples for c in conversations]


def verdict(user: str) -> Generation:
    """The scripted judges' rule (this bench's and bench/streaming.py's): the larger number wins."""

    def number(slot: str) -> float:
        text = user.split(SLOT.format(slot), 1)[-1].split("\n", 1)[0]
        digits = "".join(ch for ch in text if ch.isdigit())
        return float(digits or 0)

    return Generation(f"<answer>[[{'A' if number('A') > number('B') else 'B'}]]</answer>", "stop")


def turn(i: int) -> str:
    return f"<|im_start|>user\nPick a number, prompt {i}.<|im_end|>\n<|im_start|>assistant\n"


async def arrive(index: int, total: int, spread: float, started: float) -> None:
    if spread:
        await asyncio.sleep(max(0.0, started + spread * index / total - time.monotonic()))


async def reference_mode(judge: SerialJudge, config: RewardConfig, args: Any) -> dict[str, Any]:
    service = RewardService(Scorer(judge), config.model_copy(update={"strategy": "reference"}))
    await service.start(warmup=False)
    total = args.prompts * args.rollouts
    started, last = time.monotonic(), [0.0]

    async def one(n: int) -> Any:
        i, j = divmod(n, args.rollouts)
        await arrive(n, total, args.spread, started)
        last[0] = max(last[0], time.monotonic())
        sample = Sample(f"{turn(i)}{j + 1}0<|im_end|>", turn(i), str(10 * args.rollouts // 2))
        [answer] = await service.rewards([sample])
        return answer.error is not None

    fallbacks = sum(await asyncio.gather(*(one(n) for n in range(total))))
    after = time.monotonic() - last[0]
    await service.aclose()
    counts = {"calls": judge.calls, "judgments": judge.judgments, "fallbacks": fallbacks}
    return {**counts, "split": 0, "s": after}


async def cohort_mode(judge: SerialJudge, config: RewardConfig, args: Any) -> dict[str, Any]:
    return await cohorts_mode(judge, config, args)


async def whole_mode(judge: SerialJudge, config: RewardConfig, args: Any) -> dict[str, Any]:
    return await cohorts_mode(
        judge,
        config.model_copy(
            update={"group": config.group.model_copy(update={"stream_pairs": False})}
        ),
        args,
    )


async def cohorts_mode(judge: SerialJudge, config: RewardConfig, args: Any) -> dict[str, Any]:
    cohorts = CohortService(Scorer(judge), config, max_pending=1 << 20)
    total = args.prompts * args.rollouts
    started, last = time.monotonic(), [0.0]

    async def one(n: int) -> Any:
        i, j = divmod(n, args.rollouts)
        await arrive(n, total, args.spread, started)
        last[0] = max(last[0], time.monotonic())
        member = Member(f"uid-{i}", args.rollouts, turn(i).split("\n")[1], f"{j + 1}0", None)
        answer = await cohorts.reward(member)
        return answer.fallback, answer.kind in ("partial", "alone")

    answers = await asyncio.gather(*(one(n) for n in range(total)))
    after = time.monotonic() - last[0]
    await cohorts.aclose()
    fallbacks, split = (sum(column) for column in zip(*answers, strict=True))
    counts = {"calls": judge.calls, "judgments": judge.judgments, "fallbacks": fallbacks}
    return {**counts, "split": split, "s": after}


def naive_mode(judge: SerialJudge, config: RewardConfig, args: Any) -> dict[str, Any]:
    """veRL's ``naive`` manager with ``rmr1_verl.reward.compute_score``, every rollout at once."""
    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root / "adapters" / "verl")]
    import rmr1_verl.reward as verl_reward
    from transformers import AutoTokenizer
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager

    from rmr1_plugins.testing import tiny_llama
    from rmr1_plugins.testing.verl import step

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama())
    data, _ = step(tokenizer, args.prompts, args.rollouts)  # "pick k", reference "pick 5"
    questions = [f"Pick a number, prompt {n // args.rollouts}." for n in range(len(data))]
    extra = data.non_tensor_batch["extra_info"]  # one question per group, as in the other modes
    extra[:] = [{"question": q, "split": "train"} for q in questions]
    scorer = Scorer(judge)
    verl_reward.shared_scorer = lambda settings: scorer  # the serial judge, in every rollout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rmr1.yaml"
        path.write_text("backend: {name: constant}\n")  # replaced by the serial judge above
        score = functools.partial(verl_reward.compute_score, config=str(path))
        manager = NaiveRewardManager(None, tokenizer, score)
        rows = [data[i : i + 1] for i in range(len(data))]

        async def run() -> tuple[list[Any], float]:
            last = time.monotonic()  # every rollout arrives at once
            outputs = await asyncio.gather(*(manager.run_single(row) for row in rows))
            return outputs, time.monotonic() - last

        outputs, after = manager.loop.run_until_complete(run())
    fallbacks = sum(int(out["reward_extra_info"]["rmr1_fallback"]) for out in outputs)
    counts = {"calls": judge.calls, "judgments": judge.judgments, "fallbacks": fallbacks}
    return {**counts, "split": 0, "s": after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1024)
    parser.add_argument("--rollouts", type=int, default=7)
    parser.add_argument("--strategy", default="round-robin")
    parser.add_argument("--cost", type=float, default=0.05, help="seconds per engine call")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--spread", type=float, default=0.0, help="arrivals over S seconds")
    parser.add_argument("--no-naive", action="store_true", help="leave out veRL's naive manager")
    parser.add_argument("--memory", action="store_true", help="peak traced memory per mode")
    args = parser.parse_args()
    modes: list[tuple[str, Any]] = [
        ("reference", reference_mode),
        ("cohort", cohort_mode),
        ("whole", whole_mode),
    ]
    try:
        import verl  # noqa: F401
    except ImportError:
        args.no_naive = True
    if not args.no_naive:
        modes.append(("naive", naive_mode))
    config = RewardConfig(
        strategy=args.strategy,
        service={"max_batch_size": args.max_batch_size, "timeout_s": 600},
        group={"timeout_s": 60},
    )
    print(
        f"{args.prompts} prompts x {args.rollouts} rollouts, one request each; strategy "
        f"{args.strategy}, max_batch_size {args.max_batch_size}, arrivals over {args.spread:g} s"
    )
    header = f"{'judge':>14} {'mode':>10} {'calls':>7} {'judgments':>10} {'fallbacks':>9}"
    print(header + f" {'split':>6} {'s after last':>13}" + (" peak MiB" if args.memory else ""))
    for cost in (0.0, args.cost):
        rows = {}
        for mode, run in modes:
            if args.memory:
                tracemalloc.start()
            if mode == "naive":  # on veRL's own event loop, as its reward workers run it
                rows[mode] = run(SerialJudge(cost), config, args)
            else:
                rows[mode] = asyncio.run(run(SerialJudge(cost), config, args))
            r = rows[mode]
            name = f"{cost:g} s/call"
            line = (
                f"{name:>14} {mode:>10} {r['calls']:>7} {r['judgments']:>10} "
                f"{r['fallbacks']:>9} {r['split']:>6} {r['s']:>13.2f}"
            )
            if args.memory:
                line += f" {tracemalloc.get_traced_memory()[1] / 2**20:>8.0f}"
                tracemalloc.stop()
            print(line)
        ratio = rows["cohort"]["calls"] / max(rows["reference"]["calls"], 1)
        per_judgment = rows["cohort"]["judgments"] / max(rows["reference"]["judgments"], 1)
        print(f"{'':>14} cohort / reference: {ratio:.2f}x calls, {per_judgment:.2f}x judgments")
        calls = rows["cohort"]["calls"] / max(rows["whole"]["calls"], 1)
        seconds = rows["cohort"]["s"] / max(rows["whole"]["s"], 1e-9)
        print(f"{'':>14} cohort / whole: {calls:.2f}x calls, {seconds:.2f}x s after last")
        if "naive" in rows:
            calls = rows["naive"]["calls"] / max(rows["cohort"]["calls"], 1)
            seconds = rows["naive"]["s"] / max(rows["cohort"]["s"], 1e-9)
            print(f"{'':>14} naive / cohort: {calls:.2f}x calls, {seconds:.2f}x s after last")


if __name__ == "__main__":
    main()
