"""veRL's real RewardLoopManager at RM-R1's step size: splits, fallbacks and time per worker count.

    python bench/verl_workers.py                       # 1,024 prompts x 7 rollouts; 1, 2, 4 workers
    python bench/verl_workers.py --prompts 256 --workers 2

Runs in the ``verl`` nox environment (verl 0.9.1, Ray) on CPU, with a zero-cost scripted judge
(the ``ranker`` of rmr1_plugins.testing.judges: exact in-group rewards known in advance). Ray
starts once; for each worker count a ``RewardLoopManager`` starts its ``RewardLoopWorker``
actors, and every rollout of one step goes, one by one, to a random worker, as veRL's agent loop
sends them. One worker judges in process (the core's cohort service in the worker); several send
their rollouts to one ``rmr1 serve`` cohort endpoint (``cohort``), then to the job's cohort actor
(``cohort: ray``, ``ray``). Prints, per worker count and path: rollouts judged outside their whole
group (split), fallbacks, whether every reward is the exact in-group one, and the step's reward
time (first rollout sent to last reward back).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "adapters" / "verl")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1024)
    parser.add_argument("--n", type=int, default=7)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--group-timeout-s", type=float, default=120.0)
    args = parser.parse_args(argv)

    import ray
    from transformers import AutoTokenizer
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager

    from rmr1_plugins.testing import tiny_llama
    from rmr1_plugins.testing.serving import Server
    from rmr1_plugins.testing.verl import step, step_config, stream

    ray.init(
        num_cpus=max(2, max(args.workers)),
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)},
            # the ranker in every Ray worker: the reward workers and the cohort actor
            "worker_process_setup_hook": "rmr1_plugins.testing.judges.register_in_worker",
        },
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama())
    data, expected = step(tokenizer, args.prompts, args.n)
    rollouts = len(data)
    print(f"veRL 0.9.1 RewardLoopManager, {args.prompts} prompts x {args.n} rollouts = {rollouts}")
    print("workers  path       split  fallback  exact  reward time (s)")
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            for path in ("cohort", "ray") if workers > 1 else ("in-process",):
                server, extra = None, {"group": {"timeout_s": args.group_timeout_s}}
                if path == "cohort":
                    timeout = str(args.group_timeout_s)
                    pending = str(2 * rollouts)
                    flags = ("--group-timeout-s", timeout, "--max-pending", pending, "--no-warmup")
                    server = Server(*flags, backend="ranker", num_samples=None)
                    extra = {"cohort_url": server.base + "/cohort"}
                elif path == "ray":
                    extra["cohort"] = "ray"
                try:
                    config = step_config(Path(tmp), args.prompts, args.n, workers, **extra)
                    manager = RewardLoopManager(config)
                    ray.get([w.__ray_ready__.remote() for w in manager.reward_loop_workers])
                    start = time.perf_counter()
                    outputs = stream(manager, data)
                    seconds = time.perf_counter() - start
                finally:
                    if server is not None:
                        server.stop()
                infos = [out["reward_extra_info"] for out in outputs]
                split = int(sum(info["rmr1_split"] for info in infos))
                fallback = int(sum(info["rmr1_fallback"] for info in infos))
                scores = [out["reward_score"] for out in outputs]
                exact = all(abs(a - b) < 1e-9 for a, b in zip(scores, expected, strict=True))
                row = f"{workers:>7}  {path:<10} {split:>5}  {fallback:>8}  {exact!s:>5}"
                print(f"{row}  {seconds:>15.1f}", flush=True)
                for worker in manager.reward_loop_workers:
                    ray.kill(worker)  # and the cohort actor, which ends with its creator
    ray.shutdown()


if __name__ == "__main__":
    main()
