"""The adaptive strategy, its Bradley–Terry fit with a slot-A term, and soft outcomes."""

import math
import random

import pytest

from rmr1_plugins import Scorer
from rmr1_plugins.backends.base import Backend, Generation
from rmr1_plugins.rewards.adaptive import AdaptiveStrategy, fit_strengths
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.engine import Group, outcome_scores, score_groups
from rmr1_plugins.rewards.strategies import resolve_strategy
from rmr1_plugins.schema import Judgment, PairwiseExample
from rmr1_plugins.scorer import combine
from rmr1_plugins.testing import ScriptedJudge, group, value
from rmr1_plugins.testing import response_slots as slots
from rmr1_plugins.testing.judges import ranker


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_fit_recovers_strengths_and_the_slot_a_advantage():
    truth, advantage = [-1.0, -0.25, 0.5, 0.75], 0.6
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    outcomes = [(p, 1 - p) for p in (sigmoid(truth[i] - truth[j] + advantage) for i, j in pairs)]
    strengths, slot_a, variances = fit_strengths(4, pairs, outcomes, prior=1e-6)
    assert strengths == pytest.approx(truth, abs=1e-4)  # truth is already centred
    assert slot_a == pytest.approx(advantage, abs=1e-4)
    assert all(v > 0 for v in variances)


def test_fit_skips_excluded_outcomes_and_double_losses():
    pairs = [(0, 1), (1, 0), (0, 1)]
    with_noise = fit_strengths(2, pairs, [(1.0, 0.0), None, (0.0, 0.0)])
    alone = fit_strengths(2, pairs[:1], [(1.0, 0.0)])
    for found, expected in zip(with_noise, alone, strict=True):
        assert found == pytest.approx(expected)


def test_a_judge_that_always_says_a_is_pure_position_bias():
    # One order per pair: round-robin alternates slots to cancel the bias; adaptive estimates it.
    six = [group([1, 2, 3, 4, 5, 6])]
    [biased] = score_groups(Scorer(ScriptedJudge()), six, AdaptiveStrategy())  # always [[A]]
    [ranked] = score_groups(Scorer(ScriptedJudge(ranker)), six, AdaptiveStrategy())
    spread = max(biased.rewards) - min(biased.rewards)
    assert spread < 0.05 * (max(ranked.rewards) - min(ranked.rewards))  # the slot-A term took it
    assert biased.judgments == 12  # the default budget: twice the group size


def test_adaptive_ranks_a_perfect_judge_and_spends_its_budget_in_batched_rounds():
    backend = ScriptedJudge(ranker)
    groups = [group(random.Random(seed).sample(range(100), 8), id=str(seed)) for seed in range(3)]
    results = score_groups(Scorer(backend), groups, AdaptiveStrategy(budget=16))
    # 8 opening comparisons, then rounds of 4 disjoint pairs: 3 backend calls for all groups
    assert len(backend.batches) == 3
    assert [len(batch) for batch in backend.batches] == [24, 12, 12]
    for grp, result in zip(groups, results, strict=True):
        assert len(result.comparisons) == 16
        values = [value(text) for text in grp.completions]
        by_reward = sorted(range(8), key=lambda i: result.rewards[i])
        assert by_reward[0] == values.index(min(values))
        assert by_reward[-1] == values.index(max(values))
        assert sum(result.rewards) == pytest.approx(0, abs=1e-9)  # centred


def test_rounds_are_disjoint_and_a_repeated_pair_swaps_slots():
    sent: list[list[tuple[str, str]]] = []

    def judge(user: str, _: int) -> str:
        sent[-1].append(slots(user))
        return ranker(user, _)

    class Recording(ScriptedJudge):
        def generate(self, conversations, params):
            sent.append([])
            return super().generate(conversations, params)

    # a group of 3 and a budget of 6: every pair comes back, in the other order
    score_groups(Scorer(Recording(judge)), [group([3, 1, 2])], AdaptiveStrategy(budget=6))
    flat = [pair for batch in sent for pair in batch]
    assert len(flat) == 6
    for batch in sent[1:]:
        texts = [t for pair in batch for t in pair]
        assert len(texts) == len(set(texts))  # no completion twice in one round
    assert sorted(flat) == sorted((b, a) for a, b in flat)  # each pair in both slot orders


def test_budget_and_prior_are_checked():
    with pytest.raises(ValueError, match="budget"):
        AdaptiveStrategy(budget=0)
    with pytest.raises(ValueError, match="prior"):
        AdaptiveStrategy(prior=0)
    with pytest.raises(ValueError, match="prior"):
        fit_strengths(2, [(0, 1)], [(1.0, 0.0)], prior=1e-300)
    assert AdaptiveStrategy(budget=5).comparisons(8) == 5
    assert AdaptiveStrategy().comparisons(1) == 0
    [result] = score_groups(Scorer(ScriptedJudge()), [group([1])], AdaptiveStrategy())
    assert result.rewards == [None]


