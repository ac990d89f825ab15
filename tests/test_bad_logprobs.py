"""Impossible log-probabilities from a judge server (NaN, Infinity, 1000) are treated as absent:
the hard verdict stands, they are counted, nothing raises (issue 21). Through the real ``openai``
backend against a scripted OpenAI-style server on 127.0.0.1, in ``rmr1 score``, ``rmr1 eval``
and ``rmr1 serve``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rmr1_plugins.cli import main
from rmr1_plugins.verdict_probs import TokenChoice, verdict_prob_a

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

from rmr1_plugins.testing.openai_stub import StubServer  # noqa: E402
from rmr1_plugins.testing.serving import Server, body  # noqa: E402

DATA = Path(__file__).parent / "data" / "eval"
BAD = [math.nan, math.inf, 1000.0]  # what json.loads reads from NaN, Infinity, 1000


@pytest.mark.parametrize("bad", [*BAD, 1e-3])
@pytest.mark.parametrize("where", ["written", "alternative"])
def test_an_impossible_logprob_gives_no_probability_and_never_raises(bad, where):
    written, other = (bad, -1.0) if where == "written" else (-0.1, bad)
    tokens = [
        TokenChoice("[[", 0.0, {}),
        TokenChoice("A", written, {"B": other}),
        TokenChoice("]]", 0.0, {}),
    ]
    read = verdict_prob_a(tokens)
    assert read is not None and read.letter == "A" and read.prob_a is None


def test_a_rounding_slip_above_zero_and_minus_infinity_are_fine():
    tokens = [TokenChoice("[[A]]", 1e-7, {"[[B]]": -math.inf})]
    assert verdict_prob_a(tokens).prob_a == 1.0


def _answer(logprob: float):
    """A chat completion writing ``[[A]]`` with ``logprob`` at the letter (as the JSON text)."""

    async def handler(request_body, count):
        n = request_body.get("n", 1)
        content = [
            {"token": "<answer>[[", "logprob": 0.0, "top_logprobs": []},
            {"token": "A", "logprob": logprob, "top_logprobs": [{"token": "B", "logprob": -3.0}]},
            {"token": "]]</answer>", "logprob": 0.0, "top_logprobs": []},
        ]
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": "<answer>[[A]]</answer>"},
                "finish_reason": "stop",
                "logprobs": {"content": content},
            }
            for i in range(n)
        ]
        # json.dumps writes NaN, Infinity and 1000.0 as a lenient server would
        text = json.dumps({"id": "x", "choices": choices, "usage": {}})
        return web.Response(text=text, content_type="application/json")

    return handler


@pytest.fixture(params=BAD, ids=["nan", "infinity", "1000"])
def stub(request):
    server = StubServer(_answer(request.param))
    yield server
    server.stop()


def config(tmp_path, stub) -> Path:
    path = tmp_path / "judge.yaml"
    options = {"base_url": stub.url, "max_retries": 0}
    judge = {"name": "openai", "model": "stub-model", "options": options}
    sampling = {"verdict_probs": True, "max_new_tokens": 16}
    path.write_text(json.dumps({"backend": judge, "sampling": sampling}))  # JSON is YAML
    return path


def test_rmr1_score_keeps_the_hard_verdict(tmp_path, stub, capsys):
    pair = {
        "id": "p",
        "context": [{"role": "user", "content": "2+2?"}],
        "response_a": "4",
        "response_b": "5",
    }
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(pair) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["score", str(src), "-o", str(out), "--config", str(config(tmp_path, stub))]) == 0
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["verdict"] == "A" and row.get("prob_a") is None
    assert all(j["prob_a"] is None for j in row["judgments"])


def test_rmr1_eval_keeps_the_hard_verdicts(tmp_path, stub):
    out = tmp_path / "eval"
    argv = ["eval", "--benchmark", "judgebench", "--data", str(DATA / "judgebench.jsonl")]
    argv += ["--config", str(config(tmp_path, stub)), "-o", str(out)]
    assert main(argv) == 0
    records = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    assert records and all(j.get("prob_a") is None for r in records for j in r["judgments"])
    assert all(j["verdict"] in ("A", "B") for r in records for j in r["judgments"])
    assert all(j["prob_invalid"] is True for r in records for j in r["judgments"])
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["health"]["overall"]["invalid_probs"] == 1.0
    assert "impossible log-probs" in (out / "report.md").read_text()


def test_rmr1_serve_judges_with_the_hard_verdict_and_counts_them(tmp_path, stub):
    server = Server("--config", str(config(tmp_path, stub)), backend="openai", num_samples=None)
    try:
        status, answer = server.post("/get_reward", body("r1"))
        stats = server.get("/stats")
    finally:
        assert server.stop() == 0
    assert status == 200 and "error" not in answer, answer
    assert answer["rewards"] == [1.0]  # [[A]] with the response in slot A, the hard verdict
    assert stats["scorer"]["invalid_probs"] >= 1
    assert stats["health"]["invalid_probs"] == 1.0  # every judgment's, in judge health too
    assert answer["extra_logs"]["rmr1_health/invalid_probs"] == [1.0]
