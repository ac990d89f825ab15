"""How the vllm backend tokenizes a rendered prompt: BOS once by default, and as RM-R1's eval
did under ``--protocol rm-r1`` (the prompt string with special tokens added: a tokenizer that
adds BOS, like DeepSeek-R1-Distill's, then gives two)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rmr1_plugins import PairwiseExample, get_template
from rmr1_plugins.backends.vllm import VLLMBackend

BOS = "<｜begin▁of▁sentence｜>"


@pytest.fixture(scope="module")
def bos_tokenizer():
    """A byte-level BPE tokenizer that adds BOS and whose chat template starts with it, as
    DeepSeek-R1-Distill-Qwen's does."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=None))
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=[BOS, "<｜User｜>", "<｜Assistant｜>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(["Which response is better, A or B?"] * 5, trainer=trainer)
    bpe.post_processor = tokenizers.processors.TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, bpe.token_to_id(BOS))]
    )
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS)
    tokenizer.chat_template = (
        "{{ bos_token }}{% for m in messages %}<｜User｜>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}"
    )
    return tokenizer


def backend_with(tokenizer, monkeypatch, **options) -> VLLMBackend:
    backend = VLLMBackend("deepseek-like", options)
    monkeypatch.setattr(backend, "engine", lambda: SimpleNamespace(tokenizer=tokenizer))
    return backend


@pytest.mark.parametrize(("options", "count"), [({}, 1), ({"add_special_tokens": True}, 2)])
def test_bos_once_by_default_and_twice_as_rm_r1s_eval_had_it(
    bos_tokenizer, monkeypatch, options, count
):
    example = PairwiseExample(
        id="p", context=[{"role": "user", "content": "Which?"}], response_a="A", response_b="B"
    )
    messages = get_template("rmr1-reasoning").render(example)
    ids = backend_with(bos_tokenizer, monkeypatch, **options).render(messages)
    bos = bos_tokenizer.convert_tokens_to_ids(BOS)
    assert ids[:count] == [bos] * count and ids.count(bos) == count
    # RM-R1: tokenizer.apply_chat_template(tokenize=False), then vLLM encodes the string
    text = bos_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert ids == bos_tokenizer(text, add_special_tokens=bool(options))["input_ids"]
