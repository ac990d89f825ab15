"""The metrics contract's values for fallbacks, from every builder (not only the docs text).

docs/concepts/rewards.md says a fallback logs ``rmr1_fallback=1``, its kind's flag,
``rmr1_reference=0``
and ``rmr1_group=0``; each builder is checked here with a sample that really fell back.
"""

import asyncio

import pytest

from rmr1_plugins import Scorer
from rmr1_plugins.rewards.cohort_table import Member
from rmr1_plugins.rewards.cohorts import CohortService
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.engine import Group, GroupRewards, score_groups, texts_of
from rmr1_plugins.rewards.inputs import Sample
from rmr1_plugins.rewards.metrics import FALLBACK_KINDS, KEYS, judged_metrics, sample_metrics
from rmr1_plugins.rewards.service import RewardService
from rmr1_plugins.testing import ScriptedJudge

MUTE = "I cannot decide."  # no verdict: every comparison unparsed
PROMPT = "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"


def assert_fallback(metrics, kind):
    assert list(metrics) == list(KEYS)
    assert metrics["rmr1_fallback"] == 1.0
    assert {k: metrics[f"rmr1_{k}"] for k in FALLBACK_KINDS} == {
        k: float(k == kind) for k in FALLBACK_KINDS
    }
    assert metrics["rmr1_reference"] == 0.0 and metrics["rmr1_group"] == 0.0


def test_a_reward_with_no_comparison_is_not_labelled_unparsed():
    alone = GroupRewards([None])  # a group of one under an in-group strategy: nothing compared
    metrics = judged_metrics(alone, 0, ["a"], reference=False)
    assert metrics["rmr1_unparsed"] == 0.0
    assert_fallback(metrics, "no_reference")


@pytest.mark.parametrize("kind", FALLBACK_KINDS)
def test_sample_metrics_gives_group_0_for_every_fallback(kind):
    assert_fallback(sample_metrics(kind=kind, reference=True, group=4, judgments=2), kind)


def test_an_excluded_group_in_the_engine():
    group = Group("2+2?", ["4", "5", "6"])
    [rewards] = score_groups(
        Scorer(ScriptedJudge(lambda u, i: MUTE)), [group], "round-robin", on_unparsed="exclude"
    )
    for index in range(3):
        metrics = judged_metrics(rewards, index, texts_of(group), reference=False)
        assert_fallback(metrics, "unparsed")
        assert metrics["rmr1_unparsed_comparisons"] == 2.0  # as judged: its two comparisons


def test_the_sample_path_unparsed_and_no_reference():
    config = RewardConfig(on_unparsed="exclude")
    service = RewardService(Scorer(ScriptedJudge(lambda u, i: MUTE)), config)

    async def go():
        try:
            return await service.rewards(
                [Sample(PROMPT + "4", PROMPT, "5"), Sample(PROMPT + "4", PROMPT, "")]
            )
        finally:
            await service.aclose()

    unparsed, empty = asyncio.run(go())
    assert unparsed.kind == "unparsed" and empty.kind == "no_reference"
    assert_fallback(unparsed.extra_logs, "unparsed")
    assert unparsed.extra_logs["rmr1_judgments"] == 1.0  # spent before the fallback
    assert_fallback(empty.extra_logs, "no_reference")


def test_the_cohort_path_unparsed():
    config = RewardConfig(
        on_unparsed="exclude", group={"timeout_s": 0.3}, service={"timeout_s": 5.0}
    )
    service = CohortService(Scorer(ScriptedJudge(lambda u, i: MUTE)), config)

    async def go():
        members = [Member("p", 2, "2+2?", text) for text in ("4", "5")]
        return await asyncio.gather(*(service.reward(m) for m in members))

    for answer in asyncio.run(go()):
        assert answer.kind == "unparsed"
        assert_fallback(answer.logs(), "unparsed")
