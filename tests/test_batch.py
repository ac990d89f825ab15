"""A batch of rows scored group by group (rmr1_plugins.rewards.batch), without a trainer."""

import asyncio

import pytest

from rmr1_plugins import Scorer
from rmr1_plugins.rewards.batch import (
    SplitRows,
    ascore_batch,
    find_groups,
    plan_batch,
    score_batch,
)
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.metrics import KEYS
from rmr1_plugins.testing import LongerWins

PROMPTS = ["q1", "q1", "q2", "q2", "q2", "q2", "q3", "q3"]  # groups of 4: q1 and q3 split
COMPLETIONS = ["a", "aa", "w", "ww", "www", "wwww", "cc", "c"]


def test_find_groups_marks_runs_that_are_not_whole_groups():
    runs = find_groups(["a", "a", "b", "b", "b", "b", "c", "c"], 2)
    assert [(r.start, r.stop, r.split) for r in runs] == [
        (0, 2, False), (2, 4, False), (4, 6, False), (6, 8, False),
    ]  # fmt: skip
    runs = find_groups(["a", "b", "b", "b", "c", "c"], 2)
    assert [(r.split, r.expected) for r in runs] == [(True, 2), (True, 4), (False, 0)]
    runs = find_groups(["a", "b", "b", "b", "c", "c"], None)  # edges shorter than the longest
    assert [r.split for r in runs] == [True, False, True]
    assert find_groups([], None) == []


def test_each_row_gets_its_reward_verdict_and_metrics():
    backend = LongerWins()
    config = RewardConfig(group={"on_split": "reference"})
    references = {"reference": ["b", "b", "", "", "", "", "", ""]}  # q3 has none
    plan = plan_batch(PROMPTS, COMPLETIONS, config, references, 4, name="judge")
    result = score_batch(plan, lambda: Scorer(backend))
    assert result.rewards[:2] == [0.0, 1.0]  # each against "b", alone
    assert result.rewards[2:6] == pytest.approx([0, 1 / 3, 2 / 3, 1])  # round-robin
    assert result.rewards[6:] == [None, None]  # split without a reference
    assert "needs a reference answer" in result.verdicts[6]
    assert result.verdicts[2].startswith("vs #1: 0.00")
    assert result.rationale[0] == "<eval>1 vs 1</eval><answer>[[B]]</answer>"
    assert all(list(m) == list(KEYS) for m in result.metrics)
    assert [m["rmr1_reference"] for m in result.metrics] == [1, 1, 0, 0, 0, 0, 0, 0]
    assert [m["rmr1_no_reference"] for m in result.metrics] == [0, 0, 0, 0, 0, 0, 1, 1]
    assert [m["rmr1_split"] for m in result.metrics] == [1, 1, 0, 0, 0, 0, 1, 1]
    assert result.judgments == sum(backend.batches) == 6 + 2


def test_the_async_twin_agrees_and_builds_the_scorer_only_when_needed():
    config = RewardConfig(group={"on_split": "drop"})
    plan = plan_batch(PROMPTS, COMPLETIONS, config, {}, 4)
    built: list[Scorer] = []

    def get_scorer() -> Scorer:
        built.append(Scorer(LongerWins()))
        return built[-1]

    sync, asynchronous = score_batch(plan, get_scorer), asyncio.run(ascore_batch(plan, get_scorer))
    assert sync == asynchronous and len(built) == 2  # no group judged alone: one build each
    assert sync.rewards[:2] == [None, None] and sync.metrics[0]["rmr1_dropped"] == 1.0
    assert score_batch(plan_batch(["q"], ["a"], config, {}), get_scorer).rewards == [None]
    assert len(built) == 2  # a lone row without a reference: nothing to judge, no scorer


def test_split_groups_and_missing_columns_are_errors_that_say_where():
    with pytest.raises(SplitRows) as error:
        plan_batch(PROMPTS, COMPLETIONS, RewardConfig(group={"on_split": "error"}), {}, 4)
    assert [(r.start, r.stop) for r in error.value.rows] == [(0, 2), (6, 8)]
    config = RewardConfig(group={"on_split": "reference"})
    with pytest.raises(ValueError, match=r"judge: .*column 'reference'.*columns \['gold'\]"):
        plan_batch(PROMPTS, COMPLETIONS, config, {"gold": [""] * 8}, 4, name="judge")
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        plan_batch(["q", "q"], ["a"], config, {})


class Broken:
    order = "given"

    def score(self, examples):
        raise ConnectionError("judge server refused the connection")


def test_a_failed_judge_gives_none_with_the_error_metric():
    plan = plan_batch(["q", "q"], ["a", "aa"], RewardConfig(), {}, 2)
    result = score_batch(plan, Broken)
    assert result.rewards == [None, None] and result.judgments == 0
    assert result.verdicts[0].startswith("the judge failed (ConnectionError")
    assert result.metrics[0]["rmr1_error"] == result.metrics[0]["rmr1_fallback"] == 1.0
