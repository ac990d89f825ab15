"""OpenRLHF 0.11.2's real reward client at RM-R1's step size against one ``rmr1 serve`` cohort
endpoint, or its reward file through the cohort actor on local Ray: splits, fallbacks, exact
rewards and the step's reward time.

    python bench/openrlhf_cohorts.py                      # 1,024 prompts x 7 samples, HTTP
    python bench/openrlhf_cohorts.py --prompts 256 --group-timeout-s 60
    python bench/openrlhf_cohorts.py --path ray           # the reward file in 2 rollout actors

Runs in the ``openrlhf`` nox environment on CPU. Every sample of the step goes through its own
``SingleTurnAgentExecutor.execute`` (the real client: one HTTP request per sample), all in flight
at once and groups interleaved, to a real ``rmr1 serve --group-size N`` on 127.0.0.1 with the
zero-cost scripted ``ranker`` judge of rmr1_plugins.testing.judges (exact in-group rewards known in
advance). The CI test ``test_a_step_of_128_prompts_x_7_keeps_every_group_whole`` is the same step
at 128 × 7.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "adapters" / "openrlhf")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1024)
    parser.add_argument("--n", type=int, default=7)
    parser.add_argument("--group-timeout-s", type=float, default=600.0)
    parser.add_argument("--path", choices=("http", "ray"), default="http")
    parser.add_argument("--engines", type=int, default=2, help="rollout actors (--path ray)")
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from rmr1_plugins.testing import smollm2_checkpoint
    from rmr1_plugins.testing.openrlhf import summary

    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint())
    run = http_step if args.path == "http" else ray_step
    results, stats, seconds = run(args, tokenizer)
    counts = summary(results)
    how = "SingleTurnAgentExecutor" if args.path == "http" else "reward file on Ray"
    print(f"OpenRLHF 0.11.2 {how}, {args.prompts} prompts x {args.n} samples")
    print("samples  split  fallback  inexact  complete cohorts  partial  reward time (s)")
    print(
        f"{counts['samples']:>7} {counts['split']:>6} {counts['fallback']:>9} "
        f"{counts['inexact']:>8} {stats.get('complete_cohorts', 0):>17} "
        f"{stats.get('partial_cohorts', 0):>8} {seconds:>16.1f}"
    )


def http_step(args: Any, tokenizer: Any) -> tuple[list[Any], dict[str, int], float]:
    """Every sample through the executor's HTTP client to one ``rmr1 serve``."""
    from rmr1_plugins.testing.openrlhf import cohort_server, step

    server = cohort_server(args.prompts, args.n, args.group_timeout_s)
    try:
        start = time.perf_counter()
        results = step(server.url, tokenizer, args.prompts, args.n)
        seconds = time.perf_counter() - start
        return results, server.get("/stats")["cohorts"], seconds
    finally:
        server.stop()


HOOK = "rmr1_plugins.testing.judges.register_in_worker"  # the ranker judge in Ray's workers


def ray_step(args: Any, tokenizer: Any) -> tuple[list[Any], dict[str, int], float]:
    """Every prompt to a rollout actor whose reward file sends its samples to the cohort actor
    (timed once the rollout actors are up; the cohort actor starts with the first sample)."""
    import ray
    from rmr1_openrlhf.reward_func import __file__ as reward_file

    from rmr1_plugins.testing.openrlhf import Rollout

    config = Path(tempfile.mkdtemp()) / "rmr1.yaml"
    config.write_text(
        "backend: {name: ranker}\n"
        f"reward: {{strategy: round-robin, group: {{size: {args.n}, "
        f"timeout_s: {args.group_timeout_s}}}, "
        f"service: {{timeout_s: {2 * args.group_timeout_s}}}}}\n"
    )
    env = {"PYTHONPATH": os.pathsep.join(sys.path), "RMR1_CONFIG": str(config)}
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "env_vars": env,
            "worker_process_setup_hook": "rmr1_plugins.testing.judges.register_in_worker",
        },
    )
    try:
        actor = ray.remote(Rollout).options(num_cpus=0)
        engines = [actor.remote(reward_file, tokenizer, seed) for seed in range(args.engines)]
        params = SimpleNamespace(max_tokens=16, logprobs=None)
        ray.get([engine.threads.remote() for engine in engines])  # started

        def chat(p: int) -> str:
            turns = [{"role": "user", "content": f"Name a number, question {p}."}]
            return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)

        start = time.perf_counter()
        refs = [
            engines[p % args.engines].generate_responses.remote(
                chat(p), "", params, 512, tokenizer, args.n
            )
            for p in range(args.prompts)
        ]
        outputs = [out for group in ray.get(refs) for out in group]
        seconds = time.perf_counter() - start
        stats = ray.get(engines[0].cohorts.remote())
    finally:
        ray.shutdown()
    wanted = [k / (args.n - 1) for _ in range(args.prompts) for k in range(args.n)]
    return list(zip(outputs, wanted, strict=True)), stats, seconds


if __name__ == "__main__":
    main()
