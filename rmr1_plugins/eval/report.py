"""The report: ``report.json`` (every number), ``report.md`` (summary tables) and charts:
``report.png`` (per-subset accuracy), ``position_bias.png`` (slot-A rate per subset) and, for
RM-Bench, ``matrix.png`` (the 3×3 style matrices). :func:`compare` puts several reports side by
side with RM-R1's published numbers (``rmr1 eval compare``).

matplotlib is imported only to draw the charts (the ``eval`` extra); without it the JSON and
Markdown are still written and a warning says how to get the charts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rmr1_plugins.eval import metrics, published
from rmr1_plugins.eval.loaders import BENCHMARKS, Loaded

TITLES = {"rewardbench": "RewardBench", "rm-bench": "RM-Bench", "rmb": "RMB"}
TITLES |= {"judgebench": "JudgeBench", "rewardbench2": "RewardBench 2"}
# What the headline averages; the parts are those the run actually scored.
HEADLINES = {
    "rewardbench": "mean of the {} sections",
    "rm-bench": "mean over the {} domains",
    "rmb": "mean of {}",
    "judgebench": "overall pairwise accuracy; categories scored: {}",
    "rewardbench2": "mean over the {} subsets",
}
RM_BENCH_STYLE_NAMES = ("concise", "detailed", "markdown")
HEALTH_COLUMNS = {  # key in health.summary -> column title
    "pairs": "comparisons",
    "slot_a": "slot-A picks",
    "orders_agree": "order consistency",
    "unparsed": "unparsed",
    "truncated": "truncated",
    "invalid_probs": "impossible log-probs",
    "longer_wins": "longer wins",
    "longer_preferred": "longer preferred (labels)",
}


def build_report(
    benchmark: str,
    records: Sequence[Mapping[str, Any]],
    policy: str,
    run: Mapping[str, Any] | None,
    loaded: Loaded | None = None,
    pairing: str | None = None,
) -> dict[str, Any]:
    """Every number, and every item accounted for: judged, missing or malformed (``pairing``:
    RM-Bench's, :data:`metrics.PAIRINGS`)."""
    report: dict[str, Any] = {
        "benchmark": benchmark,
        "data": loaded.data if loaded else [],
        "run": run,
        "on_unparsed": policy,
    }
    judged_ids = {r["id"] for r in records}
    counts: dict[str, Any] = {
        "rows": loaded.rows if loaded else None,
        "items": len(loaded.items) if loaded else len({r["item"] for r in records}),
        "malformed": len(loaded.malformed) if loaded else None,
        "judged": len(records),
    }
    missing: list[str] = []
    sizes = None
    if loaded:
        sizes = {
            c.id: (len(c.example.response_a), len(c.example.response_b)) for c in loaded.comparisons
        }
        expected = loaded.comparisons
        counts["comparisons"] = len(expected)
        missing = [c.id for c in expected if c.id not in judged_ids]
        counts["missing"] = len(missing)
    report["counts"] = counts
    report["metrics"] = metrics.score(benchmark, records, policy, sizes, pairing or "benchmark")
    report["malformed"] = [vars(m) for m in loaded.malformed] if loaded else []
    report["missing"] = missing
    return report


def write_report(report: Mapping[str, Any], out: str | Path) -> list[Path]:
    """Write report.json, report.md and (with matplotlib) the charts; return their paths."""
    out = Path(out)
    charts = [
        lambda: chart(report, out / "report.png"),
        lambda: position_chart(report, out / "position_bias.png"),
    ]
    if report["benchmark"] == "rm-bench" and report["metrics"]["domains"]:
        charts.append(lambda: matrix_chart(report, out / "matrix.png"))
    return _write(out, "report", report, markdown(report), charts)


def _write(
    out: Path, name: str, data: Mapping[str, Any], text: str, charts: list[Callable[[], Path]]
) -> list[Path]:
    """``name``.json and ``name``.md in ``out``, then each chart until matplotlib is missing."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.json", out / f"{name}.md"]
    paths[0].write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths[1].write_text(text, encoding="utf-8")
    try:
        for draw in charts:
            paths.append(draw())
    except ImportError as error:
        print(f"warning: no chart written: {error}", file=sys.stderr)
    return paths


def headline(benchmark: str, m: Mapping[str, Any]) -> str:
    """What the score is the mean of, naming only the parts scored (and those that were not)."""
    scored = m.get("scored") or []
    text = HEADLINES[benchmark].format(_join(scored) if scored else "(none)")
    if m.get("not_scored"):
        text += f"; not scored: {_join(m['not_scored'])}"
    return text


def markdown(report: Mapping[str, Any]) -> str:
    benchmark, m = report["benchmark"], report["metrics"]
    lines = [f"# {TITLES[benchmark]}", ""]
    lines.append(f"**Score: {_num(m['score'])}** ({headline(benchmark, m)}; percent)")
    if m.get("pairings"):
        lines += ["", _pairing_line(m)]
    if template := report.get("template"):
        lines += ["", f"Template: `{template['name']}`, {template['chosen']}."]
    lines += ["", *_parts_table(benchmark, m), ""]
    if m.get("ties"):
        lines += [*_ties_table(m["ties"]), ""]
    lines += ["| subset | comparisons | accuracy | order consistency |", "|---|---|---|---|"]
    for name, s in m["subsets"].items():
        consistency = _rate(s["orders_agree"])
        lines.append(f"| {name} | {s['comparisons']} | {_num(s['accuracy'])} | {consistency} |")
    c, judge = report["counts"], m["judge"]
    lines += ["", "| count | value |", "|---|---|"]
    for key in ("rows", "items", "malformed", "comparisons", "judged", "missing"):
        if c.get(key) is not None:
            lines.append(f"| {key} | {c[key]} |")
    lines.append(f"| comparisons without a verdict | {judge['unparsed_comparisons']} |")
    lines.append(f"| judgments without a parsed verdict | {judge['unparsed_judgments']} |")
    lines.append(f"| order consistency | {_rate(judge['orders_agree'])} |")
    policy = f"{report['on_unparsed']} (scores {judge['unparsed_score']})"
    if report["benchmark"] == "rewardbench2":
        split = "a tie: 1/(k+1) for a row" if judge["unparsed_score"] else "a loss"
        policy = f"{report['on_unparsed']} ({split}; Ties: no preference)"
        rows = m["rows"]
        lines.append(f"| rows scored / incomplete | {rows['complete']} / {rows['incomplete']} |")
    lines.append(f"| a comparison without a verdict counts as | {policy} |")
    lines += ["", "## Judge health", "", *_health_table(m["health"])]
    if report["malformed"]:
        lines += ["", "## Malformed items (left out of the metrics)", ""]
        for bad in report["malformed"]:
            lines.append(f"- `{bad['id']}` at {bad['source']}: {bad['reason']}")
    if report["missing"]:
        lines += ["", f"{len(report['missing'])} comparisons are not judged yet (see report.json)."]
    return "\n".join(lines) + "\n"


def _pairing_line(m: Mapping[str, Any]) -> str:
    """Which RM-Bench pairing the score uses, and the score under the other."""
    other = "rm-r1" if m["pairing"] == "benchmark" else "benchmark"
    used = (
        f"Pairing: as RM-R1 published ({metrics.RM_R1_PAIRING})"
        if m["pairing"] == "rm-r1"
        else "Pairing: each judged pairing in its own cell (the benchmark's)"
    )
    return f"{used}; the {other} pairing gives {_num(m['pairings'][other])}."


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


def _ties_table(ties: Mapping[str, Any]) -> list[str]:
    rows = ["| Ties term | weight | value |", "|---|---|---|"]
    for name, weight in metrics.TIES_WEIGHTS.items():
        value = ties["terms"][name]
        rows.append(f"| {name} | {weight} | {'n/a' if value is None else f'{value:.3f}'} |")
    p = ties["prompts"]
    rows.append(
        f"| prompts: ref / tied / paired / incomplete | | "
        f"{p['ref']} / {p['tied']} / {p['paired']} / {p['incomplete']} |"
    )
    return rows


def _health_table(health: Mapping[str, Any]) -> list[str]:
    rows = ["| subset | " + " | ".join(HEALTH_COLUMNS.values()) + " |"]
    rows.append("|---" * (len(HEALTH_COLUMNS) + 1) + "|")
    for name, h in [("**all**", health["overall"]), *health["subsets"].items()]:
        cells = [str(h[k]) if k == "pairs" else _rate(h[k]) for k in HEALTH_COLUMNS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    rows += [
        "",
        "Fractions (0-1). slot-A picks: parsed judgments choosing the response shown first "
        "(0.5 = no position bias); order consistency: comparisons judged in both orders whose "
        "orders agree; unparsed / truncated: judgments without a verdict / stopped at the token "
        "limit; "
        "impossible log-probs: judgments whose verdict log-probabilities were NaN or above 0 "
        "(the hard verdict stands); "
        "longer wins: decided comparisons won by the longer response (longer preferred: how "
        "often the label is the longer one). Definitions: docs/guides/eval.md.",
    ]
    return rows


def _figure(width: float, height: float, **options: Any) -> Any:
    from rmr1_plugins._imports import require

    return require("matplotlib.figure", "eval").Figure(figsize=(width, height), **options)


def score_parts(benchmark: str, m: Mapping[str, Any]) -> dict[str, float | None]:
    """The parts the score is the mean of: RewardBench's four sections, RMB's four, RewardBench
    2's subsets, JudgeBench's categories, RM-Bench's domains; a part with nothing to score
    is ``None``."""
    if benchmark == "rm-bench":
        parts = {name: d["average"] for name, d in m["domains"].items()}
    else:
        parts = dict(m.get("sections") or m.get("categories") or {})
    return parts | {name: None for name in m.get("not_scored") or () if name not in parts}


# A zero bar is drawn this wide (percent) so that it shows; its label says 0.0.
ZERO_STUB = 0.6


def _bars(
    axes: Any, rows: Sequence[float], values: Sequence[float | None], height: float, **look: Any
) -> Any:
    """Horizontal bars with their values written after them; ``None`` is written n/a and has
    no bar, 0 a stub that shows."""
    drawn = [ZERO_STUB if v == 0 else v or 0.0 for v in values]
    bars = axes.barh(rows, drawn, height, **look)
    for row, value, width in zip(rows, values, drawn, strict=True):
        colour = "dimgray" if value is None else "black"
        axes.text(width + 1, row, _num(value), va="center", fontsize=8, color=colour)
    return bars


def chart(report: Mapping[str, Any], path: Path) -> Path:
    """The score's parts (when they are not the subsets themselves: RewardBench's four
    sections, say) with the score as a line, then per-subset accuracy and, when both orders
    were judged, order consistency (as a percentage here); every bar is labelled with its value."""
    benchmark, m = report["benchmark"], report["metrics"]
    subsets = m["subsets"]
    parts = score_parts(benchmark, m)
    show_parts = bool(parts) and list(parts) != list(subsets)
    names = list(subsets)[::-1]
    consistency = [_percent(subsets[n]["orders_agree"]) for n in names]  # on the percent axis
    both = any(v is not None for v in consistency)
    panels = [len(parts)] if show_parts else []
    panels.append(len(names) * (2 if both else 1))
    figure = _figure(8, 1.8 + 0.3 * sum(panels) + 0.5 * len(panels), layout="constrained")
    grid = figure.subplots(len(panels), 1, squeeze=False, height_ratios=[p + 1.5 for p in panels])
    axes_list = list(grid[:, 0])
    score = m["score"]
    if show_parts:
        axes = axes_list.pop(0)
        part_names = list(parts)[::-1]
        rows = list(range(len(part_names)))
        _bars(axes, rows, [parts[n] for n in part_names], 0.6, color="tab:green")
        axes.set_yticks(rows, part_names)
        axes.set_xlim(0, 105)
        if score is not None:
            axes.axvline(score, color="black", linestyle="--", linewidth=1, label="score")
        axes.set_title("the parts of the score (it is their mean)", fontsize=10)
    axes = axes_list[0]
    rows = list(range(len(names)))
    height = 0.4 if both else 0.7
    accuracy = [subsets[n]["accuracy"] for n in names]
    shift = height / 2 if both else 0
    _bars(axes, [r + shift for r in rows], accuracy, height, label="accuracy", color="tab:blue")
    if both:
        look = {"label": "order consistency", "color": "tab:orange"}
        _bars(axes, [r - height / 2 for r in rows], consistency, height, **look)
    axes.set_yticks(rows, names)
    axes.set_xlim(0, 105)
    axes.set_xlabel("percent (0.0 is a real zero; n/a: nothing to score)")
    if not show_parts and score is not None:
        axes.axvline(score, color="black", linestyle="--", linewidth=1, label="score")
    axes.set_title("per subset", fontsize=10)
    figure.suptitle(f"{TITLES[benchmark]}: score {_num(score)}")
    figure.legend(loc="outside lower center", ncol=3, fontsize=9)
    figure.savefig(path, dpi=100)
    return path


def position_chart(report: Mapping[str, Any], path: Path) -> Path:
    """Slot-A rate per subset and overall, around the unbiased 50 %."""
    health = report["metrics"]["health"]
    names = ["all", *health["subsets"]][::-1]
    parts = {"all": health["overall"], **health["subsets"]}
    rates = [parts[n]["slot_a"] for n in names]
    figure = _figure(8, 1.6 + 0.32 * len(names))
    axes = figure.add_subplot()
    rows = list(range(len(names)))
    colours = ["tab:gray" if r is None else "tab:red" if r > 0.5 else "tab:blue" for r in rates]
    axes.barh(rows, [0.0 if r is None else r - 0.5 for r in rates], 0.6, left=0.5, color=colours)
    for row, rate in zip(rows, rates, strict=True):
        axes.text(
            0.5, row, f" {_rate(rate)} ", va="center", ha="right" if (rate or 0.5) > 0.5 else "left"
        )
    axes.axvline(0.5, color="black", linewidth=1)
    axes.set_yticks(rows, names)
    axes.set_xlim(0, 1)
    axes.set_xlabel("judgments picking the response shown in slot A (fraction; 0.5 = unbiased)")
    axes.set_title(f"{TITLES[report['benchmark']]}: position bias")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def matrix_chart(report: Mapping[str, Any], path: Path) -> Path:
    """RM-Bench's 3×3 accuracy matrix (chosen style × rejected style) per domain, as heatmaps."""
    domains = report["metrics"]["domains"]
    figure = _figure(3.4 * len(domains) + 1.6, 4.0, layout="constrained")
    axes_list = figure.subplots(1, len(domains), squeeze=False, sharey=True)[0]
    image = None
    for axes, (name, d) in zip(axes_list, domains.items(), strict=True):
        cells = [[float("nan") if v is None else v for v in row] for row in d["matrix"]]
        image = axes.imshow(cells, vmin=0, vmax=100, cmap="RdYlGn")
        for i, row in enumerate(d["matrix"]):
            for j, value in enumerate(row):
                axes.text(j, i, _num(value), ha="center", va="center", fontsize=10)
        ticks = range(len(RM_BENCH_STYLE_NAMES))
        axes.set_xticks(ticks, RM_BENCH_STYLE_NAMES, fontsize=8)
        axes.set_yticks(ticks, RM_BENCH_STYLE_NAMES, fontsize=8)
        axes.set_xlabel("rejected style")
        levels = " / ".join(f"{level} {_num(d[level])}" for level in ("hard", "normal", "easy"))
        axes.set_title(f"{name} ({d['items']} items)\n{levels}", fontsize=9)
    axes_list[0].set_ylabel("chosen style")
    figure.colorbar(image, ax=list(axes_list), shrink=0.8, label="accuracy (percent)")
    score = _num(report["metrics"]["score"])
    figure.suptitle(f"RM-Bench style matrix (hard = above the diagonal); score {score}")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


