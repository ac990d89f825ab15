"""RM-R1's training pipeline, stage by stage or in one command (TRL).

rmr1 recipe prepare SOURCE... -o data/           preference data → RM-R1 rows, split
rmr1 recipe distill data/distill.jsonl -o distill/ --backend openai --model ...
rmr1 recipe sft  --trainer trl|openrlhf|verl --data distill/sft.jsonl --model BASE -o sft/
rmr1 recipe rlvr --trainer trl|openrlhf|verl --data data/rl.jsonl --model SFT_CKPT -o rlvr/
rmr1 recipe run SOURCE... -o run/ --teacher-backend hf --teacher-model T --student S
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rmr1_plugins.config import ConfigError

EPILOG = "See docs/recipe.md for what each stage writes and how to scale it."


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    recipe = subparsers.add_parser(
        "recipe",
        help="RM-R1's two-stage training recipe",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = recipe.add_subparsers(dest="recipe_command", required=True)

    prepare = sub.add_parser("prepare", help="preference data → RM-R1 rows, split for the stages")
    add_prepare_flags(prepare)
    prepare.add_argument("-o", "--output-dir", type=Path, required=True)
    prepare.set_defaults(func=cmd_prepare)

    distill = sub.add_parser("distill", help="distil judge traces from a teacher into SFT data")
    distill.add_argument("rows", type=Path, help="distill.jsonl written by `recipe prepare`")
    distill.add_argument("-o", "--output-dir", type=Path, required=True)
    add_teacher_flags(distill, prefix="")
    distill.set_defaults(func=cmd_distill)

    for stage, data_help in (
        ("sft", "sft.jsonl written by `recipe distill`"),
        ("rlvr", "rl.jsonl written by `recipe prepare`"),
    ):
        emit = sub.add_parser(stage, help=f"write the {stage.upper()} stage's config and command")
        emit.add_argument("--trainer", required=True, choices=["trl", "openrlhf", "verl"])
        emit.add_argument("--data", type=Path, required=True, help=data_help)
        emit.add_argument("--model", required=True, help="the model this stage starts from")
        emit.add_argument("-o", "--output-dir", type=Path, required=True)
        emit.add_argument("--gpus-per-node", type=int, default=8)
        emit.add_argument("--nodes", type=int, default=1)
        emit.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            dest="overrides",
            help="override in the trainer's own vocabulary (TRL config key, OpenRLHF flag name "
            "without --, veRL Hydra override); repeatable",
        )
        emit.set_defaults(func=cmd_emit, stage=stage)

    run = sub.add_parser("run", help="the whole pipeline with TRL, end to end")
    add_prepare_flags(run)
    run.add_argument("-o", "--output-dir", type=Path, required=True)
    add_teacher_flags(run, prefix="teacher-")
    run.add_argument("--student", required=True, help="the model to train (hub id or folder)")
    run.add_argument("--skip-sft", action="store_true", help="RL only (RM-R1's DeepSeek family)")
    run.add_argument(
        "--preset",
        choices=["rmr1", "cpu-tiny"],
        default="rmr1",
        help="rmr1: RM-R1's hyperparameters on one GPU; cpu-tiny: a few steps on CPU",
    )
    run.add_argument(
        "--sft-set", action="append", default=[], metavar="KEY=VALUE", help="an SFTConfig field"
    )
    run.add_argument(
        "--rl-set", action="append", default=[], metavar="KEY=VALUE", help="a GRPOConfig field"
    )
    run.add_argument("--score-max-new-tokens", type=int, help="for the final `rmr1 score`")
    run.set_defaults(func=cmd_run, eval_size=16)


def add_prepare_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", help="local .jsonl/.json/.parquet or dataset names")
    parser.add_argument("--split", default="train", help="split of dataset-name sources")
    parser.add_argument("--subset", help="configuration name of dataset-name sources")
    parser.add_argument(
        "--template", default="rmr1-instruct", help="rmr1-instruct or rmr1-reasoning"
    )
    parser.add_argument(
        "--order",
        choices=["alternate", "both"],
        default="alternate",
        help="chosen answer alternately in slot A/B (RM-R1), or each pair in both orders",
    )
    parser.add_argument(
        "--distill-fraction", type=float, default=0.12, help="share for stage 1 (default 0.12)"
    )
    parser.add_argument("--eval-size", type=int, default=0, help="pairs held out for scoring")
    parser.add_argument(
        "--max-prompt-tokens", type=int, default=4096, help="drop longer prompts (default 4096)"
    )
    parser.add_argument(
        "--tokenizer", help="the student's tokenizer, for the token budget (run: the student)"
    )
    parser.add_argument("--seed", type=int, default=42, help="shuffle seed (default 42)")
    parser.add_argument("--limit", type=int, help="at most this many pairs per source")
    parser.add_argument("--skip-invalid", action="store_true", help="count bad rows, don't stop")
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="drop rows whose FIELD equals VALUE, e.g. source=magpie_ultra (repeatable)",
    )


def add_teacher_flags(parser: argparse.ArgumentParser, prefix: str) -> None:
    parser.add_argument(f"--{prefix}config", help="YAML scorer config giving backend + sampling")
    parser.add_argument(f"--{prefix}backend", help="hf, vllm, openai, ...")
    parser.add_argument(f"--{prefix}model", help="the teacher model")
    parser.add_argument(
        f"--{prefix}backend-option", action="append", default=[], metavar="KEY=VALUE"
    )
    parser.add_argument(f"--{prefix}max-new-tokens", type=int)
    parser.add_argument(f"--{prefix}temperature", type=float)
    parser.add_argument(f"--{prefix}top-p", type=float)
    parser.add_argument("--batch-size", type=int, default=32, help="rows per teacher call")
    parser.add_argument("--no-second-pass", action="store_true", help="skip RM-R1's pass 2")


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def prepare_config(args: argparse.Namespace) -> Any:
    from rmr1_plugins.recipe.prepare import PrepareConfig

    if not 0 <= args.distill_fraction <= 1:
        raise ConfigError("--distill-fraction must be between 0 and 1")
    return PrepareConfig(
        template=args.template,
        order=args.order,
        distill_fraction=args.distill_fraction,
        eval_size=args.eval_size,
        max_prompt_tokens=args.max_prompt_tokens,
        tokenizer=args.tokenizer,
        seed=args.seed,
        split=args.split,
        subset=args.subset,
        limit=args.limit,
        skip_invalid=args.skip_invalid,
        exclude=_pairs(args.exclude, "--exclude"),
    )


def teacher_config(args: argparse.Namespace, prefix: str) -> Any:
    """The teacher's backend and sampling as a scorer config (YAML file, RMR1_*, then flags)."""
    import yaml

    from rmr1_plugins.config import load_config

    def flag(name: str) -> Any:
        return getattr(args, prefix.replace("-", "_") + name)

    backend: dict[str, Any] = {k: flag(k) for k in ("backend", "model") if flag(k) is not None}
    if "backend" in backend:
        backend["name"] = backend.pop("backend")
    options = _pairs(flag("backend_option"), f"--{prefix}backend-option")
    if options:
        backend["options"] = {key: yaml.safe_load(value) for key, value in options.items()}
    sampling = {
        key: flag(key)
        for key in ("max_new_tokens", "temperature", "top_p")
        if flag(key) is not None
    }
    overrides = {"backend": backend} if backend else {}
    return load_config(flag("config"), **overrides, **({"sampling": sampling} if sampling else {}))


