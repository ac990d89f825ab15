"""veRL's own RewardLoopManager on local Ray, two reward workers, one cohort service.

The manager starts ``reward.num_workers=2`` real ``RewardLoopWorker`` actors; each builds the
``rmr1`` manager through veRL's registry. Rollouts go to random workers one by one, as veRL's
agent loop sends them (streaming mode), and then as one batch through ``compute_rm_score``
(colocated mode: contiguous chunks, one per worker), with the rows shuffled so every chunk holds
parts of both groups. A real ``rmr1 serve`` (the scripted ``ranker`` judge of
rmr1_plugins.testing.judges) judges whole groups: no rollout may get a fallback.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import urllib.request

import pytest

from rmr1_plugins.testing import tiny_llama
from rmr1_plugins.testing.serving import Server
from rmr1_plugins.testing.verl import GROUPS, rollouts, step, step_config, stream, verl_config

ray = pytest.importorskip("ray")
WIN_RATES = [0.5, 1.0, 0.0, 0.5, 0.0, 1.0]  # round-robin within each group of GROUPS


@pytest.fixture(scope="module")
def cluster():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)},
            # the scripted judges in every Ray worker: the reward workers and the cohort actor
            "worker_process_setup_hook": "rmr1_plugins.testing.judges.register_in_worker",
        },
    )
    yield
    ray.shutdown()


def test_reward_loop_manager_with_two_workers_gets_whole_groups(tokenizer, cluster):
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager

    server = Server("--group-timeout-s", "60", "--no-warmup", backend="ranker")
    try:
        base = server.url.rsplit("/", 1)[0]
        config = verl_config(
            tiny_llama(), n=3, rmr1={"strategy": "round-robin", "cohort_url": f"{base}/cohort"}
        )
        config.reward.num_workers = 2
        manager = RewardLoopManager(config)
        workers = manager.reward_loop_worker_handles
        assert len(workers) == 2
        data = rollouts(tokenizer, GROUPS)

        rng = random.Random(5)  # streaming: each rollout to a random worker, all in flight
        picks = [rng.choice(workers) for _ in range(len(data))]
        assert len(set(map(id, picks))) == 2
        refs = [w.compute_score.remote(data[i : i + 1]) for i, w in enumerate(picks)]
        streamed = ray.get(refs, timeout=180)
        assert [out["reward_score"] for out in streamed] == pytest.approx(WIN_RATES)
        assert all(out["reward_extra_info"]["rmr1_fallback"] == 0.0 for out in streamed)

        order = [0, 3, 1, 4, 2, 5]  # colocated: chunks [0, 3, 1] and [4, 2, 5] split both groups
        scored = manager.compute_rm_score(data[order])
        extra = scored.non_tensor_batch
        assert list(extra["score"]) == pytest.approx([WIN_RATES[i] for i in order])
        assert list(extra["rmr1_fallback"]) == [0.0] * 6
        with urllib.request.urlopen(f"{base}/stats", timeout=30) as response:
            cohorts = json.load(response)["cohorts"]
    finally:
        assert server.stop() == 0
    assert cohorts["members"] == 12 and cohorts["complete_cohorts"] == 4  # all through it
    assert cohorts.get("partial_cohorts", 0) == 0


def assert_whole_groups(outputs, expected, n):
    """Every rollout judged in its whole group of ``n``: no split, no fallback, exact rewards."""
    infos = [out["reward_extra_info"] for out in outputs]
    assert sum(info["rmr1_split"] for info in infos) == 0
    assert sum(info["rmr1_fallback"] for info in infos) == 0
    assert [out["reward_score"] for out in outputs] == pytest.approx(expected)
    assert all(info["rmr1_group"] == n for info in infos)


def test_one_worker_holds_a_whole_rmr1_step_of_1024_prompts_by_7(tokenizer, cluster, tmp_path):
    """RM-R1's step, in-process barrier: above Ray's default 1,000 calls per reward worker."""
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager

    prompts, n = 1024, 7
    data, expected = step(tokenizer, prompts, n)
    manager = RewardLoopManager(step_config(tmp_path, prompts, n, 1, group={"timeout_s": 300}))
    outputs = stream(manager, data)
    assert_whole_groups(outputs, expected, n)
    for worker in manager.reward_loop_workers:
        ray.kill(worker)


def test_a_cap_below_the_step_refuses_to_start(cluster, tmp_path):
    from rmr1_verl.workers import check
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager

    config = step_config(tmp_path, 300, 7, 1, max_concurrency=600)
    with pytest.raises(ValueError, match="max_concurrency to at least 2100"):
        RewardLoopManager(config)  # in the driver, before any worker starts
    config.reward.num_workers = 4  # random routing is uneven: a quarter and a margin
    with pytest.raises(ValueError, match=r"num_workers=4.*at least 657"):
        RewardLoopManager(config)
    # a worker whose driver did not load the plugin has Ray's 1,000: it refuses too
    with pytest.raises(ValueError, match="load the rmr1_verl plugin in the driver"):
        check(config, {}, workers=1, in_ray=True)
    check(config, {}, workers=1, in_ray=False)  # outside Ray there is no cap


def test_two_workers_share_the_jobs_cohort_actor(tokenizer, cluster, tmp_path):
    """``cohort: ray``: 64 x 7 rollouts one by one to two random workers, one cohort actor."""
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager

    from rmr1_plugins.serve.ray_actor import PREFIX

    prompts, n = 64, 7
    data, expected = step(tokenizer, prompts, n)
    config = step_config(tmp_path, prompts, n, 2, cohort="ray", group={"timeout_s": 300})
    manager = RewardLoopManager(config)
    outputs = stream(manager, data)
    assert_whole_groups(outputs, expected, n)
    [name] = [a for a in ray.util.list_named_actors() if a.startswith(PREFIX)]
    stats = ray.get(ray.get_actor(name).stats.remote())
    assert stats["members"] == prompts * n and stats["complete_cohorts"] == prompts
    assert stats.get("partial_cohorts", 0) == 0 and stats["held"] == 0
    for worker in manager.reward_loop_workers:
        ray.kill(worker)  # the actor ends with the worker that created it


def test_the_cohort_actor_is_named_from_its_settings_and_checks_each_member(cluster, fake_judges):
    from rmr1_plugins.serve.cohort import CohortBodyError
    from rmr1_plugins.serve.cohort_client import CohortRefused, RayCohorts
    from rmr1_plugins.serve.ray_actor import actor_name, cohort_actor
    from rmr1_plugins.settings import RewardSettings, decisive_settings

    base = RewardSettings.model_validate(
        {"scorer": {"backend": {"name": "ranker"}}, "reward": {"strategy": "round-robin"}}
    )
    other = base.model_copy(update={"reward": base.reward.model_copy(update={"win": 2.0})})
    assert actor_name(base, "reference") == actor_name(base.model_copy(), "reference")
    assert actor_name(base, "reference") != actor_name(other, "reference")
    assert actor_name(base, "reference") != actor_name(base, "drop")
    actor = cohort_actor(base, "reference", max_concurrency=16)
    assert cohort_actor(base, "reference", max_concurrency=16)._actor_id == actor._actor_id
    body = {"key": "k", "size": 1, "prompt": "Pick.", "response": "pick 3", "reference": "pick 1"}
    with pytest.raises(CohortBodyError, match=r"reward.win is 2.0 in the request, 1.0 here"):
        ray.get(actor.cohort.remote({**body, "settings": decisive_settings(other)}))
    answer = ray.get(actor.cohort.remote({**body, "settings": decisive_settings(base)}))
    assert answer["reward"] == 1.0 and answer["group"] == 1 and not answer["fallback"]
    client = RayCohorts(base, "reference", max_concurrency=16)  # the manager's client: same actor
    with pytest.raises(CohortRefused, match=r"refused: settings differ.*reward.win is 2.0"):
        asyncio.run(client.ask({**body, "id": "2", "settings": decisive_settings(other)}))
    assert ray.get(actor.stats.remote())["members"] == 1  # the refused member was never held
    ray.kill(actor)  # dead: the client makes it again (same name) and sends the member again
    with pytest.raises(ray.exceptions.RayActorError):
        for _ in range(10_000):  # ray.kill is asynchronous: a call sent at once may still run
            ray.get(actor.stats.remote())
    again = asyncio.run(client.ask({**body, "id": "3", "settings": decisive_settings(base)}))
    assert again["reward"] == 1.0 and not again["fallback"]
    revived = ray.get_actor(client.name)
    assert revived._actor_id != actor._actor_id
    assert ray.get(revived.stats.remote())["members"] == 1
    ray.kill(revived)


def test_a_full_cohort_actor_is_retried_and_then_answers(cluster, fake_judges):
    """Overloaded raised in the actor reaches the client as Overloaded (nothing held): sent
    again until ``cohort_timeout_s``; once the held group is judged, the member is accepted."""
    from rmr1_plugins.rewards.cohort_table import Overloaded, text_bytes
    from rmr1_plugins.serve.cohort_client import RayCohorts
    from rmr1_plugins.serve.ray_actor import cohort_actor
    from rmr1_plugins.settings import RewardSettings

    opened = text_bytes("Pick.") + text_bytes("pick 1")
    base = RewardSettings.model_validate(
        {
            "scorer": {"backend": {"name": "ranker"}},
            "reward": {
                "strategy": "round-robin",
                "service": {"max_pending_bytes": opened + text_bytes("pick 2")},
            },
        }
    )
    actor = cohort_actor(base, "reference", max_concurrency=16)
    member = {"size": 2, "prompt": "Pick.", "response": "pick 1"}
    held = actor.cohort.remote({**member, "key": "a", "id": "0"}, "w")  # waits for its pair
    for _ in range(100_000):  # until it is held (the actor prepares it off its loop first)
        if ray.get(actor.stats.remote())["held"] == 1:
            break
    client = RayCohorts(base, "reference", max_concurrency=16, timeout_s=0.0)
    client.worker = "w"  # the same worker: its share is full
    with pytest.raises(Overloaded, match=r"still full after 0 s.*max_pending_bytes"):
        asyncio.run(client.ask({**member, "key": "b", "id": "0"}))
    pair = actor.cohort.remote({**member, "key": "a", "id": "1", "response": "pick 2"}, "w")
    assert [a["group"] for a in ray.get([held, pair])] == [2, 2]
    client.timeout_s = 600.0
    answer = asyncio.run(
        client.ask({**member, "key": "b", "id": "0", "size": 1, "reference": "pick 2"})
    )
    assert answer["group"] == 1 and not answer["fallback"]
    ray.kill(actor)