def compare(reports: Sequence[tuple[str, Mapping[str, Any]]], with_published: bool = True) -> dict:
    """Runs side by side: one row per run (its model, or its folder when models repeat), one
    column per benchmark; RM-R1's published row beside a run of a released checkpoint, and the
    other published rows after the runs."""
    models = [(r.get("run") or {}).get("model") or where for where, r in reports]
    keys = [(model, r["benchmark"]) for model, (_, r) in zip(models, reports, strict=True)]
    # a model judged twice on one benchmark (two settings): label those runs by folder
    labels = [
        where if keys.count(key) > 1 else model
        for model, key, (where, _) in zip(models, keys, reports, strict=True)
    ]
    runs: dict[str, dict[str, Any]] = {}
    for label, (where, r) in zip(labels, reports, strict=True):
        new: dict[str, Any] = {
            "label": label,
            "published": False,
            "scores": {},
            "health": {},
            "reports": [],
        }
        run = runs.setdefault(label, new)
        run["scores"][r["benchmark"]] = r["metrics"]["score"]
        run["health"][r["benchmark"]] = r["metrics"]["health"]["overall"]
        run["reports"].append(where)
        if pairings := r["metrics"].get("pairings"):  # RM-Bench: the score both ways
            run["rm_bench_pairings"] = {**pairings, "score uses": r["metrics"]["pairing"]}
    rows: list[dict[str, Any]] = []
    shown: set[str] = set()
    for run in runs.values():
        rows.append(run)
        checkpoint = published.checkpoint_of(run["label"])
        if with_published and checkpoint and checkpoint not in shown:
            rows.append(_published_row(checkpoint))
            shown.add(checkpoint)
    if with_published:
        rows += [_published_row(name) for name in published.RM_R1 if name not in shown]
    present = {b for row in rows for b in row["scores"]}
    return {
        "benchmarks": [b for b in BENCHMARKS if b in present],
        "rows": rows,
        "published": {"source": published.SOURCE, "protocol": published.PROTOCOL}
        if with_published
        else None,
    }


