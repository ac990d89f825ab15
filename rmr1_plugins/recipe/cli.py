"""RM-R1's training pipeline, stage by stage or in one command (TRL).

rmr1 recipe prepare SOURCE... -o data/           preference data → RM-R1 rows, split
rmr1 recipe distill data/distill.jsonl -o distill/ --backend openai --model ...
rmr1 recipe sft  --trainer trl|openrlhf|verl --data distill/sft.jsonl --model BASE -o sft/
rmr1 recipe rlvr --trainer trl|openrlhf|verl --data data/rl.jsonl --model SFT_CKPT -o rlvr/
rmr1 recipe run SOURCE... -o run/ --teacher-backend hf --teacher-model T --student S

--preset NAME (prepare, sft, rlvr, run) reproduces one released checkpoint's pipeline: its data
mix, base model, template and hyperparameters (rm-r1-instruct-7b|14b|32b,
rm-r1-deepseek-7b|14b|32b). Explicit flags still win.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rmr1_plugins.cli import SCORER_FLAGS, overrides_from_args, say_done
from rmr1_plugins.cli_options import add_flags
from rmr1_plugins.config import ConfigError
from rmr1_plugins.recipe.prepare import PrepareConfig
from rmr1_plugins.recipe.presets import (
    GPU_MEMORY_GB,
    PRESETS,
    Preset,
    check_fit,
    get_preset,
    preset_sources,
    rollout_rl,
)

EPILOG = "See docs/guides/recipe.md for what each stage writes and how to scale it."


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
    add_teacher_flags(distill, prefix="correction-teacher-", correction=True)
    distill.set_defaults(func=cmd_distill)

    for stage, data_help in (
        ("sft", "sft.jsonl written by `recipe distill`"),
        ("rlvr", "rl.jsonl written by `recipe prepare`"),
    ):
        emit = sub.add_parser(stage, help=f"write the {stage.upper()} stage's config and command")
        emit.add_argument("--trainer", required=True, choices=["trl", "openrlhf", "verl"])
        emit.add_argument("--data", type=Path, required=True, help=data_help)
        emit.add_argument(
            "--model", help="the model this stage starts from (a preset gives the base model)"
        )
        emit.add_argument("-o", "--output-dir", type=Path, required=True)
        emit.add_argument("--preset", choices=list(PRESETS), help="a checkpoint's settings")
        emit.add_argument("--gpus-per-node", type=int, help="default 8, or the preset's")
        emit.add_argument("--nodes", type=int, help="default 1, or the preset's")
        if stage == "rlvr":
            emit.add_argument(
                "--rollout-tp", type=int, help="vLLM tensor parallel size (default 4, RM-R1's)"
            )
            emit.add_argument(
                "--rollout-memory",
                type=float,
                help="vLLM's share of each GPU's memory (default the preset's, 0.5 or 0.4)",
            )
            emit.add_argument(
                "--gpu-memory-gb",
                type=float,
                default=GPU_MEMORY_GB,
                help="GPU size a preset's model is checked against (default %(default)s)",
            )
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
    add_prepare_flags(run, preset_help=False)
    run.add_argument("-o", "--output-dir", type=Path, required=True)
    add_teacher_flags(run, prefix="teacher-")
    add_teacher_flags(run, prefix="correction-teacher-", correction=True)
    run.add_argument("--student", help="the model to train (default: the preset's base model)")
    run.add_argument("--skip-sft", action="store_true", help="RL only (RM-R1's DeepSeek family)")
    run.add_argument(
        "--preset",
        choices=[*PRESETS, "rmr1", "cpu-tiny"],
        default="rmr1",
        help="a checkpoint's pipeline on one GPU (rm-r1-...); rmr1: RM-R1's 7B hyperparameters "
        "on your sources; cpu-tiny: a few steps on CPU",
    )
    run.add_argument(
        "--sft-set", action="append", default=[], metavar="KEY=VALUE", help="an SFTConfig field"
    )
    run.add_argument(
        "--rl-set", action="append", default=[], metavar="KEY=VALUE", help="a GRPOConfig field"
    )
    run.add_argument("--score-max-new-tokens", type=int, help="for the final `rmr1 score`")
    run.set_defaults(func=cmd_run, eval_size=16)


PREPARE_DEFAULTS = PrepareConfig()
TEACHER_KEYS = ("name", "model", "max_new_tokens", "temperature", "top_p")
TEACHER_FLAGS = tuple(flag for flag in SCORER_FLAGS if flag.field in TEACHER_KEYS)


def add_prepare_flags(parser: argparse.ArgumentParser, preset_help: bool = True) -> None:
    parser.add_argument(
        "sources",
        nargs="*",
        help="local .jsonl/.json/.parquet or dataset names; with --preset: none (its mix, by "
        "name) or a local copy of each of its sources, in its order",
    )
    if preset_help:
        parser.add_argument(
            "--preset", choices=list(PRESETS), help="a released checkpoint's data mix and template"
        )
    parser.add_argument(
        "--split", default=PREPARE_DEFAULTS.split, help="split of dataset-name sources"
    )
    parser.add_argument("--subset", help="configuration name of dataset-name sources")
    parser.add_argument(
        "--template",
        help=f"a registered template (default: {PREPARE_DEFAULTS.template}; a preset gives its "
        "own)",
    )
    parser.add_argument(
        "--placement",
        choices=["alternate", "both"],
        default=PREPARE_DEFAULTS.placement,
        help="where the chosen answer goes: alternately in slot A and B (RM-R1), or each pair "
        "written twice, once in each order",
    )
    parser.add_argument(
        "--distill-fraction",
        type=float,
        help=f"share for stage 1 (default {PREPARE_DEFAULTS.distill_fraction}; DeepSeek presets 0)",
    )
    parser.add_argument(
        "--eval-size",
        type=int,
        default=PREPARE_DEFAULTS.eval_size,
        help="pairs held out for scoring",
    )
    parser.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=PREPARE_DEFAULTS.max_prompt_tokens,
        help="drop longer prompts (as RM-R1); 0 keeps every prompt",
    )
    parser.add_argument(
        "--tokenizer",
        help="the student's tokenizer, for the token budget (default: the preset's base model; "
        "run: the student); required unless --max-prompt-tokens 0",
    )
    parser.add_argument("--seed", type=int, default=PREPARE_DEFAULTS.seed, help="shuffle seed")
    parser.add_argument("--limit", type=int, help="at most this many pairs per source")
    parser.add_argument("--skip-invalid", action="store_true", help="count bad rows, don't stop")
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="drop rows whose FIELD equals VALUE, e.g. source=magpie_ultra (repeatable)",
    )


def add_teacher_flags(
    parser: argparse.ArgumentParser, prefix: str, correction: bool = False
) -> None:
    """Backend and sampling flags of a teacher; ``correction``: the optional pass-2 teacher."""
    who = "the pass-2 (correction) teacher; default: the pass-1 teacher" if correction else ""
    group = parser.add_argument_group(who or "teacher")
    group.add_argument(f"--{prefix}config", help="YAML scorer config giving backend + sampling")
    notes = dict.fromkeys(TEACHER_KEYS, "the pass-1 teacher's") if correction else None
    add_flags(group, TEACHER_FLAGS, prefix=prefix, defaults=TEACHER_SAMPLING, notes=notes)
    group.add_argument(
        f"--{prefix}backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a backend option (repeatable; values read as YAML)",
    )
    if not correction:
        group.add_argument("--batch-size", type=int, default=32, help="rows per teacher call")
        group.add_argument("--no-second-pass", action="store_true", help="skip RM-R1's pass 2")


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def checkpoint_preset(args: argparse.Namespace) -> Preset | None:
    """The ``--preset`` if it names a released checkpoint (``run`` has two others)."""
    name = getattr(args, "preset", None)
    return get_preset(name) if name in PRESETS else None


def prepare_sources(args: argparse.Namespace, preset: Preset | None) -> list[Any]:
    """The sources: the preset's mix (by name or from the local copies given), else the list."""
    if preset is not None:
        return preset_sources(preset, args.sources)
    if not args.sources:
        raise ConfigError("give at least one SOURCE, or --preset NAME for a checkpoint's mix")
    return args.sources


