"""Reference-anchored rewards for one sampled response at a time (OpenRLHF, ``rmr1 serve``).

Trainers that score each rollout on its own (OpenRLHF sends one sample per call) cannot compare
the rollouts of a group, so each response is judged against the reference answer carried by the
sample's label: response in one slot, reference in the other. The reward is the response's win
rate over the judgments that gave a verdict, mapped onto ``[loss, win]`` (default ``[0, 1]``):
``1`` beats the reference, ``0`` loses, ``0.5`` when two orders disagree (``order: both``).

A sample is ``(query, prompt, label)`` as OpenRLHF sends it:

- ``query``: prompt + response decoded *with* special tokens; the response is
  ``query[len(prompt):]`` with trailing end-of-turn tokens (``end_tokens``) removed;
- ``prompt``: the formatted prompt. The question shown to the judge is the label's ``question``
  when given, else the user/assistant turns recovered from a ChatML, Llama 3 or Gemma chat
  template (system turns dropped, as RM-R1 prompts have none), else the prompt text itself;
- ``label``: the reference answer as a string, or ``{"reference": ..., "question": ...}`` (a JSON
  object or a JSON string holding one); ``question`` may be a string or a list of messages.

Nothing here raises on bad samples: :func:`build_example` raises :class:`SampleError` naming the
field, and :func:`fallback` turns any failure into the configured neutral reward (default: the
midpoint of ``[loss, win]``) with ``rmr1_fallback=1`` in the logs.

The settings (the scale, ``end_tokens``, ``question``, ``max_response_chars``) are the ``reward:``
section of the YAML file, :class:`rmr1_plugins.rewards.RewardConfig`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from rmr1_plugins.guards import neutralize_example
from rmr1_plugins.health import Tally
from rmr1_plugins.rewards import RewardConfig
from rmr1_plugins.schema import Message, PairResult, PairwiseExample

# Fallback kinds; each has an ``rmr1_<kind>`` entry in every sample's extra logs.
FALLBACK_KINDS = ("bad_input", "unparsed", "error", "timeout")


@dataclass(frozen=True)
class Sample:
    """One rollout as a trainer sends it."""

    query: str
    prompt: str
    label: Any = ""


@dataclass
class SampleReward:
    """The reward for one sample; ``error`` says why the fallback was used (``None`` if not)."""

    reward: float
    score: float
    extra_logs: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    kind: str | None = None  # which fallback (one of FALLBACK_KINDS), if any


class SampleError(ValueError):
    """A sample that cannot be judged; the message names the field."""


def clean_text(text: str) -> str:
    """``text`` with lone surrogates (invalid UTF-8 once encoded) replaced by ``?``."""
    return text.encode("utf-8", "replace").decode("utf-8")


def extract_response(query: str, prompt: str, end_tokens: list[str] | tuple[str, ...]) -> str:
    """The response inside ``query``: what follows the prompt, without trailing end tokens.

    When the decoded query does not start with the prompt exactly (tokenizer round trips can
    change whitespace; OpenRLHF cuts over-long prompts from the left), the response starts after
    the first occurrence of the prompt's last 64 characters. Trailing whitespace and end tokens
    are stripped in any mix and number (the longest token first where one ends another), in
    linear time.
    """
    if query.startswith(prompt):
        start = len(prompt)
    else:
        anchor = prompt[-64:]
        position = query.find(anchor) if anchor else -1
        if position < 0:
            raise SampleError("field 'query': does not contain the prompt (field 'prompts')")
        start = position + len(anchor)
    tail = _end_run(tuple(end_tokens)).match(query[start:][::-1])
    return query[start : len(query) - tail.end()].strip()


@lru_cache(maxsize=32)
def _end_run(tokens: tuple[str, ...]) -> re.Pattern[str]:
    """Matches, on the *reversed* text, its run of trailing whitespace and end tokens.

    Anchored at the start with one choice per step and nothing after the loop, it never
    backtracks: one pass over the run.
    """
    reversed_tokens = sorted({t.strip()[::-1] for t in tokens if t.strip()}, key=len, reverse=True)
    return re.compile("(?:" + "|".join([r"\s", *map(re.escape, reversed_tokens)]) + ")*")


def read_label(label: Any) -> tuple[str, str | list[Message] | None]:
    """``(reference, question or None)`` from a label; raises :class:`SampleError`."""
    if isinstance(label, str) and label.lstrip().startswith("{"):
        try:
            label = json.loads(label)
        except json.JSONDecodeError:
            pass  # a reference that starts with "{"
        except RecursionError:
            raise SampleError("field 'labels': JSON object nested too deeply") from None
        except ValueError:  # an integer over Python's digit limit
            raise SampleError("field 'labels': JSON object with a number too long") from None
    question: str | list[Message] | None = None
    if isinstance(label, Mapping):
        if "reference" not in label:
            raise SampleError("field 'labels': an object label needs a 'reference' key")
        reference, raw_question = label["reference"], label.get("question")
        if raw_question is not None:
            question = _read_question(raw_question)
    else:
        reference = label
    if not isinstance(reference, str):
        raise SampleError(
            f"field 'labels': the reference answer must be a string, got {type(reference).__name__}"
            " (set --data.label_key to the column holding the reference answer)"
        )
    if not reference.strip():
        raise SampleError(
            "field 'labels': the reference answer is empty "
            "(set --data.label_key to the column holding the reference answer)"
        )
    return reference, question


def _read_question(raw: Any) -> str | list[Message]:
    if isinstance(raw, str):
        if not raw.strip():
            raise SampleError("field 'labels': 'question' is empty")
        return raw
    try:
        turns = [Message.model_validate(turn) for turn in raw]
    except Exception:
        raise SampleError(
            "field 'labels': 'question' must be a string or a list of {role, content} messages"
        ) from None
    turns = [
        Message(role=turn.role, content=clean_text(turn.content))
        for turn in turns
        if turn.role != "system"
    ]
    if not turns or turns[-1].role != "user":
        raise SampleError("field 'labels': 'question' messages must end with a user turn")
    if any(turn.role not in ("user", "assistant") for turn in turns):
        raise SampleError("field 'labels': 'question' roles must be user, assistant or system")
    return turns


# (start of a turn, role and end of its header, end of the turn): ChatML (Qwen, SmolLM),
# Llama 3, Gemma. A turn is ``start`` + role (word characters) + header end + content + ``end``.
_CHAT_FORMATS = (
    ("<|im_start|>", re.compile(r"(\w+)\n"), "<|im_end|>"),
    ("<|start_header_id|>", re.compile(r"(\w+)<\|end_header_id\|>\n\n"), "<|eot_id|>"),
    ("<start_of_turn>", re.compile(r"(\w+)\n"), "<end_of_turn>"),
)
_ROLES = {"user": "user", "assistant": "assistant", "model": "assistant"}


def find_turns(text: str, start: str, header: re.Pattern[str], end: str) -> list[tuple[str, str]]:
    """Every ``(role, content)`` turn, as ``re.findall(start (\\w+) header (.*?) end)`` with
    DOTALL finds them, in linear time: once no ``end`` follows a turn's start, none follows any
    later one, so the scan stops instead of retrying from every later start."""
    turns = []
    position = text.find(start)
    while position >= 0:
        role = header.match(text, position + len(start))
        if role is None:
            position = text.find(start, position + 1)
            continue
        stop = text.find(end, role.end())
        if stop < 0:
            break
        turns.append((role.group(1), text[role.end() : stop]))
        position = text.find(start, stop + len(end))
    return turns


def recover_turns(prompt: str) -> list[Message] | None:
    """The user/assistant turns of a chat-templated prompt, or ``None`` if none is found."""
    for chat_format in _CHAT_FORMATS:
        found = find_turns(prompt, *chat_format)
        if found:
            turns = [
                Message(role=_ROLES[role], content=content.strip())
                for role, content in found
                if role in _ROLES
            ]
            if turns and turns[-1].role == "user":
                return turns
    return None


def sample_texts(sample: Sample) -> tuple[str, str]:
    """The sample's query and prompt, checked to be strings and cleaned (:func:`clean_text`)."""
    for name, value in (("query", sample.query), ("prompts", sample.prompt)):
        if not isinstance(value, str):
            raise SampleError(f"field '{name}': must be a string, got {type(value).__name__}")
    return clean_text(sample.query), clean_text(sample.prompt)


