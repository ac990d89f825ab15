"""``rmr1 serve``'s cohort protocol on a real process on 127.0.0.1: bodies, identities, settings,
late rollouts, overload and memory bounds, and what ``/stats`` and the summary count."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from rmr1_plugins.settings import decisive_settings, load_reward_settings
from rmr1_plugins.testing.serving import Server

pytest.importorskip("aiohttp")

GROUP_TIMEOUT_S = "5"
REWARD = {"strategy": "round-robin", "group": {"size": 4, "timeout_s": 5.0}}
MAX_BYTES = 1_000_000


@pytest.fixture(scope="module")
def server():
    running = Server(
        "--no-warmup", "--strategy", "round-robin", "--group-size", "4",
        "--group-timeout-s", GROUP_TIMEOUT_S, "--max-pending", "8",
        env={"RMR1_REWARD__SERVICE__MAX_PENDING_BYTES": str(MAX_BYTES)},
        backend="ranker", num_samples=None,
    )  # fmt: skip
    yield running
    assert running.stop() == 0


def post(server: Server, path: str, data: bytes) -> tuple[int, dict, dict]:
    """``(status, JSON body, headers)`` of a POST of raw bytes."""
    request = urllib.request.Request(
        server.base + path, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error), dict(error.headers)


def rollout(key: str, value: int, size: int = 2, **extra: object) -> bytes:
    body = {"key": key, "size": size, "prompt": "Pick a number.", "response": f"answer {value}"}
    return json.dumps({"reference": "answer 2.5", **body, **extra}).encode()


def sample(prompt: str, value: int) -> dict:
    turn = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    return {"query": [f"{turn}answer {value}<|im_end|>"], "prompts": [turn], "labels": ["2.5"]}


def wait_for(server: Server, done, tries: int = 2000) -> dict:
    """``/stats`` once ``done(stats)`` holds (a bounded poll of the server, no clock)."""
    for _ in range(tries):
        stats = server.get("/stats")
        if done(stats):
            return stats
    raise AssertionError(f"never reached: {stats}")


@pytest.mark.parametrize(
    "body", [b"{", b'{"key": "\xff"}', b"[" * 5000 + b"]" * 5000], ids=["json", "utf8", "deep"]
)
def test_malformed_cohort_bodies_get_the_400_of_get_reward(server, body):
    status, answer, _ = post(server, "/cohort", body)
    reference_status, reference, _ = post(server, "/get_reward", body)
    assert status == reference_status == 400, answer  # was 413 on /cohort
    assert answer == reference


def test_settings_that_differ_from_the_server_are_refused_naming_the_key(server):
    own = decisive_settings(load_reward_settings(reward=REWARD))
    knockout = {**own, "strategy": "knockout"}
    status, answer, _ = post(server, "/cohort", rollout("s1", 3, size=1, settings=knockout))
    assert status == 400 and answer["error"] == (
        "settings differ from this server's: reward.strategy is 'knockout' in the request, "
        "'round-robin' here"
    )
    status, answer, _ = post(server, "/cohort", rollout("s2", 3, size=1, settings={"x": 1}))
    assert status == 400 and "unknown key 'x'" in answer["error"]
    status, answer, _ = post(server, "/cohort", rollout("s3", 3, size=1, settings=own))
    assert status == 200 and answer["reward"] == 1.0 and answer["kind"] is None


def test_a_retried_rollout_gets_its_answer_and_is_counted_once(server):
    before = server.get("/stats")["cohorts"]
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, server, "/cohort", rollout("r", 1, id="r:0"))
        wait_for(server, lambda s: s["cohorts"]["members"] == before.get("members", 0) + 1)
        _, partner, _ = post(server, "/cohort", rollout("r", 3, id="r:1"))
        _, answer, _ = first.result()
    status, retry, _ = post(server, "/cohort", rollout("r", 1, id="r:0"))  # answered: at once
    assert status == 200 and retry == answer and answer["group"] == partner["group"] == 2
    assert (answer["reward"], partner["reward"]) == (0.0, 1.0)
    after = server.get("/stats")["cohorts"]
    assert after["members"] - before.get("members", 0) == 2
    assert after["repeats"] - before.get("repeats", 0) == 1


def test_a_cohort_closed_short_follows_the_on_split_its_first_rollout_sent(server):
    status, answer, _ = post(server, "/cohort", rollout("drop", 3, on_split="drop"))
    assert status == 200 and answer["kind"] == "dropped" and answer["logs"]["rmr1_dropped"] == 1
    status, answer, _ = post(server, "/cohort", rollout("drop", 3, on_split="error"))
    assert status == 400 and "on_split" in answer["error"]


def test_a_late_rollout_is_answered_at_once(server):
    _, first, _ = post(server, "/cohort", rollout("late", 3))  # its partner misses the deadline
    assert first["kind"] == "alone" and not first["late"]
    held = server.get("/stats")["cohorts"]["held"]
    _, second, _ = post(server, "/cohort", rollout("late", 2))
    assert second["late"] and second["kind"] == "alone" and second["reward"] == 0.0
    assert held == 0 and server.get("/stats")["cohorts"]["late"] >= 1


def test_overload_is_a_503_before_anything_is_accepted_never_a_fallback(server):
    before = server.get("/stats")["cohorts"].get("members", 0)
    bodies = [json.dumps(sample(f"Prompt {i}.", 3)).encode() for i in range(24)]
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda body: post(server, "/get_reward", body), bodies))
    accepted = [answer for status, answer, _ in answers if status == 200]
    refused = [(answer, headers) for status, answer, headers in answers if status == 503]
    assert len(accepted) + len(refused) == 24 and 1 <= len(accepted) <= 8
    assert all(headers.get("Retry-After") == "1" for _, headers in refused)
    assert all("overloaded" in answer["error"] for answer, _ in refused)
    assert not any("overloaded" in answer.get("error", "") for answer in accepted)
    assert all(answer["extra_logs"]["rmr1_fallback"] == [0.0] for answer in accepted)
    assert server.get("/stats")["cohorts"]["members"] - before == len(accepted)


def test_a_flood_of_large_rollouts_is_refused_by_bytes(server):
    big = "9" * 300_000  # about 0.3 MB each; the server holds at most 1 MB of text
    bodies = [rollout(f"big{i}", 1, size=4, reference=big) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda body: post(server, "/cohort", body), bodies))
    refused = [answer for status, answer, _ in answers if status == 503]
    assert len(refused) >= 5 and all("max_pending_bytes" in a["error"] for a in refused)
    assert all(status in (200, 503) for status, _, _ in answers)
    assert server.get("/stats")["cohorts"]["held_bytes"] == 0  # all answered by now


def rss(server: Server) -> int:
    with open(f"/proc/{server.process.pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_memory_stays_flat_under_a_flood_of_large_rollouts():
    """160 rollouts of 0.45 MB, 8 at a time, to a server that holds 1 MB of text and up to
    4,096 rollouts: all but a few are refused before they are held (held by count alone: 72 MB
    of text and more)."""
    running = Server(
        "--no-warmup", "--group-size", "4", "--group-timeout-s", GROUP_TIMEOUT_S,
        env={"RMR1_REWARD__SERVICE__MAX_PENDING_BYTES": str(MAX_BYTES)},
        backend="ranker", num_samples=None,
    )  # fmt: skip
    try:
        big = "9" * 450_000
        before = rss(running)
        bodies = [rollout(f"flood{i}", 1, size=4, reference=big[:-i]) for i in range(1, 161)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda body: post(running, "/cohort", body), bodies))
        grown = rss(running) - before
        huge = post(running, "/cohort", rollout("huge", 1, reference="9" * MAX_BYTES))
    finally:
        assert running.stop() == 0
    statuses = [status for status, _, _ in answers]
    assert statuses.count(503) >= 140 and set(statuses) <= {200, 503}
    assert grown < 48 * 1024 * 1024, grown
    status, answer, _ = huge
    assert status == 413 and "can never be accepted" in answer["error"]  # not 503: never fits


def test_stats_and_the_summary_count_cohort_samples_and_their_judge_health():
    running = Server("--no-warmup", "--strategy", "round-robin", "--group-size", "2",
                     backend="ranker", num_samples=None)  # fmt: skip
    try:
        with ThreadPoolExecutor(2) as pool:
            bodies = [json.dumps(sample("Pick.", v)).encode() for v in (1, 3)]
            answers = list(pool.map(lambda body: post(running, "/get_reward", body), bodies))
        assert [a["rewards"] for _, a, _ in answers] == [[0.0], [1.0]]
        stats = running.get("/stats")
        assert stats["cohorts"]["members"] == 2 and stats["reward"]["pairs"] == 1
        assert stats["health"]["slot_a"] is not None  # pooled: the cohort's judged pair
    finally:
        assert running.stop() == 0
    summary = running.logged().split("rmr1 serve: stopped; ", 1)[1]
    assert " 2 samples (2 in cohorts: 1 whole, 0 partial, 0 late" in summary
    assert "nothing judged yet" not in summary and "slot_a" in summary


def test_the_summary_counts_dropped_cohort_members():
    """on_split="drop" members are a fallback kind (metrics.FALLBACK_KINDS) the summary counts."""
    import asyncio
    from collections import Counter

    from rmr1_plugins import Scorer
    from rmr1_plugins.rewards.cohort_table import Member
    from rmr1_plugins.rewards.cohorts import CohortService
    from rmr1_plugins.rewards.config import RewardConfig
    from rmr1_plugins.serve.app import _summary
    from rmr1_plugins.testing import ScriptedJudge

    cohorts = CohortService(
        Scorer(ScriptedJudge()), RewardConfig(group={"timeout_s": 0.05}), on_split="drop"
    )

    async def go():
        members = [Member("p", 3, "Pick.", f"answer {v}", "answer 2") for v in (1, 2)]
        answers = await asyncio.gather(*(cohorts.reward(m) for m in members))
        await cohorts.aclose()
        return answers

    assert [a.kind for a in asyncio.run(go())] == ["dropped", "dropped"]
    summary = _summary(cohorts.judge, Counter(), cohorts)
    assert "2 fallbacks" in summary and "2 dropped" in summary


def test_a_cohort_s_pairs_are_judged_while_it_fills(server):
    """Streaming (``reward.group.stream_pairs``, on by default for round-robin): the judge has
    answered the pairs of the first three rollouts before the fourth arrives, and the group's
    rewards use them."""
    before = server.get("/stats")
    start = {part: dict(before[part]) for part in ("reward", "cohorts")}

    def grew(stats, part, key, by):
        return stats[part].get(key, 0) - start[part].get(key, 0) >= by

    with ThreadPoolExecutor(3) as pool:
        waiting = [
            pool.submit(post, server, "/cohort", rollout("fill", v, size=4)) for v in (3, 1, 4)
        ]
        # round-robin's 3 pairs among the first three, judged (batched) with one still missing
        stats = wait_for(
            server,
            lambda s: grew(s, "cohorts", "early_pairs", 3) and grew(s, "reward", "resolved", 3),
        )
        assert stats["cohorts"]["members"] - start["cohorts"].get("members", 0) == 3
        _, last, _ = post(server, "/cohort", rollout("fill", 2, size=4))
        answers = [future.result()[1] for future in waiting] + [last]
    assert [a["reward"] for a in answers] == [2 / 3, 0.0, 1.0, 1 / 3]
    assert all(a["group"] == 4 and a["kind"] is None for a in answers)
    after = server.get("/stats")
    assert after["cohorts"]["early_used"] - start["cohorts"].get("early_used", 0) == 3
    # the batching service's count has its own name: pairs it queued as early work
    assert grew(after, "reward", "early_queued", 3) and "early_pairs" not in after["reward"]
