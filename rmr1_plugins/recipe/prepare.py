"""Stage 0: preference data → RM-R1 rows (``context_messages`` + ``winner``), split for the stages.

Accepted row formats (detected per row):

- Skywork-Reward-Preference / TRL implicit prompt: ``chosen`` and ``rejected`` message lists
  sharing every turn but the last assistant one.
- Code-Preference-Pairs: ``input``, ``accepted``, ``rejected``.
- Math-Step-DPO: ``prompt``, ``initial_reason_steps``, ``full_chosen``, ``full_rejected``; the
  answers are ``initial_reason_steps + full_chosen`` and ``initial_reason_steps + full_rejected``.
- TRL preference: ``prompt``, ``chosen``, ``rejected`` (strings or message lists).
- Native pairs: ``context``, ``response_a``, ``response_b``, ``label``.

A source is a path or dataset name, or a :class:`SourceSpec` that also gives its split, a
shuffle seed and a size (RM-R1 shuffles Code-Preference-Pairs with seed 42 and keeps 8,000) and
rows to exclude. As in RM-R1, the chosen answer alternates between slot A and slot B across all
sources in the order given (``placement="alternate"``); ``placement="both"`` keeps each pair in
both orders instead. Prompts longer than the token budget (counted with the student's tokenizer and
chat template) are dropped and counted; without a tokenizer :func:`prepare` refuses rather than
skip the check, unless the budget is off (``max_prompt_tokens=None``). The kept pairs are
shuffled and split into an evaluation part (native pairs ``rmr1 score`` reads), a distillation
part (stage 1) and an RL part (stage 2).
"""

from __future__ import annotations

import itertools
import json
import random
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from rmr1_plugins._imports import require
from rmr1_plugins.config import ConfigError
from rmr1_plugins.jsonl import InputError
from rmr1_plugins.plugins import get_template
from rmr1_plugins.recipe.sources import SourceSpec, iter_rows, source_name, write_jsonl
from rmr1_plugins.schema import Message, PairwiseExample
from rmr1_plugins.templates import ChatMessages, PromptTemplate, TemplateError, render_histories

WINNER = {"A": "model_a", "B": "model_b"}
Group = list[tuple[PairwiseExample, ChatMessages]]  # one pair, in one or both orders, rendered


@dataclass(frozen=True)
class Preference:
    """One preference pair before A/B placement."""

    id: str
    context: list[Message]
    chosen: str
    rejected: str
    # The rejected side's own history where it differs from the chosen side's (``context``):
    # RM-R1's mix_data.py renders such Skywork rows with each side's whole conversation.
    rejected_context: list[Message] | None = None

    def placed(self, chosen_in: Literal["A", "B"], suffix: str = "") -> PairwiseExample:
        a, b = (self.chosen, self.rejected) if chosen_in == "A" else (self.rejected, self.chosen)
        return PairwiseExample(
            id=self.id + suffix, context=self.context, response_a=a, response_b=b, label=chosen_in
        )

    def render(self, template: PromptTemplate, example: PairwiseExample) -> ChatMessages:
        """The judge prompt for ``example`` (one placement of this pair)."""
        if self.rejected_context is None:
            return template.render(example)
        chosen = [*self.context, Message(role="assistant", content=self.chosen)]
        rejected = [*self.rejected_context, Message(role="assistant", content=self.rejected)]
        a, b = (chosen, rejected) if example.label == "A" else (rejected, chosen)
        return render_histories(template, a, b)


@dataclass
class PrepareConfig:
    template: str = "rmr1-instruct"
    placement: Literal["alternate", "both"] = "alternate"  # of the chosen answer: A/B slots
    distill_fraction: float = 0.12
    eval_size: int = 0
    max_prompt_tokens: int | None = 4096
    tokenizer: str | None = None
    seed: int = 42
    split: str = "train"
    subset: str | None = None
    limit: int | None = None
    skip_invalid: bool = False
    exclude: dict[str, str] = field(default_factory=dict)


@dataclass
class PrepareStats:
    read: int = 0
    excluded: int = 0
    invalid: int = 0
    over_budget: int = 0
    differing_histories: int = 0  # pairs rendered with each side's own history (mix_data.py)
    pairs: int = 0
    parts: dict[str, int] = field(default_factory=dict)
    winners: dict[str, int] = field(default_factory=dict)
    budget_checked: bool = False
    max_prompt_tokens: int | None = None
    tokenizer: str | None = None
    files: dict[str, str] = field(default_factory=dict)


