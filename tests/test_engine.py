import asyncio
import math

import pytest

from rmr1_plugins import Scorer, get_strategy
from rmr1_plugins.rewards.engine import Group, ascore_groups, score_groups
from rmr1_plugins.rewards.inputs import as_context, as_text
from rmr1_plugins.rewards.strategies import REFERENCE, Strategy, resolve_strategy
from rmr1_plugins.testing import GROUP_STRATEGIES as NAMES
from rmr1_plugins.testing import ScriptedJudge, group
from rmr1_plugins.testing.judges import ranker


def run(strategy, groups, **kwargs):
    backend = ScriptedJudge(ranker)
    results = score_groups(Scorer(backend), groups, strategy, **kwargs)
    return results, backend


def test_builtin_strategies_are_registered_by_name():
    for name in NAMES:
        strategy = resolve_strategy(name)
        assert isinstance(strategy, Strategy) and strategy.name == name
        assert type(get_strategy(name)) is type(strategy)  # an instance, like get_template


# Four completions whose true order is 3 > 2 > 1 > 0, listed out of order.
VALUES = [2, 0, 3, 1]


def test_round_robin_is_the_win_rate_in_one_batch():
    [result], backend = run("round-robin", [group(VALUES)])
    assert result.rewards == pytest.approx([2 / 3, 0.0, 1.0, 1 / 3])
    assert result.judgments == 6 and len(result.comparisons) == 6
    assert len(backend.batches) == 1 and len(backend.batches[0]) == 6
    assert result.unparsed == 0 and result.orders_agree == (0, 0)


def test_bradley_terry_orders_like_the_truth_and_is_centred():
    [result], _ = run("bradley-terry", [group(VALUES)])
    r = result.rewards
    assert r[2] > r[0] > r[3] > r[1]
    assert sum(r) == pytest.approx(0, abs=1e-9)
    assert r[2] == pytest.approx(-r[1]) and r[0] == pytest.approx(-r[3])
    assert all(math.isfinite(x) for x in r)  # an unbeaten completion stays finite
    assert result.judgments == 6


def test_circular_judges_each_completion_once_in_each_slot():
    [result], backend = run("circular", [group(VALUES)])
    assert result.rewards == [1.0, 0.0, 1.0, 0.0]  # 2>0, 0<3, 3>1, 1<2
    assert [(c.first, c.second) for c in result.comparisons] == [(0, 1), (1, 2), (2, 3), (3, 0)]
    assert result.judgments == 4 and len(backend.batches) == 1


def test_reference_compares_each_completion_with_the_reference():
    [result], _ = run("reference", [group(VALUES, reference="answer 1.5")])
    assert result.rewards == [1.0, 0.0, 1.0, 0.0]
    assert all(c.second == REFERENCE for c in result.comparisons)
    assert result.judgments == 4


def test_pivot_is_seeded_and_costs_g_minus_one():
    pivots = set()
    for seed in range(8):
        [result], _ = run("pivot", [group(VALUES)], seed=seed)
        [pivot] = [i for i, r in enumerate(result.rewards) if r == 0.5]
        expected = [0.5 if i == pivot else float(v > VALUES[pivot]) for i, v in enumerate(VALUES)]
        assert result.rewards == expected and result.judgments == 3
        again, _ = run("pivot", [group(VALUES)], seed=seed)
        assert again[0].rewards == result.rewards
        pivots.add(pivot)
    assert len(pivots) > 1  # the seed matters


def test_knockout_champion_gets_one_in_log2_rounds():
    for seed in range(4):
        [result], backend = run("knockout", [group(VALUES)], seed=seed)
        assert result.rewards[2] == 1.0  # the best one always wins
        assert sorted(result.rewards) == [0.0, 0.0, 0.5, 1.0]
        assert result.judgments == 3 and len(backend.batches) == 2  # rounds, not matches


def test_knockout_with_byes():
    values = [4, 1, 0, 3, 2]
    [result], backend = run("knockout", [group(values)], seed=3)
    assert result.rewards[0] == 1.0 and len(result.comparisons) == 4
    assert all(0 <= r <= 1 for r in result.rewards) and len(backend.batches) == 3


def test_strategies_report_their_cost():
    for name in NAMES:
        strategy = resolve_strategy(name)
        reference = "answer 1.5" if strategy.needs_reference else None
        [result], _ = run(strategy, [group(range(6), reference=reference)])
        assert len(result.comparisons) == strategy.comparisons(6)


def test_both_orders_doubles_judgments_and_exposes_position_bias():
    [result], _ = run("round-robin", [group(VALUES)], order="both")
    assert result.rewards == pytest.approx([2 / 3, 0.0, 1.0, 1 / 3])
    assert result.judgments == 12 and result.orders_agree == (6, 6)

    always_a = ScriptedJudge()  # says A whatever it sees
    [biased] = score_groups(Scorer(always_a), [group(VALUES)], "round-robin", order="both")
    assert biased.rewards == [0.5] * 4 and biased.orders_agree == (0, 6)


def test_many_groups_share_one_backend_call_per_round():
    groups = [group(VALUES, prompt=f"q{i}") for i in range(3)] + [group([1, 0, 2], prompt="q3")]
    results, backend = run("round-robin", groups)
    assert len(backend.batches) == 1 and len(backend.batches[0]) == 3 * 6 + 3
    assert [len(r.rewards) for r in results] == [4, 4, 4, 3]
    results, backend = run("knockout", groups)
    assert len(backend.batches) == 2


