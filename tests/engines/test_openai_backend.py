"""The openai backend: request handling against tiny local servers, then a real vLLM server."""

from __future__ import annotations

import asyncio
import pickle
import socket
import subprocess
import sys
import threading
import time

import pytest
from aiohttp import web

from rmr1_plugins import BackendError, PairwiseExample, SamplingParams, Scorer, get_template
from rmr1_plugins.backends.openai import OpenAIBackend
from rmr1_plugins.testing.openai_stub import StubServer, completion

CHAT = [{"role": "user", "content": "Say hello."}]
SHORT = SamplingParams(max_new_tokens=16)
FAST_RETRY = {"retry_backoff_s": 0.01, "max_retry_backoff_s": 0.05}


@pytest.fixture
def stub():
    servers: list[StubServer] = []

    def start(handler=None) -> StubServer:
        server = StubServer(handler) if handler else StubServer()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def backend_for(*urls: str, model: str | None = "m", **options) -> OpenAIBackend:
    return OpenAIBackend(model, {"base_url": list(urls), **FAST_RETRY, **options})


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket is closed


# -- request handling, against StubServer ---------------------------------------------------


def test_request_fields_api_key_usage_and_the_stripped_answer_tag(stub, monkeypatch):
    async def answer(body, count):
        return completion("<eval>ok</eval><answer>[[B]]", finish="stop")

    server = stub(answer)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    backend = backend_for(server.url)
    [[generation]] = backend.generate([CHAT], SamplingParams(max_new_tokens=9, seed=3))
    body = server.bodies[0]
    assert body["model"] == "m" and body["messages"] == CHAT and body["max_tokens"] == 9
    assert body["stop"] == ["</answer>"] and body["seed"] == 3 and body["n"] == 1
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    assert generation.text.endswith("<answer>[[B]]</answer>")  # restored for the parsers
    assert (generation.finish_reason, generation.prompt_tokens, generation.output_tokens) == (
        "stop",
        11,
        7,
    )
    backend.close()


def test_api_key_from_a_named_variable_which_must_be_set(stub, monkeypatch):
    server = stub()
    monkeypatch.delenv("JUDGE_KEY", raising=False)
    with pytest.raises(ValueError, match="JUDGE_KEY"):
        backend_for(server.url, api_key_env="JUDGE_KEY").generate([CHAT], SHORT)
    monkeypatch.setenv("JUDGE_KEY", "secret")
    backend_for(server.url, api_key_env="JUDGE_KEY").generate([CHAT], SHORT)
    assert server.headers[-1]["Authorization"] == "Bearer secret"


def test_overload_and_server_errors_are_retried_with_backoff(stub):
    async def flaky(body, count):
        if count == 1:
            return web.Response(status=429, text="slow down", headers={"Retry-After": "0"})
        if count == 2:
            return web.Response(status=503, text="warming up")
        if count == 3:
            return web.Response(status=200, text="{not json")
        return completion()

    server = stub(flaky)
    backend = backend_for(server.url)
    [[generation]] = backend.generate([CHAT], SHORT)
    assert generation.text == "<answer>[[A]]</answer>" and backend.stats["retries"] == 3


def test_group_affinity_keeps_a_questions_comparisons_on_one_replica(stub):
    """rmr1 serve judges one group per call: its comparisons should share one prefix cache."""
    from rmr1_plugins.backends.openai import affinity

    def pair(question, a, b):
        user = (
            f"[Client Question]\n{question}\n\n[The Start of Chatbot A's Response]\n{a}\n"
            f"[The End of Chatbot A's Response]\n\n[The Start of Chatbot B's Response]\n{b}\n"
        )
        return [{"role": "system", "content": "judge"}, {"role": "user", "content": user}]

    questions = [f"question {q}" for q in range(8)]
    servers = [stub(), stub()]

    def placement(**options):
        for server in servers:
            server.bodies.clear()
        backend = backend_for(*(s.url for s in servers), **options)
        for question in questions:  # one call per group of 4 comparisons
            backend.generate([pair(question, f"a{i}", f"b{i}") for i in range(4)], SHORT)
        where: dict[str, set[int]] = {}
        for number, server in enumerate(servers):
            for body in server.bodies:
                question = body["messages"][1]["content"].split("\n")[1]
                where.setdefault(question, set()).add(number)
        return where

    assert all(len(s) == 2 for s in placement().values())  # each group split over both
    grouped = placement(group_affinity=True)
    assert all(len(s) == 1 for s in grouped.values())  # never split
    assert {n for s in grouped.values() for n in s} == {0, 1}  # and both replicas used
    home = {q: affinity(pair(q, "x", "y")) % 2 for q in questions}  # by the question alone
    assert {q: s.pop() for q, s in grouped.items()} == home


