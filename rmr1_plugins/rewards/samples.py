"""Reference-anchored rewards for one sampled response at a time (OpenRLHF, ``rmr1 serve``).

Trainers that score each rollout on its own (OpenRLHF sends one sample per call) cannot compare
the rollouts of a group, so each response is judged against the reference answer carried by the
sample's label: a group of one, ``(context, [response], reference)``, played by the group engine
(:mod:`rmr1_plugins.rewards.engine`) with the ``reference`` strategy, so ``on_unparsed``,
``outcome`` and the text rules are those of every group: the reward is the response's share of
the parsed votes (or its verdict probability with ``outcome: soft``) mapped onto ``[loss, win]``
(default ``[0, 1]``): ``1`` beats the reference, ``0`` loses, ``0.5`` when two orders disagree
(``order: both``). A judgment without a verdict follows ``on_unparsed``: ``tie`` (the middle of
the scale), ``loss`` (``loss``) or ``exclude`` (the fallback reward, ``rmr1_unparsed``). A
response identical to the reference is a tie without asking the judge.

A sample is ``(query, prompt, label)`` as OpenRLHF sends it (:class:`~.inputs.Sample`; how its
strings are read is in :mod:`rmr1_plugins.rewards.inputs`).

Nothing here raises on bad samples: :func:`build_example` raises :class:`~.inputs.SampleError`
naming the field, and :func:`fallback` turns any failure into the configured neutral reward
(default: the midpoint of ``[loss, win]``) with ``rmr1_fallback=1`` in the logs (the metrics
contract, :mod:`rmr1_plugins.rewards.metrics`).

The settings (the scale and the ``inputs`` section: ``end_tokens``, ``question``,
``max_response_chars``) are the ``reward:`` section of the YAML file,
:class:`rmr1_plugins.rewards.config.RewardConfig`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rmr1_plugins.guards import neutralize_example
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.engine import Group, GroupScoring, texts_of
from rmr1_plugins.rewards.inputs import (
    Sample,
    as_context,
    clean_text,
    clipped_response,
    read_label,
    sample_context,
    sample_texts,
)
from rmr1_plugins.rewards.metrics import judged_metrics, sample_metrics
from rmr1_plugins.rewards.strategies import ReferenceStrategy
from rmr1_plugins.schema import PairResult, PairwiseExample

AGAINST_REFERENCE = ReferenceStrategy()


@dataclass
class SampleReward:
    """The reward for one sample; ``error`` says why the fallback was used (``None`` if not)."""

    reward: float
    score: float
    extra_logs: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    kind: str | None = None  # which fallback (one of metrics.FALLBACK_KINDS), if any


def build_group(sample: Sample, config: RewardConfig) -> tuple[Group, bool]:
    """The group of one to judge: the sample's context, its response, its reference.

    Returns the group and whether the response was cut at ``inputs.max_response_chars``; raises
    :class:`~.inputs.SampleError` naming the field.
    """
    query, prompt = sample_texts(sample)
    reference, question = read_label(sample.label)
    response, clipped = clipped_response(query, prompt, config)
    context = [turn.model_dump() for turn in sample_context(prompt, question, config)]
    return Group(context, [response], reference=clean_text(reference)), clipped


def build_example(sample: Sample, config: RewardConfig) -> tuple[PairwiseExample, bool]:
    """The pair the judge sees (:func:`build_group`): the response in slot A, the reference in
    slot B; and whether the response was cut."""
    group, clipped = build_group(sample, config)
    example = PairwiseExample(
        context=as_context(group.prompt),
        response_a=group.completions[0],
        response_b=str(group.reference),
        label=None,
    )
    return example, clipped


@dataclass
class Judging:
    """One sample's reference game: ``example`` goes to the judge (``None``: the response equals
    the reference, a tie without the judge), :meth:`finish` turns its result into the reward."""

    group: Group
    run: GroupScoring
    example: PairwiseExample | None
    clipped: bool

    def finish(self, result: PairResult | None, config: RewardConfig) -> SampleReward:
        """The reward once the judge answered (``result``; ``None`` when not asked)."""
        self.run.feed([] if result is None else [result])
        [rewards] = [r for r in self.run.results if r is not None]
        metrics = judged_metrics(
            rewards, 0, texts_of(self.group), reference=True, clipped=self.clipped
        )
        win = rewards.rewards[0]
        if win is None:  # every judgment unparsed, on_unparsed=exclude
            why = "the judge gave no verdict (on_unparsed=exclude)"
            if result is not None and any(j.finish_reason == "length" for j in result.judgments):
                why += " (its output was cut at max_new_tokens)"
            return fallback(config, "unparsed", why, metrics)
        value = config.scale(win, AGAINST_REFERENCE)
        assert value is not None
        return SampleReward(value, config.to_score(value), metrics)


def prepare(sample: Sample, config: RewardConfig, guard: bool = False) -> Judging:
    """The sample's :class:`Judging`, its pair neutralized when ``guard``; raises
    :class:`~.inputs.SampleError` for a sample that cannot be judged."""
    group, clipped = build_group(sample, config)
    run = GroupScoring(
        [group], AGAINST_REFERENCE, on_unparsed=config.on_unparsed, outcome=config.outcome
    )
    examples: list[PairwiseExample | None] = [*run.examples()] or [None]
    [example] = examples
    if example is not None and guard:
        example = neutralize_example(example)
    return Judging(group, run, example, clipped)


def prepare_all(
    samples: Sequence[Sample], config: RewardConfig, guard: bool = False
) -> list[Judging | Exception]:
    """:func:`prepare` for each sample; a failure in its place.

    The CPU-heavy part of a request (linear, but a megabyte takes a fraction of a second):
    ``rmr1 serve`` and the OpenRLHF reward service run it in a worker thread, off the event loop,
    so one large request does not hold up the others.
    """
    built: list[Judging | Exception] = []
    for sample in samples:
        try:
            built.append(prepare(sample, config, guard))
        except Exception as error:  # SampleError, or an unforeseen input shape
            built.append(error)
    return built


def fallback(
    config: RewardConfig, kind: str, message: str, metrics: dict[str, float] | None = None
) -> SampleReward:
    """The neutral reward for a sample that got no verdict, saying why; ``metrics`` are its
    metrics when it was judged (default: a sample never judged)."""
    reward = config.fallback_reward
    return SampleReward(
        reward=reward,
        score=config.to_score(reward),
        extra_logs=metrics or sample_metrics(kind=kind),
        error=f"fallback reward {reward:g} ({kind}): {message}",
        kind=kind,
    )
