"""``hf``: transformers ``generate`` on CPU or GPU, in batches, loaded on first use."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from rmr1_plugins._imports import require
from rmr1_plugins.backends.base import (
    Backend,
    BackendError,
    BackendOptions,
    ChatMessages,
    Generation,
    SamplingParams,
)
from rmr1_plugins.verdict_probs import TOP_LOGPROBS, TokenChoice, probability_fields


class HFOptions(BackendOptions):
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: int = 8
    gguf_file: str | None = None
    trust_remote_code: bool = False


class HFBackend(Backend):
    """Runs a causal LM with ``model.generate``.

    ``model`` is a hub id or a local folder (``gguf_file`` names a GGUF file inside it). Prompts
    are rendered with the tokenizer's chat template and tokenised without adding special tokens
    again, so BOS is never doubled.
    """

    name = "hf"
    needs_model = True
    Options = HFOptions
    opts: HFOptions

    def _setup(self) -> None:
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            torch = require("torch", "hf")
            transformers = require("transformers", "hf")
            kwargs: dict[str, Any] = {"trust_remote_code": self.opts.trust_remote_code}
            if self.opts.gguf_file:
                kwargs["gguf_file"] = self.opts.gguf_file
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                self.model, padding_side="left", **kwargs
            )
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            dtype = "auto" if self.opts.dtype == "auto" else getattr(torch, self.opts.dtype)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                self.model, dtype=dtype, **kwargs
            )
            device = self.opts.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            self._loaded = (tokenizer, model.to(device).eval())
        return self._loaded

    def render(self, conversation: ChatMessages) -> list[int]:
        """Token ids of one conversation with the generation prompt, BOS exactly once."""
        tokenizer, _ = self._load()
        text = tokenizer.apply_chat_template(
            list(conversation), add_generation_prompt=True, tokenize=False
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(
        self, conversations: Sequence[ChatMessages], params: SamplingParams
    ) -> list[list[Generation]]:
        with self._lock:
            try:
                return self._generate(conversations, params)
            except (ImportError, ValueError):
                raise
            except Exception as error:  # engine failures surface as one error type
                raise BackendError(f"hf backend failed on {self.model}: {error}") from error

    def _generate(
        self, conversations: Sequence[ChatMessages], params: SamplingParams
    ) -> list[list[Generation]]:
        torch = require("torch", "hf")
        tokenizer, model = self._load()
        prompts = [self.render(conversation) for conversation in conversations]
        # Longest first: padding is minimal and prompts sharing a prefix sit together.
        order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), prompts[i]))
        results: list[list[Generation]] = [[] for _ in prompts]
        if params.seed is not None:
            torch.manual_seed(params.seed)
        for start in range(0, len(order), self.opts.batch_size):
            chunk = order[start : start + self.opts.batch_size]
            batch = tokenizer.pad(
                {"input_ids": [prompts[i] for i in chunk]}, padding=True, return_tensors="pt"
            ).to(model.device)
            sampling: dict[str, Any] = {"do_sample": params.temperature > 0}
            if params.temperature > 0:
                sampling.update(temperature=params.temperature, top_p=params.top_p)
            if params.stop:
                sampling.update(stop_strings=list(params.stop), tokenizer=tokenizer)
            recorder = _TopLogprobs(torch) if params.verdict_probs else None
            if recorder is not None:
                sampling["logits_processor"] = [recorder]
            with torch.no_grad():
                output = model.generate(
                    **batch,
                    max_new_tokens=params.max_new_tokens,
                    num_return_sequences=params.num_samples,
                    pad_token_id=tokenizer.pad_token_id,
                    **sampling,
                )
            if recorder is not None:
                recorder.finish(output)
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            for row, ids in enumerate(new_tokens.tolist()):
                generation = self._to_generation(
                    tokenizer, ids, params, len(prompts[chunk[row // params.num_samples]])
                )
                if recorder is not None:
                    generation = replace(
                        generation, **probability_fields(recorder.tokens(tokenizer, row, ids))
                    )
                results[chunk[row // params.num_samples]].append(generation)
        return results

    @staticmethod
    def _to_generation(
        tokenizer: Any, ids: list[int], params: SamplingParams, prompt_tokens: int
    ) -> Generation:
        specials = {tokenizer.pad_token_id, tokenizer.eos_token_id}
        while ids and ids[-1] == tokenizer.pad_token_id:
            ids = ids[:-1]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        stopped = (bool(ids) and ids[-1] in specials) or any(s in text for s in params.stop)
        finish = "stop" if stopped or len(ids) < params.max_new_tokens else "length"
        return Generation(
            text, finish_reason=finish, output_tokens=len(ids), prompt_tokens=prompt_tokens
        )


class _TopLogprobs:
    """A logits processor that keeps each step's top log-probabilities and the chosen token's,
    never the whole vocabulary (a judgment of thousands of tokens would not fit)."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.top: list[tuple[Any, Any]] = []
        self.chosen: list[Any] = []
        self._last: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self._gather(input_ids)
        logprobs = self.torch.log_softmax(scores.float(), dim=-1)
        top = logprobs.topk(TOP_LOGPROBS, dim=-1)
        self.top.append((top.values.cpu(), top.indices.cpu()))
        self._last = logprobs
        return scores

    def finish(self, sequences: Any) -> None:
        """Record the last step's chosen tokens (no processor call follows them)."""
        self._gather(sequences)

    def _gather(self, input_ids: Any) -> None:
        if self._last is not None:
            chosen = self._last.gather(1, input_ids[:, -1:]).squeeze(1)
            self.chosen.append(chosen.cpu())
            self._last = None

    def tokens(self, tokenizer: Any, row: int, ids: list[int]) -> list[TokenChoice]:
        """One generated row's tokens, each with its top alternatives."""
        tokens = []
        for step, token_id in enumerate(ids[: len(self.chosen)]):
            values, indices = self.top[step]
            alternatives = {
                tokenizer.decode([i]): v
                for v, i in zip(values[row].tolist(), indices[row].tolist(), strict=True)
            }
            text = tokenizer.decode([token_id], skip_special_tokens=True)
            tokens.append(TokenChoice(text, float(self.chosen[step][row]), alternatives))
        return tokens