def test_a_rejected_request_is_not_retried(stub):
    async def reject(body, count):
        return web.Response(status=400, text='{"message": "maximum context length is 2048"}')

    server = stub(reject)
    with pytest.raises(BackendError, match=r"HTTP 400 \(not retried\).*maximum context length"):
        backend_for(server.url).generate([CHAT], SHORT)
    assert len(server.bodies) == 1


def test_exhausted_retries_name_the_cause_and_stop_the_batch(stub):
    async def down(body, count):
        return web.Response(status=500, text="engine dead")

    server = stub(down)
    backend = backend_for(server.url, max_retries=2)
    with pytest.raises(BackendError, match=r"failed after 3 attempt.*HTTP 500: engine dead"):
        backend.generate([CHAT, CHAT], SHORT)
    assert backend.stats["failures"] >= 1


def test_load_is_spread_over_urls_with_bounded_concurrency(stub):
    async def slow(body, count):
        await asyncio.sleep(0.05)
        return completion()

    first, second = stub(slow), stub(slow)
    backend = backend_for(first.url, second.url, max_concurrency=2)
    chats = [[{"role": "user", "content": f"question {i}"}] for i in range(20)]
    results = backend.generate(chats, SHORT)
    assert len(results) == 20 and len(first.bodies) == len(second.bodies) == 10
    assert first.max_in_flight == second.max_in_flight == 2
    # Sorted and split in contiguous runs: requests sharing a prefix go to the same URL.
    assert sorted(b["messages"][0]["content"] for b in first.bodies) == sorted(
        c[0]["content"] for c in sorted(chats, key=str)[:10]
    )


def test_a_refused_url_fails_over_and_all_refused_is_an_error_quickly(stub):
    server = stub()
    backend = backend_for(closed_port_url(), server.url)
    assert len(backend.generate([CHAT] * 4, SHORT)) == 4
    assert backend.stats["retries"] >= 1 and len(server.bodies) == 4

    start = time.monotonic()
    with pytest.raises(BackendError, match="cannot connect"):
        backend_for(closed_port_url(), max_retries=2).generate([CHAT], SHORT)
    assert time.monotonic() - start < 5


def test_timeout_is_retried_then_reported(stub):
    async def hang(body, count):
        await asyncio.sleep(1)
        return completion()

    server = stub(hang)
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"no answer within 0.2 s"):
        backend_for(server.url, timeout_s=0.2, max_retries=1).generate([CHAT], SHORT)
    assert len(server.bodies) == 2 and time.monotonic() - start < 3


def test_n_samples_count_is_checked(stub):
    async def one_choice(body, count):
        return completion(n=1)

    server = stub(one_choice)
    with pytest.raises(BackendError, match=r"asked .* for 2 completions, got 1"):
        backend_for(server.url).generate([CHAT], SamplingParams(num_samples=2, temperature=1.0))


def test_async_from_several_loops_threads_and_after_pickling(stub):
    server = stub()
    backend = backend_for(server.url, model=None)  # the model name comes from /models
    results = [asyncio.run(backend.agenerate([CHAT], SHORT)) for _ in range(2)]
    assert all(r[0][0].text for r in results) and server.bodies[0]["model"] == "stub-model"

    async def sync_call_inside_a_running_loop():
        return backend.generate([CHAT], SHORT)  # blocks this loop, but completes

    assert asyncio.run(sync_call_inside_a_running_loop())[0][0].text
    found = []
    thread = threading.Thread(target=lambda: found.append(backend.generate([CHAT], SHORT)))
    thread.start()
    thread.join(10)
    assert found and found[0][0][0].text

    copy = pickle.loads(pickle.dumps(backend))
    assert copy.generate([CHAT], SHORT)[0][0].text
    backend.close()
    copy.close()


