"""The reward service on the real vllm engine: a sample the engine refuses costs only itself."""

from __future__ import annotations

import asyncio

from rmr1_plugins import SamplingParams, Scorer
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.inputs import Sample
from rmr1_plugins.rewards.service import RewardService

PROMPT = "<|im_start|>user\nSum 0..399.<|im_end|>\n<|im_start|>assistant\n"


def test_a_sample_too_long_for_the_engine_costs_only_its_own_reward(vllm_backend):
    # The batch's one engine call is refused; each sample is judged again on its own, and the
    # backend merges those single calls back into one or two engine calls.
    texts = [f"The sum is {79800 + i}." for i in range(8)]
    texts[5] = " ".join(f"step {i}: add {i} to the total." for i in range(400))  # > 2048 tokens
    samples = [Sample(PROMPT + text + "<|im_end|>", PROMPT, "79800") for text in texts]
    scorer = Scorer(vllm_backend, sampling=SamplingParams(max_new_tokens=16))
    config = RewardConfig(
        service={"max_batch_size": 8, "max_wait_ms": 500, "timeout_s": 300, "max_retries": 0}
    )
    service = RewardService(scorer, config)
    calls = vllm_backend.stats["engine_calls"]

    async def scenario():
        await service.start(warmup=False)
        try:
            return await asyncio.gather(*(service.rewards([s]) for s in samples))
        finally:
            await service.aclose()

    answers = [a[0] for a in asyncio.run(scenario())]
    assert answers[5].kind == "error" and "PromptTooLongError" in answers[5].error
    assert "max_model_len is 2048" in answers[5].error
    for i, answer in enumerate(answers):
        if i != 5:  # judged: a verdict, or none in 16 tokens (unparsed), never an error
            assert answer.kind in (None, "unparsed") and answer.extra_logs["rmr1_error"] == 0, i
    assert service.stats["judged"] == 7 and service.stats["isolated"] == 8
    assert service.stats["batches"] == 1 and service.stats["largest_batch"] == 8
    assert vllm_backend.stats["engine_calls"] - calls <= 2
