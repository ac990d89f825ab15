"""RM-R1's chain-of-rubrics prompt templates, byte-exact (see NOTICE: Apache-2.0, RM-R1 authors).

Two families exist. ``rmr1-instruct`` (RM-R1-Qwen2.5-Instruct checkpoints) sends a system message
and a user message; ``rmr1-reasoning`` (RM-R1-DeepSeek-Distilled checkpoints) sends one user
message and no system message at all.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Literal, Protocol

from rmr1_plugins.errors import UsageError
from rmr1_plugins.schema import Message, PairwiseExample

ChatMessages = list[dict[str, str]]


class TemplateError(UsageError, ValueError):
    """The example cannot be rendered by this template (for instance, it has a system turn)."""


class PromptTemplate(Protocol):
    """Turns a pairwise example into the chat messages the judge sees."""

    name: str

    def render(self, example: PairwiseExample) -> ChatMessages: ...


@cache
def template_text(filename: str) -> str:
    """The exact bytes of a shipped template file, decoded as UTF-8."""
    return (files(__package__) / filename).read_bytes().decode("utf-8")


@cache
def second_pass_suffixes() -> dict[str, str]:
    """RM-R1's distillation correction suffixes, keyed ``"A"`` and ``"B"``."""
    raw = json.loads(template_text("distill_second_pass_suffixes.json"))
    return {"A": raw["SUFFICE_A"], "B": raw["SUFFICE_B"]}


def is_single_turn(example: PairwiseExample) -> bool:
    """RM-R1's rule: single turn iff the shared context is exactly one user message."""
    return len(example.context) == 1 and example.context[0].role == "user"


def serialize_conversation(context: list[Message], response: str, chatbot: str) -> str:
    """One side of a multi-turn pair as RM-R1 writes it: ``"{Role}: {content}"`` lines."""
    lines = []
    for index, turn in enumerate(context):
        if turn.role == "user":
            speaker = "User"
        elif turn.role == "assistant":
            speaker = f"Chatbot {chatbot}"
        else:
            raise TemplateError(
                f"context turn {index} has role {turn.role!r}; RM-R1 prompts only have "
                "'user' and 'assistant' turns (fold a system prompt into the first user turn)"
            )
        lines.append(f"{speaker}: {turn.content}")
    lines.append(f"Chatbot {chatbot}: {response}")
    return "\n".join(lines)


def fill_user_prompt(example: PairwiseExample, family: Literal["instruct", "reasoning"]) -> str:
    """The filled user message of either family. Text is inserted as is, never escaped."""
    prefix = "INSTRUCT" if family == "instruct" else "REASONING"
    suffix = "_USER_PROMPT_TEMPLATE.txt" if family == "instruct" else "_PROMPT_TEMPLATE.txt"
    if is_single_turn(example):
        return template_text(f"{prefix}_SINGLE{suffix}").format(
            question=example.context[0].content,
            answer_a=example.response_a,
            answer_b=example.response_b,
        )
    return template_text(f"{prefix}_MULTI{suffix}").format(
        conversation_1=serialize_conversation(example.context, example.response_a, "A"),
        conversation_2=serialize_conversation(example.context, example.response_b, "B"),
    )


class InstructTemplate:
    """``rmr1-instruct``: the RM-R1 system prompt plus the filled user template."""

    name = "rmr1-instruct"

    def render(self, example: PairwiseExample) -> ChatMessages:
        return [
            {"role": "system", "content": template_text("INSTRUCT_SYSTEM_PROMPT.txt")},
            {"role": "user", "content": fill_user_prompt(example, "instruct")},
        ]


class ReasoningTemplate:
    """``rmr1-reasoning``: one user message, no system message (DeepSeek-distilled family)."""

    name = "rmr1-reasoning"

    def render(self, example: PairwiseExample) -> ChatMessages:
        return [{"role": "user", "content": fill_user_prompt(example, "reasoning")}]


DEFAULT_TEMPLATE = "rmr1-instruct"


def template_for_model(model: str | None) -> tuple[str, str]:
    """The template RM-R1's evaluation picks for ``model``, and why.

    RM-R1's ``run_generative.py`` scripts choose the prompt from the model name: "RM-R1" and
    "Instruct" in it → the Instruct prompt, "RM-R1" and "DeepSeek-Distilled" → the reasoning
    prompt. Here the model's own name is matched, not the folders above it (a folder's name says
    nothing about the model in it): the last path component that names a family, so a
    checkpoint or snapshot folder inside a model's folder (``.../RM-R1-...-7B/checkpoint-500``,
    the hub cache's ``models--org--name/snapshots/<sha>``) follows the model's folder. Case is
    ignored (local folders are often lower case), and a DeepSeek distillation
    ("DeepSeek-R1-Distill", "DeepSeek-Distilled") also gets ``rmr1-reasoning``; anything else
    the default.
    """
    parts = (model or "").replace("\\", "/").rstrip("/").split("/")
    for part in reversed(parts):
        chosen = _family(part.lower().split("--")[-1])  # models--org--name: the name
        if chosen is not None:
            return chosen
    return DEFAULT_TEMPLATE, "the default: the name names no family"


def _family(name: str) -> tuple[str, str] | None:
    if "rm-r1" in name and "instruct" in name:
        return "rmr1-instruct", "RM-R1's rule: RM-R1 and Instruct in the name"
    if "rm-r1" in name and "deepseek-distilled" in name:
        return "rmr1-reasoning", "RM-R1's rule: RM-R1 and DeepSeek-Distilled in the name"
    if "deepseek-r1-distill" in name or "deepseek-distilled" in name:
        return "rmr1-reasoning", "a DeepSeek distillation by name"
    return None


def render_histories(
    template: PromptTemplate, conversation_a: list[Message], conversation_b: list[Message]
) -> ChatMessages:
    """RM-R1's multi-turn prompt for two whole conversations that differ before their last turn
    (``mix_data.py`` serialises the chosen and the rejected conversation each on its own).
    Only the two RM-R1 templates can render it."""
    family = {"rmr1-instruct": "instruct", "rmr1-reasoning": "reasoning"}.get(template.name)
    if family is None:
        raise TemplateError(
            f"template {template.name!r} cannot render a pair whose histories differ; "
            "rmr1-instruct and rmr1-reasoning can"
        )
    for side in (conversation_a, conversation_b):
        if not side or side[-1].role != "assistant":
            raise TemplateError("each conversation must end with an assistant turn")
    prefix = "INSTRUCT" if family == "instruct" else "REASONING"
    suffix = "_USER_PROMPT_TEMPLATE.txt" if family == "instruct" else "_PROMPT_TEMPLATE.txt"
    user = template_text(f"{prefix}_MULTI{suffix}").format(
        conversation_1=serialize_conversation(conversation_a[:-1], conversation_a[-1].content, "A"),
        conversation_2=serialize_conversation(conversation_b[:-1], conversation_b[-1].content, "B"),
    )
    if family == "reasoning":
        return [{"role": "user", "content": user}]
    return [
        {"role": "system", "content": template_text("INSTRUCT_SYSTEM_PROMPT.txt")},
        {"role": "user", "content": user},
    ]
