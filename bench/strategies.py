"""How much ranking quality each grouping strategy buys per judgment (a benchmark, not a test).

Every strategy × order × outcome (hard verdicts or verdict probabilities) scores the same
groups through the real :class:`rmr1_plugins.rewards.engine.GroupScoring` engine, judged by a
simulated judge with known flaws. Each completion has a true utility; quality is the mean
within-group Pearson correlation between rewards and utilities (what GRPO's normalised advantage
depends on). The table gives judgments spent per group, quality, and quality as a share of all
pairs judged in both orders with hard verdicts; then the frontier (the best quality at each
budget) and the issue's two targets.

    python bench/strategies.py                      # groups of 8, the default judge
    python bench/strategies.py --position-bias 1 --calibration 3   # a worse judge

The simulated judge, for response a in slot A and b in slot B, draws
``logit = scale·(u_a − u_b) + position_bias + length_bias·(z_a − z_b) + noise·N(0, 1)`` (z: the
standardised length of a response, independent of its utility), says A with probability
``σ(logit)``, gives no verdict with probability ``unparsed``, and reports
``σ(calibration · logit)`` as its verdict probability (1: calibrated; >1: overconfident).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rmr1_plugins.rewards.adaptive import AdaptiveStrategy
from rmr1_plugins.rewards.engine import Group, GroupScoring
from rmr1_plugins.rewards.strategies import Strategy, resolve_strategy
from rmr1_plugins.schema import Judgment, PairResult, PairwiseExample
from rmr1_plugins.scorer import combine


@dataclass(frozen=True)
class JudgeFlaws:
    scale: float = 1.5
    noise: float = 0.7
    position_bias: float = 0.5
    length_bias: float = 0.3
    unparsed: float = 0.05
    calibration: float = 1.0


class SimulatedJudge:
    """Stands in for a scorer: ``score(examples)`` returns PairResults as the real one does."""

    def __init__(self, truth: dict[str, tuple[float, float]], flaws: JudgeFlaws, seed: int):
        self.truth, self.flaws, self.rng = truth, flaws, random.Random(seed)
        self.order = "given"
        self.judgments = 0

    def score(self, examples: list[PairwiseExample]) -> list[PairResult]:
        results = []
        for example in examples:
            orders = [False, True] if self.order == "both" else [False]
            judgments = [self._judge(example, swapped) for swapped in orders]
            results.append(combine(example, judgments))
        return results

    def _judge(self, example: PairwiseExample, swapped: bool) -> Judgment:
        self.judgments += 1
        f, rng = self.flaws, self.rng
        first, second = example.response_a, example.response_b
        if swapped:
            first, second = second, first
        (u_a, z_a), (u_b, z_b) = self.truth[first], self.truth[second]
        logit = f.scale * (u_a - u_b) + f.position_bias + f.length_bias * (z_a - z_b)
        logit += f.noise * rng.gauss(0, 1)
        if rng.random() < f.unparsed:
            return Judgment(verdict=None, completion="", swapped=swapped)
        says_a = rng.random() < 1 / (1 + math.exp(-logit))
        prob = 1 / (1 + math.exp(-f.calibration * logit))
        if swapped:  # map back to the example as given, as the scorer does
            says_a, prob = not says_a, 1 - prob
        return Judgment(verdict="A" if says_a else "B", completion="", swapped=swapped, prob_a=prob)


def make_groups(count: int, size: int, seed: int) -> tuple[list[Group], dict, list[list[float]]]:
    rng = random.Random(seed)
    truth: dict[str, tuple[float, float]] = {}
    groups, utilities = [], []
    for g in range(count):
        texts, us = [], []
        for i in range(size):
            u, z = rng.gauss(0, 1), rng.gauss(0, 1)
            text = f"group {g} completion {i}"
            truth[text] = (u, z)
            texts.append(text)
            us.append(u)
        reference = f"group {g} reference"
        truth[reference] = (0.0, 0.0)  # a median answer
        groups.append(Group(f"question {g}", texts, reference=reference, id=str(g)))
        utilities.append(us)
    return groups, truth, utilities


def pearson(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2 or len(set(xs)) < 2:
        return 0.0  # no spread: no signal for the advantage
    return statistics.correlation(xs, ys)


def quality(rewards: list[float | None], utilities: list[float]) -> float:
    known = [r for r in rewards if r is not None]
    fill = statistics.fmean(known) if known else 0.0
    return pearson([fill if r is None else r for r in rewards], utilities)


@dataclass
class Row:
    name: str
    order: str
    outcome: str
    judgments: float
    quality: float


def run(strategy: Strategy, order: str, outcome: str, args: argparse.Namespace) -> Row:
    groups, truth, utilities = make_groups(args.groups, args.size, args.seed)
    judge = SimulatedJudge(truth, JudgeFlaws(**_flaws(args)), args.seed + 1)
    judge.order = order
    scoring = GroupScoring(groups, strategy, outcome=outcome, seed=args.seed)
    while not scoring.done:
        examples = scoring.examples()
        scoring.feed(judge.score(examples) if examples else [])
    scores = [
        quality(result.rewards, us)
        for result, us in zip(scoring.results, utilities, strict=True)
        if result is not None
    ]
    label = strategy.name
    if isinstance(strategy, AdaptiveStrategy):
        label = f"adaptive (budget {strategy.comparisons(args.size)})"
    return Row(label, order, outcome, judge.judgments / len(groups), statistics.fmean(scores))


def _flaws(args: argparse.Namespace) -> dict[str, float]:
    return {name: getattr(args, name) for name in JudgeFlaws.__dataclass_fields__}


def strategies(size: int) -> list[Strategy]:
    fixed = ["reference", "pivot", "circular", "round-robin", "bradley-terry", "knockout"]
    found = [resolve_strategy(name) for name in fixed]
    budgets = sorted({size, size + size // 2, 2 * size, 3 * size})
    return found + [AdaptiveStrategy(budget=b) for b in budgets]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=300, help="groups per row")
    parser.add_argument("--size", type=int, default=8, help="completions per group")
    parser.add_argument("--seed", type=int, default=0)
    defaults = JudgeFlaws()
    for name in JudgeFlaws.__dataclass_fields__:
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=float, default=getattr(defaults, name), help="judge flaw")
    args = parser.parse_args()
    print(f"groups of {args.size}, {args.groups} groups per row, judge {_flaws(args)}")
    rows = [
        run(strategy, order, outcome, args)
        for strategy in strategies(args.size)
        for order in ("given", "both")
        for outcome in ("hard", "soft")
    ]
    base = next(
        r for r in rows if r.name == "round-robin" and r.order == "both" and r.outcome == "hard"
    )
    header = ("strategy", "order", "outcome", "judgments", "quality", "ratio")
    print("\n{:<22} {:<6} {:<7} {:>9} {:>8} {:>6}".format(*header))
    for r in sorted(rows, key=lambda r: (r.judgments, -r.quality)):
        ratio = r.quality / base.quality
        print(
            f"{r.name:<22} {r.order:<6} {r.outcome:<7} {r.judgments:>9.1f} "
            f"{r.quality:>8.3f} {ratio:>6.2f}"
        )
    print("\nfrontier (best quality at or under each budget):")
    for outcome in ("hard", "soft", "any"):
        best, line = -1.0, []
        for r in sorted(rows, key=lambda r: (r.judgments, -r.quality)):
            if outcome != "any" and r.outcome != outcome:
                continue
            if r.quality > best:
                best = r.quality
                line.append(f"{r.judgments:.0f}: {r.quality:.3f} ({r.name}, {r.order})")
        print(f"  {outcome}: " + "; ".join(line))
    limit = 2 * args.size
    for outcome, target in (("any", 0.95), ("hard", 0.85)):
        pool = [r for r in rows if r.judgments <= limit and outcome in ("any", r.outcome)]
        top = max(pool, key=lambda r: r.quality)
        ratio = top.quality / base.quality
        verdict = "met" if ratio >= target else "missed"
        print(
            f"target ({outcome} outcomes, <= {limit} judgments) >= {target:.2f} of all pairs "
            f"both orders hard: {ratio:.2f} with {top.name} {top.order} {top.outcome} ({verdict})"
        )


if __name__ == "__main__":
    main()
