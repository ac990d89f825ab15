"""OpenRLHF 0.11.2's real reward client at RM-R1's step size against one ``rmr1 serve`` cohort
endpoint: splits, fallbacks, exact rewards and the step's reward time.

    python bench/openrlhf_cohorts.py                      # 1,024 prompts x 7 samples
    python bench/openrlhf_cohorts.py --prompts 256 --group-timeout-s 60

Runs in the ``openrlhf`` nox environment on CPU. Every sample of the step goes through its own
``SingleTurnAgentExecutor.execute`` (the real client: one HTTP request per sample), all in flight
at once and groups interleaved, to a real ``rmr1 serve --group-size N`` on 127.0.0.1 with the
zero-cost scripted ``ranker`` judge of rmr1_plugins.testing.judges (exact in-group rewards known in
advance). The CI test ``test_a_step_of_128_prompts_x_7_keeps_every_group_whole`` is the same step
at 128 × 7.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "adapters" / "openrlhf")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1024)
    parser.add_argument("--n", type=int, default=7)
    parser.add_argument("--group-timeout-s", type=float, default=600.0)
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from rmr1_plugins.testing import smollm2_checkpoint
    from rmr1_plugins.testing.openrlhf import cohort_server, step, summary

    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint())
    server = cohort_server(args.prompts, args.n, args.group_timeout_s)
    try:
        start = time.perf_counter()
        results = step(server.url, tokenizer, args.prompts, args.n)
        seconds = time.perf_counter() - start
        stats = server.get("/stats")["cohorts"]
    finally:
        server.stop()
    counts = summary(results)
    print(f"OpenRLHF 0.11.2 SingleTurnAgentExecutor, {args.prompts} prompts x {args.n} samples")
    print("samples  split  fallback  inexact  complete cohorts  partial  reward time (s)")
    print(
        f"{counts['samples']:>7} {counts['split']:>6} {counts['fallback']:>9} "
        f"{counts['inexact']:>8} {stats.get('complete_cohorts', 0):>17} "
        f"{stats.get('partial_cohorts', 0):>8} {seconds:>16.1f}"
    )


if __name__ == "__main__":
    main()
