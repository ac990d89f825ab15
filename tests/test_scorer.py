import asyncio
import threading
import time

import pytest

from rmr1_plugins import SamplingParams, Scorer
from rmr1_plugins.backends.constant import ConstantBackend
from rmr1_plugins.testing import ScriptedJudge, pair

GUARD_S = 30  # a hang guard: past it a test fails instead of waiting forever


def prefers(text):
    """A judge that picks whichever slot holds ``text``."""

    def answer(user, _):
        slot_a = user.split("[The Start of Chatbot A's Response]\n")[1].split("\n[The End")[0]
        return f"<answer>[[{'A' if slot_a == text else 'B'}]]</answer>"

    return answer


def test_one_batched_call_and_duplicates_judged_once():
    backend = ScriptedJudge()
    results = Scorer(backend).score([pair(), pair(), pair(b="6")])
    assert [len(batch) for batch in backend.batches] == [2]
    assert [r.verdict for r in results] == ["A", "A", "A"]


def test_both_orders_are_mapped_back_and_agreement_reported():
    backend = ScriptedJudge(prefers("4"))
    [consistent] = Scorer(backend, order="both").score([pair(label="A")])
    assert consistent.verdict == "A" and consistent.orders_agree is True
    assert consistent.votes == {"A": 2, "B": 0, "none": 0}
    assert [j.swapped for j in consistent.judgments] == [False, True]
    assert consistent.correct is True

    always_a = ScriptedJudge()  # pure position bias
    [biased] = Scorer(always_a, order="both").score([pair()])
    assert biased.verdict is None and biased.orders_agree is False
    assert biased.votes == {"A": 1, "B": 1, "none": 0}


def test_random_order_is_seeded_and_stable():
    pairs = [pair(question=f"q{i}") for i in range(40)]
    swaps = [
        j.swapped for r in Scorer(ScriptedJudge(), order="random").score(pairs) for j in r.judgments
    ]
    again = [
        j.swapped for r in Scorer(ScriptedJudge(), order="random").score(pairs) for j in r.judgments
    ]
    other = [
        j.swapped
        for r in Scorer(ScriptedJudge(), order="random", seed=1).score(pairs)
        for j in r.judgments
    ]
    assert swaps == again and swaps != other
    assert 5 < sum(swaps) < 35
    results = Scorer(ScriptedJudge(prefers("4")), order="random").score(pairs)
    assert all(r.verdict == "A" for r in results)  # the verdict follows the response, not the slot


def test_majority_vote_over_samples():
    votes = iter(["<answer>[[B]]</answer>", "<answer>[[A]]</answer>", "<answer>[[B]]</answer>"])
    backend = ScriptedJudge(lambda user, i: next(votes))
    [result] = Scorer(backend, sampling=SamplingParams(num_samples=3, temperature=1.0)).score(
        [pair()]
    )
    assert result.verdict == "B" and result.votes == {"A": 1, "B": 2, "none": 0}


def test_unparseable_judgment_is_no_verdict_not_an_error():
    [result] = Scorer(ScriptedJudge(lambda user, i: "no idea")).score([pair()])
    assert result.verdict is None and result.votes["none"] == 1


def test_cache_serves_repeats_across_calls_for_greedy_only():
    backend = ScriptedJudge()
    scorer = Scorer(backend)
    scorer.score([pair()])
    scorer.score([pair(), pair(b="7")])
    assert [len(b) for b in backend.batches] == [1, 1]
    assert scorer.stats["cache_hits"] == 1

    sampled = ScriptedJudge()
    scorer = Scorer(sampled, sampling=SamplingParams(temperature=0.7))
    scorer.score([pair()])
    scorer.score([pair()])
    assert len(sampled.batches) == 2


def test_ascore_matches_score():
    backend = ScriptedJudge(prefers("5"))
    sync = Scorer(backend, order="both", cache_size=0).score([pair(), pair(b="9")])
    async_ = asyncio.run(Scorer(backend, order="both", cache_size=0).ascore([pair(), pair(b="9")]))
    assert [r.model_dump() for r in sync] == [r.model_dump() for r in async_]


def test_reasoning_template_and_constant_backend():
    backend = ConstantBackend(options={"completion": "thinking</think><answer>[[B]]</answer>"})
    [result] = Scorer(backend, "rmr1-reasoning").score([pair()])
    assert result.verdict == "B" and backend.calls == [1]


def test_bad_order_and_unknown_names_are_clear():
    with pytest.raises(ValueError, match="order must be"):
        Scorer(ScriptedJudge(), order="sideways")
    with pytest.raises(KeyError, match="Did you mean 'rmr1-instruct'"):
        Scorer(ScriptedJudge(), template="rmr1-instrct")


def test_backend_returning_wrong_count_is_caught():
    class Short(ScriptedJudge):
        def generate(self, conversations, params):
            return []

    with pytest.raises(RuntimeError, match="returned 0 results for 1 requests"):
        Scorer(Short()).score([pair()])


