"""Reference-anchored rewards for one sampled response at a time (OpenRLHF, ``rmr1 serve``).

Trainers that score each rollout on its own (OpenRLHF sends one sample per call) cannot compare
the rollouts of a group, so each response is judged against the reference answer carried by the
sample's label: response in one slot, reference in the other. The reward is the response's win
rate over the judgments that gave a verdict, mapped onto ``[loss, win]`` (default ``[0, 1]``):
``1`` beats the reference, ``0`` loses, ``0.5`` when two orders disagree (``order: both``).

A sample is ``(query, prompt, label)`` as OpenRLHF sends it (:class:`~.inputs.Sample`; how its
strings are read is in :mod:`rmr1_plugins.rewards.inputs`).

Nothing here raises on bad samples: :func:`build_example` raises :class:`~.inputs.SampleError`
naming the field, and :func:`fallback` turns any failure into the configured neutral reward
(default: the midpoint of ``[loss, win]``) with ``rmr1_fallback=1`` in the logs.

The settings (the scale, ``end_tokens``, ``question``, ``max_response_chars``) are the ``reward:``
section of the YAML file, :class:`rmr1_plugins.rewards.config.RewardConfig`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rmr1_plugins.guards import neutralize_example
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.health import Tally
from rmr1_plugins.rewards.inputs import (
    Sample,
    clean_text,
    clipped_response,
    read_label,
    sample_context,
    sample_texts,
)
from rmr1_plugins.schema import PairResult, PairwiseExample

# Fallback kinds; each has an ``rmr1_<kind>`` entry in every sample's extra logs.
FALLBACK_KINDS = ("bad_input", "unparsed", "error", "timeout")


@dataclass
class SampleReward:
    """The reward for one sample; ``error`` says why the fallback was used (``None`` if not)."""

    reward: float
    score: float
    extra_logs: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    kind: str | None = None  # which fallback (one of FALLBACK_KINDS), if any


def build_example(sample: Sample, config: RewardConfig) -> tuple[PairwiseExample, bool]:
    """The pair to judge: the response in slot A, the reference in slot B.

    Returns the pair and whether the response was cut at ``max_response_chars``.
    """
    query, prompt = sample_texts(sample)
    reference, question = read_label(sample.label)
    response, clipped = clipped_response(query, prompt, config)
    context = sample_context(prompt, question, config)
    return (
        PairwiseExample(
            context=context, response_a=response, response_b=clean_text(reference), label=None
        ),
        clipped,
    )


def build_examples(
    samples: Sequence[Sample], config: RewardConfig, guard: bool = False
) -> list[tuple[PairwiseExample, bool] | Exception]:
    """:func:`build_example` for each sample, neutralized when ``guard``; a failure in its place.

    The CPU-heavy part of a request (linear, but a megabyte takes a fraction of a second):
    ``rmr1 serve`` and the OpenRLHF reward service run it in a worker thread, off the event loop,
    so one large request does not hold up the others.
    """
    built: list[tuple[PairwiseExample, bool] | Exception] = []
    for sample in samples:
        try:
            example, clipped = build_example(sample, config)
            built.append((neutralize_example(example) if guard else example, clipped))
        except Exception as error:  # SampleError, or an unforeseen input shape
            built.append(error)
    return built


def _logs(kind: str | None, order: str | None) -> dict[str, float]:
    """The extra logs of one sample: the same keys for every sample of a run."""
    logs = {"rmr1_fallback": float(kind is not None)}
    logs.update({f"rmr1_{name}": float(kind == name) for name in FALLBACK_KINDS})
    logs.update(rmr1_truncated=0.0, rmr1_clipped=0.0)
    if order == "both":
        logs["rmr1_orders_agree"] = 0.0
    logs.update(Tally().sample_logs())  # judge health: nothing measured
    return logs


def fallback(
    config: RewardConfig, kind: str, message: str, order: str | None = None
) -> SampleReward:
    """The neutral reward for a sample that got no verdict, saying why."""
    reward = config.fallback_reward
    return SampleReward(
        reward=reward,
        score=config.to_score(reward),
        extra_logs=_logs(kind, order),
        error=f"fallback reward {reward:g} ({kind}): {message}",
        kind=kind,
    )


def reward_from_result(
    result: PairResult,
    config: RewardConfig,
    order: str | None = None,
    clipped: bool = False,
    size: tuple[int, int] | None = None,
) -> SampleReward:
    """The response's (slot A's) win rate over the judgments that gave a verdict, as a reward.

    Judgments without a verdict are left out; when none has one, the fallback reward is used.
    ``size`` (the lengths of the response and the reference) gives ``rmr1_health/longer_wins``.
    """
    wins, losses, missing = result.votes["A"], result.votes["B"], result.votes["none"]
    total = wins + losses + missing
    truncated = sum(j.finish_reason == "length" for j in result.judgments) / max(total, 1)
    if wins + losses == 0:
        why = "the judge gave no verdict"
        if truncated:
            why += " (its output was cut at max_new_tokens)"
        reward = fallback(config, "unparsed", why, order)
    else:
        value = config.loss + (config.win - config.loss) * wins / (wins + losses)
        reward = SampleReward(value, config.to_score(value), _logs(None, order))
        reward.extra_logs["rmr1_unparsed"] = missing / total
        if order == "both":
            reward.extra_logs["rmr1_orders_agree"] = float(bool(result.orders_agree))
    reward.extra_logs.update(rmr1_truncated=truncated, rmr1_clipped=float(clipped))
    health = Tally()
    health.add_pair(result, size)
    reward.extra_logs.update(health.sample_logs())
    return reward
