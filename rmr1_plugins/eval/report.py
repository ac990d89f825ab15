"""The report: ``report.json`` (every number), ``report.md`` (a summary table), ``report.png``.

matplotlib is imported only to draw the chart (the ``eval`` extra); without it the JSON and
Markdown are still written and a warning says how to get the chart.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rmr1_plugins.eval import metrics
from rmr1_plugins.eval.loaders import Loaded

TITLES = {"rewardbench": "RewardBench", "rm-bench": "RM-Bench", "rmb": "RMB"}
TITLES["judgebench"] = "JudgeBench"
HEADLINES = {
    "rewardbench": "mean of the Chat, Chat Hard, Safety and Reasoning sections",
    "rm-bench": "mean over the chat, math, code and safety domains",
    "rmb": "mean of pairwise and best-of-N accuracy, helpfulness and harmlessness",
    "judgebench": "overall pairwise accuracy",
}


def build_report(
    benchmark: str,
    records: Sequence[Mapping[str, Any]],
    policy: str,
    run: Mapping[str, Any] | None,
    loaded: Loaded | None = None,
) -> dict[str, Any]:
    """Every number, and every item accounted for: judged, missing or malformed."""
    report: dict[str, Any] = {
        "benchmark": benchmark,
        "data": loaded.data if loaded else [],
        "run": run,
        "no_verdict_policy": policy,
    }
    judged_ids = {r["id"] for r in records}
    counts: dict[str, Any] = {
        "rows": loaded.rows if loaded else None,
        "items": len(loaded.items) if loaded else len({r["item"] for r in records}),
        "malformed": len(loaded.malformed) if loaded else None,
        "judged": len(records),
    }
    missing: list[str] = []
    if loaded:
        expected = loaded.comparisons
        counts["comparisons"] = len(expected)
        missing = [c.id for c in expected if c.id not in judged_ids]
        counts["missing"] = len(missing)
    report["counts"] = counts
    report["metrics"] = metrics.score(benchmark, records, policy)
    report["malformed"] = [vars(m) for m in loaded.malformed] if loaded else []
    report["missing"] = missing
    return report


def write_report(report: Mapping[str, Any], out: str | Path) -> list[Path]:
    """Write report.json, report.md and (with matplotlib) report.png; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md"]
    paths[0].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(report), encoding="utf-8")
    try:
        paths.append(chart(report, out / "report.png"))
    except ImportError as error:
        print(f"warning: no chart written: {error}", file=sys.stderr)
    return paths


def markdown(report: Mapping[str, Any]) -> str:
    benchmark, m = report["benchmark"], report["metrics"]
    lines = [f"# {TITLES[benchmark]}", ""]
    lines.append(f"**Score: {_num(m['score'])}** ({HEADLINES[benchmark]}; percent)")
    lines += ["", *_parts_table(benchmark, m), ""]
    lines += ["| subset | comparisons | accuracy | position consistency |", "|---|---|---|---|"]
    for name, s in m["subsets"].items():
        consistency = _num(s["position_consistency"])
        lines.append(f"| {name} | {s['comparisons']} | {_num(s['accuracy'])} | {consistency} |")
    c, judge = report["counts"], m["judge"]
    lines += ["", "| count | value |", "|---|---|"]
    for key in ("rows", "items", "malformed", "comparisons", "judged", "missing"):
        if c.get(key) is not None:
            lines.append(f"| {key} | {c[key]} |")
    lines.append(f"| comparisons without a verdict | {judge['no_verdict']} |")
    lines.append(f"| judgments without a parsed verdict | {judge['unparsed_judgments']} |")
    lines.append(f"| position consistency | {_num(judge['position_consistency'])} |")
    policy = f"{report['no_verdict_policy']} (scores {judge['no_verdict_scores']})"
    lines.append(f"| a comparison without a verdict counts as | {policy} |")
    if report["malformed"]:
        lines += ["", "## Malformed items (left out of the metrics)", ""]
        for bad in report["malformed"]:
            lines.append(f"- `{bad['id']}` at {bad['source']}: {bad['reason']}")
    if report["missing"]:
        lines += ["", f"{len(report['missing'])} comparisons are not judged yet (see report.json)."]
    return "\n".join(lines) + "\n"


def _parts_table(benchmark: str, m: Mapping[str, Any]) -> list[str]:
    if benchmark == "rm-bench":
        rows = ["| domain | items | hard | normal | easy | average |", "|---|---|---|---|---|---|"]
        for name, d in m["domains"].items():
            cells = [d["hard"], d["normal"], d["easy"], d["average"]]
            rows.append(f"| {name} | {d['items']} | " + " | ".join(map(_num, cells)) + " |")
        overall = [m["hard"], m["normal"], m["easy"], m["score"]]
        return [*rows, "| **all** | | " + " | ".join(map(_num, overall)) + " |"]
    parts = m.get("sections") or m.get("categories") or {}
    return ["| part | score |", "|---|---|", *(f"| {k} | {_num(v)} |" for k, v in parts.items())]


def chart(report: Mapping[str, Any], path: Path) -> Path:
    """Per-subset accuracy and (when both orders were judged) position consistency."""
    from rmr1_plugins._imports import require

    figure_module = require("matplotlib.figure", "eval")
    subsets = report["metrics"]["subsets"]
    names = list(subsets)[::-1]
    accuracy = [subsets[n]["accuracy"] or 0.0 for n in names]
    consistency = [subsets[n]["position_consistency"] for n in names]
    both = any(v is not None for v in consistency)
    figure = figure_module.Figure(figsize=(8, 1.5 + 0.32 * len(names)))
    axes = figure.add_subplot()
    rows = list(range(len(names)))
    height = 0.4 if both else 0.7
    axes.barh([r + (height / 2 if both else 0) for r in rows], accuracy, height, label="accuracy")
    if both:
        values = [v or 0.0 for v in consistency]
        axes.barh([r - height / 2 for r in rows], values, height, label="position consistency")
    axes.set_yticks(rows, names)
    axes.set_xlim(0, 100)
    axes.set_xlabel("percent")
    score = _num(report["metrics"]["score"])
    axes.set_title(f"{TITLES[report['benchmark']]}: score {score}")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
