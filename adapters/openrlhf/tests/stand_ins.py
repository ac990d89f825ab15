"""Stand-ins for the GPU parts of OpenRLHF's rollout, so its real reward client runs on CPU."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace


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


class Rollout:
    """Stands in for ``openrlhf.trainer.ray.vllm_engine.RolloutRayActor`` (which needs vLLM):
    the k-th generation for a prompt answers "The answer is k."."""

    async def __init__(self, reward_file: str, tokenizer, seed: int) -> None:
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
