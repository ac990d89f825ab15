"""Every strategy is total: any outcomes give finite rewards in range, copies tie, and one
group's failure stays in that group."""

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmr1_plugins import Scorer
from rmr1_plugins.backends.base import Backend, Generation, SamplingParams
from rmr1_plugins.plugins import get_plugins, get_strategy
from rmr1_plugins.rewards.engine import Group, GroupScoring, score_groups
from rmr1_plugins.rewards.strategies import BradleyTerryStrategy, Strategy, all_pairs
from rmr1_plugins.schema import PairResult
from rmr1_plugins.testing import ScriptedJudge

NAMES = get_plugins().registries["strategies"].names()

VOTES = {
    "A": {"A": 1, "B": 0, "none": 0},
    "B": {"A": 0, "B": 1, "none": 0},
    "tie": {"A": 1, "B": 1, "none": 0},
    "none": {"A": 0, "B": 0, "none": 1},
}


def judged(kind: str, prob_a: float | None) -> PairResult:
    return PairResult(verdict=None, votes=VOTES[kind], judgments=[], prob_a=prob_a)


def play(name, completions, answers, **options) -> list[float | None]:
    """Play one group, answering each judged pair with the next of ``answers`` (cycled)."""
    run = GroupScoring([Group("q", completions, reference="ref")], name, **options)
    count = 0
    while not run.done:
        examples = run.examples()
        run.feed([answers[(count + k) % len(answers)] for k in range(len(examples))])
        count += len(examples)
    [result] = run.rewards()
    assert result.error is None, result.error
    return result.rewards


def check(strategy: Strategy, completions: list[str], rewards: list[float | None]) -> None:
    assert len(rewards) == len(completions)
    for value in rewards:
        assert value is None or math.isfinite(value)
        if value is not None and strategy.bounded:
            assert 0 <= value <= 1
        if value is not None and isinstance(strategy, BradleyTerryStrategy):
            assert abs(value) <= strategy.bound(len(completions))
    for i, text in enumerate(completions):
        for j in range(i):
            if completions[j] == text:
                assert rewards[i] == rewards[j], (i, j, rewards)


class Cycling(Backend):
    """A judge answering with the next of its generations, cycled (one per judgment)."""

    name = "cycling"

    def __init__(self, generations: list[Generation]) -> None:
        super().__init__("cycling-model")
        self.generations, self.count = generations, 0

    def generate(self, conversations, params: SamplingParams):
        answers = []
        for _ in conversations:
            samples = []
            for _ in range(params.num_samples):
                samples.append(self.generations[self.count % len(self.generations)])
                self.count += 1
            answers.append(samples)
        return answers


def generation(letter: str | None, prob_a: float | None, cut: bool) -> Generation:
    if letter is None:
        return Generation("I cannot decide", "length" if cut else "stop")
    return Generation(
        f"<answer>[[{letter}]]</answer>",
        "stop",
        prob_a=prob_a,
        prob_letter=None if prob_a is None else letter,
    )


GENERATION = st.builds(
    generation,
    st.sampled_from(["A", "B", None]),
    st.one_of(st.none(), st.floats(0, 1), st.sampled_from([0.0, 1.0])),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    order=st.sampled_from(["given", "random", "both"]),
    outcome=st.sampled_from(["hard", "soft"]),
    on_unparsed=st.sampled_from(["tie", "loss", "exclude"]),
    completions=st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=12),
    generations=st.lists(GENERATION, min_size=1, max_size=20),
    seed=st.integers(0, 3),
)
def test_every_strategy_is_total(name, order, outcome, on_unparsed, completions, generations, seed):
    scorer = Scorer(Cycling(generations), order=order)
    [result] = score_groups(
        scorer,
        [Group("q", completions, reference="ref")],
        name,
        on_unparsed=on_unparsed,
        outcome=outcome,
        seed=seed,
    )
    assert result.error is None, result.error
    check(get_strategy(name), completions, result.rewards)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("on_unparsed", ["tie", "loss", "exclude"])
@pytest.mark.parametrize(("size", "share"), [(2, 1.0), (8, 0.3), (9, 1.0), (64, 1.0)])
def test_unparsed_shares_and_sizes(name, on_unparsed, size, share):
    rng = random.Random(size)
    completions = [f"answer {i}" for i in range(size)]
    answers = [
        judged("none" if rng.random() < share else rng.choice("AB"), None) for _ in range(97)
    ]
    rewards = play(name, completions, answers, on_unparsed=on_unparsed)
    check(get_strategy(name), completions, rewards)


def test_bradley_terry_double_losses_stay_bounded():
    # Before: one unparsed completion of 8 gave −26..+39, five raised "math domain error".
    strategy = BradleyTerryStrategy()
    pairs = all_pairs(8)
    for broken in range(1, 9):
        outcomes = [
            (0.0, 0.0) if i < broken or j < broken else ((1.0, 0.0) if i > j else (0.0, 1.0))
            for i, j in pairs
        ]
        rewards = strategy.fit(8, pairs, outcomes)
        assert all(abs(r) <= 3 for r in rewards), rewards
        # a completion whose judgments never parse ranks below one that wins at least once
        if broken < 7:
            assert max(rewards[:broken]) < max(rewards[broken:])
    everything = strategy.fit(256, all_pairs(256), [(0.0, 0.0)] * len(all_pairs(256)))
    assert everything == pytest.approx([0.0] * 256)


def test_knockout_gives_identical_completions_one_reward():
    # Before: a tie between two copies sent the first on (1.0) and the second home (0.0).
    always_tie = [judged("tie", None)]
    assert play("knockout", ["same", "same"], always_tie) == [0.5, 0.5]
    rewards = play("knockout", ["x", "x", "x", "x", "y"], [judged("A", None)], seed=2)
    assert len(set(rewards[:4])) == 1


class Broken(Strategy):
    """Raises on a group of three, works on any other."""

    name = "broken"

    def play(self, size, rng):
        outcomes = yield [(0, 1)]
        if size == 3:
            raise ValueError("math domain error")
        return [outcomes[0][0], outcomes[0][1], *([0.5] * (size - 2))]

    def comparisons(self, size):
        return 1


class Infinite(Broken):
    name = "infinite"
    bounded = False

    def play(self, size, rng):
        yield [(0, 1)]
        return [math.inf if size == 3 else 1.0] * size


@pytest.mark.parametrize("strategy", [Broken(), Infinite()])
def test_a_failing_group_gets_none_and_the_others_their_rewards(strategy):
    groups = [Group("q", ["a", "b"]), Group("q", ["a", "b", "c"]), Group("r", ["c", "d", "e", "f"])]
    results = score_groups(Scorer(ScriptedJudge()), groups, strategy)
    assert results[1].rewards == [None] * 3 and "'" + strategy.name + "' failed" in results[1].error
    assert results[0].error is None and results[2].error is None
    assert results[0].rewards[0] == 1.0 and len(results[2].rewards) == 4