def to_preference(row: dict[str, Any], default_id: str) -> Preference:
    """Convert one row of any accepted format; raises ``ValueError`` naming the problem."""
    rid = str(row["id"]) if row.get("id") is not None else default_id
    if {"initial_reason_steps", "full_chosen", "full_rejected", "prompt"} <= row.keys():
        prefix = _str(row, "initial_reason_steps")
        chosen, rejected = prefix + _str(row, "full_chosen"), prefix + _str(row, "full_rejected")
        return Preference(rid, _user(_str(row, "prompt")), chosen, rejected)
    if {"input", "accepted", "rejected"} <= row.keys():
        return Preference(
            rid, _user(_str(row, "input")), _str(row, "accepted"), _str(row, "rejected")
        )
    if {"chosen", "rejected"} <= row.keys() and "prompt" not in row:
        return _implicit_prompt(rid, row["chosen"], row["rejected"])
    if {"context", "response_a", "response_b"} <= row.keys() or {"prompt", "chosen"} <= row.keys():
        pair = PairwiseExample.from_row({**row, "id": rid})
        if pair.label is None:
            raise ValueError("field 'label': required to know which response is chosen")
        chosen, rejected = (
            (pair.response_a, pair.response_b)
            if pair.label == "A"
            else (pair.response_b, pair.response_a)
        )
        return Preference(rid, pair.context, chosen, rejected)
    raise ValueError(
        f"unknown row format (fields {sorted(row)}); expected chosen/rejected message lists, "
        "input/accepted/rejected, prompt/initial_reason_steps/full_chosen/full_rejected, "
        "prompt/chosen/rejected or context/response_a/response_b/label"
    )


def _str(row: dict[str, Any], key: str) -> str:
    if not isinstance(row[key], str):
        raise ValueError(f"field {key!r}: must be a string, got {type(row[key]).__name__}")
    return row[key]


def _user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


def _implicit_prompt(rid: str, chosen: Any, rejected: Any) -> Preference:
    for key, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, list) or len(value) < 2:
            raise ValueError(f"field {key!r}: must be a message list of at least two turns")
        if not isinstance(value[-1], dict) or value[-1].get("role") != "assistant":
            raise ValueError(f"field {key!r}: the last turn must be an assistant message")
    history = [Message.model_validate(m) for m in chosen[:-1]]
    rejected_history = None
    if chosen[:-1] != rejected[:-1]:
        if len(chosen) == len(rejected) == 2:  # RM-R1's mix_data.py asserts one question
            raise ValueError("fields 'chosen'/'rejected': single-turn rows must ask one question")
        rejected_history = [Message.model_validate(m) for m in rejected[:-1]]
    return Preference(
        rid,
        history,
        str(chosen[-1].get("content", "")),
        str(rejected[-1].get("content", "")),
        rejected_history,
    )


def selected_rows(spec: SourceSpec, config: PrepareConfig) -> Iterator[tuple[int, dict[str, Any]]]:
    """The source's ``(row number, row)`` pairs: all, or shuffled and cut to ``spec.size``."""
    rows = iter_rows(spec.path, spec.split or config.split, spec.subset or config.subset)
    if spec.shuffle_seed is None:
        return rows if spec.size is None else itertools.islice(rows, spec.size)
    numpy = require("numpy", "recipe")
    every = list(rows)
    order = numpy.random.default_rng(spec.shuffle_seed).permutation(len(every))
    return (every[int(i)] for i in order[: spec.size])


def read_preferences(
    sources: Sequence[str | SourceSpec], config: PrepareConfig, stats: PrepareStats
) -> list[Preference]:
    """Every usable pair of every source, in source order (each checked to render).

    A plain string source takes ``config.split``/``subset``/``exclude`` and ``config.limit``
    (at most that many usable pairs); a :class:`SourceSpec` adds its exclusions to ``exclude``.
    """
    template = get_template(config.template)
    found: list[Preference] = []
    for source in sources:
        spec = source if isinstance(source, SourceSpec) else SourceSpec(source)
        name = source_name(spec.path)
        exclude = {**config.exclude, **spec.exclude}
        taken = 0
        for number, row in selected_rows(spec, config):
            if isinstance(source, str) and config.limit is not None and taken >= config.limit:
                break
            stats.read += 1
            if any(str(row.get(key)) == value for key, value in exclude.items()):
                stats.excluded += 1
                continue
            try:
                preference = to_preference(row, f"{name}-{number}")
                preference.render(template, preference.placed("A"))
            except (ValueError, ValidationError, TypeError) as error:
                if not config.skip_invalid:
                    raise InputError(spec.path, number, _message(error)) from None
                stats.invalid += 1
                continue
            found.append(preference)
            stats.differing_histories += preference.rejected_context is not None
            taken += 1
    return found


def _message(error: Exception) -> str:
    if isinstance(error, TemplateError):
        return f"field 'context': {error}"
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        return f"field '{'.'.join(str(p) for p in first['loc'])}': {first['msg']}"
    return str(error)


