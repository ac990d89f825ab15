"""OpenRLHF's own reward client gets rewards from the reward file and from ``rmr1 serve``.

``openrlhf.utils.agent.SingleTurnAgentExecutor`` is what OpenRLHF 0.11.2's rollout actors run:
it tokenises the prompt, asks the engine for a response, decodes prompt + response with special
tokens and calls the reward file (``_fetch_rewards_via_func``) or the HTTP server
(``_fetch_rewards_via_http``). Here the engine is a stand-in that returns a fixed response, the
tokenizer is SmolLM2's (a real chat template), and the judge is SmolLM2-135M-Instruct or a
recording judge that shows exactly what reached it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from types import SimpleNamespace

import pytest

agent = pytest.importorskip("openrlhf.utils.agent")
transformers = pytest.importorskip("transformers")

from rmr1_openrlhf import reward_file_path  # noqa: E402
from rmr1_openrlhf.reward import get_runtime  # noqa: E402

from rmr1_plugins.testing import smollm2_checkpoint  # noqa: E402
from rmr1_plugins.testing.openrlhf import Engine  # noqa: E402
from rmr1_plugins.testing.serving import Server  # noqa: E402

QUESTION = "What is 2+2?"
RESPONSE = "The answer is 4."


@pytest.fixture(scope="module")
def judge_dir():
    return smollm2_checkpoint()


@pytest.fixture(scope="module")
def tokenizer(judge_dir):
    return transformers.AutoTokenizer.from_pretrained(judge_dir)


def chat_prompt(tokenizer, question=QUESTION):
    """The prompt as OpenRLHF builds it with --data.apply_chat_template."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )


async def rollout(executor, tokenizer, prompt, label, engine=None):
    params = SimpleNamespace(max_tokens=16, logprobs=None)
    return await executor.execute(
        prompt, label, params, 512, tokenizer, engine or Engine(tokenizer, RESPONSE)
    )


def test_reward_file_through_openrlhf_rollouts(configure, tokenizer, fake_judges):
    imported = set(sys.modules)
    configure("backend: {name: scripted}\nreward: {service: {max_wait_ms: 50}}\n")  # always [[A]]
    executor = agent.SingleTurnAgentExecutor(str(reward_file_path()))
    prompt = chat_prompt(tokenizer)
    labels = ["4", json.dumps({"reference": "4", "question": "2+2?"})] * 4

    async def group():  # the samples of one prompt run concurrently, as in generate_responses
        return await asyncio.gather(*(rollout(executor, tokenizer, prompt, lb) for lb in labels))

    outputs = asyncio.run(group())
    for output in outputs:
        assert output["reward"].tolist() == [1.0] and output["scores"].tolist() == [1.0]
        assert output["extra_logs"]["rmr1_fallback"].tolist() == [0.0]
        # judge health as OpenRLHF receives it: a judge that always picks slot A
        assert output["extra_logs"]["rmr1_health/slot_a"].tolist() == [1.0]
        assert output["extra_logs"]["rmr1_health/longer_wins"].tolist() == [1.0]
        assert output["extra_logs"]["rmr1_health/orders_agree"].tolist() == [0.0]  # one order
    seen = [c for batch in get_runtime().scorer.backend.batches for c in batch]
    users = sorted(c[-1]["content"] for c in seen if c[0]["role"] == "system")
    assert len(users) == 2  # 8 samples, 2 distinct pairs: batched and de-duplicated
    assert users[0].startswith("[Client Question]\n2+2?\n")  # the label's question
    # recovered from the prompt: SmolLM2's template adds its default system turn, which is folded
    # into the user turn (the one system-turn rule, docs/concepts/rewards.md "What the judge sees")
    system = prompt.split("<|im_start|>system\n")[1].split("<|im_end|>")[0]
    assert users[1].startswith(f"[Client Question]\n{system}\n\n{QUESTION}\n")
    for user in users:  # the response without the chat template's end token
        assert f"[The Start of Chatbot A's Response]\n{RESPONSE}\n[The End" in user
        assert "[The Start of Chatbot B's Response]\n4\n[The End" in user
    # the reward path imports neither (checked on what it added: another test may load Ray first)
    added = {name.split(".")[0] for name in set(sys.modules) - imported}
    assert not added & {"ray", "vllm"}


