"""Trainer data → the judge's input: prompts, completions, labels and templated strings.

One place for how a trainer's prompt becomes the judge's context (:func:`as_context`), how a
completion becomes text (:func:`as_text`), and how an OpenRLHF sample's templated strings give the
response, the reference and the question (:func:`extract_response`, :func:`read_label`,
:func:`recover_turns`). Everything here is linear in its input: it reads what a policy wrote.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from rmr1_plugins.errors import RMR1Error
from rmr1_plugins.schema import Message

if TYPE_CHECKING:
    from rmr1_plugins.rewards.config import RewardConfig


SYSTEM_ROLES = ("system", "developer")
# What TRL passes a reward function besides ``prompts``, ``completions`` and dataset columns.
TRL_KWARGS = ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")


def as_context(prompt: str | Sequence[Mapping[str, Any] | Message]) -> list[Message]:
    """The judge's context for a policy prompt: the one system-turn rule of every trainer.

    A string is one user turn. A message list is kept, except that system (and developer) turns
    are folded into the next user turn (``"\n\n"``-joined, in order), because RM-R1 prompts only
    have user and assistant turns, and list contents keep their text parts. The last turn must be
    a user turn (a system turn after it is a ``ValueError``, not dropped); other roles (``tool``)
    are a ``ValueError``.
    """
    if isinstance(prompt, str):
        return [Message(role="user", content=prompt)]
    context: list[Message] = []
    pending_system: list[str] = []
    for index, message in enumerate(prompt):
        if isinstance(message, Message):
            message = message.model_dump()
        if not isinstance(message, Mapping) or "role" not in message:
            raise ValueError(
                f"prompt message {index} must be a mapping with a 'role', got {message!r}"
            )
        role, content = message["role"], _content_text(message.get("content"))
        if role in SYSTEM_ROLES:
            pending_system.append(content)
            continue
        if role not in ("user", "assistant"):
            raise ValueError(
                f"prompt message {index} has role {role!r}; the judge sees only "
                "user and assistant turns"
            )
        if role == "user" and pending_system:
            content = "\n\n".join([*pending_system, content])
            pending_system = []
        context.append(Message(role=role, content=content))
    if not context or context[-1].role != "user" or pending_system:  # a last system turn too
        raise ValueError("the prompt must end with a user turn")
    return context


def as_text(completion: Any) -> str:
    """A completion as text: a string, or the assistant contents of a message list, joined."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and all(isinstance(m, Mapping) for m in completion):
        return "\n".join(
            _content_text(m.get("content")) for m in completion if m.get("role") == "assistant"
        )
    raise ValueError(
        f"a completion must be a string or a message list, got {type(completion).__name__}"
    )


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # multimodal content parts: keep the text ones
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return str(content)


@dataclass(frozen=True)
class Sample:
    """One rollout as a trainer sends it."""

    query: str
    prompt: str
    label: Any = ""


class SampleError(RMR1Error, ValueError):
    """A sample that cannot be judged; the message names the field."""


class NoReference(SampleError):
    """A sample whose label has no reference answer (missing or empty): ``no_reference``."""


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
    assert tail is not None  # a starred group matches every text
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
    """``(reference, question or None)`` from a label; raises :class:`SampleError`
    (:class:`NoReference` for a missing or empty reference)."""
    reference, question, missing = _label(label)
    if reference is None:
        hint = "set --data.label_key to the column holding the reference answer"
        raise NoReference(f"field 'labels': {missing} ({hint})")
    return reference, question


def label_parts(label: Any) -> tuple[str | None, str | list[Message] | None]:
    """:func:`read_label`, with ``None`` for a missing or empty reference instead of raising."""
    reference, question, _ = _label(label)
    return reference, question


def _label(label: Any) -> tuple[str | None, str | list[Message] | None, str]:
    """``(reference or None, question or None, what is missing when the reference is None)``."""
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
        reference, raw_question = label.get("reference"), label.get("question")
        if raw_question is not None:
            question = _read_question(raw_question)
        if "reference" not in label:
            return None, question, "an object label needs a 'reference' key"
    else:
        reference = label
    if reference is None:
        return None, question, "the reference answer is missing (must be a string, got NoneType)"
    if isinstance(reference, str) and not reference.strip():
        return None, question, "the reference answer is empty"
    if not isinstance(reference, str):
        raise SampleError(
            f"field 'labels': the reference answer must be a string, got {type(reference).__name__}"
            " (set --data.label_key to the column holding the reference answer)"
        )
    return reference, question, ""