@pytest.mark.parametrize(
    ("on_unparsed", "expected"),
    [
        # "answer ?" breaks both comparisons it is in; 3 beats 1
        ("tie", [0.5, 0.25, 0.75]),
        ("loss", [0.0, 0.0, 0.5]),
        ("exclude", [None, 0.0, 1.0]),
    ],
)
def test_unparsed_judgments_follow_on_unparsed(on_unparsed, expected):
    broken = Group("Pick.", ["answer ?", "answer 1", "answer 3"])
    [result], _ = run("round-robin", [broken], on_unparsed=on_unparsed)
    assert result.rewards == pytest.approx(expected)
    assert result.unparsed == 2 and result.judgments == 3


def test_unparsed_in_knockout_and_bradley_terry_never_crash():
    broken = Group("Pick.", ["answer ?", "answer 1", "answer 3", "answer 2"])
    for on_unparsed in ("tie", "loss", "exclude"):
        for name in ("knockout", "bradley-terry", "circular", "pivot"):
            [result], _ = run(name, [broken], on_unparsed=on_unparsed, seed=1)
            assert len(result.rewards) == 4
            assert all(r is None or math.isfinite(r) for r in result.rewards)


def test_identical_completions_tie_without_the_judge():
    [result], backend = run("round-robin", [group([1, 1, 1])])
    assert result.rewards == [0.5, 0.5, 0.5] and result.judgments == 0
    assert backend.batches == []
    assert "identical texts" in result.summary(0)


def test_single_completion_groups_have_nothing_to_compare():
    [alone], _ = run("round-robin", [group([1])])
    assert alone.rewards == [None]
    [anchored], _ = run("reference", [group([1], reference="answer 0")])
    assert anchored.rewards == [1.0]


def test_missing_reference_is_a_clear_error_or_skipped():
    with pytest.raises(ValueError, match=r"'reference' needs a reference answer, group 'g7'"):
        run("reference", [group(VALUES, id="g7")])
    good = group([1, 2], reference="answer 1.5")
    [bad, ok], _ = run("reference", [group(VALUES), good], skip_invalid=True)
    assert bad.rewards == [None] * 4 and "needs a reference" in bad.error
    assert ok.rewards == [0.0, 1.0] and ok.error is None


def test_async_matches_sync():
    groups = [group(VALUES, prompt=f"q{i}") for i in range(2)]
    sync = [r.rewards for r in run("knockout", groups, seed=5)[0]]
    backend = ScriptedJudge(ranker)
    results = asyncio.run(ascore_groups(Scorer(backend), groups, "knockout", seed=5))
    assert [r.rewards for r in results] == sync


def test_summary_names_opponents_and_votes():
    [result], _ = run("reference", [group([2], reference="answer 1")], order="both")
    assert result.summary(0) == "vs reference: 1.00 (votes 2-0, unparsed 0, orders agree)"


def test_prompts_and_completions_in_chat_format():
    context = as_context(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        ]
    )
    assert [(m.role, m.content) for m in context] == [("user", "Be brief.\n\nHi")]
    with pytest.raises(ValueError, match="must end with a user turn"):
        as_context([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    with pytest.raises(ValueError, match="role 'tool'"):
        as_context([{"role": "tool", "content": "x"}, {"role": "user", "content": "a"}])
    assert as_text([{"role": "assistant", "content": "answer 3"}]) == "answer 3"
    chat = Group(
        [{"role": "user", "content": "Pick."}],
        [[{"role": "assistant", "content": "answer 2"}], "answer 1"],
    )
    [result], _ = run("round-robin", [chat])
    assert result.rewards == [1.0, 0.0]


def test_both_orders_view_shares_the_scorer_cache():
    from rmr1_plugins.rewards.engine import with_both_orders

    backend = ScriptedJudge(ranker)
    scorer = Scorer(backend)
    view = with_both_orders(scorer)
    assert view.order == "both" and scorer.order == "given" and with_both_orders(view) is view
    score_groups(scorer, [group(VALUES)], "round-robin", order="both")
    score_groups(scorer, [group(VALUES)], "round-robin")  # the given order is already cached
    assert [len(batch) for batch in backend.batches] == [12]


def test_unknown_strategy_names_the_choices():
    from rmr1_plugins.plugins import UnknownNameError

    with pytest.raises(UnknownNameError, match=r"unknown strategy 'round-robbin'\. Did you mean"):
        resolve_strategy("round-robbin")


ORDER_GROUP = Group("Pick a number.", ["answer 1", "answer 2", "answer 3"])


def test_score_groups_takes_the_scorers_word_for_the_order():
    scorer = Scorer(ScriptedJudge())  # says A whatever it sees
    [given] = score_groups(scorer, [ORDER_GROUP], "round-robin")
    [both] = score_groups(scorer, [ORDER_GROUP], "round-robin", order="both")
    assert (given.judgments, both.judgments) == (3, 6)
    assert both.orders_agree == (0, 3) and scorer.order == "given"  # a view, not a change
    [again] = score_groups(Scorer(ScriptedJudge(), order="both"), [ORDER_GROUP], order="given")
    assert again.judgments == 3
    with pytest.raises(ValueError, match="order must be 'given', 'random' or 'both'"):
        score_groups(scorer, [ORDER_GROUP], order="both-ways")
