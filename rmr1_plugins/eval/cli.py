"""``rmr1 eval``: judge a benchmark, resume an interrupted run, or rescore recorded judgments;
``rmr1 eval compare DIR...`` puts several reports side by side."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rmr1_plugins.cli import Tally, add_scorer_flags, config_from_args, generated_tokens
from rmr1_plugins.config import ConfigError
from rmr1_plugins.eval import protocols
from rmr1_plugins.eval import report as reports
from rmr1_plugins.eval.loaders import BENCHMARKS, Loaded, load, usable
from rmr1_plugins.eval.metrics import ON_UNPARSED_POLICIES
from rmr1_plugins.eval.runner import check_renderable, judge, pending
from rmr1_plugins.eval.store import (
    JudgmentFile,
    is_current,
    missing_meta,
    read_records,
    reparse,
    run_settings,
)
from rmr1_plugins.plugins import get_parser, get_template
from rmr1_plugins.settings import load_config

# The scorer settings an evaluation protocol fills when neither a flag nor the config sets them.
PROTOCOL_KEYS = ("parser", "order", "max_new_tokens", "temperature", "top_p")


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score a judge on RewardBench (1 or 2), RM-Bench, RMB or JudgeBench",
        description=__doc__,
    )
    parser.add_argument("--benchmark", choices=BENCHMARKS, help="required, except for compare")
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        help="a benchmark file (JSON or JSONL as published), a folder of them, or a datasets "
        "name (repeatable)",
    )
    parser.add_argument("--split", help="split of a datasets name (default: the benchmark's)")
    parser.add_argument("-o", "--out", help="report folder (default: rmr1-eval-BENCHMARK)")
    parser.add_argument(
        "--judgments", help="judgments JSONL, resumed if it exists (default: OUT/judgments.jsonl)"
    )
    parser.add_argument(
        "--from-judgments",
        metavar="FILE",
        help="recompute the report from recorded judgments, without a model (--data adds the "
        "completeness check; --parser parses the stored completions again)",
    )
    parser.add_argument(
        "--on-unparsed",
        choices=ON_UNPARSED_POLICIES,
        help="what a comparison without a verdict scores: the benchmark's own rule, wrong (0, "
        "as in RM-R1's evaluation), or tie (0.5) (default: the protocol's)",
    )
    protocols.add_flag(parser)
    parser.add_argument("--batch-size", type=int, default=64, help="comparisons per backend call")
    add_scorer_flags(parser, notes=dict.fromkeys(PROTOCOL_KEYS, "the protocol's, see --protocol"))
    parser.set_defaults(func=cmd_eval)
    compare = parser.add_subparsers(dest="eval_command").add_parser(
        "compare", help="several report folders side by side, with RM-R1's published numbers"
    )
    compare.add_argument("reports", nargs="+", metavar="DIR", help="folders with a report.json")
    compare.add_argument(
        "-o", "--out", default="rmr1-eval-compare", help="output folder (default: %(default)s)"
    )
    compare.add_argument("--no-published", action="store_true", help="leave out RM-R1's numbers")
    compare.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> None:
    found = []
    for where in args.reports:
        path = Path(where) / "report.json" if Path(where).is_dir() else Path(where)
        try:
            found.append((where, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError) as error:
            raise ConfigError(f"{path}: cannot read a report ({error})") from None
    table = reports.compare(found, with_published=not args.no_published)
    paths = reports.write_compare(table, args.out)
    print(reports.compare_markdown(table), end="")
    print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)


def cmd_eval(args: argparse.Namespace) -> None:
    if args.benchmark is None:
        raise ConfigError(f"give --benchmark ({', '.join(BENCHMARKS)})")
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if not args.data and not args.from_judgments:
        raise ConfigError("give --data (a benchmark file or datasets name) or --from-judgments")
    out = Path(args.out or f"rmr1-eval-{args.benchmark}")
    # a config file or RMR1_* variable that sets a protocol key wins over the protocol, as a flag
    configured = protocols.configured(load_config(args.config))
    protocol = protocols.apply(args, rescoring=bool(args.from_judgments), config=configured)
    tally = Tally("eval", unit="comparison")
    report = rescore(args, tally) if args.from_judgments else run(args, out, tally)
    report["protocol"] = protocol
    if differ := protocols.recorded_differences(protocol, report.get("run")):
        print(f"warning: judged with {', '.join(differ)}", file=sys.stderr)
    print(f"protocol: {protocol['name']}", file=sys.stderr)
    if template := report.get("template"):
        print(f"template: {template['name']} ({template['chosen']})", file=sys.stderr)
    paths = reports.write_report(report, out)
    print(reports.markdown(report), end="")
    print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    if report["malformed"]:
        count = len(report["malformed"])
        print(f"warning: {count} malformed items left out (listed in the report)", file=sys.stderr)
    tally.report()


def run(args: argparse.Namespace, out: Path, tally: Tally | None = None) -> dict:
    """Load, check every item renders, judge what is not judged yet, then score; ``tally``
    counts the verdicts and the tokens generated by this run."""
    config = config_from_args(args)
    if args.protocol == "rm-r1":
        config = protocols.rm_r1_backend_options(config)
    loaded = usable(load(args.benchmark, args.data, args.split))
    check_renderable(loaded, get_template(config.template))
    path = args.judgments or out / "judgments.jsonl"
    store = JudgmentFile(path, run_settings(config), args.benchmark)
    todo = pending(loaded, store.records)
    changed = sum(c.id in store.records for c in todo)
    if changed:
        message = f"{changed} comparisons changed since {path} judged them; judging them again"
        print(f"warning: {message}", file=sys.stderr)
    if todo:  # load the model only when something is left to judge
        scorer = config.build_scorer()
        try:
            total = len(loaded.comparisons)
            judge(todo, scorer, store, args.benchmark, args.batch_size, total=total)
            if tally is not None:
                tally.tokens = generated_tokens(scorer.stats)
        finally:
            scorer.close()
    records = [store.records[c.id] for c in loaded.comparisons]
    _count(records, tally)
    report = reports.build_report(
        args.benchmark, records, args.on_unparsed, store.run, loaded, args.pairing
    )
    report["template"] = {"name": config.template, "chosen": config.template_choice}
    return report


def _count(records: list[dict], tally: Tally | None) -> None:
    if tally is None:
        return
    for record in records:
        tally.add(record.get("verdict"), [j.get("verdict") for j in record["judgments"]])


def rescore(args: argparse.Namespace, tally: Tally | None = None) -> dict:
    """Metrics from a judgments file alone; no backend is built."""
    found = read_records(args.from_judgments)
    records = list(found.values())
    others = {r.get("benchmark") for r in records} - {args.benchmark}
    if others:
        raise ConfigError(
            f"{args.from_judgments} holds judgments for {sorted(map(str, others))}, "
            f"not only {args.benchmark}"
        )
    for record in records:
        if missing := missing_meta(record, args.benchmark):
            where = f"{args.from_judgments}, record {record['id']!r}"
            raise ConfigError(f"{where}: field 'meta' lacks {', '.join(missing)}")
    if args.parser:
        parser = get_parser(args.parser)
        records = [reparse(r, parser) for r in records]
    loaded: Loaded | None = None
    if args.data:
        loaded = usable(load(args.benchmark, args.data, args.split))
        template = args.template or next((r.get("run", {}).get("template") for r in records), None)
        if template:
            check_renderable(loaded, get_template(template))
        by_id = {r["id"]: r for r in records}
        records = [by_id[c.id] for c in loaded.comparisons if is_current(by_id.get(c.id), c)]
    _count(records, tally)
    run = records[0].get("run") if records else None
    if run and args.parser:
        run = {**run, "parser": args.parser}
    return reports.build_report(
        args.benchmark, records, args.on_unparsed, run, loaded, args.pairing
    )
