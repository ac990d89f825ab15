"""``rmr1 serve`` as a real process on 127.0.0.1: load, injected faults, protocol errors.

The judge is the scripted ``votes`` backend of rmr1_plugins.testing.judges, registered the way a
plugin would be, so every request's right reward is known and differs from most others'.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from rmr1_plugins.rewards.metrics import sample_metrics
from rmr1_plugins.testing.judges import expected_reward
from rmr1_plugins.testing.serving import Server, body, post

aiohttp = pytest.importorskip("aiohttp")

LOAD_REQUESTS, LOAD_CLIENTS = 400, 100


@pytest.fixture(scope="module")
def server():
    # on_unparsed: exclude, so a judgment without a verdict gets the fallback (tie is the default)
    running = Server(
        *("--timeout-s", "2", "--max-wait-ms", "5", "--model", "/srv/RM-R1-DeepSeek-Distilled-7B"),
        env={"RMR1_REWARD__ON_UNPARSED": "exclude"},
    )
    yield running
    assert running.stop() == 0


async def get(session, url, **kwargs):
    async with session.get(url, **kwargs) as response:
        return response.status, await response.json()


def test_many_concurrent_clients_each_answered_once_with_their_own_reward(server):
    async def scenario():
        connector = aiohttp.TCPConnector(limit=LOAD_CLIENTS)
        async with aiohttp.ClientSession(connector=connector) as session:
            _, before = await get(session, f"{server.base}/stats")
            started = time.monotonic()
            answers = await asyncio.gather(
                *(post(session, server.url, body(f"r{i}")) for i in range(LOAD_REQUESTS))
            )
            took = time.monotonic() - started
            _, after = await get(session, f"{server.base}/stats")
        return before, answers, after, took

    before, answers, after, took = asyncio.run(scenario())
    assert len(answers) == LOAD_REQUESTS
    for i, (status, answer) in enumerate(answers):
        assert status == 200 and "error" not in answer, answer
        assert answer["rewards"] == [expected_reward(i)], i
        assert answer["scores"] == [expected_reward(i)]
        assert answer["extra_logs"]["rmr1_fallback"] == [0.0]

    def delta(section, key):
        return after[section].get(key, 0) - before[section].get(key, 0)

    # Exactly one answer per request, none duplicated, none lost, and batches really formed.
    assert delta("http", "status_200") == LOAD_REQUESTS + 1  # + the first /stats call
    assert delta("reward", "samples") == delta("reward", "answered") == LOAD_REQUESTS
    assert delta("reward", "batched_samples") == LOAD_REQUESTS
    assert delta("scorer", "requests") == LOAD_REQUESTS  # each judged once: no duplicates
    assert delta("reward", "batches") < LOAD_REQUESTS / 4
    assert after["reward"]["largest_batch"] > 8
    assert took < 60


def test_injected_faults_each_get_the_fallback_and_are_counted(server):
    async def scenario():
        async with aiohttp.ClientSession() as session:
            _, before = await get(session, f"{server.base}/stats")
            started = time.monotonic()
            slow = await asyncio.gather(
                *(post(session, server.url, body(f"r{i} slow:30")) for i in (1, 2))
            )
            slow_took = time.monotonic() - started
            faults = ["r10 boom", "r11 refused", "r12 flaky", "r13 mute", "r14 cut"]
            wave = [f"r{i}" for i in range(20)] + faults
            answers = await asyncio.gather(*(post(session, server.url, body(t)) for t in wave))
            bad = await post(session, server.url, body("r5", label=""))
            _, after = await get(session, f"{server.base}/stats")
        return before, slow, slow_took, dict(zip(wave, answers, strict=True)), bad, after

    before, slow, slow_took, answers, bad, after = asyncio.run(scenario())
    for status, answer in slow:
        assert status == 200 and answer["rewards"] == [0.5]
        assert (
            answer["extra_logs"]["rmr1_timeout"] == [1.0]
            and "no verdict within 2 s" in answer["error"]
        )
    assert slow_took < 5  # the 2 s deadline, not the judge's 30 s
    for i in range(20):
        assert answers[f"r{i}"] == (200, body_for(expected_reward(i)))
    assert answers["r12 flaky"][1]["rewards"] == [expected_reward(12)]  # recovered by a retry
    for text, kind, why in [
        ("r10 boom", "error", "injected failure"),
        ("r11 refused", "error", "ConnectionRefusedError"),
        ("r13 mute", "unparsed", "the judge gave no verdict"),
        ("r14 cut", "unparsed", "cut at max_new_tokens"),
    ]:
        status, answer = answers[text]
        assert status == 200 and answer["rewards"] == [0.5], text
        assert answer["extra_logs"][f"rmr1_{kind}"] == [1.0] and why in answer["error"], text
    assert bad[0] == 200 and answer_kind(bad[1]) == "no_reference"  # was bad_input: fix 4
    assert "reference answer is empty" in bad[1]["error"]
    counts = {k: after["reward"].get(k, 0) - before["reward"].get(k, 0) for k in after["reward"]}
    assert counts["fallback_timeout"] == 2 and counts["fallback_error"] == 2
    assert counts["fallback_unparsed"] == 2 and counts["fallback_no_reference"] == 1
    assert counts["answered"] == counts["samples"] == 2 + 25 + 1


def body_for(reward):
    """The full answer to a request that was judged without any fallback."""
    # The metrics contract for one sample judged against its reference: 8 sampled verdicts.
    metrics = sample_metrics(reference=True, group=1, judgments=8)
    logs = {key: [value] for key, value in metrics.items()}
    # Judge health of the scripted judge: the response (slot A) wins `reward` of the votes, the
    # reference in slot B is the longer text, one order is judged and no probability is given.
    longer_wins = 0.5 if reward == 0.5 else float(reward < 0.5)
    health = {"slot_a": reward, "orders_agree": 0.0, "unparsed": 0.0, "truncated": 0.0}
    health.update(confidence=0.5, invalid_probs=0.0, longer_wins=longer_wins, length_corr=0.0)
    logs.update({f"rmr1_health/{name}": [value] for name, value in health.items()})
    return {"rewards": [reward], "scores": [reward], "extra_logs": logs}


def answer_kind(answer):
    return next(
        k
        for k in ("bad_input", "no_reference", "unparsed", "error", "timeout")
        if answer["extra_logs"][f"rmr1_{k}"] == [1.0]
    )


def test_a_client_that_gives_up_does_not_disturb_the_server(server):
    async def scenario():
        async with aiohttp.ClientSession() as session:
            with pytest.raises(asyncio.TimeoutError):
                await post_with_timeout(session, server.url, body("r3 slow:1"), 0.3)
            return await post(session, server.url, body("r6"))

    assert asyncio.run(scenario()) == (200, body_for(expected_reward(6)))


async def post_with_timeout(session, url, payload, seconds):
    timeout = aiohttp.ClientTimeout(total=seconds)
    async with session.post(url, json=payload, timeout=timeout) as response:
        return await response.json()


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"{not json", 400, "body is not valid JSON"),
        (b'{"query": ["\xff"]}', 400, "body is not valid UTF-8 (byte 12"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (json.dumps({"query": [], "prompts": []}).encode(), 400, "field 'labels': required"),
        (
            json.dumps({"query": "q", "prompts": [], "labels": []}).encode(),
            400,
            "field 'query': must be a list",
        ),
        (
            json.dumps({"query": ["q"], "prompts": [], "labels": []}).encode(),
            400,
            "differ in length",
        ),
        (
            json.dumps({"query": [1], "prompts": ["p"], "labels": ["l"]}).encode(),
            400,
            "field 'query[0]': must be a string",
        ),
    ],
)
def test_protocol_errors_name_the_problem(server, data, status, message):
    async def scenario():
        async with aiohttp.ClientSession() as session:
            return await post(session, server.url, data=data)

    got_status, answer = asyncio.run(scenario())
    assert got_status == status and message in answer["error"]


def test_empty_lists_unknown_paths_and_health(server):
    async def scenario():
        async with aiohttp.ClientSession() as session:
            empty = await post(
                session, server.base + "/", {"query": [], "prompts": [], "labels": []}
            )
            missing = await post(session, server.base + "/nope", {})
            health = await get(session, server.base + "/health")
            wrong_method = await get(session, server.url)
        return empty, missing, health, wrong_method

    empty, missing, health, wrong_method = asyncio.run(scenario())
    assert empty == (200, {"rewards": [], "scores": [], "extra_logs": {}})
    assert missing[0] == 404 and wrong_method[0] == 405
    assert health == (200, health[1]) and health[1]["status"] == "ok"
    assert health[1]["backend"] == "votes"
    # the template the name chose: logged at start-up and shown by /health
    why = "from the model name, RM-R1's rule: RM-R1 and DeepSeek-Distilled in the name"
    assert health[1]["template"] == {"name": "rmr1-reasoning", "chosen": why}
    assert f"rmr1 serve: template: rmr1-reasoning ({why})" in server.logged()


def test_token_body_limit_and_overload():
    running = Server(
        "--max-body-bytes", "4096", "--max-pending", "4", env={"RMR1_SERVE_TOKEN": "s3cret"}
    )
    try:

        async def scenario():
            async with aiohttp.ClientSession() as session:
                results = {
                    "none": await post(session, running.url, body("r1")),
                    "wrong": await post(
                        session, running.url, body("r1"), headers={"Authorization": "Bearer nope"}
                    ),
                    "header": await post(
                        session, running.url, body("r2"), headers={"Authorization": "Bearer s3cret"}
                    ),
                    "query": await post(session, running.url + "?token=s3cret", body("r3")),
                    "health": await get(session, running.base + "/health"),
                    "stats": await get(session, running.base + "/stats"),
                    "big": await post(
                        session, running.url + "?token=s3cret", body("r1" + "x" * 5000)
                    ),
                }
                busy = await asyncio.gather(
                    *(
                        post(session, running.url + "?token=s3cret", body(f"r{i} slow:1"))
                        for i in range(10)
                    )
                )
                return results, busy

        results, busy = asyncio.run(scenario())
    finally:
        assert running.stop() == 0
    assert results["none"] == (401, {"error": "missing or wrong token"})
    assert results["wrong"][0] == 401 and results["stats"][0] == 401
    assert results["header"][1]["rewards"] == [expected_reward(2)]
    assert results["query"][1]["rewards"] == [expected_reward(3)]
    assert results["health"][0] == 200
    assert results["big"] == (413, {"error": "body larger than 4096 bytes"})
    statuses = sorted(status for status, _ in busy)
    assert statuses.count(200) == 4 and statuses.count(503) == 6
    assert all("overloaded" in a["error"] for s, a in busy if s == 503)


def test_sigterm_drains_in_flight_requests_then_exits_cleanly():
    running = Server("--shutdown-timeout-s", "10")

    async def scenario():
        async with aiohttp.ClientSession() as session:
            in_flight = asyncio.ensure_future(post(session, running.url, body("r7 slow:1")))
            await asyncio.sleep(0.3)
            running.terminate()
            return await in_flight

    status, answer = asyncio.run(scenario())
    assert (status, answer["rewards"]) == (200, [expected_reward(7)])
    assert running.stop() == 0
    running._wait_for("rmr1 serve: stopped; 1 requests, 1 samples")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--backend", "nope"], "unknown backend 'nope'"),
        (["--backend", "hf"], "cannot build backend 'hf': the hf backend needs a model"),
        (
            ["--backend", "constant", "--timeout-s", "-1"],
            "reward.service.timeout_s: Input should be",
        ),
        (
            ["--backend", "constant", "--max-pending", "0"],
            "--max-pending: Input should be greater than or equal to 1",
        ),
    ],
)
def test_a_bad_configuration_stops_the_server_at_start_with_a_clear_error(flags, message):
    argv = [sys.executable, "-m", "rmr1_plugins.cli", "serve", "--port", "0", *flags]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_serves_from_a_file_shared_with_the_group_extensions(shared_config):
    # The TRL/veRL group keys sit next to the service keys; flags still win over the file.
    path = shared_config(
        win=2.0, loss=-2.0, fallback=-1.5, on_unparsed="exclude", service={"timeout_s": 5}
    )
    running = Server("--config", str(path), "--order", "given")

    async def scenario():
        async with aiohttp.ClientSession() as session:
            return await post(session, running.url, body("r6", "mute"))

    try:
        status, answer = asyncio.run(scenario())
    finally:
        assert running.stop() == 0
    assert status == 200
    assert answer["rewards"] == [1.0, -1.5]  # 6 of 8 votes on [-2, 2]; no verdict: fallback
    assert answer["scores"] == [0.75, 0.125]


def test_an_unknown_reward_key_in_the_file_is_named(shared_config):
    path = shared_config(stratgy="pivot")
    argv = [sys.executable, "-m", "rmr1_plugins.cli", "serve", "--port", "0", "--config", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "reward.stratgy: unknown key" in done.stderr
    assert str(path) in done.stderr and "Traceback" not in done.stderr


def test_stats_and_summary_report_judge_health_and_order_flips_become_hard_pairs(tmp_path):
    """Both orders with the votes judge: r8 always beats the reference (orders agree); r0
    always loses in the given order, but the swapped order shows the reference in slot A, which
    the judge then rejects too: the two orders disagree, an order flip."""
    hard = tmp_path / "hard.jsonl"
    running = Server("--order", "both", env={"RMR1_REWARD__HARD_PAIRS__PATH": str(hard)})

    async def scenario():
        async with aiohttp.ClientSession() as session:
            answer = await post(session, running.url, body("r8", "r0"))
            return answer, await get(session, running.base + "/stats")

    try:
        (status, answer), (_, stats) = asyncio.run(scenario())
    finally:
        assert running.stop() == 0
    assert status == 200 and answer["rewards"] == [1.0, 0.5]
    logs = answer["extra_logs"]
    assert logs["rmr1_health/slot_a"] == [0.5, 0.0]  # r8: 8 of 16 shown A; r0: none
    assert logs["rmr1_health/orders_agree"] == [1.0, 0.0]
    assert logs["rmr1_health/longer_wins"] == [0.0, 0.5]  # r8 (shorter) won; r0: no verdict
    assert stats["health"] == {
        "slot_a": 0.25,  # 8 of the 32 judgments picked slot A as shown
        "orders_agree": 0.5,
        "unparsed": 0.0,
        "truncated": 0.0,
        "confidence": None,  # the judge gives no probabilities
        "invalid_probs": 0.0,
        "longer_wins": 0.0,
        "length_corr": None,  # no groups in a reference-anchored service
    }
    summary = running._wait_for("rmr1 serve: stopped;")
    assert "judge health: slot_a 0.25, orders_agree 0.5, unparsed 0, truncated 0" in summary
    [row] = [json.loads(line) for line in hard.read_text().splitlines()]
    assert row["id"].startswith("hard-order_flip-") and row["label"] is None
    assert (row["response_a"], row["response_b"]) == ("r0", "reference")
