"""Benchmark evaluation: RewardBench (1 and 2), RM-Bench, RMB and JudgeBench, by their own rules.

``loaders`` turns each benchmark's native rows into pairwise comparisons, ``runner`` judges them
with a :class:`~rmr1_plugins.Scorer` into a resumable judgments file (``store``), ``metrics``
reproduces each benchmark's published scoring, and ``report`` writes JSON, Markdown and charts
(judge health from :mod:`rmr1_plugins.rewards.health` included).
The ``rmr1 eval`` command (``cli``) ties them together; see ``docs/guides/eval.md``.
"""
