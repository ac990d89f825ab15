"""The cohort actor's class without Ray (its Ray use is tested in adapters/verl/tests)."""

from __future__ import annotations

import asyncio

import pytest

from rmr1_plugins.serve.cohort import CohortBodyError
from rmr1_plugins.serve.ray_actor import PREFIX, CohortActor, actor_name
from rmr1_plugins.settings import RewardSettings, decisive_settings

SETTINGS = RewardSettings.model_validate(
    {"scorer": {"backend": {"name": "constant"}}, "reward": {"strategy": "round-robin"}}
)


def body(id: str, response: str, settings: RewardSettings = SETTINGS) -> dict:
    return {
        "key": "g",
        "size": 2,
        "prompt": "Pick.",
        "response": response,
        "id": id,
        "settings": decisive_settings(settings),
    }


def test_the_name_follows_every_setting_the_service_is_built_from():
    other = SETTINGS.model_copy(update={"reward": SETTINGS.reward.model_copy(update={"seed": 3})})
    slower = SETTINGS.model_copy(
        update={
            "reward": SETTINGS.reward.model_copy(
                update={"group": SETTINGS.reward.group.model_copy(update={"timeout_s": 9.0})}
            )
        }
    )
    name = actor_name(SETTINGS, "reference")
    assert name.startswith(PREFIX) and name == actor_name(SETTINGS.model_copy(), "reference")
    assert len({name, actor_name(other, "reference"), actor_name(slower, "reference")}) == 3
    assert name != actor_name(SETTINGS, "drop")


def test_members_get_the_cohort_answer_of_their_whole_group():
    actor = CohortActor(SETTINGS, "reference")

    async def run():
        answers = await asyncio.gather(
            actor.cohort(body("0", "pick 1")), actor.cohort(body("1", "pick 2"))
        )
        stats = actor.stats()
        await actor.aclose()
        return answers, stats

    answers, stats = asyncio.run(run())
    assert [a["group"] for a in answers] == [2, 2] and not any(a["fallback"] for a in answers)
    assert set(answers[0]) == {
        *("reward", "win", "kind", "group", "expected", "fallback", "late", "error", "logs")
    }
    assert stats["members"] == 2 and stats["complete_cohorts"] == 1 and stats["held"] == 0


def test_a_member_with_other_settings_is_refused_naming_the_key():
    actor = CohortActor(SETTINGS, "reference")
    other = SETTINGS.model_copy(update={"reward": SETTINGS.reward.model_copy(update={"loss": -1})})
    with pytest.raises(CohortBodyError, match=r"reward.loss is -1.0 in the request, 0.0 here"):
        asyncio.run(actor.cohort(body("0", "pick 1", other)))
    assert actor.stats().get("members", 0) == 0 and actor.stats()["held"] == 0


@pytest.mark.parametrize("backend", ["hf", "vllm"])
def test_a_judge_that_loads_in_process_is_refused_for_the_actor(backend):
    from rmr1_plugins.serve.ray_actor import cohort_actor

    settings = RewardSettings.model_validate({"scorer": {"backend": {"name": backend}}})
    with pytest.raises(ValueError, match=r"no GPU reserved.*serve the judge over HTTP"):
        cohort_actor(settings, "reference", max_concurrency=8)