def _published_row(checkpoint: str) -> dict[str, Any]:
    scores = dict(published.RM_R1[checkpoint])
    label = f"{checkpoint} (published)"
    return {"label": label, "published": True, "scores": scores, "health": {}, "reports": []}


def compare_markdown(table: Mapping[str, Any]) -> str:
    benchmarks = table["benchmarks"]
    lines = ["# Comparison", "", "| run | " + " | ".join(TITLES[b] for b in benchmarks) + " |"]
    lines.append("|---" * (len(benchmarks) + 1) + "|")
    for row in table["rows"]:
        cells = [_num(row["scores"].get(b)) if b in row["scores"] else "" for b in benchmarks]
        name = f"*{row['label']}*" if row["published"] else row["label"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if table["published"]:
        p = table["published"]
        lines += ["", f"*Published* rows: {p['source']}; their protocol: `{p['protocol']}`."]
    if paired := [row for row in table["rows"] if row.get("rm_bench_pairings")]:
        lines += ["", "## RM-Bench, both pairings", "", f"rm-r1: {metrics.RM_R1_PAIRING}.", ""]
        lines += ["| run | benchmark pairing | rm-r1 pairing | score uses |", "|---|---|---|---|"]
        for row in paired:
            p = row["rm_bench_pairings"]
            cells = [_num(p["benchmark"]), _num(p["rm-r1"]), p["score uses"]]
            lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    lines += ["", "## Judge health (overall)", ""]
    lines += ["| run | benchmark | slot-A picks | order consistency | unparsed | truncated |"]
    lines += ["|---|---|---|---|---|---|"]
    for row in table["rows"]:
        for b, h in row["health"].items():
            keys = ("slot_a", "orders_agree", "unparsed", "truncated")
            cells = [_rate(h[k]) for k in keys]
            lines.append(f"| {row['label']} | {TITLES[b]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def compare_chart(table: Mapping[str, Any], path: Path) -> Path:
    """A table of scores: one row per run, one column per benchmark, each cell coloured by
    its score and labelled with it (published rows in italics, a run's missing benchmark
    blank)."""
    benchmarks, rows = table["benchmarks"], table["rows"]
    labels = [row["label"] for row in rows]
    width = 3.0 + 0.07 * max((len(label) for label in labels), default=10)
    figure = _figure(width + 1.4 * len(benchmarks), 1.6 + 0.45 * len(rows), layout="constrained")
    axes = figure.add_subplot()
    nan = float("nan")
    cells = [
        [nan if row["scores"].get(b) is None else row["scores"][b] for b in benchmarks]
        for row in rows
    ]
    image = axes.imshow(cells, vmin=0, vmax=100, cmap="RdYlGn", aspect="auto")
    for i, row in enumerate(rows):
        for j, b in enumerate(benchmarks):
            if b in row["scores"]:
                value = row["scores"][b]
                style = "italic" if row["published"] else "normal"
                dark = value is not None and not 15 <= value <= 85  # the scale's dark ends
                look = {"style": style, "color": "white" if dark else "black"}
                axes.text(j, i, _num(value), ha="center", va="center", **look)
    axes.set_xticks(range(len(benchmarks)), [TITLES[b] for b in benchmarks])
    axes.xaxis.tick_top()
    axes.set_yticks(range(len(rows)), labels)
    for tick, row in zip(axes.get_yticklabels(), rows, strict=True):
        tick.set_style("italic" if row["published"] else "normal")
    figure.colorbar(image, ax=axes, label="score (percent)", shrink=0.8)
    if table["published"]:
        axes.set_xlabel("italic: RM-R1's published numbers", fontsize=9)
    figure.savefig(path, dpi=100)
    return path


def write_compare(table: Mapping[str, Any], out: str | Path) -> list[Path]:
    """Write compare.json, compare.md and (with matplotlib) the chart; return their paths."""
    out = Path(out)
    charts = [lambda: compare_chart(table, out / "compare.png")]
    return _write(out, "compare", table, compare_markdown(table), charts)


def _join(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _rate(value: float | None) -> str:
    """A judge-health fraction (0-1), as the report shows it."""
    return "n/a" if value is None else f"{value:.3f}"


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
