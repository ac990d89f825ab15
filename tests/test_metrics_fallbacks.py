"""The metrics contract's values for fallbacks, from every builder (not only the docs text)."""

from rmr1_plugins.rewards.engine import GroupRewards
from rmr1_plugins.rewards.metrics import judged_metrics


def test_a_reward_with_no_comparison_is_not_labelled_unparsed():
    alone = GroupRewards([None])  # a group of one under an in-group strategy: nothing compared
    metrics = judged_metrics(alone, 0, ["a"], reference=False)
    assert metrics["rmr1_unparsed"] == 0.0
    assert metrics["rmr1_no_reference"] == metrics["rmr1_fallback"] == 1.0
