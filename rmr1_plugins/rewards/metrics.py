"""The metrics contract: the per-sample numbers every integration logs with a reward.

TRL (the batch mean of each key, through ``log_metric``), veRL (``compute_score``'s dict and the
manager's ``reward_extra_info``), OpenRLHF (the reward file's ``extra_logs``) and ``rmr1 serve``
(``/get_reward``'s ``extra_logs``, cohort mode and ``/cohort`` too) log exactly :data:`KEYS`,
for every sample: judged ones, fallbacks and set-up failures alike (trainers stack the keys of
a batch, and OpenRLHF takes them from its first sample). Every value is a float; why a sample
got the fallback is logged as text, never put in a metric. docs/concepts/rewards.md ("Metrics")
lists the same table.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rmr1_plugins.rewards.health import METRICS as HEALTH_METRICS
from rmr1_plugins.rewards.health import PREFIX, Tally, comparison_tally

# Why a sample got the fallback reward; each is an ``rmr1_<kind>`` flag.
FALLBACK_KINDS = ("bad_input", "no_reference", "unparsed", "error", "timeout", "dropped")


@dataclass(frozen=True)
class Metric:
    """One key: its type (``flag`` 0/1, ``count``, ``rate`` 0-1, ``mean``), its meaning, and its
    value for a judged sample and for a fallback."""

    name: str
    type: str
    meaning: str
    judged: str
    fallback: str


METRICS: tuple[Metric, ...] = (
    Metric(
        "rmr1_fallback",
        "flag",
        "the sample got the fallback reward (TRL: `None`): no usable verdict",
        "0",
        "1",
    ),
    Metric(
        "rmr1_bad_input",
        "flag",
        (
            "fallback: the sample could not be read (a label of the wrong type, a query without "
            "its prompt, a prompt that is not a chat ending in a user turn)"
        ),
        "0",
        "1 for this kind",
    ),
    Metric(
        "rmr1_no_reference",
        "flag",
        (
            "fallback: judging needed a reference answer and the sample had none (a missing or "
            "empty reference, a group of one without one)"
        ),
        "0",
        "1 for this kind",
    ),
    Metric(
        "rmr1_unparsed",
        "flag",
        "fallback: none of its comparisons gave a verdict (`on_unparsed: exclude`)",
        "0",
        "1 for this kind",
    ),
    Metric(
        "rmr1_error",
        "flag",
        "fallback: the judge failed or could not be set up, or the service stopped",
        "0",
        "1 for this kind",
    ),
    Metric(
        "rmr1_timeout",
        "flag",
        "fallback: no verdict within `service.timeout_s`",
        "0",
        "1 for this kind",
    ),
    Metric(
        "rmr1_dropped",
        "flag",
        "fallback: its group arrived incomplete and `group.on_split` is `drop`",
        "0",
        "1 for this kind",
    ),
    Metric(
        "rmr1_reference",
        "flag",
        (
            "judged against the reference answer, not within its group (the `reference` strategy, "
            "or a group strategy's way out for an incomplete group or a group of one)"
        ),
        "0 or 1",
        "0",
    ),
    Metric(
        "rmr1_split",
        "flag",
        (
            "its group arrived incomplete (split across processes or workers, or not whole "
            "within `group.timeout_s`)"
        ),
        "0 or 1",
        "0 or 1",
    ),
    Metric(
        "rmr1_clipped",
        "flag",
        "the response was cut at `inputs.max_response_chars` (OpenRLHF and `rmr1 serve` samples)",
        "0 or 1",
        "0 or 1",
    ),
    Metric(
        "rmr1_group",
        "count",
        "completions judged together, this one included (1 against the reference)",
        "≥ 1",
        "0",
    ),
    Metric(
        "rmr1_judgments",
        "count",
        "judge completions spent on its comparisons (orders × samples each)",
        "≥ 0",
        "those spent before the fallback",
    ),
    Metric(
        "rmr1_unparsed_comparisons",
        "count",
        (
            "its comparisons in which no judgment gave a verdict (with `on_unparsed: tie` or "
            "`loss` they still give a reward)"
        ),
        "≥ 0",
        "as judged",
    ),
)
KEYS: tuple[str, ...] = (
    *(m.name for m in METRICS),
    *(PREFIX + name for name in HEALTH_METRICS),  # judge health (rewards/health.py)
)
# The verifiable reward's keys (training a judge, rewards/verifiable.py): "judged" is a row with
# a usable label, "fallback" one without (its neutral reward). docs/concepts/rewards.md lists
# them too.
VERIFIABLE_METRICS: tuple[Metric, ...] = (
    Metric("rmr1_correct", "flag", "the judge's verdict picks the labelled answer", "0 or 1", "0"),
    Metric(
        "rmr1_bad_input",
        "flag",
        "the label is not `A`, `B`, `model_a` or `model_b` (the row gets the neutral reward)",
        "0",
        "1",
    ),
)


def sample_metrics(
    *,
    kind: str | None = None,
    reference: bool = False,
    split: bool = False,
    clipped: bool = False,
    group: int = 0,
    judgments: int = 0,
    unparsed: int = 0,
    health: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """One sample's metrics, exactly :data:`KEYS`; ``kind`` is the fallback's (None: judged).

    A fallback logs ``rmr1_group=0`` whatever ``group`` says: its reward came from no group."""
    if kind is not None and kind not in FALLBACK_KINDS:
        raise ValueError(f"unknown fallback kind {kind!r}; one of {', '.join(FALLBACK_KINDS)}")
    metrics = {"rmr1_fallback": float(kind is not None)}
    metrics.update({f"rmr1_{name}": float(kind == name) for name in FALLBACK_KINDS})
    metrics.update(
        rmr1_reference=float(reference and kind is None),
        rmr1_split=float(split),
        rmr1_clipped=float(clipped),
        rmr1_group=float(0 if kind is not None else group),  # a fallback: judged with none
        rmr1_judgments=float(judgments),
        rmr1_unparsed_comparisons=float(unparsed),
    )
    metrics.update(Tally().sample_logs() if health is None else health)
    return metrics


def judged_metrics(
    rewards: Any,
    index: int,
    texts: Sequence[str] | None,
    *,
    reference: bool,
    kind: str | None = None,
    split: bool = False,
    clipped: bool = False,
) -> dict[str, float]:
    """The metrics of completion ``index`` of a judged group (a ``GroupRewards``).

    ``texts`` (the group's completions, then its reference) give the length metrics. A
    completion left without a reward is a fallback: ``kind``, else ``bad_input`` for a group the
    engine refused, ``unparsed`` for one whose comparisons were all excluded, and
    ``no_reference`` for one with no comparison at all (a group of one, nothing to compare with).
    """
    involved = rewards.involving(index)
    if kind is None and rewards.rewards[index] is None:
        kind = "bad_input" if rewards.error else "unparsed" if involved else "no_reference"
    judged = [c for c in involved if c.result is not None]
    return sample_metrics(
        kind=kind,
        reference=reference,
        split=split,
        clipped=clipped,
        group=0 if rewards.error else 1 if reference else len(rewards.rewards),
        judgments=sum(len(c.result.judgments) for c in judged),
        unparsed=sum(not c.parsed for c in judged),
        health=comparison_tally(rewards, texts, index, group=not reference).sample_logs(),
    )


def columns(metrics: Sequence[Mapping[str, float]]) -> dict[str, list[float]]:
    """One list per key, one entry per sample (OpenRLHF's and ``rmr1 serve``'s ``extra_logs``)."""
    return {key: [float(m[key]) for m in metrics] for key in KEYS}


def means(metrics: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each key's mean over the samples (TRL logs one value per key and step)."""
    return {key: sum(m[key] for m in metrics) / len(metrics) for key in KEYS} if metrics else {}


class StepSummary:
    """One line on ``log`` per ``every`` samples (for a trainer that logs no metric of ours):
    split and fallback counts, mean group against expected; a warning if any, else INFO."""

    def __init__(self, every: int, log: logging.Logger, label: str) -> None:
        self.every = every
        self.log = log
        self.label = label
        self.counts: Counter[str] = Counter()

    def add(self, info: Mapping[str, Any], expected: int) -> None:
        counts = self.counts
        counts["rollouts"] += 1
        counts["split"] += int(info.get("rmr1_split", 0) > 0)
        counts["fallback"] += int(info.get("rmr1_fallback", 0) > 0)
        counts["group"] += int(info.get("rmr1_group", 0))
        counts["expected"] += expected
        if counts["rollouts"] >= self.every:
            self.flush()

    def flush(self) -> None:
        counts, self.counts = self.counts, Counter()
        n = counts["rollouts"]
        if not n:
            return
        log = self.log.warning if counts["split"] or counts["fallback"] else self.log.info
        log(
            "%s: %d rollouts: split %d (%.1f%%), fallback %d (%.1f%%), "
            "mean group %.2f of %.2f expected",
            self.label,
            n,
            counts["split"],
            100 * counts["split"] / n,
            counts["fallback"],
            100 * counts["fallback"] / n,
            counts["group"] / n,
            counts["expected"] / n,
        )