BUDGET_HINT = (
    "prompt-length filter (RM-R1 drops prompts over 4,096 tokens); give --tokenizer (a local "
    "copy of the base model's tokenizer), or --max-prompt-tokens 0 to keep every prompt"
)


class PromptCounter:
    """Prompt length in the student's tokens: chat template, then ``add_special_tokens=False``."""

    def __init__(self, tokenizer: str) -> None:
        transformers = require("transformers", "hf")
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer)
        except Exception as error:  # hub/OS/format errors of many types: name the tokenizer
            raise ConfigError(
                f"cannot load the tokenizer {tokenizer!r} for the {BUDGET_HINT}: "
                f"{type(error).__name__}: {error}"
            ) from None

    def __call__(self, prompts: list[ChatMessages]) -> list[int]:
        texts = [
            self.tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False)
            for p in prompts
        ]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(row) for row in ids]


def place(prefs: list[Preference], placement: str) -> list[list[PairwiseExample]]:
    """A/B placement: alternate chosen-in-A / chosen-in-B, or both orders of each pair."""
    if placement == "both":
        return [[p.placed("A", ":a"), p.placed("B", ":b")] for p in prefs]
    return [[p.placed("A" if i % 2 == 0 else "B")] for i, p in enumerate(prefs)]


def rm_row(example: PairwiseExample, messages: ChatMessages) -> dict[str, Any]:
    """The RM-R1 training row: rendered messages and ``model_a``/``model_b``."""
    return {"id": example.id, "context_messages": messages, "winner": WINNER[example.label or "A"]}


def prepare(
    sources: Sequence[str | SourceSpec], out_dir: Path, config: PrepareConfig
) -> PrepareStats:
    """Read, place, render, budget, shuffle, split; write the parts and ``prepare_stats.json``.

    Raises :class:`ConfigError` when the token budget is on but no tokenizer is given or it
    cannot be loaded (checked before any source is read).
    """
    stats = PrepareStats(max_prompt_tokens=config.max_prompt_tokens, tokenizer=config.tokenizer)
    counter = None
    if config.max_prompt_tokens is not None:
        if not config.tokenizer:
            raise ConfigError(f"no tokenizer for the {BUDGET_HINT}")
        counter = PromptCounter(config.tokenizer)
    template = get_template(config.template)
    prefs = read_preferences(sources, config, stats)
    rendered = [
        [(ex, pref.render(template, ex)) for ex in group]
        for pref, group in zip(prefs, place(prefs, config.placement), strict=True)
    ]
    # the groups (by identity) of pairs whose histories differ
    differing = {id(g) for p, g in zip(prefs, rendered, strict=True) if p.rejected_context}
    if counter is not None:
        rendered = _within_budget(rendered, counter, config, stats)
    random.Random(config.seed).shuffle(rendered)
    stats.pairs = len(rendered)
    # a pair whose histories differ has no native-pair form, so it never goes to eval.jsonl
    n_eval = min(config.eval_size, sum(id(g) not in differing for g in rendered))
    eval_groups: list[Group] = []
    rest: list[Group] = []
    for group in rendered:
        fits = len(eval_groups) < n_eval and id(group) not in differing
        (eval_groups if fits else rest).append(group)
    n_distill = round(len(rest) * config.distill_fraction)
    parts = {"eval": eval_groups, "distill": rest[:n_distill], "rl": rest[n_distill:]}
    out_dir.mkdir(parents=True, exist_ok=True)
    winners: Counter[str] = Counter()
    for part, groups_in_part in parts.items():
        items = [item for group in groups_in_part for item in group]
        if part == "eval":
            rows = [ex.model_dump(mode="json") for ex, _ in items]
        else:
            rows = [rm_row(ex, messages) for ex, messages in items]
            winners.update(row["winner"] for row in rows)
        path = out_dir / f"{part}.jsonl"
        stats.parts[part] = write_jsonl(path, rows)
        stats.files[part] = str(path)
    stats.winners = dict(sorted(winners.items()))
    (out_dir / "prepare_stats.json").write_text(json.dumps(asdict(stats), indent=2) + "\n")
    return stats


def _within_budget(
    rendered: list[Group], counter: PromptCounter, config: PrepareConfig, stats: PrepareStats
) -> list[Group]:
    from tqdm import tqdm

    stats.budget_checked = True
    limit = config.max_prompt_tokens
    assert limit is not None  # called only with a token budget
    kept = []
    starts = range(0, len(rendered), 256)
    for start in tqdm(starts, desc="token budget", unit="chunk", disable=not sys.stderr.isatty()):
        chunk = rendered[start : start + 256]
        flat = [messages for group in chunk for _, messages in group]
        lengths = iter(counter(flat))
        for group in chunk:
            longest = max(next(lengths) for _ in group)
            if longest > limit:
                stats.over_budget += 1
            else:
                kept.append(group)
    return kept
