"""The cohort endpoints of ``rmr1 serve``: whole-group rewards over HTTP.

Two ways in, one :class:`~rmr1_plugins.rewards.cohorts.CohortService` behind them:

- ``POST /get_reward`` (OpenRLHF) when :func:`~rmr1_plugins.rewards.cohorts.groups_samples` holds:
  the reward strategy compares within the group and ``reward.group.size`` (OpenRLHF's
  ``n_samples_per_prompt``) is over 1.
  The group key is the formatted prompt; the label, when not empty, is the reference answer
  (a string, or ``{"reference": ..., "question": ...}``). The answer has OpenRLHF's shape, with
  the cohort logs (:meth:`~rmr1_plugins.rewards.cohorts.CohortReward.logs`) as ``extra_logs``.
- ``POST /cohort`` (the veRL manager, any client): one rollout as JSON, ``{"key": str,
  "size": int, "prompt": str | [{"role", "content"}...], "response": str, "reference":
  str | null, "id": str, "settings": {...}}`` (``id`` and ``settings`` optional); the answer is
  ``{"reward", "win", "kind", "group", "expected", "fallback", "late", "error", "logs"}``.
  ``settings`` must equal the server's :func:`~rmr1_plugins.settings.decisive_settings`.

Members are accepted or refused (503) before anything is held: a request never gets a 200 with
a fallback reward because the server was full.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from rmr1_plugins.errors import RMR1Error
from rmr1_plugins.offload import off_loop_request
from rmr1_plugins.rewards.cohort_table import Member, Overloaded
from rmr1_plugins.rewards.cohorts import SPLIT_RULES, CohortReward, CohortService
from rmr1_plugins.rewards.config import RewardConfig, decisive_values, settings_difference
from rmr1_plugins.rewards.inputs import (
    Sample,
    clean_text,
    clipped_response,
    label_parts,
    read_messages,
    sample_context,
    sample_texts,
)
from rmr1_plugins.rewards.metrics import columns

MAX_KEY_CHARS = 1 << 20
MAX_ID_CHARS = 256


class CohortBodyError(RMR1Error, ValueError):
    """A ``/cohort`` body that does not follow the protocol; the message names the field."""


def member_of(sample: Sample, config: RewardConfig) -> Member:
    """An OpenRLHF sample as a cohort member; raises :class:`SampleError` naming the field."""
    query, prompt = sample_texts(sample)
    response, clipped = clipped_response(query, prompt, config)
    reference, question = label_parts(sample.label)  # in-group strategies need no reference
    if reference is not None:
        reference = clean_text(reference)
    context = [turn.model_dump() for turn in sample_context(prompt, question, config)]
    return Member(prompt, int(config.group.size or 1), context, response, reference, clipped)


async def openrlhf_rewards(
    cohorts: CohortService, samples: list[Sample]
) -> tuple[dict[str, Any], int]:
    """The ``/get_reward`` answer for ``samples`` and its HTTP status (200; 503 if full now,
    413 if the request could never fit)."""
    config = cohorts.config
    members = await off_loop_request(_members, samples, config)  # grows with the texts
    accepted = [m for m in members if isinstance(m, Member)]
    try:  # all or nothing, with no await until every member is held
        nbytes = sum(cohorts.table.cost(m) for m in accepted)
        cohorts.check(int(config.group.size or 1), len(accepted), nbytes)
        waiting = [m if isinstance(m, Exception) else cohorts.submit(m) for m in members]
    except Overloaded as full:
        return {"error": f"overloaded: {full}; retry later"}, 503
    except ValueError as never:  # more text in one request than the server ever holds
        return {"error": f"{never}; send fewer or shorter samples per request"}, 413
    answers = await asyncio.gather(*(_one(cohorts, m) for m in waiting))
    payload: dict[str, Any] = {
        "rewards": [a.reward for a in answers],
        "scores": [config.to_score(a.reward) for a in answers],
        "extra_logs": columns([a.logs() for a in answers]) if answers else {},
    }
    problems = [f"sample {i}: {a.error}" for i, a in enumerate(answers) if a.error]
    if problems:
        payload["error"] = "; ".join(problems)
    return payload, 200


def _members(samples: list[Sample], config: RewardConfig) -> list[Member | Exception]:
    members: list[Member | Exception] = []
    for sample in samples:
        try:
            members.append(member_of(sample, config))
        except Exception as error:  # SampleError, or an unforeseen input shape
            members.append(error)
    return members


async def _one(
    cohorts: CohortService, waiting: Awaitable[CohortReward] | Exception
) -> CohortReward:
    if not isinstance(waiting, Exception):
        return await waiting
    reward = cohorts.config.fallback_reward
    cohorts.stats["bad_input"] += 1
    cohorts.stats["unread"] += 1  # answered without being held
    message = f"fallback reward {reward:g} (bad_input): {waiting}"
    return CohortReward(reward, kind="bad_input", error=message)


def own_settings(cohorts: CohortService) -> dict[str, Any]:
    """The server's :func:`~rmr1_plugins.settings.decisive_settings`."""
    return decisive_values(cohorts.config, cohorts.judge.order)