def clipped_response(query: str, prompt: str, config: RewardConfig) -> tuple[str, bool]:
    """The response (:func:`extract_response`) cut at ``max_response_chars``, and whether it was."""
    response = extract_response(query, prompt, config.end_tokens)
    clipped = config.max_response_chars is not None and len(response) > config.max_response_chars
    if clipped:
        cut = len(response) - config.max_response_chars  # type: ignore[operator]
        response = response[: config.max_response_chars] + f"\n[... {cut} characters cut]"
    return response, clipped


def build_example(sample: Sample, config: RewardConfig) -> tuple[PairwiseExample, bool]:
    """The pair to judge: the response in slot A, the reference in slot B.

    Returns the pair and whether the response was cut at ``max_response_chars``.
    """
    query, prompt = sample_texts(sample)
    reference, question = read_label(sample.label)
    response, clipped = clipped_response(query, prompt, config)
    context: list[Message]
    if isinstance(question, list):
        context = question
    elif question is not None:
        context = [Message(role="user", content=clean_text(question))]
    else:
        turns = recover_turns(prompt) if config.question == "auto" else None
        text = prompt.strip()
        context = turns or [Message(role="user", content=text)]
    return (
        PairwiseExample(
            context=context, response_a=response, response_b=clean_text(reference), label=None
        ),
        clipped,
    )


