"""OpenRLHF's side of the tests: a stand-in for the GPU part of its rollout, so its real reward
client runs on CPU, and a training step at scale through that client (tests, bench).

OpenRLHF 0.11.2's ``SingleTurnAgentExecutor`` asks for each sample's reward on its own, over
HTTP; :func:`step` has every sample of a step (``prompts`` x ``n``) in flight at once, as when all
rollout actors finish together. The ``ranker`` judge of :mod:`rmr1_plugins.testing.judges` (the
larger number wins) costs nothing and makes the exact round-robin rewards known in advance.
OpenRLHF is imported inside the functions.
"""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace
from typing import Any

from rmr1_plugins.testing.serving import Server


class Engine:
    """Stands in for OpenRLHF's vLLM engine: answers every prompt with ``response`` + the end of
    turn token."""

    def __init__(self, tokenizer, response: str) -> None:
        # SmolLM2-Instruct ends a turn with <|im_end|> (its eos id); not tokenizer.eos_token,
        # which transformers 5.15's GGUF conversion sets to <|im_start|>.
        self.ids = tokenizer(response + "<|im_end|>", add_special_tokens=False)["input_ids"]
        self.text = response

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        output = SimpleNamespace(
            token_ids=self.ids, text=self.text, finish_reason="stop", logprobs=None
        )
        return SimpleNamespace(outputs=[output])


def cohort_server(prompts: int, n: int, group_timeout_s: float = 600) -> Server:
    """``rmr1 serve`` with cohorts of ``n`` (round-robin), room for every sample of the step."""
    return Server(
        "--no-warmup", "--group-size", str(n), "--strategy", "round-robin",
        "--group-timeout-s", str(group_timeout_s), "--timeout-s", str(2 * group_timeout_s),
        "--max-pending", str(2 * prompts * n),
        backend="ranker", num_samples=None, startup_s=120,
    )  # fmt: skip


def step(url: str, tokenizer: Any, prompts: int, n: int, seed: int = 0) -> list[tuple[Any, float]]:
    """Every sample of a step through a real ``SingleTurnAgentExecutor``, concurrently, groups
    interleaved; ``(output, expected reward)`` per sample. Sample k of n says "k": its exact
    round-robin reward is (k - 1) / (n - 1)."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    executor = SingleTurnAgentExecutor(url)
    params = SimpleNamespace(max_tokens=16, logprobs=None)
    engines = [Engine(tokenizer, f"The answer is {k}.") for k in range(1, n + 1)]
    jobs = [(p, k) for p in range(prompts) for k in range(1, n + 1)]
    random.Random(seed).shuffle(jobs)

    def prompt(p: int) -> str:
        turns = [{"role": "user", "content": f"Name a number, question {p}."}]
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)

    texts = [prompt(p) for p in range(prompts)]

    async def run() -> list[Any]:
        return await asyncio.gather(
            *(
                executor.execute(texts[p], "", params, 512, tokenizer, engines[k - 1])
                for p, k in jobs
            )
        )

    outputs = asyncio.run(run())
    return [(out, (k - 1) / (n - 1)) for out, (_, k) in zip(outputs, jobs, strict=True)]


def summary(results: list[tuple[Any, float]]) -> dict[str, int]:
    """Samples, split, fallbacks, and rewards that are not the exact in-group ones."""
    logs = [out.get("extra_logs") or {} for out, _ in results]
    return {
        "samples": len(results),
        "split": int(sum(log.get("rmr1_split", [1.0])[0] for log in logs)),
        "fallback": int(sum(log.get("rmr1_fallback", [1.0])[0] for log in logs)),
        "inexact": sum(
            out.get("reward") is None or abs(out["reward"][0] - want) > 1e-9
            for out, want in results
        ),
    }


class Rollout:
    """Stands in for ``openrlhf.trainer.ray.vllm_engine.RolloutRayActor`` (which needs vLLM):
    the k-th generation for a prompt answers "The answer is k."."""

    async def __init__(self, reward_file: str, tokenizer, seed: int) -> None:  # type: ignore[misc]  # Ray awaits it, as RolloutRayActor
        from openrlhf.utils.agent import SingleTurnAgentExecutor

        self.executor = SingleTurnAgentExecutor(reward_file)  # as RolloutRayActor.__init__
        self.tokenizer = tokenizer
        self.counts: dict[tuple[int, ...], int] = {}
        self.random = random.Random(seed)

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        key = tuple(prompt_token_ids)
        self.counts[key] = k = self.counts.get(key, 0) + 1
        for _ in range(self.random.randrange(64)):  # finish in a shuffled order
            await asyncio.sleep(0)
        text = f"The answer is {k}."
        ids = self.tokenizer(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
        output = SimpleNamespace(token_ids=ids, text=text, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[output])

    async def generate_responses(
        self, prompt, label, sampling_params, max_length, hf_tokenizer, num_samples=1, images=None
    ):
        """OpenRLHF 0.11.2's ``RolloutRayActor.generate_responses``, verbatim."""
        tasks = [
            self.executor.execute(
                prompt=prompt,
                label=label,
                sampling_params=sampling_params,
                max_length=max_length,
                hf_tokenizer=hf_tokenizer,
                llm_engine=self,
                images=images,
            )
            for _ in range(num_samples)
        ]
        return await asyncio.gather(*tasks)

    async def cohorts(self) -> dict:
        """The cohort actor's counts, through this engine's reward file."""
        from rmr1_openrlhf.reward import get_runtime

        client = get_runtime().client  # type: ignore[union-attr]
        return {"name": client.name, **await client.actor().stats.remote()}

    def threads(self) -> int:
        """The most threads the event loop's default executor may run."""
        return asyncio.get_running_loop()._default_executor._max_workers  # type: ignore[attr-defined]
