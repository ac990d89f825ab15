"""The batching reward service: every sample answered once, right, and on time."""

import asyncio
import threading
import time

import pytest

from rmr1_plugins import SamplingParams, Scorer
from rmr1_plugins.backends.base import Backend, Generation
from rmr1_plugins.backends.openai import OpenAIBackend
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.inputs import Sample
from rmr1_plugins.rewards.service import BackgroundRewardService, RewardService
from rmr1_plugins.testing.judges import RequestsJudge, VotesJudge, expected_reward

PROMPT = "<|im_start|>user\nSay something.<|im_end|>\n<|im_start|>assistant\n"


def sample(text, label="reference"):
    return Sample(PROMPT + text + "<|im_end|>", PROMPT, label)


def scorer(judge=VotesJudge, **kwargs):
    return Scorer(judge(), sampling=SamplingParams(num_samples=8), **kwargs)


def run(coroutine):
    return asyncio.run(coroutine)


async def serve_concurrently(service, samples):
    await service.start(warmup=False)
    try:
        return await asyncio.gather(*(service.rewards([s]) for s in samples))
    finally:
        await service.aclose()


def test_concurrent_single_samples_are_batched_and_each_gets_its_own_reward():
    service = RewardService(
        scorer(), RewardConfig(service={"max_batch_size": 16, "max_wait_ms": 20})
    )
    answers = run(serve_concurrently(service, [sample(f"r{i}") for i in range(100)]))
    assert [a[0].reward for a in answers] == [expected_reward(i) for i in range(100)]
    assert all(a[0].error is None for a in answers)
    judge = service.scorer.backend
    assert sum(judge.batches) == 100 and max(judge.batches) == 16 and len(judge.batches) < 10
    stats = service.stats
    assert stats["samples"] == stats["answered"] == stats["judged"] == 100
    assert service.pending == 0 and stats["fallback"] == 0


def test_a_failing_sample_costs_only_its_own_reward():
    service = RewardService(
        scorer(), RewardConfig(service={"max_batch_size": 32, "retry_backoff_s": 0.01})
    )
    texts = [f"r{i}" for i in range(20)]
    texts[7] = "r7 boom"
    texts[12] = "r12 refused"
    texts[3] = "r3 flaky"
    answers = [a[0] for a in run(serve_concurrently(service, [sample(t) for t in texts]))]
    for i, answer in enumerate(answers):
        if i in (7, 12):
            assert answer.reward == 0.5 and answer.kind == "error"
            assert answer.extra_logs["rmr1_error"] == 1.0
        else:
            assert answer.reward == expected_reward(i) and answer.error is None
    assert "injected failure for 'r7 boom'" in answers[7].error
    assert "ConnectionRefusedError" in answers[12].error
    assert service.stats["retries"] == 2  # boom and refused, each alone once split out
    assert service.stats["fallback_error"] == 2


def test_a_single_failure_is_retried_with_backoff():
    service = RewardService(
        scorer(), RewardConfig(service={"max_retries": 2, "retry_backoff_s": 0.2})
    )
    started = time.monotonic()
    [[flaky]] = run(serve_concurrently(service, [sample("r5 flaky")]))
    assert flaky.reward == expected_reward(5) and flaky.error is None
    assert service.stats["retries"] == 1 and time.monotonic() - started >= 0.2


def test_a_slow_judge_gives_the_timeout_fallback_on_time():
    config = RewardConfig(service={"timeout_s": 0.5, "max_wait_ms": 0})
    service = RewardService(scorer(), config)

    async def scenario():
        await service.start(warmup=False)
        started = time.monotonic()
        [slow] = await service.rewards([sample("r1 slow:30")])
        took = time.monotonic() - started
        [after] = await service.rewards([sample("r4")])  # the judge is free again
        await service.aclose()
        return slow, took, after

    slow, took, after = run(scenario())
    assert slow.kind == "timeout" and "no verdict within 0.5 s" in slow.error
    assert 0.4 < took < 2.0
    assert after.reward == expected_reward(4)
    assert service.stats["fallback_timeout"] == 1