def _report(title: str, stats: Any) -> None:
    print(f"{title}: {json.dumps(asdict(stats), indent=2)}", file=sys.stderr)


def cmd_prepare(args: argparse.Namespace) -> None:
    from rmr1_plugins.recipe.prepare import prepare

    stats = prepare(args.sources, args.output_dir, prepare_config(args))
    _report("prepared", stats)
    if not stats.budget_checked:
        print(
            "note: no --tokenizer given, so no prompt was checked against the budget",
            file=sys.stderr,
        )
    if stats.parts.get("distill", 0) == 0 and stats.parts.get("rl", 0) == 0:
        raise ConfigError("no usable pairs were found: nothing to train on")


def cmd_distill(args: argparse.Namespace) -> int:
    from rmr1_plugins.recipe.distill import distill

    config = teacher_config(args, "")
    try:
        backend = config.build_backend()
    except ValueError as error:  # e.g. no --model for a backend that needs one
        raise ConfigError(f"teacher: {error}") from None
    try:
        stats = distill(
            args.rows,
            args.output_dir,
            backend,
            config.sampling.params(),
            batch_size=args.batch_size,
            second_pass=not args.no_second_pass,
        )
    finally:
        backend.close()
    _report("distilled", stats)
    if stats.sft_rows == 0:
        print("error: no trace had the right verdict; the SFT data is empty", file=sys.stderr)
        return 1
    return 0


def cmd_emit(args: argparse.Namespace) -> None:
    from rmr1_plugins.recipe.stages import Launch, StageError, emit

    launch = Launch(
        model=args.model,
        data=args.data,
        out_dir=args.output_dir,
        gpus_per_node=args.gpus_per_node,
        nodes=args.nodes,
        overrides=_pairs(args.overrides, "--set"),
    )
    try:
        emitted = emit(args.stage, args.trainer, launch)
    except StageError as error:
        raise ConfigError(str(error)) from None
    for name, path in emitted.files.items():
        print(f"wrote {name}: {path}", file=sys.stderr)
    print(emitted.script(), end="")


def cmd_run(args: argparse.Namespace) -> None:
    from rmr1_plugins.recipe.run import RunConfig, run

    config = RunConfig(
        sources=args.sources,
        out_dir=args.output_dir,
        prepare=prepare_config(args),
        teacher=teacher_config(args, "teacher-"),
        student=args.student,
        skip_sft=args.skip_sft,
        preset=args.preset,
        batch_size=args.batch_size,
        second_pass=not args.no_second_pass,
        sft_overrides=_pairs(args.sft_set, "--sft-set"),
        rl_overrides=_pairs(args.rl_set, "--rl-set"),
        score_max_new_tokens=args.score_max_new_tokens,
    )
    summary = run(config)
    brief = {key: value for key, value in summary.items() if not key.endswith("_log")}
    print(json.dumps(brief, indent=2))