def test_reward_file_with_a_real_judge(configure, tokenizer, judge_dir):
    configure(
        f"backend:\n  name: hf\n  model: {judge_dir}\n  options: {{dtype: float32}}\n"
        "sampling: {max_new_tokens: 16}\nreward: {service: {timeout_s: 600}}\n"  # a slow shared CPU
    )
    executor = agent.SingleTurnAgentExecutor(str(reward_file_path()))
    output = asyncio.run(rollout(executor, tokenizer, chat_prompt(tokenizer), "4"))
    reward, logs = output["reward"], output["extra_logs"]
    assert reward.shape == (1,) and reward.item() in (0.0, 0.5, 1.0)
    # SmolLM2 rarely follows RM-R1's format: then the fallback, saying so; never an error.
    assert logs["rmr1_fallback"].item() == logs["rmr1_unparsed"].item()
    assert logs["rmr1_error"].item() == 0.0 and logs["rmr1_timeout"].item() == 0.0
    runtime = get_runtime()
    assert runtime.stats["judged"] == 1 and runtime.scorer.backend._loaded is not None


def stats(url):
    with urllib.request.urlopen(url.rsplit("/", 1)[0] + "/stats") as response:
        return json.load(response)


def test_rmr1_serve_answers_openrlhf_rollouts(tokenizer):
    server = Server("--max-wait-ms", "50", backend="constant", num_samples=None)
    try:
        executor = agent.SingleTurnAgentExecutor(server.url)
        plain = "Q: 2+2?\nA:"  # a prompt without --data.apply_chat_template

        async def group():
            engine = Engine(tokenizer, " 4")
            return await asyncio.gather(
                # the reference differs from the response: identical texts are a tie, not judged
                *(rollout(executor, tokenizer, plain, "four", engine) for _ in range(8)),
                executor._fetch_rewards_via_http(["x"], ["x"], [""]),  # no reference
            )

        *outputs, [bad] = asyncio.run(group())
        seen = stats(server.url)
    finally:
        assert server.stop() == 0
    for output in outputs:  # OpenRLHF keeps the JSON lists as they came
        assert output["reward"] == [1.0] and output["scores"] == [1.0]
        assert output["extra_logs"]["rmr1_fallback"] == [0.0]
        assert output["extra_logs"]["rmr1_health/slot_a"] == [1.0]
    assert bad["rewards"] == [0.5] and bad["extra_logs"]["rmr1_no_reference"] == [1.0]
    assert set(bad["extra_logs"]) == set(outputs[0]["extra_logs"])  # OpenRLHF reads sample 0's
    assert seen["health"]["slot_a"] == 1.0 and seen["health"]["unparsed"] == 0.0
    assert "reference answer is empty" in bad["error"]
    assert seen["reward"]["samples"] == 9 and seen["reward"]["batches"] < 8


def test_rmr1_serve_with_a_real_judge_through_openrlhf(tokenizer, judge_dir):
    server = Server(
        "--model", str(judge_dir), "--backend-option", "dtype=float32",
        "--max-new-tokens", "16", "--max-wait-ms", "500", "--timeout-s", "170",
        backend="hf", num_samples=None, startup_s=300,
    )  # fmt: skip
    try:
        executor = agent.SingleTurnAgentExecutor(server.url)
        prompt = chat_prompt(tokenizer)

        async def calls():
            return await asyncio.gather(
                rollout(executor, tokenizer, prompt, json.dumps({"reference": "4"})),
                executor._fetch_rewards_via_http([prompt + "5<|im_end|>"], [prompt], ["4"]),
            )

        output, [fetched] = asyncio.run(calls())
        seen = stats(server.url)
    finally:
        assert server.stop() == 0
    assert output["reward"] in ([0.0], [0.5], [1.0])
    assert set(output["extra_logs"]) >= {"rmr1_fallback", "rmr1_unparsed", "rmr1_error"}
    assert output["extra_logs"]["rmr1_error"] == [0.0]
    assert fetched["rewards"][0] in (0.0, 0.5, 1.0)
    assert (fetched["extra_logs"]["rmr1_fallback"] == [1.0]) == ("error" in fetched)
    assert seen["reward"]["judged"] == 2 and seen["scorer"]["requests"] == 2