def build_examples(
    samples: Sequence[Sample], config: RewardConfig, guard: bool = False
) -> list[tuple[PairwiseExample, bool] | Exception]:
    """:func:`build_example` for each sample, neutralized when ``guard``; a failure in its place.

    The CPU-heavy part of a request (linear, but a megabyte takes a fraction of a second):
    ``rmr1 serve`` and the OpenRLHF reward service run it in a worker thread, off the event loop,
    so one large request does not hold up the others.
    """
    built: list[tuple[PairwiseExample, bool] | Exception] = []
    for sample in samples:
        try:
            example, clipped = build_example(sample, config)
            built.append((neutralize_example(example) if guard else example, clipped))
        except Exception as error:  # SampleError, or an unforeseen input shape
            built.append(error)
    return built


def _logs(kind: str | None, order: str | None) -> dict[str, float]:
    """The extra logs of one sample: the same keys for every sample of a run."""
    logs = {"rmr1_fallback": float(kind is not None)}
    logs.update({f"rmr1_{name}": float(kind == name) for name in FALLBACK_KINDS})
    logs.update(rmr1_truncated=0.0, rmr1_clipped=0.0)
    if order == "both":
        logs["rmr1_orders_agree"] = 0.0
    logs.update(Tally().sample_logs())  # judge health: nothing measured
    return logs


def fallback(
    config: RewardConfig, kind: str, message: str, order: str | None = None
) -> SampleReward:
    """The neutral reward for a sample that got no verdict, saying why."""
    reward = config.fallback_reward
    return SampleReward(
        reward=reward,
        score=config.to_score(reward),
        extra_logs=_logs(kind, order),
        error=f"fallback reward {reward:g} ({kind}): {message}",
        kind=kind,
    )


def reward_from_result(
    result: PairResult,
    config: RewardConfig,
    order: str | None = None,
    clipped: bool = False,
    size: tuple[int, int] | None = None,
) -> SampleReward:
    """The response's (slot A's) win rate over the judgments that gave a verdict, as a reward.

    Judgments without a verdict are left out; when none has one, the fallback reward is used.
    ``size`` (the lengths of the response and the reference) gives ``rmr1_health/longer_wins``.
    """
    wins, losses, missing = result.votes["A"], result.votes["B"], result.votes["none"]
    total = wins + losses + missing
    truncated = sum(j.finish_reason == "length" for j in result.judgments) / max(total, 1)
    if wins + losses == 0:
        why = "the judge gave no verdict"
        if truncated:
            why += " (its output was cut at max_new_tokens)"
        reward = fallback(config, "unparsed", why, order)
    else:
        value = config.loss + (config.win - config.loss) * wins / (wins + losses)
        reward = SampleReward(value, config.to_score(value), _logs(None, order))
        reward.extra_logs["rmr1_unparsed"] = missing / total
        if order == "both":
            reward.extra_logs["rmr1_orders_agree"] = float(bool(result.orders_agree))
    reward.extra_logs.update(rmr1_truncated=truncated, rmr1_clipped=float(clipped))
    health = Tally()
    health.add_pair(result, size)
    reward.extra_logs.update(health.sample_logs())
    return reward
