"""The metrics contract: one definition in code, the same table in docs/concepts/rewards.md,
every path."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from rmr1_plugins import Scorer
from rmr1_plugins.rewards.engine import Group, ascore_groups, score_groups
from rmr1_plugins.rewards.health import METRICS as HEALTH
from rmr1_plugins.rewards.health import PREFIX
from rmr1_plugins.rewards.metrics import (
    FALLBACK_KINDS,
    KEYS,
    METRICS,
    VERIFIABLE_METRICS,
    StepSummary,
    columns,
    judged_metrics,
    means,
    sample_metrics,
)
from rmr1_plugins.testing import ScriptedJudge

DOCS = Path(__file__).resolve().parents[1] / "docs" / "concepts" / "rewards.md"
HEALTH_DOCS = DOCS.with_name("health.md")
ROW = re.compile(r"^\| `(rmr1_[a-z_/]+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", re.M)
HEALTH_ROW = re.compile(r"^\| `(rmr1_health/[a-z_]+)` \|", re.M)


def test_the_docs_table_lists_exactly_the_codes_keys_with_their_definitions():
    text = DOCS.read_text()
    metrics = text[text.index("## Metrics") : text.index("## Unscorable rows")]
    rows = [tuple(cell.strip() for cell in row) for row in ROW.findall(metrics)]
    documented = [row for row in rows if not row[0].endswith("/*")]
    assert documented == [(m.name, m.type, m.meaning, m.judged, m.fallback) for m in METRICS]
    text = HEALTH_DOCS.read_text()
    health = text[: text.index("## Hard pairs")]
    assert HEALTH_ROW.findall(health) == [PREFIX + name for name in HEALTH]
    assert [row[0] for row in documented] + HEALTH_ROW.findall(health) == list(KEYS)


def test_the_verifiable_rewards_keys_are_in_the_contract_and_its_docs_table():
    from rmr1_plugins.rewards.verifiable import KEYS as VERIFIABLE_KEYS
    from rmr1_plugins.rewards.verifiable import grade

    text = DOCS.read_text()
    section = text[text.index("## Training a judge: the verifiable reward") :]
    section = section[: section.index("\n## ")]
    rows = [tuple(cell.strip() for cell in row) for row in ROW.findall(section)]
    assert rows == [(m.name, m.type, m.meaning, m.judged, m.fallback) for m in VERIFIABLE_METRICS]
    assert all(key.startswith("rmr1_") for key in VERIFIABLE_KEYS)
    for completion, label in (("<answer>[[A]]</answer>", "A"), ("x", "A"), ("x", "tie")):
        assert list(grade(completion, label).logs()) == list(VERIFIABLE_KEYS)


def test_every_fallback_kind_gives_exactly_the_keys_as_floats():
    judged = sample_metrics(reference=True, group=1, judgments=2)
    assert list(judged) == list(KEYS) and judged["rmr1_fallback"] == 0.0
    for kind in FALLBACK_KINDS:
        metrics = sample_metrics(kind=kind, reference=True)
        assert list(metrics) == list(KEYS)
        assert all(type(v) is float for v in metrics.values())
        flags = [k for k in (f"rmr1_{name}" for name in FALLBACK_KINDS) if metrics[k] == 1.0]
        assert flags == [f"rmr1_{kind}"] and metrics["rmr1_fallback"] == 1.0
        assert metrics["rmr1_reference"] == 0.0  # a fallback's reward comes from no comparison
    with pytest.raises(ValueError, match="unknown fallback kind"):
        sample_metrics(kind="partial")


def test_columns_and_means_cover_every_key():
    rows = [sample_metrics(kind="error"), sample_metrics(reference=True, group=1)]
    table = columns(rows)
    assert list(table) == list(KEYS) and table["rmr1_error"] == [1.0, 0.0]
    assert means(rows)["rmr1_fallback"] == 0.5 and means([]) == {}


def votes(user: str, i: int) -> str:
    """Slot A wins when its text is longer (so the groups have an order to find)."""
    a = user.split("[The Start of Chatbot A's Response]\n")[1].split("\n[The End")[0]
    b = user.split("[The Start of Chatbot B's Response]\n")[1].split("\n[The End")[0]
    return "<answer>[[A]]</answer>" if len(a) >= len(b) else "<answer>[[B]]</answer>"


GROUPS = [
    Group("2+2?", ["4", "four", "it is 4", "22"], reference="4", id="g1"),
    Group([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}], ["a"]),
    Group("tool?", ["x", "y"]),  # a string prompt, two completions
]


@pytest.mark.parametrize("strategy", ["round-robin", "knockout", "adaptive", "pivot"])
def test_score_groups_and_ascore_groups_give_identical_results(strategy):
    sync_backend, async_backend = ScriptedJudge(votes), ScriptedJudge(votes)
    kwargs = {"order": "both", "seed": 7, "skip_invalid": True}
    expected = score_groups(Scorer(sync_backend), GROUPS, strategy, **kwargs)
    got = asyncio.run(ascore_groups(Scorer(async_backend), GROUPS, strategy, **kwargs))
    assert got == expected
    assert async_backend.batches == sync_backend.batches  # the same rounds, the same prompts
    metrics = [judged_metrics(r, 0, None, reference=False) for r in expected]
    assert metrics == [judged_metrics(r, 0, None, reference=False) for r in got]


def test_the_step_summary_logs_one_line_per_step_and_warns_on_splits(caplog):
    log = logging.getLogger("rmr1.test.summary")
    summary = StepSummary(3, log, "label")
    with caplog.at_level("INFO", logger="rmr1.test.summary"):
        for _ in range(2):
            summary.add(sample_metrics(group=3), 3)
        assert caplog.records == []  # two of the step's three so far
        summary.add(sample_metrics(split=True, group=1), 3)
    [record] = caplog.records
    assert record.levelname == "WARNING" and record.getMessage() == (
        "label: 3 rollouts: split 1 (33.3%), fallback 0 (0.0%), mean group 2.33 of 3.00 expected"
    )
    summary.flush()  # nothing counted since: no line
    assert len(caplog.records) == 1
