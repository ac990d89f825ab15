"""The ``rmr1`` command line: JSONL in, JSONL out.

Bad input, a bad configuration or an unknown name prints one ``error:`` line and exits with
code 2 (no traceback); rows written before the error stay written.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

from rmr1_plugins.config import ConfigError, load_config
from rmr1_plugins.jsonl import InputError, convert, open_input, read_rows, write_row
from rmr1_plugins.parsing import train_reward
from rmr1_plugins.plugins import KINDS, UnknownNameError, get_parser, get_plugins, get_template
from rmr1_plugins.schema import PairwiseExample
from rmr1_plugins.templates import TemplateError

# Modules that add their own subcommands through ``add_subcommand(subparsers)``.
EXTRA_COMMANDS: tuple[str, ...] = (
    "rmr1_plugins.eval.cli",
    "rmr1_plugins.serve",
    "rmr1_plugins.recipe.cli",
)
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (InputError, ConfigError, UnknownNameError, TemplateError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("interrupted; rows already written are kept", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rmr1", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", help="render pairs into the judge's chat messages")
    render.add_argument("file", nargs="?", default="-", help="JSONL of pairs, or - for stdin")
    render.add_argument("--template", default="rmr1-instruct")
    render.set_defaults(func=cmd_render)

    parse = sub.add_parser("parse", help="read verdicts from judge completions")
    parse.add_argument("file", nargs="?", default="-", help="JSONL of {completion, label?}")
    parse.add_argument("--rule", default="strict", help="strict, rmr1-train or rmr1-eval")
    parse.set_defaults(func=cmd_parse)

    score = sub.add_parser("score", help="judge pairs with a backend")
    score.add_argument("file", help="JSONL of pairs (native or TRL preference rows), or -")
    score.add_argument("-o", "--output", default="-", help="where to write judgments (default -)")
    add_scorer_flags(score)
    score.add_argument("--batch-size", type=int, default=64, help="pairs per backend call")
    score.set_defaults(func=cmd_score)

    plugins = sub.add_parser("plugins", help="list registered plugins and what they provide")
    plugins.set_defaults(func=cmd_plugins)

    for module in EXTRA_COMMANDS:
        importlib.import_module(module).add_subcommand(sub)
    return parser


def add_scorer_flags(parser: argparse.ArgumentParser) -> None:
    """Flags shared by every command that builds a scorer; unset flags leave config alone."""
    parser.add_argument("--config", help="YAML config file (flags and RMR1_* variables win)")
    parser.add_argument("--backend", help="backend name: hf, vllm, openai, constant, ...")
    parser.add_argument("--model", help="model id or local folder")
    parser.add_argument("--template", help="rmr1-instruct or rmr1-reasoning")
    parser.add_argument("--parser", help="strict, rmr1-eval or rmr1-train")
    parser.add_argument("--order", choices=["given", "random", "both"])
    parser.add_argument("--seed", type=int)
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--num-samples", type=int, help="samples per order, majority-voted")
    parser.add_argument(
        "--neutralize-markup",
        action=argparse.BooleanOptionalAction,
        help="defuse verdict markup inside candidate responses before judging",
    )
    parser.add_argument(
        "--backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a backend option, e.g. batch_size=4 (repeatable; values read as YAML)",
    )


def config_from_args(args: argparse.Namespace) -> Any:
    """Build the scorer config from ``--config``, ``RMR1_*`` variables and flags."""
    return load_config(args.config, **overrides_from_args(args))


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The scorer settings given by flags (see :func:`add_scorer_flags`), as nested overrides."""
    import yaml

    overrides: dict[str, Any] = {}
    for key in ("template", "parser", "order", "seed", "neutralize_markup"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    backend: dict[str, Any] = {}
    if args.backend is not None:
        backend["name"] = args.backend
    if args.model is not None:
        backend["model"] = args.model
    options = {}
    for item in args.backend_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--backend-option expects KEY=VALUE, got {item!r}")
        options[key] = yaml.safe_load(value)
    if options:
        backend["options"] = options
    if backend:
        overrides["backend"] = backend
    sampling = {
        key: getattr(args, key)
        for key in ("max_new_tokens", "temperature", "top_p", "num_samples")
        if getattr(args, key) is not None
    }
    if sampling:
        overrides["sampling"] = sampling
    return overrides


def read_pairs(path: str) -> list[PairwiseExample]:
    """Every row of a pairs file as examples; the first bad row raises :class:`InputError`."""
    with open_input(path) as handle:
        source = "stdin" if path == "-" else path
        return [
            convert(row, PairwiseExample.from_row, source, line)
            for line, row in read_rows(handle, source)
        ]


@contextlib.contextmanager
def open_output(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8") as handle:
        yield handle


def cmd_render(args: argparse.Namespace) -> None:
    template = get_template(args.template)
    source = "stdin" if args.file == "-" else args.file
    with open_input(args.file) as handle:
        for line, row in read_rows(handle, source):
            example = convert(row, PairwiseExample.from_row, source, line)
            try:
                messages = template.render(example)
            except TemplateError as error:
                raise InputError(source, line, f"field 'context': {error}") from None
            write_row(sys.stdout, {"id": example.id, "messages": messages})


def cmd_parse(args: argparse.Namespace) -> None:
    parser = get_parser(args.rule)
    source = "stdin" if args.file == "-" else args.file
    with open_input(args.file) as handle:
        for line, row in read_rows(handle, source):
            completion = row.get("completion")
            if not isinstance(completion, str):
                raise InputError(source, line, "field 'completion': must be a string")
            out: dict[str, Any] = {"verdict": parser.parse(completion)}
            if "id" in row:
                out = {"id": row["id"], **out}
            if args.rule == "rmr1-train":
                if row.get("label") is None:
                    raise InputError(source, line, "field 'label': required by --rule rmr1-train")
                try:
                    out["reward"] = train_reward(completion, row["label"])
                except ValueError as error:
                    raise InputError(source, line, f"field 'label': {error}") from None
            write_row(sys.stdout, out)


def cmd_score(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    config = config_from_args(args)
    examples = read_pairs(args.file)  # validate every row before loading a model
    scorer = config.build_scorer()
    try:
        with (
            open_output(args.output) as out,
            tqdm(total=len(examples), unit="pair", disable=not sys.stderr.isatty()) as bar,
        ):
            for start in range(0, len(examples), args.batch_size):
                for result in scorer.score(examples[start : start + args.batch_size]):
                    write_row(out, result.model_dump(mode="json"))
                    bar.update(1)
    finally:
        scorer.close()


def cmd_plugins(args: argparse.Namespace) -> None:
    plugins = get_plugins()
    for kind in KINDS:
        registry = plugins.registries[kind]
        print(f"{kind}:")
        for name in registry.names():
            entry = registry.entries[name]
            print(f"  {name:<16} {entry.description}  [{entry.plugin}]")


if __name__ == "__main__":
    sys.exit(main())
