"""Re-run issue 21's attacks and print the figures docs/guides/reliability.md quotes (a script, not
a test: it measures wall-clock seconds on whatever machine runs it).

    python bench/attacks.py              # everything (about a minute on 2 CPU cores)
    python bench/attacks.py strategies   # one part: strategies, serve, cohorts, deadlines

``strategies`` plays every registered strategy × outcome × on_unparsed × group size 2–16 ×
unparsed share 0/30/100% (two seeds) through the real engine and counts the cases that fail: a
raise, a non-finite or out-of-range reward, or identical completions rewarded differently.
The other parts start a real ``rmr1 serve`` on 127.0.0.1 with the scripted judges of
``rmr1_plugins.testing.judges`` and time ``/health`` (polled every 50 ms) while hostile requests
are in flight.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from rmr1_plugins.plugins import get_plugins, get_strategy  # noqa: E402
from rmr1_plugins.rewards.engine import Group, GroupScoring  # noqa: E402
from rmr1_plugins.schema import PairResult  # noqa: E402
from rmr1_plugins.testing.serving import PROMPT, Server  # noqa: E402

PRIVATE = "".join(map(chr, range(0xE000, 0xF8FF)))


def strategies() -> None:
    names = get_plugins().registries["strategies"].names()
    failed = total = 0
    worst = 0.0
    for name, outcome, on_unparsed, size, share, seed in itertools.product(
        names, ["hard", "soft"], ["tie", "loss", "exclude"], range(2, 17), [0, 0.3, 1.0], [0, 1]
    ):
        rng = random.Random(seed * 1000 + size)
        texts = [f"c{rng.randrange(max(2, size // 2))}" for _ in range(size)]
        strategy = get_strategy(name)
        total += 1
        try:
            run = GroupScoring(
                [Group("q", texts, reference="ref")],
                name,
                on_unparsed=on_unparsed,
                outcome=outcome,
                seed=seed,
            )
            while not run.done:
                run.feed([_result(rng, share) for _ in run.examples()])
            [result] = run.rewards()
            rewards = result.rewards
        except Exception:
            failed += 1
            continue
        finite = all(r is None or math.isfinite(r) for r in rewards)
        ranged = not strategy.bounded or all(r is None or 0 <= r <= 1 for r in rewards)
        same = all(
            rewards[i] == rewards[j]
            for i, j in itertools.combinations(range(size), 2)
            if texts[i] == texts[j]
        )
        failed += result.error is not None or not (finite and ranged and same)
        if not strategy.bounded and finite:
            worst = max([worst, *(abs(r) for r in rewards if r is not None)])
    print(f"strategies: {failed} of {total} cases fail; largest |log-strength| {worst:.2f}")


def _result(rng: random.Random, share: float) -> PairResult:
    if rng.random() < share:
        return PairResult(verdict=None, votes={"A": 0, "B": 0, "none": 1}, judgments=[])
    a = rng.random() < 0.5
    votes = {"A": int(a), "B": int(not a), "none": 0}
    return PairResult(verdict=None, votes=votes, judgments=[], prob_a=rng.random())


def _post(url: str, payload: dict, timeout: float = 300) -> tuple[float, dict]:
    data = json.dumps(payload, ensure_ascii=False).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as error:
        answer = {"status": error.code}
    return time.perf_counter() - start, answer


def _health_while(server: Server, work: list[threading.Thread]) -> float:
    """The slowest ``/health`` answer while any of ``work`` runs."""
    for thread in work:
        thread.start()
    slowest = 0.0
    while any(thread.is_alive() for thread in work):
        start = time.perf_counter()
        server.get("/health")
        slowest = max(slowest, time.perf_counter() - start)
        time.sleep(0.05)
    return slowest


def _group(texts: list[str]) -> dict:
    return {
        "query": [PROMPT + t for t in texts],
        "prompts": [PROMPT] * len(texts),
        "labels": [""] * len(texts),
    }


def _sample(text: str) -> dict:
    return {"query": [PROMPT + text], "prompts": [PROMPT], "labels": ["reference"]}


def serve() -> None:
    flags = ("--max-body-bytes", "100000000", "--max-pending", "2048", "--timeout-s", "20")
    server = Server(*flags, backend="votes-requests")
    try:
        big = "r3 " + PRIVATE * 425  # 2.7 million private-use characters
        answers: list = []
        one = [threading.Thread(target=lambda: answers.append(_post(server.url, _sample(big))))]
        print(
            f"serve: one {len(big):,}-character private-use response: slowest /health "
            f"{_health_while(server, one):.3f} s, judged in {answers[0][0]:.1f} s"
        )
        answers.clear()
        hostile = [
            threading.Thread(target=lambda: answers.append(_post(server.url, _sample(big))))
            for _ in range(6)
        ]
        small: list = []
        small_threads = [
            threading.Thread(target=lambda i=i: small.append(_post(server.url, _sample(f"r{i}"))))
            for i in (1, 2, 4, 5)
        ]
        slowest = _health_while(server, hostile + small_threads)
        fallbacks = sum("error" in answer for _, answer in small)
        print(
            f"serve: six of them and four small requests (--timeout-s 20): slowest /health "
            f"{slowest:.3f} s; small requests answered in at most "
            f"{max(t for t, _ in small):.1f} s, {fallbacks} fallbacks"
        )
    finally:
        server.stop()


def cohorts() -> None:
    for strategy, size, text in (("round-robin", 8, PRIVATE * 158), ("adaptive", 256, None)):
        config = ROOT / "bench" / f".attacks-{strategy}.yaml"
        config.write_text(json.dumps({"reward": {"strategy": strategy, "group": {"size": size}}}))
        server = Server(
            "--config",
            str(config),
            "--max-body-bytes",
            "200000000",
            "--max-pending",
            "4096",
            "--timeout-s",
            "60",
            backend="ranker",
            num_samples=1,
        )
        try:
            texts = [f"{i} {text}" if text else f"answer {i}" for i in range(size)]
            answers: list = []
            # the big members one per request (as OpenRLHF sends them, each under the default
            # --max-body-bytes), the small group in one request
            batches = [[t] for t in texts] if text else [texts]
            work = [
                threading.Thread(
                    target=lambda a=answers, s=server, b=batch: a.append(_post(s.url, _group(b)))
                )
                for batch in batches
            ]
            slowest = _health_while(server, work)
            seconds = max(t for t, _ in answers)
            fallbacks = sum(
                sum(answer.get("extra_logs", {}).get("rmr1_fallback", [])) for _, answer in answers
            )
            print(
                f"cohorts: {strategy}, one group of {size} ({len(texts[0]):,} characters each): "
                f"slowest /health {slowest:.3f} s, judged in {seconds:.1f} s, "
                f"{int(fallbacks)} fallbacks"
            )
        finally:
            server.stop()
            config.unlink()


def deadlines() -> None:
    server = Server("--timeout-s", "5", backend="votes-requests")
    try:
        seconds, answer = _post(server.url, _sample("r1 slow:30"))
        print(
            f"deadlines: a hung judge with --timeout-s 5 answers at {seconds:.1f} s "
            f"({'fallback' if 'error' in answer else 'judged'})"
        )
    finally:
        server.stop()
    server = Server("--shutdown-timeout-s", "2", backend="votes")
    threading.Thread(target=lambda: _post(server.url, _sample("r1 stuck"), 60), daemon=True).start()
    server._wait_for("votes judge: stuck")
    start = time.perf_counter()
    server.terminate()
    code = server.process.wait(timeout=120)
    print(
        f"deadlines: SIGTERM with --shutdown-timeout-s 2 and a judge thread that never returns: "
        f"exit {code} after {time.perf_counter() - start:.1f} s"
    )


PARTS = {"strategies": strategies, "serve": serve, "cohorts": cohorts, "deadlines": deadlines}

if __name__ == "__main__":
    from rmr1_plugins.testing.judges import register_in_worker

    register_in_worker()  # the scripted judges, for this benchmark process
    for part in sys.argv[1:] or PARTS:
        PARTS[part]()