def read_messages(raw: Any) -> list[Message]:
    """``raw`` as chat messages (role and content only, the text cleaned: :func:`clean_text`);
    a ``ValueError`` saying what was expected if it is not a list of ``{role, content}``."""
    try:
        turns = [Message.model_validate(turn) for turn in raw]
    except Exception:
        raise ValueError("a string or a list of {role, content} messages") from None
    return [Message(role=turn.role, content=clean_text(turn.content)) for turn in turns]


def _read_question(raw: Any) -> str | list[Message]:
    if isinstance(raw, str):
        if not raw.strip():
            raise SampleError("field 'labels': 'question' is empty")
        return raw
    try:
        turns = read_messages(raw)
    except ValueError as error:
        raise SampleError(f"field 'labels': 'question' must be {error}") from None
    if any(turn.role not in ("user", "assistant", *SYSTEM_ROLES) for turn in turns):
        raise SampleError(
            "field 'labels': 'question' roles must be user, assistant, system or developer"
        )
    try:
        return as_context(turns)
    except ValueError:
        raise SampleError("field 'labels': 'question' messages must end with a user turn") from None


# (start of a turn, role and end of its header, end of the turn): ChatML (Qwen, SmolLM),
# Llama 3, Gemma. A turn is ``start`` + role (word characters) + header end + content + ``end``.
_CHAT_FORMATS = (
    ("<|im_start|>", re.compile(r"(\w+)\n"), "<|im_end|>"),
    ("<|start_header_id|>", re.compile(r"(\w+)<\|end_header_id\|>\n\n"), "<|eot_id|>"),
    ("<start_of_turn>", re.compile(r"(\w+)\n"), "<end_of_turn>"),
)


_ROLES = {"user": "user", "assistant": "assistant", "model": "assistant"}
_ROLES.update({role: role for role in SYSTEM_ROLES})


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
    """The turns of a chat-templated prompt as the judge sees them (:func:`as_context`: system
    turns folded into the next user turn; other roles left out), or ``None`` if none is found."""
    for chat_format in _CHAT_FORMATS:
        found = find_turns(prompt, *chat_format)
        turns = [
            Message(role=_ROLES[role], content=content.strip())
            for role, content in found
            if role in _ROLES
        ]
        if turns and turns[-1].role == "user":
            return as_context(turns)
    return None


def sample_context(
    prompt: str, question: str | list[Message] | None, config: RewardConfig
) -> list[Message]:
    """The judge's context for an OpenRLHF sample: the label's ``question`` when it has one,
    else (``question: auto``) the turns recovered from the templated ``prompt``, else the prompt
    as written, one user turn. The one conversion for the reward file, ``rmr1 serve`` and its
    cohorts."""
    if question is not None:
        return as_context(question if isinstance(question, list) else clean_text(question))
    turns = recover_turns(prompt) if config.inputs.question == "auto" else None
    return turns or [Message(role="user", content=prompt.strip())]


def sample_texts(sample: Sample) -> tuple[str, str]:
    """The sample's query and prompt, checked to be strings and cleaned (:func:`clean_text`)."""
    for name, value in (("query", sample.query), ("prompts", sample.prompt)):
        if not isinstance(value, str):
            raise SampleError(f"field '{name}': must be a string, got {type(value).__name__}")
    return clean_text(sample.query), clean_text(sample.prompt)


def clipped_response(query: str, prompt: str, config: RewardConfig) -> tuple[str, bool]:
    """The response (:func:`extract_response`) cut at ``inputs.max_response_chars``, and whether
    it was."""
    response = extract_response(query, prompt, config.inputs.end_tokens)
    clipped = (
        config.inputs.max_response_chars is not None
        and len(response) > config.inputs.max_response_chars
    )
    if clipped:
        cut = len(response) - config.inputs.max_response_chars  # type: ignore[operator]
        response = response[: config.inputs.max_response_chars] + f"\n[... {cut} characters cut]"
    return response, clipped
