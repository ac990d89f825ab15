"""Several reward workers, one cohort service: whole-group rewards in veRL's streaming mode.

veRL sends each finished rollout to a random ``RewardLoopWorker``. Here two ``rmr1`` managers
(two workers' managers, built by veRL's ``load_reward_manager``) receive the rollouts of two
groups at random and send them to a real ``rmr1 serve`` process (the scripted ``ranker`` judge of
rmr1_plugins.testing.judges: the larger number wins), which judges each group whole.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from rmr1_plugins.rewards.metrics import KEYS
from rmr1_plugins.testing import tiny_llama
from rmr1_plugins.testing.judges import closed_port
from rmr1_plugins.testing.serving import Server
from rmr1_plugins.testing.verl import GROUPS, manager, rollouts, verl_config


@pytest.fixture(scope="module")
def server():
    running = Server("--group-timeout-s", "30", "--no-warmup", backend="ranker")
    yield running
    assert running.stop() == 0


def test_rollouts_sent_to_random_workers_get_whole_group_rewards(tokenizer, server):
    base = server.url.rsplit("/", 1)[0]
    workers = [manager(tokenizer, cohort_url=f"{base}/cohort") for _ in range(2)]
    data = rollouts(tokenizer, GROUPS)
    order = list(range(len(data)))
    rng = random.Random(3)
    rng.shuffle(order)
    chosen = {i: rng.choice(workers) for i in order}
    assert len({id(w) for w in chosen.values()}) == 2  # both workers get rollouts

    async def step():
        calls = (chosen[i].run_single(data[i : i + 1]) for i in order)
        return dict(zip(order, await asyncio.gather(*calls), strict=True))

    outputs = workers[0].loop.run_until_complete(step())
    for worker in workers:
        workers[0].loop.run_until_complete(worker.cohorts.aclose())
    scores = [outputs[i]["reward_score"] for i in range(6)]
    assert scores == pytest.approx([0.5, 1.0, 0.0, 0.5, 0.0, 1.0])  # win rates in each group
    infos = [outputs[i]["reward_extra_info"] for i in range(6)]
    assert all(
        info["rmr1_fallback"] == info["rmr1_error"] == info["rmr1_split"] == 0.0 for info in infos
    )
    assert all(info["rmr1_judgments"] == 16.0 for info in infos)  # 2 opponents x 8 samples
    assert list(infos[0]) == ["score", *KEYS]  # the metrics contract, as in process
    assert all(w._local is None for w in workers)  # nothing waited in the workers themselves


def test_settings_that_differ_from_the_servers_are_refused_naming_the_key(tokenizer, server):
    """The server judges with its own settings: a manager asking for others is refused (400)
    and raises rather than hand out rewards it did not ask for."""
    from rmr1_plugins.serve.cohort_client import CohortRefused

    worker = manager(tokenizer, cohort_url=f"{server.base}/cohort", win=2, loss=-1)
    data = rollouts(tokenizer, GROUPS[:1])
    try:
        with pytest.raises(CohortRefused, match=r"HTTP 400: .*reward\.win"):
            worker.loop.run_until_complete(worker.run_single(data[0:1]))
    finally:
        worker.loop.run_until_complete(worker.cohorts.aclose())


def test_an_unreachable_service_gives_the_fallback_without_raising(tokenizer, caplog):
    closed = closed_port()
    worker = manager(tokenizer, cohort_url=f"http://127.0.0.1:{closed}/cohort", cohort_timeout_s=1)
    data = rollouts(tokenizer, GROUPS[:1])
    out = worker.loop.run_until_complete(worker.run_single(data[0:1]))
    worker.loop.run_until_complete(worker.cohorts.aclose())
    info = out["reward_extra_info"]
    assert out["reward_score"] == 0.5 and info["rmr1_fallback"] == info["rmr1_error"] == 1.0
    assert "cohort service" in caplog.text and list(info) == ["score", *KEYS]


def test_one_worker_keeps_the_in_process_barrier(tokenizer):
    assert manager(tokenizer, workers=1, cohort_url="http://127.0.0.1:9/cohort").cohorts is None
    assert manager(tokenizer, workers=2, strategy="reference").cohorts is None  # no groups


def test_several_workers_without_a_cohort_url_refuse_to_start(tokenizer):
    """Random workers (streaming) or completion-order chunks (colocated) split every group."""
    with pytest.raises(ValueError, match=r"streaming.*set \+reward.rmr1.cohort=ray.*cohort_url"):
        manager(tokenizer, workers=2)
    from verl.trainer.ppo.reward import load_reward_manager

    config = verl_config(tiny_llama(), n=3, rmr1={"strategy": "round-robin"})
    config.reward.num_workers = 2
    config.reward.reward_model = {"enable": True, "enable_resource_pool": False}
    with pytest.raises(ValueError, match=r"colocated.*reward.num_workers=1"):
        load_reward_manager(config, tokenizer)


def served_judge(tmp_path):
    """A judge config the cohort actor takes (not one that loads a model in its process)."""
    judge = tmp_path / "judge.yaml"
    judge.write_text("backend: {name: constant}\n")
    return str(judge)


def test_the_cohort_setting_is_ray_and_excludes_a_cohort_url(tokenizer, tmp_path):
    from rmr1_plugins.serve.cohort_client import RayCohorts

    worker = manager(tokenizer, cohort="ray", config=served_judge(tmp_path))
    assert isinstance(worker.cohorts, RayCohorts)  # no actor yet
    with pytest.raises(ValueError, match="no GPU reserved"):  # the default hf judge, at start-up
        manager(tokenizer, cohort="ray")
    with pytest.raises(ValueError, match="cohort must be ray, got 'http'"):
        manager(tokenizer, cohort="http")
    with pytest.raises(ValueError, match=r"cohort=ray or .*cohort_url, not both"):
        manager(tokenizer, cohort="ray", cohort_url="http://127.0.0.1:9/cohort")


def test_cohort_ray_outside_a_ray_cluster_stops_the_step(tokenizer, tmp_path):
    from rmr1_plugins.serve.cohort_client import CohortRefused

    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()
    worker = manager(tokenizer, cohort="ray", config=served_judge(tmp_path))
    data = rollouts(tokenizer, GROUPS)
    with pytest.raises(CohortRefused, match="needs a Ray cluster"):
        worker.loop.run_until_complete(worker.run_single(data[0:1]))
    assert not ray.is_initialized()  # never started one by itself


def test_colocated_rows_without_uid_are_grouped_by_prompt(tokenizer, monkeypatch):
    """veRL's colocated path passes only raw_prompt: no uid, reward_model or extra_info."""
    import verl  # noqa: F401 - first, so its plugin import registers the manager

    from rmr1_plugins import Scorer
    from rmr1_plugins.testing import LongerWins

    backend = LongerWins()
    scorer = Scorer(backend)
    monkeypatch.setattr("rmr1_verl.manager.shared_scorer", lambda config: scorer)
    # a call goes out once it holds all six pairs (streamed or not): no race with the clock
    worker = manager(tokenizer, workers=1, service={"max_batch_size": 6, "max_wait_ms": 60_000})
    groups = [("", "Name a fruit.", "", ["fig", "banana", "kiwi!"])]
    groups.append(("", "Name a colour.", "", ["teal", "red", "magenta"]))
    data = rollouts(tokenizer, groups)
    for name in ("uid", "reward_model", "extra_info", "data_source"):
        del data.non_tensor_batch[name]
    order = [3, 0, 5, 1, 4, 2]

    async def chunk():
        return await asyncio.gather(*(worker.run_single(data[i : i + 1]) for i in order))

    outputs = dict(zip(order, worker.loop.run_until_complete(chunk()), strict=True))
    assert [outputs[i]["reward_score"] for i in range(6)] == [0.0, 1.0, 0.5, 0.5, 0.0, 1.0]
    assert all(outputs[i]["reward_extra_info"]["rmr1_fallback"] == 0.0 for i in range(6))
    assert backend.batches == [6]  # both groups' pairs in one judge call
