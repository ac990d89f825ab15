"""Judge a loaded benchmark with a scorer, appending each batch to the judgments file."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from rmr1_plugins.eval.loaders import Comparison, Loaded, Malformed
from rmr1_plugins.eval.store import JudgmentFile, is_current, make_record
from rmr1_plugins.scorer import Scorer
from rmr1_plugins.templates import PromptTemplate, TemplateError


def check_renderable(loaded: Loaded, template: PromptTemplate) -> None:
    """Move items the template cannot render (a system turn, say) to ``loaded.malformed``."""
    kept = []
    for item in loaded.items:
        try:
            for comparison in item.comparisons:
                template.render(comparison.example)
        except TemplateError as error:
            reason = f"template {template.name!r} cannot render it: {error}"
            loaded.malformed.append(Malformed(item.id, item.source, reason))
            continue
        kept.append(item)
    loaded.items = kept


def pending(loaded: Loaded, done: dict[str, Any]) -> list[Comparison]:
    """The comparisons not judged yet, or judged when their row said something else."""
    return [c for c in loaded.comparisons if not is_current(done.get(c.id), c)]


def judge(
    todo: Sequence[Comparison],
    scorer: Scorer,
    store: JudgmentFile,
    benchmark: str,
    batch_size: int = 64,
    total: int | None = None,
) -> None:
    """Judge ``todo`` in batches (one backend call each), appending every result as it arrives.

    ``total`` sizes the progress bar when an earlier run already judged part of the benchmark.
    """
    from tqdm import tqdm

    total = len(todo) if total is None else total
    with tqdm(
        total=total,
        initial=total - len(todo),
        unit="pair",
        desc=benchmark,
        disable=not sys.stderr.isatty(),
    ) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            results = scorer.score([c.example for c in batch])
            for comparison, result in zip(batch, results, strict=True):
                store.append(make_record(benchmark, comparison, result, store.run))
            bar.update(len(batch))
