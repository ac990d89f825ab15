import asyncio

import pytest
from conftest import ScriptedBackend, pair

from rmr1_plugins import SamplingParams, Scorer
from rmr1_plugins.backends.constant import ConstantBackend


def prefers(text):
    """A judge that picks whichever slot holds ``text``."""

    def answer(user, _):
        slot_a = user.split("[The Start of Chatbot A's Response]\n")[1].split("\n[The End")[0]
        return f"<answer>[[{'A' if slot_a == text else 'B'}]]</answer>"

    return answer


def test_one_batched_call_and_duplicates_judged_once():
    backend = ScriptedBackend()
    results = Scorer(backend).score([pair(), pair(), pair(b="6")])
    assert [len(batch) for batch in backend.batches] == [2]
    assert [r.verdict for r in results] == ["A", "A", "A"]


def test_both_orders_are_mapped_back_and_agreement_reported():
    backend = ScriptedBackend(prefers("4"))
    [consistent] = Scorer(backend, order="both").score([pair(label="A")])
    assert consistent.verdict == "A" and consistent.orders_agree is True
    assert consistent.votes == {"A": 2, "B": 0, "none": 0}
    assert [j.swapped for j in consistent.judgments] == [False, True]
    assert consistent.correct is True

    always_a = ScriptedBackend()  # pure position bias
    [biased] = Scorer(always_a, order="both").score([pair()])
    assert biased.verdict is None and biased.orders_agree is False
    assert biased.votes == {"A": 1, "B": 1, "none": 0}


def test_random_order_is_seeded_and_stable():
    pairs = [pair(question=f"q{i}") for i in range(40)]
    swaps = [
        j.swapped
        for r in Scorer(ScriptedBackend(), order="random").score(pairs)
        for j in r.judgments
    ]
    again = [
        j.swapped
        for r in Scorer(ScriptedBackend(), order="random").score(pairs)
        for j in r.judgments
    ]
    other = [
        j.swapped
        for r in Scorer(ScriptedBackend(), order="random", seed=1).score(pairs)
        for j in r.judgments
    ]
    assert swaps == again and swaps != other
    assert 5 < sum(swaps) < 35
    results = Scorer(ScriptedBackend(prefers("4")), order="random").score(pairs)
    assert all(r.verdict == "A" for r in results)  # the verdict follows the response, not the slot


def test_majority_vote_over_samples():
    votes = iter(["<answer>[[B]]</answer>", "<answer>[[A]]</answer>", "<answer>[[B]]</answer>"])
    backend = ScriptedBackend(lambda user, i: next(votes))
    [result] = Scorer(backend, sampling=SamplingParams(n=3, temperature=1.0)).score([pair()])
    assert result.verdict == "B" and result.votes == {"A": 1, "B": 2, "none": 0}


def test_unparseable_judgment_is_no_verdict_not_an_error():
    [result] = Scorer(ScriptedBackend(lambda user, i: "no idea")).score([pair()])
    assert result.verdict is None and result.votes["none"] == 1


def test_cache_serves_repeats_across_calls_for_greedy_only():
    backend = ScriptedBackend()
    scorer = Scorer(backend)
    scorer.score([pair()])
    scorer.score([pair(), pair(b="7")])
    assert [len(b) for b in backend.batches] == [1, 1]
    assert scorer.stats["cache_hits"] == 1

    sampled = ScriptedBackend()
    scorer = Scorer(sampled, sampling=SamplingParams(temperature=0.7))
    scorer.score([pair()])
    scorer.score([pair()])
    assert len(sampled.batches) == 2


def test_ascore_matches_score():
    backend = ScriptedBackend(prefers("5"))
    sync = Scorer(backend, order="both", cache_size=0).score([pair(), pair(b="9")])
    async_ = asyncio.run(Scorer(backend, order="both", cache_size=0).ascore([pair(), pair(b="9")]))
    assert [r.model_dump() for r in sync] == [r.model_dump() for r in async_]


def test_reasoning_template_and_constant_backend():
    backend = ConstantBackend(options={"completion": "thinking</think><answer>[[B]]</answer>"})
    [result] = Scorer(backend, "rmr1-reasoning").score([pair()])
    assert result.verdict == "B" and backend.calls == [1]


def test_bad_order_and_unknown_names_are_clear():
    with pytest.raises(ValueError, match="order must be"):
        Scorer(ScriptedBackend(), order="sideways")
    with pytest.raises(KeyError, match="Did you mean 'rmr1-instruct'"):
        Scorer(ScriptedBackend(), template="rmr1-instrct")


def test_backend_returning_wrong_count_is_caught():
    class Short(ScriptedBackend):
        def generate(self, conversations, params):
            return []

    with pytest.raises(RuntimeError, match="returned 0 results for 1 requests"):
        Scorer(Short()).score([pair()])
