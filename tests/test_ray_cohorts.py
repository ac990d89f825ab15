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


def small(max_pending_bytes: int) -> RewardSettings:
    service = SETTINGS.reward.service.model_copy(update={"max_pending_bytes": max_pending_bytes})
    reward = SETTINGS.reward.model_copy(update={"service": service})
    return SETTINGS.model_copy(update={"reward": reward})


def test_the_byte_bound_is_per_worker_that_sends_to_the_actor():
    """Several reward workers share one actor: each adds max_pending_bytes, so a step split
    over more workers never hits a bound sized for one."""
    from rmr1_plugins.rewards.cohort_table import Overloaded, text_bytes

    opened = text_bytes("Pick.") + text_bytes("pick 1")  # a group's first member: its prompt too
    actor = CohortActor(small(opened + 10), "reference")

    async def run():
        first = asyncio.ensure_future(actor.cohort({**body("0", "pick 1"), "key": "a"}, "w1"))
        await asyncio.sleep(0)  # held: group a waits for its second member
        with pytest.raises(Overloaded, match="max_pending_bytes"):  # one worker's share is full
            await actor.cohort({**body("0", "pick 1"), "key": "b"}, "w1")
        second = asyncio.ensure_future(actor.cohort({**body("0", "pick 1"), "key": "b"}, "w2"))
        await asyncio.sleep(0)
        stats = actor.stats()
        await actor.aclose()
        await asyncio.gather(first, second)
        return stats

    stats = asyncio.run(run())
    assert stats["workers"] == 2 and stats["max_pending_bytes"] == 2 * (opened + 10)
    assert stats["held"] == 2 and stats["held_bytes"] == 2 * opened


class FullActor:
    """Stands in for the actor: full ``full`` times (Overloaded, as Ray re-raises it), then
    answers."""

    def __init__(self, full: int) -> None:
        self.full, self.calls = full, 0

    async def send(self, method: str, arg: dict) -> dict:
        from rmr1_plugins.rewards.cohort_table import Overloaded

        self.calls += 1
        if self.calls <= self.full:
            raise Overloaded("1000 bytes of text waiting")
        return {"reward": 1.0, "method": method}


def test_a_full_actor_is_asked_again_until_the_timeout(monkeypatch):
    """Overloaded from the actor (nothing held) is retried like a 503, never a fallback at once."""
    from rmr1_plugins.rewards.cohort_table import Overloaded
    from rmr1_plugins.serve import ray_actor as ray_cohorts

    monkeypatch.setattr(ray_cohorts, "RETRY_DELAY_S", 0.0)  # no waiting in a test
    client = ray_cohorts.RayCohortClient(SETTINGS, "reference", 8, timeout_s=600)
    actor = FullActor(full=3)
    monkeypatch.setattr(client, "_send", actor.send)
    assert asyncio.run(client.ask(body("0", "pick 1"))) == {"reward": 1.0, "method": "cohort"}
    assert actor.calls == 4
    client = ray_cohorts.RayCohortClient(SETTINGS, "reference", 8, timeout_s=0.0)
    actor = FullActor(full=1)
    monkeypatch.setattr(client, "_send", actor.send)
    with pytest.raises(Overloaded, match=r"still full after 0 s: 1000 bytes of text waiting"):
        asyncio.run(client.ask(body("0", "pick 1")))
    assert actor.calls == 1