def parse_member(body: Any, settings: dict[str, Any] | None = None) -> Member:
    """The member in a ``/cohort`` body; raises :class:`CohortBodyError` naming the field, or
    the first key where the body's ``settings`` differ from ``settings`` (the server's)."""
    if not isinstance(body, dict):
        raise CohortBodyError(f"the body must be a JSON object, got {type(body).__name__}")
    for name in ("key", "size", "prompt", "response"):
        if name not in body:
            raise CohortBodyError(f"field '{name}': required")
    key, size, prompt = body["key"], body["size"], body["prompt"]
    response, reference = body["response"], body.get("reference")
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise CohortBodyError(f"field 'key': a non-empty string of at most {MAX_KEY_CHARS} chars")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise CohortBodyError(f"field 'size': a positive integer, got {size!r}")
    if not isinstance(response, str):
        raise CohortBodyError(f"field 'response': a string, got {type(response).__name__}")
    if reference is not None and not isinstance(reference, str):
        kind = type(reference).__name__
        raise CohortBodyError(f"field 'reference': a string or null, got {kind}")
    rollout = body.get("id")
    if rollout is not None and (not isinstance(rollout, str) or len(rollout) > MAX_ID_CHARS):
        raise CohortBodyError(f"field 'id': a string of at most {MAX_ID_CHARS} chars or null")
    on_split = body.get("on_split")
    if on_split is not None and on_split not in SPLIT_RULES:
        raise CohortBodyError(f"field 'on_split': one of {', '.join(SPLIT_RULES)} or null")
    if settings is not None and body.get("settings") is not None:
        different = settings_difference(body["settings"], settings)
        if different is not None:
            raise CohortBodyError(different)
    if isinstance(prompt, str):
        if not prompt.strip():
            raise CohortBodyError("field 'prompt': empty")
        context: Any = clean_text(prompt)
    elif isinstance(prompt, list) and prompt:
        try:
            context = [turn.model_dump() for turn in read_messages(prompt)]
        except ValueError as error:
            raise CohortBodyError(f"field 'prompt': {error}") from None
    else:
        raise CohortBodyError("field 'prompt': a string or a non-empty list of messages")
    reference = clean_text(reference) if reference is not None and reference.strip() else None
    text = clean_text(response)
    return Member(key, size, context, text, reference, id=rollout, on_split=on_split)


def cohort_answer(reward: CohortReward) -> dict[str, Any]:
    """The ``/cohort`` answer for one member."""
    return {
        "reward": reward.reward,
        "win": reward.win,
        "kind": reward.kind,
        "group": reward.group,
        "expected": reward.expected,
        "fallback": reward.fallback,
        "late": reward.late,
        "error": reward.error,
        "logs": reward.logs(),
    }
