"""The cohort endpoints of ``rmr1 serve``: whole-group rewards over HTTP.

Two ways in, one :class:`~rmr1_plugins.rewards.cohorts.CohortService` behind them:

- ``POST /get_reward`` (OpenRLHF) when :func:`~rmr1_plugins.rewards.cohorts.groups_samples` holds:
  the reward strategy compares within the group and ``reward.group_size`` (OpenRLHF's
  ``n_samples_per_prompt``) is over 1.
  The group key is the formatted prompt; the label, when not empty, is the reference answer
  (a string, or ``{"reference": ..., "question": ...}``). The answer has OpenRLHF's shape, with
  the cohort logs (:meth:`~rmr1_plugins.rewards.cohorts.CohortReward.logs`) as ``extra_logs``.
- ``POST /cohort`` (the veRL manager, any client): one rollout as JSON, ``{"key": str,
  "size": int, "prompt": str | [{"role", "content"}...], "response": str, "reference":
  str | null}``; the answer is ``{"reward", "win", "kind", "group", "expected", "fallback",
  "error", "logs"}``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rmr1_plugins.errors import RMR1Error
from rmr1_plugins.offload import off_loop
from rmr1_plugins.rewards.cohorts import CohortReward, CohortService, Member, Overloaded
from rmr1_plugins.rewards.config import RewardConfig
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
    return Member(prompt, int(config.group_size or 1), context, response, reference, clipped)


async def openrlhf_rewards(
    cohorts: CohortService, samples: list[Sample]
) -> tuple[dict[str, Any], int]:
    """The ``/get_reward`` answer for ``samples`` and its HTTP status (200, or 503 if full)."""
    config = cohorts.config
    members = await off_loop(_members, samples, config)  # grows with the texts
    try:
        cohorts.check(int(config.group_size or 1), sum(isinstance(m, Member) for m in members))
    except Exception as full:
        return {"error": f"overloaded: {full}; retry later"}, 503
    answers = await asyncio.gather(*(_one(cohorts, m) for m in members))
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


async def _one(cohorts: CohortService, member: Member | Exception) -> CohortReward:
    if not isinstance(member, Exception):
        try:
            return await cohorts.reward(member)
        except Overloaded as full:  # filled up by other requests since the check: counted
            member = full
    reward = cohorts.config.fallback_reward
    overloaded = isinstance(member, Overloaded)
    cohorts.stats["overloaded" if overloaded else "bad_input"] += 1
    kind = "error" if overloaded else "bad_input"
    return CohortReward(reward, kind=kind, error=f"fallback reward {reward:g} ({kind}): {member}")


def parse_member(body: Any) -> Member:
    """The member in a ``/cohort`` body; raises :class:`CohortBodyError` naming the field."""
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
    return Member(key, size, context, clean_text(response), reference)


def cohort_answer(reward: CohortReward) -> dict[str, Any]:
    """The ``/cohort`` answer for one member."""
    return {
        "reward": reward.reward,
        "win": reward.win,
        "kind": reward.kind,
        "group": reward.group,
        "expected": reward.expected,
        "fallback": reward.fallback,
        "error": reward.error,
        "logs": reward.logs(),
    }