def test_unjudgeable_and_unparsed_samples_get_the_fallback_and_are_counted():
    service = RewardService(scorer(), RewardConfig(fallback=0.2, on_unparsed="exclude"))
    samples = [
        sample("r1", label=""),
        Sample("x", "not in x", "ref"),
        sample("mute"),
        sample("cut"),
    ]
    answers = [a[0] for a in run(serve_concurrently(service, samples))]
    assert [a.reward for a in answers] == [0.2] * 4
    # an empty reference is no_reference (as in veRL, TRL and the cohorts), a bad query bad_input
    assert [a.kind for a in answers] == ["no_reference", "bad_input", "unparsed", "unparsed"]
    assert answers[0].extra_logs["rmr1_no_reference"] == 1.0
    assert answers[3].extra_logs["rmr1_health/truncated"] == 1.0 and "cut at max_new_tokens" in (
        answers[3].error
    )
    assert service.stats["fallback_bad_input"] == 1 and service.stats["fallback_unparsed"] == 2
    assert service.stats["fallback_no_reference"] == 1


def test_an_unparsed_sample_follows_on_unparsed_like_a_group():
    for on_unparsed, reward in (("tie", 0.5), ("loss", 0.0)):
        service = RewardService(scorer(), RewardConfig(fallback=0.2, on_unparsed=on_unparsed))
        [[mute]] = run(serve_concurrently(service, [sample("mute")]))
        assert (mute.reward, mute.kind, mute.extra_logs["rmr1_fallback"]) == (reward, None, 0.0)
        assert mute.extra_logs["rmr1_unparsed_comparisons"] == 1.0
        assert service.stats["fallback"] == 0 and service.stats["unparsed"] == 1


def test_closing_answers_waiting_samples_and_later_calls():
    service = RewardService(scorer(), RewardConfig(service={"timeout_s": 30}))

    async def scenario():
        await service.start(warmup=False)
        waiting = asyncio.ensure_future(service.rewards([sample("r2 slow:30")]))
        await asyncio.sleep(0.1)
        await service.aclose()
        return (await waiting)[0], (await service.rewards([sample("r3")]))[0]

    during, after = run(scenario())
    assert during.kind == "error" and "stopped" in during.error
    assert after.kind == "error" and service.stats["answered"] == 2


def test_warmup_loads_the_judge_and_reports_failure():
    ok = RewardService(scorer())
    run(ok.start())
    assert ok.warmup_error is None and ok.scorer.backend.batches == [1]

    class Broken(VotesJudge):
        async def agenerate(self, conversations, params):
            raise RuntimeError("model file missing")

    broken = RewardService(Scorer(Broken()))
    run(broken.start())
    assert "model file missing" in broken.warmup_error