def prepare_config(args: argparse.Namespace, preset: Preset | None, tokenizer: str | None) -> Any:
    """The prepare settings: flags, else the preset's, else RM-R1's defaults.

    ``tokenizer`` is the default for ``--tokenizer`` (the preset's base model, or the student).
    """
    from rmr1_plugins.recipe.prepare import PrepareConfig

    fraction = args.distill_fraction
    if fraction is None:
        fraction = preset.distill_fraction if preset else PREPARE_DEFAULTS.distill_fraction
    if not 0 <= fraction <= 1:
        raise ConfigError("--distill-fraction must be between 0 and 1")
    if args.max_prompt_tokens < 0:
        raise ConfigError("--max-prompt-tokens must be positive, or 0 to keep every prompt")
    return PrepareConfig(
        template=args.template or (preset.template if preset else PREPARE_DEFAULTS.template),
        placement=args.placement,
        distill_fraction=fraction,
        eval_size=args.eval_size,
        max_prompt_tokens=args.max_prompt_tokens or None,
        tokenizer=args.tokenizer or tokenizer,
        seed=args.seed,
        split=args.split,
        subset=args.subset,
        limit=args.limit,
        skip_invalid=args.skip_invalid,
        exclude=_pairs(args.exclude, "--exclude"),
    )