def test_cache_is_lru_counts_truncations_and_can_hold_sampled_judgments():
    backend = ScriptedJudge(lambda user, i: "<eval>cut off")
    scorer = Scorer(backend, cache_size=2)
    scorer.score([pair(b="1"), pair(b="2")])
    scorer.score([pair(b="1")])  # a hit makes "1" the most recent
    scorer.score([pair(b="3")])  # evicts "2", not "1"
    scorer.score([pair(b="1"), pair(b="2")])
    assert [len(b) for b in backend.batches] == [2, 1, 1]
    info = scorer.cache_info()
    assert (info["size"], info["max_size"], info["cache_hits"], info["generated"]) == (2, 2, 2, 4)

    sampled = ScriptedJudge()
    scorer = Scorer(sampled, sampling=SamplingParams(temperature=0.7), cache_sampled=True)
    scorer.score([pair()])
    scorer.score([pair()])
    assert len(sampled.batches) == 1
    scorer.clear_cache()
    scorer.score([pair()])
    assert len(sampled.batches) == 2


def test_truncated_judgments_are_counted():
    from rmr1_plugins import Generation

    class Cut(ScriptedJudge):
        def generate(self, conversations, params):
            return [[Generation("<eval>half", "length")] for _ in conversations]

    scorer = Scorer(Cut())
    [result] = scorer.score([pair()])
    assert result.verdict is None and result.judgments[0].finish_reason == "length"
    assert scorer.stats["truncated"] == 1


class Gated(ScriptedJudge):
    """Holds every call until ``gate`` is set, so that concurrent calls overlap for as long as a
    test needs (no clock); can be told to fail."""

    def __init__(self, fail=False):
        super().__init__()
        self.fail = fail
        self.calls = 0
        self.gate = threading.Event()

    def generate(self, conversations, params):
        self.calls += 1
        assert self.gate.wait(GUARD_S), "the test never opened the gate"
        if self.fail:
            from rmr1_plugins import BackendError

            raise BackendError("engine died")
        return super().generate(conversations, params)


def until(condition):
    """Poll ``condition()`` until it holds; a hang guard (GUARD_S), not a timing."""
    deadline = time.monotonic() + GUARD_S
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.001)


async def held_until(scorer, hits, *calls):
    """Run ``calls`` concurrently, opening the judge's gate once ``hits`` of them have found a
    request already in flight (so they overlap, whatever the machine's speed)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    await asyncio.to_thread(until, lambda: scorer.stats["inflight_hits"] >= hits)
    scorer.backend.gate.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_concurrent_calls_share_a_request_in_flight():
    backend = Gated()
    scorer = Scorer(backend, cache_size=0)  # no cache: sharing comes from the in-flight table
    first, second = asyncio.run(
        held_until(scorer, 1, scorer.ascore([pair()]), scorer.ascore([pair(), pair(b="6")]))
    )
    # the shared request went out once (the two calls plan in worker threads, in either order)
    assert sum(len(b) for b in backend.batches) == 2 and len(backend.batches) in (1, 2)
    sent = len(backend.batches)
    assert first[0].model_dump() == second[0].model_dump()
    assert scorer.stats["inflight_hits"] == 1 and not scorer._inflight

    backend.gate.clear()
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(scorer.score([pair(b="7")])))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    until(lambda: scorer.stats["inflight_hits"] == 2)  # the second thread waits on the first
    backend.gate.set()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and len(backend.batches) == sent + 1  # one more, judged once


def test_a_failed_request_fails_its_concurrent_waiters_and_is_not_cached():
    from rmr1_plugins import BackendError

    backend = Gated(fail=True)
    backend.gate.set()
    scorer = Scorer(backend)
    with pytest.raises(BackendError):
        scorer.score([pair()])  # alone: nothing waits on it, nothing must stay in flight
    assert not scorer._inflight

    backend.gate.clear()
    errors = asyncio.run(held_until(scorer, 1, scorer.ascore([pair()]), scorer.ascore([pair()])))
    assert all(isinstance(e, BackendError) for e in errors) and backend.calls == 2
    assert not scorer._inflight and scorer.cache_info()["size"] == 0
    backend.fail = False
    assert scorer.score([pair()])[0].verdict == "A"  # nothing stale was kept


def test_backend_may_shorten_examples_before_rendering():
    class Shortening(ScriptedJudge):
        def fit_example(self, example, template, params):
            return example.model_copy(update={"response_a": example.response_a[:3]})

    backend = Shortening()
    scorer = Scorer(backend, order="both")
    [result] = scorer.score([pair(a="123456789")])
    prompts = [conversation[-1]["content"] for conversation in backend.batches[0]]
    assert all("123" in p and "1234" not in p for p in prompts)
    assert len(result.judgments) == 2


def test_a_call_cancelled_while_planning_releases_its_requests_after_its_loop_closed():
    scorer = Scorer(ScriptedJudge())
    gate, planning, planned = threading.Event(), threading.Event(), threading.Event()
    plan = scorer._plan

    def slow_plan(examples):
        planning.set()
        gate.wait(30)
        try:
            return plan(examples)
        finally:
            planned.set()

    scorer._plan = slow_plan

    async def cancelled():
        task = asyncio.ensure_future(scorer.ascore([pair()]))
        await asyncio.to_thread(planning.wait, 30)
        task.cancel()

    asyncio.run(cancelled())  # the loop is closed before the plan registers its requests
    gate.set()
    assert planned.wait(30)
    scorer._plan = plan
    for _ in range(500):  # the release runs in the planning thread, just after the plan
        if not scorer._inflight:
            break
        threading.Event().wait(0.01)
    assert scorer._inflight == {}
    [result] = asyncio.run(asyncio.wait_for(scorer.ascore([pair()]), 30))  # not left waiting
    assert result.verdict == "A"