def test_background_service_batches_calls_from_many_threads():
    background = BackgroundRewardService(
        scorer(), RewardConfig(service={"max_wait_ms": 50}), warmup=False
    )
    results = {}

    def call(i):
        results[i] = background.rewards([sample(f"r{i}")])[0].reward

    threads = [threading.Thread(target=call, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    background.close()
    assert results == {i: expected_reward(i) for i in range(40)}
    assert len(background.scorer.backend.batches) < 40
    assert background.stats["answered"] == 40


# -- failures stay local (issue 10) -----------------------------------------------------------


def check_local(answers, bad, kind, why):
    """Every sample but ``bad`` has its own reward; ``bad`` has the ``kind`` fallback."""
    for i, answer in enumerate(answers):
        if i == bad:
            assert answer.reward == 0.5 and answer.kind == kind and why in answer.error, answer
            assert answer.extra_logs[f"rmr1_{kind}"] == 1.0
        else:
            assert answer.reward == expected_reward(i) and answer.error is None, (i, answer)


def test_a_slowly_failing_sample_in_a_batch_of_64_costs_only_its_own_reward():
    # Each call with the bad sample takes 1 s, then raises. Bisection paid that at every level
    # and lost the 7 neighbours still sharing a call at the 4 s deadline; now each sample of
    # the failed batch is judged alone, all at once: one extra second for the healthy ones.
    config = RewardConfig(
        service={"max_batch_size": 64, "max_wait_ms": 500, "timeout_s": 4, "retry_backoff_s": 0.01}
    )
    service = RewardService(scorer(), config)
    texts = [f"r{i}" for i in range(64)]
    texts[20] = "r20 slow:1 boom"
    answers = [a[0] for a in run(serve_concurrently(service, [sample(t) for t in texts]))]
    check_local(answers, 20, "error", "injected failure for 'r20 slow:1 boom'")
    judge = service.scorer.backend
    assert judge.batches[0] == 64 and judge.batches[1:] == [1] * 65  # 64 alone, 1 retry
    assert service.stats["isolated"] == 64 and service.stats["retries"] == 1
    assert service.stats["fallback"] == service.stats["fallback_error"] == 1


def test_a_hung_request_costs_only_its_own_reward():
    # A backend of independent requests (a server API) gets one call per sample, so the hung
    # one holds up neither its batch nor the samples that arrive after it.
    config = RewardConfig(
        service={"max_batch_size": 4, "max_concurrent_batches": 1, "timeout_s": 3}
    )
    service = RewardService(scorer(RequestsJudge), config)

    async def scenario():
        await service.start(warmup=False)
        hung = asyncio.ensure_future(service.rewards([sample("r0 slow:30")]))
        await asyncio.sleep(0.05)
        wave = await asyncio.gather(*(service.rewards([sample(f"r{i}")]) for i in range(1, 16)))
        waiting = not hung.done()  # the wave was answered while the hung call still ran
        answers = [(await hung)[0], *(a[0] for a in wave)]
        await service.aclose()
        return waiting, answers

    waiting, answers = run(scenario())
    assert waiting
    check_local(answers, 0, "timeout", "within 3")
    judge = service.scorer.backend
    assert judge.batches == [1] * 16 and service.stats["largest_batch"] == 1
    assert service.stats["fallback"] == service.stats["fallback_timeout"] == 1
    assert service.stats["judge_timeouts"] <= 1  # abandoned at its own deadline


class CountingJudge(RequestsJudge):
    """Counts its calls in flight; a cancelled (abandoned) call leaves the count."""

    def __init__(self):
        super().__init__()
        self.in_flight = self.most = 0

    async def agenerate(self, conversations, params):
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            return await super().agenerate(conversations, params)
        finally:
            self.in_flight -= 1


def test_abandoned_calls_are_bounded_and_cancelled_at_their_deadline():
    config = RewardConfig(
        service={"max_batch_size": 2, "max_concurrent_batches": 2, "timeout_s": 1}
    )
    service = RewardService(scorer(CountingJudge), config)
    judge = service.scorer.backend

    async def scenario():
        await service.start(warmup=False)
        hung = [sample(f"r{i} slow:30") for i in range(10)]
        answers = await asyncio.gather(*(service.rewards([s]) for s in hung))
        # The calls' own limit ends just after their callers' deadline: wait for it (bounded),
        # not for a fixed time that a loaded machine may overrun.
        for _ in range(500):
            if not judge.in_flight:
                break
            await asyncio.sleep(0.01)
        left = judge.in_flight
        await service.aclose()
        return answers, left

    answers, left = run(scenario())
    assert [a[0].kind for a in answers] == ["timeout"] * 10
    assert judge.most == 4 and left == 0  # 2 x 2 single calls at most, none left running
    # each call abandoned; one whose deadline passed while the scorer still prepared it (a
    # loaded machine) never reached the engine, so the engine may have seen fewer
    calls = service.stats["calls"]
    assert service.stats["judge_timeouts"] == calls >= len(judge.batches) >= 4


def test_a_hung_call_of_a_batch_engine_gives_its_batch_the_timeout_fallback():
    # One engine call per batch (vllm): the call is abandoned at the batch's deadline and the
    # judge is free again for the next batch.
    config = RewardConfig(service={"max_batch_size": 8, "max_wait_ms": 200, "timeout_s": 1})
    service = RewardService(scorer(), config)

    async def scenario():
        await service.start(warmup=False)
        texts = ["r0 slow:30", *(f"r{i}" for i in range(1, 8))]
        hung = await asyncio.gather(*(service.rewards([sample(t)]) for t in texts))
        after = await service.rewards([sample("r4")])
        await service.aclose()
        return [a[0] for a in hung], after[0]

    hung, after = run(scenario())
    assert [a.kind for a in hung] == ["timeout"] * 8
    assert after.reward == expected_reward(4) and after.error is None
    assert service.scorer.backend.batches[0] == 8


def test_retries_are_counted_and_stay_within_the_deadline():
    config = RewardConfig(
        service={"max_batch_size": 32, "max_retries": 2, "retry_backoff_s": 0.01, "timeout_s": 30}
    )
    service = RewardService(scorer(), config)
    texts = [f"r{i}" for i in range(20)]
    texts[4] = "r4 boom"
    texts[9] = "r9 flaky"
    answers = [a[0] for a in run(serve_concurrently(service, [sample(t) for t in texts]))]
    check_local(answers, 4, "error", "injected failure for 'r4 boom'")  # flaky recovered
    # The batch, each of its 20 samples alone (flaky fails there once: boom broke the batch call
    # before flaky was reached), flaky's retry, boom's two retries.
    assert service.scorer.backend.batches == [20] + [1] * 23
    assert service.stats["retries"] == 3 and service.stats["judge_errors"] == 1 + 1 + 3

    # Retries that would outlast the deadline stop at it: a timeout, the others unharmed.
    config = RewardConfig(
        service={"max_retries": 50, "retry_backoff_s": 0.01, "timeout_s": 1.5, "max_wait_ms": 200}
    )
    service = RewardService(scorer(), config)
    texts = [f"r{i}" for i in range(8)]
    texts[2] = "r2 slow:0.4 boom"
    answers = [a[0] for a in run(serve_concurrently(service, [sample(t) for t in texts]))]
    check_local(answers, 2, "timeout", "within")
    assert 1 <= service.stats["retries"] <= 3


def test_a_hung_request_to_a_real_http_server_costs_only_its_own_reward():
    # The real openai backend against a local OpenAI-style server that never answers one prompt.
    pytest.importorskip("aiohttp")
    from rmr1_plugins.testing.openai_stub import StubServer, completion

    release = asyncio.Event()  # bound to the stub's loop when it is first awaited there

    async def handler(body, count):
        if "hang" in body["messages"][-1]["content"]:
            await release.wait()
        return completion("<answer>[[A]]</answer>", n=body["n"])

    stub = StubServer(handler)
    options = {"base_url": stub.url, "max_retries": 0}
    judge = Scorer(OpenAIBackend("stub-model", options), sampling=SamplingParams(num_samples=4))
    service = RewardService(
        judge, RewardConfig(service={"max_batch_size": 16, "max_wait_ms": 100, "timeout_s": 2})
    )
    texts = [f"r{i}" for i in range(12)]
    texts[5] = "r5 hang"
    try:
        answers = [a[0] for a in run(serve_concurrently(service, [sample(t) for t in texts]))]
    finally:
        stub._loop.call_soon_threadsafe(release.set)
        stub.stop()
        judge.close()
    assert [a.kind for a in answers] == [None] * 5 + ["timeout"] + [None] * 6
    assert [a.reward for a in answers] == [1.0] * 5 + [0.5] + [1.0] * 6  # A (the response) won
    assert len(stub.bodies) == 12  # one request per sample, none repeated


# -- the same through a real `rmr1 serve` process ----------------------------------------------


def serve_wave(*flags, texts):
    from rmr1_plugins.testing.serving import Server, body, post

    aiohttp = pytest.importorskip("aiohttp")
    server = Server(*flags)

    async def scenario():
        async with aiohttp.ClientSession() as session:
            return await asyncio.gather(*(post(session, server.url, body(t)) for t in texts))

    try:
        answers = asyncio.run(scenario())
    finally:
        assert server.stop() == 0
    assert all(status == 200 for status, _ in answers)
    return [answer for _, answer in answers]


def kind_of(answer):
    kinds = [
        k
        for k in ("bad_input", "unparsed", "error", "timeout")
        if answer["extra_logs"][f"rmr1_{k}"] == [1.0]
    ]
    return kinds[0] if kinds else None


def test_serve_a_slowly_failing_sample_among_64_costs_only_its_own_reward():
    texts = [f"r{i}" for i in range(64)]
    texts[20] = "r20 slow:0.7 boom"
    flags = ("--timeout-s", "4", "--max-wait-ms", "300", "--max-batch-size", "64")
    answers = serve_wave(*flags, texts=texts)
    for i, answer in enumerate(answers):
        if i != 20:
            assert answer["rewards"] == [expected_reward(i)] and "error" not in answer, i
    assert kind_of(answers[20]) == "error" and "injected failure" in answers[20]["error"]


def test_serve_a_hung_request_costs_only_its_own_reward():
    texts = [f"r{i}" for i in range(16)]
    texts[3] = "r3 slow:30"  # hung
    texts[9] = "r9 slow:0.5 boom"  # fails slowly
    answers = serve_wave("--backend", "votes-requests", "--timeout-s", "2", texts=texts)
    for i, answer in enumerate(answers):
        if i not in (3, 9):
            assert answer["rewards"] == [expected_reward(i)] and "error" not in answer, i
    assert kind_of(answers[3]) == "timeout" and kind_of(answers[9]) == "error"


def test_hung_judge_threads_do_not_starve_the_preparation_of_new_requests():
    # A blocking backend (hf runs in the default thread pool) whose single-sample calls hang
    # fills that pool; preparing a new request uses the service's own threads, so the late
    # request still gets its fallback at its deadline.
    release = threading.Event()

    class Hung(Backend):  # the base class runs generate() in the default thread pool
        name = "hung"

        def generate(self, conversations, params):
            if len(conversations) > 1:
                raise RuntimeError("poison in the batch")
            release.wait()
            return [[Generation("<answer>[[A]]</answer>", "stop")] for _ in conversations]

    config = RewardConfig(service={"timeout_s": 1, "max_wait_ms": 50, "max_batch_size": 64})
    service = RewardService(Scorer(Hung("hung-model")), config)

    async def scenario():
        await service.start(warmup=False)
        try:
            first = await service.rewards([sample(f"r{i}") for i in range(40)])
            late = await asyncio.wait_for(service.rewards([sample("r1")]), 20)  # hang guard
        finally:
            # Both answers are in: let the hung calls return, so that closing the loop (which
            # joins its default thread pool) does not wait for them.
            release.set()
        await service.aclose()
        return first, late

    first, [late] = run(scenario())
    assert {a.kind for a in first} == {"timeout"}
    assert late.kind == "timeout"


def test_a_batch_taken_after_its_deadline_is_a_timeout_not_a_stopped_service():
    """Under load the batcher can take a batch whose deadline has passed; its samples time out
    (they used to be settled as "the reward service stopped" before their callers' own timeout
    fired: an `error` fallback from a running service)."""
    from rmr1_plugins.rewards.samples import prepare
    from rmr1_plugins.rewards.service import _Item

    service = RewardService(scorer(), RewardConfig())

    async def scenario():
        loop = asyncio.get_running_loop()
        judging = prepare(sample("r1"), service.config)
        item = _Item(judging.example, loop.create_future(), loop.time() - 1, judging)
        await service._judge_batch([item])
        return item.future.result()

    outcome = run(scenario())
    assert outcome.kind == "timeout" and "no verdict within" in outcome.message


def test_a_call_abandoned_at_its_deadline_gives_the_caller_s_timeout_failure():
    """The call's own limit and its caller's wait end at the same deadline: whichever fires
    first, the sample gets the same failure (``no verdict within``)."""
    from rmr1_plugins.rewards.samples import prepare
    from rmr1_plugins.rewards.service import _Item

    service = RewardService(scorer(), RewardConfig(service={"timeout_s": 0.5}))

    async def scenario():
        loop = asyncio.get_running_loop()
        judging = prepare(sample("r1 slow:30"), service.config)
        item = _Item(judging.example, loop.create_future(), loop.time() + 0.05, judging)
        await service._judge_batch([item])  # no caller waits: the call's limit settles it
        return item.future.result()

    outcome = run(scenario())
    assert outcome.kind == "timeout" and "no verdict within 0.5 s" in outcome.message
    assert service.stats["judge_timeouts"] == 1


class Hung(Backend):
    """A judge that never answers (its call is cancelled at the deadline)."""

    name = "hung"

    def __init__(self) -> None:
        super().__init__("hung-model")
        self.calls = 0

    def generate(self, conversations, params):
        raise AssertionError("only agenerate")

    async def agenerate(self, conversations, params):
        self.calls += 1
        await asyncio.Event().wait()


def test_preparing_a_request_counts_against_its_deadline(monkeypatch):
    # The loop's clock jumps 1.9 s while the request is prepared (a slow preparation, without
    # waiting for it): of its 2 s only 0.1 s are left for the judge. Before, the deadline
    # started after the preparation and the judge got the full 2 s again.
    import rmr1_plugins.rewards.service as service_module

    jump = [0.0]
    prepare = service_module.prepare_all

    def slow_prepare(*args):
        jump[0] += 1.9
        return prepare(*args)

    monkeypatch.setattr(service_module, "prepare_all", slow_prepare)
    judge, budgets = Hung(), []
    call = RewardService._call

    async def spy(self, items, budget):
        budgets.append(budget)
        return await call(self, items, budget)

    monkeypatch.setattr(RewardService, "_call", spy)

    async def go():
        loop = asyncio.get_running_loop()
        real = loop.time
        loop.time = lambda: real() + jump[0]
        service = RewardService(
            Scorer(judge), RewardConfig(service={"timeout_s": 2, "max_retries": 0})
        )
        await service.start(warmup=False)
        try:
            return await service.rewards([sample("r1")])
        finally:
            await service.aclose()

    [reward] = run(go())
    # the judge was given at most what was left of the 2 s after preparing (or, that spent
    # while batching, not called at all)
    assert reward.kind == "timeout" and judge.calls == len(budgets) <= 1
    assert all(budget <= 0.1 for budget in budgets), budgets