def test_reward_config_builds_the_strategy_with_its_options_at_load_time():
    config = RewardConfig(strategy="adaptive", strategy_options={"budget": 9})
    strategy = config.build_strategy()
    assert isinstance(strategy, AdaptiveStrategy) and strategy.budget == 9
    with pytest.raises(ValueError, match="bad strategy_options"):
        RewardConfig(strategy="adaptive", strategy_options={"bugdet": 9})
    with pytest.raises(ValueError, match="round-robn"):
        RewardConfig(strategy="round-robn")
    with pytest.raises(ValueError, match="outcome"):
        RewardConfig(outcome="fuzzy")
    with pytest.raises(ValueError, match="instance"):
        resolve_strategy(AdaptiveStrategy(), {"budget": 3})


class ProbabilityBackend(Backend):
    """Says A with a fixed verdict probability for slot A, as the backends report it."""

    name = "probability"

    def __init__(self, prob_a: float) -> None:
        super().__init__("prob-model")
        self.prob_a = prob_a

    def generate(self, conversations, params):
        said = Generation("<answer>[[A]]</answer>", "stop", prob_a=self.prob_a, prob_letter="A")
        return [[said]] * len(conversations)


def test_scorer_maps_verdict_probabilities_back_and_averages_both_orders():
    example = PairwiseExample(
        context=[{"role": "user", "content": "q"}], response_a="x", response_b="y"
    )
    [given] = Scorer(ProbabilityBackend(0.8)).score([example])
    assert given.prob_a == pytest.approx(0.8)
    [both] = Scorer(ProbabilityBackend(0.8), order="both").score([example])
    # P(A | x, y) = 0.8 and P(A | y, x) = 0.8 (slot-A bias): debiased to 0.5
    assert [j.prob_a for j in both.judgments] == pytest.approx([0.8, 0.2])
    assert both.prob_a == pytest.approx(0.5)


def test_soft_outcomes_use_the_probability_and_fall_back_to_votes():
    example = PairwiseExample(
        context=[{"role": "user", "content": "q"}], response_a="x", response_b="y"
    )
    sure = combine(example, [Judgment(verdict="A", completion="", prob_a=0.7)])
    bare = combine(example, [Judgment(verdict="A", completion="")])
    assert outcome_scores(sure, "tie", "soft") == pytest.approx((0.7, 0.3))
    assert outcome_scores(sure, "tie", "hard") == (1.0, 0.0)
    assert outcome_scores(bare, "tie", "soft") == (1.0, 0.0)
    [soft] = score_groups(
        Scorer(ProbabilityBackend(0.7)), [Group("q", ["a", "b"])], "round-robin", outcome="soft"
    )
    assert sorted(soft.rewards) == pytest.approx([0.3, 0.7])
    with pytest.raises(ValueError, match="outcome"):
        score_groups(Scorer(ProbabilityBackend(0.7)), [Group("q", ["a", "b"])], outcome="x")


def test_completions_without_a_counted_comparison_get_none():
    # Knocking out every comparison of completion 0 (its text has no verdict) leaves it None.
    def judge(user: str, _: int) -> str:
        a, b = slots(user)
        return "no verdict" if "answer 0" in (a, b) else ranker(user, _)

    groups = [group([0, 1, 2, 3])]
    [result] = score_groups(Scorer(ScriptedJudge(judge)), groups, AdaptiveStrategy(),
                            on_unparsed="exclude")  # fmt: skip
    assert result.rewards[0] is None and all(r is not None for r in result.rewards[1:])
    # a budget below the group size leaves some completions undrawn
    [short] = score_groups(Scorer(ScriptedJudge(ranker)), [group(range(6))], AdaptiveStrategy(2))
    assert sum(r is None for r in short.rewards) == 3  # a chain of 2 comparisons reaches 3 of 6


class MisreadBackend(Backend):
    """Writes two verdicts: strict reads the answer block (A), the probability is at the last B."""

    name = "misread"

    def __init__(self, text: str) -> None:
        super().__init__("misread-model")
        self.text = text

    def generate(self, conversations, params):
        said = Generation(self.text, "stop", prob_a=0.1, prob_letter="B")
        return [[said]] * len(conversations)


def test_a_probability_counts_only_at_the_letter_the_parser_read():
    example = PairwiseExample(context=[{"role": "user", "content": "q"}], response_a="x",
                              response_b="y")  # fmt: skip
    [misread] = Scorer(MisreadBackend("<answer>[[A]]</answer> (not [[B]])")).score([example])
    assert misread.verdict == "A" and misread.prob_a is None
    assert outcome_scores(misread, "tie", "soft") == (1.0, 0.0)  # the votes, not the 0.1
    [unparsed] = Scorer(MisreadBackend("no verdict, then [[B]]")).score([example])
    assert unparsed.verdict is None and unparsed.prob_a is None
    assert outcome_scores(unparsed, "exclude", "soft") is None
