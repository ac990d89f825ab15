"""``python -m rmr1_openrlhf path`` prints the reward file; ``check`` judges one sample."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from rmr1_openrlhf import reward_file_path
from rmr1_openrlhf.reward import CONFIG_ENV, get_runtime, reset_runtime, reward_func


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rmr1_openrlhf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("path", help="print the reward file to pass as --reward.remote_url")
    check = sub.add_parser(
        "check", help="load the configured judge, judge one sample and print OpenRLHF's view"
    )
    check.add_argument("--config", help=f"YAML config (default: ${CONFIG_ENV})")
    check.add_argument("--question", default="What is 2 + 2?")
    check.add_argument("--response", default="2 + 2 = 4.")
    check.add_argument("--reference", default="4")
    args = parser.parse_args(argv)
    if args.command == "path":
        print(reward_file_path())
        return 0
    if args.config:
        os.environ[CONFIG_ENV] = args.config
    try:
        get_runtime()
    except Exception as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    prompt = f"<|im_start|>user\n{args.question}<|im_end|>\n<|im_start|>assistant\n"
    try:
        result = reward_func([prompt + args.response + "<|im_end|>"], [prompt], [args.reference])
    finally:
        reset_runtime()
    shown: dict[str, Any] = {
        "rewards": _plain(result["rewards"]),
        "scores": _plain(result["scores"]),
        "extra_logs": {key: _plain(value) for key, value in result["extra_logs"].items()},
    }
    print(json.dumps(shown))
    return 1 if shown["extra_logs"]["rmr1_fallback"] != [0.0] else 0


def _plain(value: Any) -> list[float]:
    return value.tolist() if hasattr(value, "tolist") else list(value)


if __name__ == "__main__":
    sys.exit(main())