# RM-R1's pass-1 teacher sampling (reasoning_chain_generation/generate_Antropic_First_Time.py):
# max_tokens 8192, temperature unset, i.e. the API's default of 1.0. A --*config file or flags win.
TEACHER_MAX_NEW_TOKENS = 8192
TEACHER_SAMPLING = {"max_new_tokens": TEACHER_MAX_NEW_TOKENS, "temperature": 1.0}


def _teacher_flags(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """The overrides a teacher's flags give (``backend``, ``sampling``), as nested dicts."""
    return overrides_from_args(args, prefix, TEACHER_FLAGS)


def teacher_config(
    args: argparse.Namespace, prefix: str, defaults: dict[str, Any] = TEACHER_SAMPLING
) -> Any:
    """The pass-1 teacher's backend and sampling as a scorer config.

    Lowest to highest: ``defaults`` (RM-R1's teacher sampling), the YAML file, ``RMR1_*``
    variables, flags.
    """
    from rmr1_plugins.config import deep_merge, read_config_file
    from rmr1_plugins.settings import load_config

    path = getattr(args, prefix.replace("-", "_") + "config")
    from_file = read_config_file(path) if path else {}
    base = deep_merge({"sampling": dict(defaults)}, from_file)
    return load_config(base, **_teacher_flags(args, prefix))


def correction_config(args: argparse.Namespace, prefix: str, first: str) -> Any:
    """The pass-2 teacher (``--PREFIX*`` flags), or ``None`` when none is given.

    It starts from the pass-1 teacher (``first`` is its prefix): its file unless
    ``--PREFIXconfig`` names another, and its flags, which this prefix's flags override.
    """
    from rmr1_plugins.config import deep_merge, read_config_file
    from rmr1_plugins.settings import load_config

    own = _teacher_flags(args, prefix)
    path = getattr(args, prefix.replace("-", "_") + "config")
    if not own and not path:
        return None
    path = path or getattr(args, first.replace("-", "_") + "config")
    from_file = read_config_file(path) if path else {}
    base = deep_merge({"sampling": dict(TEACHER_SAMPLING)}, from_file)
    inherited = (
        {} if getattr(args, prefix.replace("-", "_") + "config") else _teacher_flags(args, first)
    )
    return load_config(base, **deep_merge(inherited, own))


def _report(title: str, stats: Any) -> None:
    print(f"{title}: {json.dumps(asdict(stats), indent=2)}", file=sys.stderr)


def cmd_prepare(args: argparse.Namespace) -> None:
    from rmr1_plugins.recipe.prepare import prepare

    started = time.monotonic()
    preset = checkpoint_preset(args)
    config = prepare_config(args, preset, preset.base_model if preset else None)
    stats = prepare(prepare_sources(args, preset), args.output_dir, config)
    _report("prepared", stats)
    if not stats.budget_checked:
        print(
            "note: --max-prompt-tokens 0: no prompt was checked against a budget", file=sys.stderr
        )
    parts = ", ".join(f"{name} {count}" for name, count in stats.parts.items())
    say_done("recipe prepare", started, f"{stats.read} rows read", f"{stats.pairs} pairs ({parts})")
    if stats.parts.get("distill", 0) == 0 and stats.parts.get("rl", 0) == 0:
        raise ConfigError("no usable pairs were found: nothing to train on")


def build_teacher(config: Any, who: str) -> Any:
    try:
        return config.build_backend()
    except ValueError as error:  # e.g. no --model for a backend that needs one
        raise ConfigError(f"{who}: {error}") from None


def cmd_distill(args: argparse.Namespace) -> int:
    from rmr1_plugins.recipe.distill import distill

    started = time.monotonic()
    config = teacher_config(args, "")
    correction = correction_config(args, "correction-teacher-", "")
    backend = build_teacher(config, "teacher")
    second = None
    try:
        if correction is not None and not args.no_second_pass:
            second = build_teacher(correction, "correction teacher")
        stats = distill(
            args.rows,
            args.output_dir,
            backend,
            config.sampling.params(),
            batch_size=args.batch_size,
            second_pass=not args.no_second_pass,
            correction=(second, correction.sampling.params()) if second else None,
        )
    finally:
        backend.close()
        if second is not None:
            second.close()
    _report("distilled", stats)
    say_done("recipe distill", started, *distill_parts(stats))
    if stats.sft_rows == 0:
        print("error: no trace had the right verdict; the SFT data is empty", file=sys.stderr)
        return 1
    return 0


def distill_parts(stats: Any) -> list[str]:
    """A distillation's counts, for its summary line."""
    return [
        f"{stats.rows} rows",
        f"pass 1 right {stats.first_pass_correct}",
        f"pass 2 right {stats.second_pass_correct} of {stats.second_pass_tried}",
        f"{stats.sft_rows} SFT rows kept",
    ]


def cmd_emit(args: argparse.Namespace) -> None:
    from rmr1_plugins.recipe.stages import Launch, RLVRDefaults, StageError, emit

    preset = checkpoint_preset(args)
    model = args.model
    if model is None and preset is not None and (args.stage == "sft" or preset.skip_sft):
        model = preset.base_model
    if model is None:
        what = "the SFT checkpoint" if preset else "the model this stage starts from"
        raise ConfigError(f"give --model: {what}")
    if preset is not None and args.stage == "sft" and preset.skip_sft:
        raise ConfigError(f"{preset.name} has no SFT stage: RM-R1 trained it with RLVR only")
    launch = Launch(
        model=model,
        data=args.data,
        out_dir=args.output_dir,
        gpus_per_node=args.gpus_per_node or (preset.gpus_per_node if preset else 8),
        nodes=args.nodes or (preset.nodes if preset else 1),
        overrides=_pairs(args.overrides, "--set"),
    )
    rl = preset.rl if preset else RLVRDefaults()
    if args.stage == "rlvr":
        rl = rollout_rl(rl, args.rollout_tp, args.rollout_memory)
    try:
        if preset is None:
            emitted = emit(args.stage, args.trainer, launch, rl=rl)
        else:
            script = preset.sft_script if args.stage == "sft" else preset.rl_script
            notes = [f"Preset {preset.name}: {preset.checkpoint} (RM-R1's {script})"]
            if args.stage == "rlvr":  # refuses a rollout that cannot hold the model
                notes.append(
                    "Fits: " + check_fit(preset, rl, launch.gpus_per_node, args.gpu_memory_gb)
                )
            emitted = emit(
                args.stage, args.trainer, launch, preset.sft, rl, [*notes, *preset.notes]
            )
    except StageError as error:
        raise ConfigError(str(error)) from None
    for name, path in emitted.files.items():
        print(f"wrote {name}: {path}", file=sys.stderr)
    print(emitted.script(), end="")


def cmd_run(args: argparse.Namespace) -> None:
    from rmr1_plugins.recipe.run import RunConfig, run

    preset = checkpoint_preset(args)
    student = args.student or (preset.base_model if preset else None)
    if student is None:
        raise ConfigError("give --student (the model to train), or a checkpoint --preset")
    config = RunConfig(
        sources=prepare_sources(args, preset),
        out_dir=args.output_dir,
        prepare=prepare_config(args, preset, student),
        # the CPU smoke run keeps a greedy teacher, so that its few traces are reproducible
        teacher=teacher_config(
            args, "teacher-", {} if args.preset == "cpu-tiny" else TEACHER_SAMPLING
        ),
        correction_teacher=correction_config(args, "correction-teacher-", "teacher-"),
        student=student,
        skip_sft=args.skip_sft or bool(preset and preset.skip_sft),
        preset=args.preset,
        batch_size=args.batch_size,
        second_pass=not args.no_second_pass,
        sft_overrides=_pairs(args.sft_set, "--sft-set"),
        rl_overrides=_pairs(args.rl_set, "--rl-set"),
        score_max_new_tokens=args.score_max_new_tokens,
    )
    started = time.monotonic()
    summary = run(config)
    brief = {key: value for key, value in summary.items() if not key.endswith("_log")}
    print(json.dumps(brief, indent=2))
    scores = summary["score_summary"]
    accuracy = "n/a" if scores["accuracy"] is None else f"{100 * scores['accuracy']:.0f}%"
    judged = f"final judge: {scores['with_verdict']} of {scores['pairs']} held-out pairs decided"
    say_done("recipe run", started, judged, f"accuracy {accuracy}", f"model {summary['rl_model']}")