# -- against a real vLLM server ---------------------------------------------------------------


def pairs() -> list[PairwiseExample]:
    return [
        PairwiseExample(
            context=[{"role": "user", "content": f"What is {i} * 7?"}],
            response_a=str(i * 7),
            response_b=str(i * 7 + 1),
        )
        for i in range(3)
    ]


@pytest.mark.model
@pytest.mark.vllm
def test_scorer_against_vllm_serve(vllm_server, vllm_backend):
    backend = OpenAIBackend(None, {"base_url": vllm_server.url})
    scorer = Scorer(backend, order="both", sampling=SHORT)
    results = scorer.score(pairs())
    judgments = [j for r in results for j in r.judgments]
    assert len(judgments) == 6 and all(j.completion.strip() for j in judgments)
    assert {j.finish_reason for j in judgments} <= {"stop", "length"}
    # The server renders the same chat template: prompt token counts match the offline path.
    messages = get_template("rmr1-instruct").render(pairs()[0])
    [[generation]] = backend.generate([messages], SamplingParams(max_new_tokens=1))
    assert generation.prompt_tokens == len(vllm_backend.render(messages))

    async def concurrently():
        return await asyncio.gather(*[scorer.ascore([p]) for p in pairs()])

    again = asyncio.run(concurrently())  # served by the cache, not the server
    assert [r[0].verdict for r in again] == [r.verdict for r in results]
    assert scorer.stats["cache_hits"] == 6
    backend.close()


@pytest.mark.model
@pytest.mark.vllm
def test_real_server_samples_rejects_too_long_prompts_and_times_out(vllm_server):
    backend = OpenAIBackend("smollm2", {"base_url": vllm_server.url, **FAST_RETRY})
    params = SamplingParams(max_new_tokens=8, temperature=1.0, num_samples=2, seed=0)
    [samples] = backend.generate([CHAT], params)
    assert len(samples) == 2 and all(s.finish_reason in ("stop", "length") for s in samples)

    huge = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(BackendError, match="HTTP 400 \\(not retried\\)"):
        backend.generate([huge], SHORT)
    assert backend.stats["retries"] == 0

    impatient = OpenAIBackend(
        "smollm2", {"base_url": vllm_server.url, "timeout_s": 0.05, "max_retries": 1, **FAST_RETRY}
    )
    with pytest.raises(BackendError, match=r"failed after 2 attempt.*no answer within 0.05 s"):
        impatient.generate([CHAT], SamplingParams(max_new_tokens=32))
    backend.close()
    impatient.close()


