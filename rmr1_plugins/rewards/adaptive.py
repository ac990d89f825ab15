"""Budgeted adaptive pairing: spend a fixed number of comparisons where they tell the most.

A reasoning judgment costs hundreds of generated tokens, so the pairs worth judging are the ones
whose outcome is still uncertain. :class:`AdaptiveStrategy` opens with one circular round (each
completion once in each slot), then plays rounds of disjoint pairs chosen under a Bradley–Terry
model fitted to everything judged so far, until ``budget`` comparisons are spent. Pairs judged
least often come first (no pair twice before every pair once); among those, a pair scores
``p(1 − p) · (v_i + v_j)``: its outcome is uncertain (``p`` near 1/2) and its strengths are
uncertain (posterior variances ``v``). A pair judged a second time is judged in the other order;
otherwise the completion that has sat in slot A less often takes slot A.

The fit (:func:`fit_strengths`) models a slot-A advantage ``h`` next to the strengths,
``P(first wins) = sigmoid(r_first − r_second + h)``, so a judge's position bias is estimated and
removed even when each pair is judged in one order only. Outcomes may be soft (a verdict
probability, or the vote share of several samples): the fit takes them as they are.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from rmr1_plugins.rewards.strategies import Pair, Play, Scores, Strategy

SLOT_PRIOR_SCALE = 0.05  # the advantage's prior is weaker: a judge may be very position-biased
MIN_PRIOR = 1e-6  # below this the Newton system is numerically singular


def fit_strengths(
    size: int,
    pairs: Sequence[Pair],
    outcomes: Sequence[Scores | None],
    *,
    prior: float = 0.5,
    position: bool = True,
    iterations: int = 25,
) -> tuple[list[float], float, list[float]]:
    """A Bradley–Terry fit with a slot-A advantage: ``(strengths, advantage, variances)``.

    Maximises the likelihood of the outcomes (the first completion's share of the credit;
    excluded outcomes and double losses carry no information and are skipped) under Gaussian
    priors of precision ``prior`` on each strength and ``prior * SLOT_PRIOR_SCALE`` on the
    advantage, by Newton's method. At the optimum ``prior * |strength|`` is at most the number of
    comparisons the completion counted in (the gradient of the likelihood is at most 1 per
    comparison), so each iterate is kept in that box: a fit that has not converged cannot leave
    it, and the centred strengths lie within ±2·(comparisons)/``prior``.
    ``variances`` are the diagonal of the inverse Hessian, a Laplace approximation of each
    strength's posterior variance. Strengths are centred on their mean.
    """
    if not prior >= MIN_PRIOR:
        raise ValueError(f"prior must be >= {MIN_PRIOR}, got {prior}")
    games = [
        (first, second, scores[0] / (scores[0] + scores[1]))
        for (first, second), scores in zip(pairs, outcomes, strict=True)
        if scores is not None and scores[0] + scores[1] > 0
    ]
    dim = size + 1  # strengths, then the slot-A advantage
    counts = [0] * dim
    for first, second, _ in games:
        counts[first] += 1
        counts[second] += 1
    counts[size] = len(games)
    limits = [c / prior for c in counts[:size]] + [len(games) / (prior * SLOT_PRIOR_SCALE)]
    theta = [0.0] * dim
    covariance: list[list[float]] = []
    for _ in range(iterations):
        precision = [prior] * size + [prior * SLOT_PRIOR_SCALE]
        gradient = [-p * t for p, t in zip(precision, theta, strict=True)]
        hessian = [[precision[i] if i == j else 0.0 for j in range(dim)] for i in range(dim)]
        for first, second, won in games:
            eta = theta[first] - theta[second] + (theta[size] if position else 0.0)
            p = _sigmoid(eta)
            weight = p * (1.0 - p)
            terms = ((first, 1.0), (second, -1.0), (size, 1.0 if position else 0.0))
            for i, xi in terms:
                gradient[i] += (won - p) * xi
                for j, xj in terms:
                    hessian[i][j] += weight * xi * xj
        covariance = _inverse(hessian)
        step = [sum(row[j] * gradient[j] for j in range(dim)) for row in covariance]
        theta = [
            min(max(t + s, -limit), limit) for t, s, limit in zip(theta, step, limits, strict=True)
        ]
        if max(abs(s) for s in step) < 1e-9:
            break
    centre = sum(theta[:size]) / size if size else 0.0
    strengths = [t - centre for t in theta[:size]]
    return strengths, theta[size], [covariance[i][i] for i in range(size)]


def _sigmoid(x: float) -> float:
    """The logistic function, without overflow for any finite ``x`` (0 below −700)."""
    return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0


def _inverse(matrix: list[list[float]]) -> list[list[float]]:
    """Gauss–Jordan inverse of a symmetric positive-definite matrix (small: one group)."""
    n = len(matrix)
    work = [[*row, *(1.0 if i == j else 0.0 for j in range(n))] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(work[r][col]))
        work[col], work[pivot] = work[pivot], work[col]
        scale = work[col][col]
        work[col] = [v / scale for v in work[col]]
        for r in range(n):
            if r != col and work[r][col] != 0.0:
                factor = work[r][col]
                work[r] = [a - factor * b for a, b in zip(work[r], work[col], strict=True)]
    return [row[n:] for row in work]


class AdaptiveStrategy(Strategy):
    """At most ``budget`` comparisons per group, placed where the ranking is least certain.

    The reward is the fitted strength (centred log-odds, like ``bradley-terry``); a completion
    none of whose comparisons counted (excluded, double losses, or never drawn because the
    budget is below the group size) gets ``None``. ``budget`` defaults to twice the group size;
    one comparison costs one judgment per order and sample judged, so with the scorer's
    ``order: given`` the budget is the number of judgments (the strategy chooses the slots).
    :meth:`streamed`: the opening circle follows the group's order instead of a seeded shuffle.
    """

    name = "adaptive"
    bounded = False
    draws_positions = True

    def __init__(self, budget: int | None = None, prior: float = 0.5) -> None:
        if budget is not None and budget < 1:
            raise ValueError(f"budget must be >= 1, got {budget}")
        if not prior >= MIN_PRIOR:
            raise ValueError(f"prior must be >= {MIN_PRIOR}, got {prior}")
        self.budget, self.prior = budget, prior

    def comparisons(self, size: int) -> int:
        return 0 if size < 2 else (2 * size if self.budget is None else self.budget)

    def early_pairs(self, index: int, size: int) -> list[Pair]:
        if not self.in_order or size < 2:
            return []
        opening = [(k, (k + 1) % size) for k in range(size if size > 2 else 1)]
        opening = opening[: self.comparisons(size)]
        return [pair for pair in opening if max(pair) == index]

    def play(self, size: int, rng: random.Random) -> Play:
        if size < 2:
            return [None] * size
        left = self.comparisons(size)
        order = list(range(size))
        if not self.in_order:
            rng.shuffle(order)
        opening = [(order[k], order[(k + 1) % size]) for k in range(size if size > 2 else 1)]
        pairs: list[Pair] = opening[:left]
        outcomes: list[Scores | None] = list((yield list(pairs)))
        left -= len(pairs)
        while left > 0:
            strengths, _, variances = fit_strengths(size, pairs, outcomes, prior=self.prior)
            round_ = self._next_round(size, pairs, strengths, variances, left)
            if not round_:
                break
            pairs += round_
            outcomes += list((yield round_))
            left -= len(round_)
        strengths, _, _ = fit_strengths(size, pairs, outcomes, prior=self.prior)
        counted = {
            index
            for pair, scores in zip(pairs, outcomes, strict=True)
            if scores is not None and scores[0] + scores[1] > 0
            for index in pair
        }
        # A completion with no counted comparison has no evidence: None, as in bradley-terry.
        return [s if i in counted else None for i, s in enumerate(strengths)]

    @staticmethod
    def _next_round(
        size: int,
        judged: Sequence[Pair],
        strengths: Sequence[float],
        variances: Sequence[float],
        limit: int,
    ) -> list[Pair]:
        times: dict[Pair, int] = {}  # how often each ordered pair was judged
        in_a = [0] * size
        for pair in judged:
            times[pair] = times.get(pair, 0) + 1
            in_a[pair[0]] += 1
        candidates = []
        for i in range(size):
            for j in range(i + 1, size):
                p = _sigmoid(strengths[i] - strengths[j])
                value = p * (1 - p) * (variances[i] + variances[j])
                seen = times.get((i, j), 0) + times.get((j, i), 0)
                candidates.append((seen, -value, i, j))
        candidates.sort()  # pairs judged least often first, then the most informative
        used: set[int] = set()
        round_: list[Pair] = []
        for _, _, i, j in candidates:
            if len(round_) >= limit:
                break
            if i in used or j in used:
                continue
            used.update((i, j))
            forward, backward = times.get((i, j), 0), times.get((j, i), 0)
            if forward != backward:  # judge the order seen less often
                round_.append((i, j) if forward < backward else (j, i))
            else:  # the one that sat in slot A less often takes it
                round_.append((i, j) if in_a[i] <= in_a[j] else (j, i))
        return round_
