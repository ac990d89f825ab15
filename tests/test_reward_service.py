"""The batching reward service: every sample answered once, right, and on time."""

import asyncio
import threading
import time

from serving import VotesJudge, expected_reward

from rmr1_plugins import SamplingParams, Scorer
from rmr1_plugins.reference_reward import Sample
from rmr1_plugins.reward_service import BackgroundRewardService, RewardService
from rmr1_plugins.rewards import RewardConfig

PROMPT = "<|im_start|>user\nSay something.<|im_end|>\n<|im_start|>assistant\n"


def sample(text, label="reference"):
    return Sample(PROMPT + text + "<|im_end|>", PROMPT, label)


def scorer(**kwargs):
    return Scorer(VotesJudge(), sampling=SamplingParams(n=8), **kwargs)


def run(coroutine):
    return asyncio.run(coroutine)


async def serve_concurrently(service, samples):
    await service.start(warmup=False)
    try:
        return await asyncio.gather(*(service.rewards([s]) for s in samples))
    finally:
        await service.aclose()


def test_concurrent_single_samples_are_batched_and_each_gets_its_own_reward():
    service = RewardService(scorer(), RewardConfig(max_batch_size=16, max_wait_ms=20))
    answers = run(serve_concurrently(service, [sample(f"r{i}") for i in range(100)]))
    assert [a[0].reward for a in answers] == [expected_reward(i) for i in range(100)]
    assert all(a[0].error is None for a in answers)
    judge = service.scorer.backend
    assert sum(judge.batches) == 100 and max(judge.batches) == 16 and len(judge.batches) < 10
    stats = service.stats
    assert stats["samples"] == stats["answered"] == stats["judged"] == 100
    assert service.pending == 0 and stats["fallback"] == 0


def test_a_failing_sample_costs_only_its_own_reward():
    service = RewardService(scorer(), RewardConfig(max_batch_size=32, retry_backoff_s=0.01))
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
    service = RewardService(scorer(), RewardConfig(retries=2, retry_backoff_s=0.2))
    started = time.monotonic()
    [[flaky]] = run(serve_concurrently(service, [sample("r5 flaky")]))
    assert flaky.reward == expected_reward(5) and flaky.error is None
    assert service.stats["retries"] == 1 and time.monotonic() - started >= 0.2


def test_a_slow_judge_gives_the_timeout_fallback_on_time():
    config = RewardConfig(timeout_s=0.5, max_wait_ms=0)
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
    service = RewardService(scorer(), RewardConfig(fallback=0.2))
    samples = [
        sample("r1", label=""),
        Sample("x", "not in x", "ref"),
        sample("mute"),
        sample("cut"),
    ]
    answers = [a[0] for a in run(serve_concurrently(service, samples))]
    assert [a.reward for a in answers] == [0.2] * 4
    assert [a.kind for a in answers] == ["bad_input", "bad_input", "unparsed", "unparsed"]
    assert answers[3].extra_logs["rmr1_truncated"] == 1.0 and "cut at max_new_tokens" in (
        answers[3].error
    )
    assert service.stats["fallback_bad_input"] == 2 and service.stats["fallback_unparsed"] == 2


def test_closing_answers_waiting_samples_and_later_calls():
    service = RewardService(scorer(), RewardConfig(timeout_s=30))

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
    background = BackgroundRewardService(scorer(), RewardConfig(max_wait_ms=50), warmup=False)
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