@pytest.mark.model
@pytest.mark.vllm
def test_real_server_survives_a_refused_and_a_killed_replica(vllm_server):
    port = int(closed_port_url().rsplit(":", 1)[1].split("/")[0])
    doomed = subprocess.Popen(
        [sys.executable, "-m", "rmr1_plugins.testing.openai_stub", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_port(port)
        urls = [closed_port_url(), f"http://127.0.0.1:{port}/v1", vllm_server.url]
        backend = OpenAIBackend("smollm2", {"base_url": urls, **FAST_RETRY})
        chats = [[{"role": "user", "content": f"Name a fruit, number {i}."}] for i in range(6)]

        async def judge_then_kill():
            task = asyncio.ensure_future(backend.agenerate(chats, SamplingParams(max_new_tokens=4)))
            await asyncio.to_thread(doomed.stdout.readline)  # it holds a request now
            doomed.kill()
            return await task

        results = asyncio.run(judge_then_kill())
        assert len(results) == 6 and all(r[0].text for r in results)
        assert backend.stats["retries"] >= 2  # refused, and dropped mid-request
        backend.close()
    finally:
        doomed.kill()
        doomed.wait(10)


def _wait_for_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"the stub server never listened on port {port}")


# -- OpenAI reasoning models (o1, o3, o4-mini, gpt-5): their request rules, enforced -----------
REASONING = {"o3", "o3-2025-04-16", "gpt-5-mini", "my-reasoner"}
REJECTED = ("max_tokens", "temperature", "top_p", "stop", "logprobs", "top_logprobs")


async def reasoning_rules(body, count):
    """Answer as OpenAI does: a reasoning model rejects max_tokens, a temperature, top_p, stop
    and logprobs with HTTP 400 and takes max_completion_tokens."""
    if body["model"] in REASONING:
        for key in REJECTED:
            if key in body:
                message = f"Unsupported parameter: '{key}' is not supported with this model."
                return web.json_response({"error": {"message": message}}, status=400)
        if "max_completion_tokens" not in body:
            return web.json_response({"error": {"message": "no token limit"}}, status=400)
    return completion("<think>weighing</think><answer>[[B]]", n=body.get("n", 1))


@pytest.mark.parametrize(
    ("model", "options"),
    [
        ("o3", {}),
        ("o3-2025-04-16", {}),
        ("gpt-5-mini", {}),
        ("my-reasoner", {"reasoning_model": True}),
    ],
)
def test_reasoning_models_get_max_completion_tokens_and_no_temperature(stub, model, options):
    server = stub(reasoning_rules)
    backend = backend_for(server.url, model=model, **options)
    params = SamplingParams(max_new_tokens=9, temperature=0.7, top_p=0.9, seed=3)
    [[generation]] = backend.generate([CHAT], params)
    body = server.bodies[0]
    assert body["max_completion_tokens"] == 9 and body["seed"] == 3
    assert not set(REJECTED) & set(body)
    assert generation.text == "<think>weighing</think><answer>[[B]]"  # no stop sent: kept as is
    with pytest.raises(BackendError, match="no logprobs"):
        backend.generate([CHAT], SamplingParams(max_new_tokens=9, verdict_probs=True))
    backend.close()


def test_the_server_enforces_the_rules_and_other_models_keep_max_tokens(stub):
    server = stub(reasoning_rules)
    forced = backend_for(server.url, model="o3", reasoning_model=False)
    with pytest.raises(BackendError, match=r"HTTP 400.*'max_tokens' is not supported"):
        forced.generate([CHAT], SHORT)
    forced.close()
    chat = backend_for(server.url, model="gpt-4o")
    chat.generate([CHAT], SamplingParams(max_new_tokens=9))
    body = server.bodies[-1]
    assert body["max_tokens"] == 9 and body["temperature"] == 0.0 and "stop" in body
    assert "max_completion_tokens" not in body
    chat.close()


def test_distill_pass_two_with_o3_as_rm_r1_ran_it(stub, tmp_path, monkeypatch):
    """The documented `--correction-teacher-model o3`: pass 1 (a chat model) is wrong, pass 2
    goes to o3 under its request rules and is kept."""
    import json

    from rmr1_plugins.cli import main

    async def teachers(body, count):
        if body["model"] == "o3":
            return await reasoning_rules(body, count)  # [[B]]: right
        return completion("<answer>[[A]]</answer>")  # pass 1: wrong

    server = stub(teachers)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    rows = tmp_path / "distill.jsonl"
    row = {"id": "r0", "context_messages": [{"role": "user", "content": "u"}], "winner": "model_b"}
    rows.write_text(json.dumps(row) + "\n")
    argv = ["recipe", "distill", str(rows), "-o", str(tmp_path / "out"), "--backend", "openai"]
    argv += ["--model", "claude-3-7-sonnet", "--backend-option", f"base_url={server.url}"]
    assert main([*argv, "--correction-teacher-model", "o3"]) == 0
    o3 = [body for body in server.bodies if body["model"] == "o3"]
    assert len(o3) == 1 and o3[0]["max_completion_tokens"] == 8192
    assert "temperature" not in o3[0] and "max_tokens" not in o3[0]
    assert "max_tokens" in server.bodies[0]  # pass 1 keeps the chat-model fields
    [kept] = [
        json.loads(line) for line in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()
    ]
    assert kept["completion"][0]["content"].endswith("[[B]]")
