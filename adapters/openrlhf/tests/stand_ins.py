"""Stand-ins for the GPU parts of OpenRLHF's rollout, so its real reward client runs on CPU."""

from __future__ import annotations

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
