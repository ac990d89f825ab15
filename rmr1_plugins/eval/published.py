"""RM-R1's published benchmark scores for its six released checkpoints.

Source: "RM-R1: Reward Modeling as Reasoning" (arXiv 2505.02387), main results table, as recorded
in the project's RM-R1 reference notes. Their protocol: vLLM, greedy, ``max_tokens`` 50000, one
random A/B order per comparison, RM-R1's answer rule and errors counted as wrong; in ``rmr1
eval`` terms ``--order random --parser rmr1-eval --on-unparsed wrong --max-new-tokens 50000``.
The paper reports no JudgeBench or RewardBench 2 numbers for these checkpoints. Instruct-32B's
RM-Bench score is RM-R1's own result file (``total_avg_acc`` 0.79236), not the paper's 79.1.
The RM-Bench numbers fill the style matrix as RM-R1's ``process_final_result.py`` did (rotation 3
read twice, :func:`rmr1_plugins.eval.metrics.rm_r1_pairing`); ``--protocol rm-r1`` does the same.
"""

from __future__ import annotations

SOURCE = "RM-R1 paper (arXiv 2505.02387), main results"
PROTOCOL = "--protocol rm-r1"
BENCHMARKS = ("rewardbench", "rm-bench", "rmb")
_ROWS = {
    "RM-R1-Qwen2.5-Instruct-7B": (85.2, 70.2, 66.4),
    "RM-R1-Qwen2.5-Instruct-14B": (88.2, 76.1, 69.2),
    "RM-R1-Qwen2.5-Instruct-32B": (91.4, 79.24, 73.0),  # RM-Bench: RM-R1's result file
    "RM-R1-DeepSeek-Distilled-Qwen-7B": (80.1, 72.4, 55.1),
    "RM-R1-DeepSeek-Distilled-Qwen-14B": (88.9, 81.5, 68.5),
    "RM-R1-DeepSeek-Distilled-Qwen-32B": (90.9, 83.9, 69.8),
}
# Checkpoint (hub name) -> benchmark -> published score (percent).
RM_R1: dict[str, dict[str, float]] = {
    f"gaotang/{name}": dict(zip(BENCHMARKS, scores, strict=True)) for name, scores in _ROWS.items()
}


def checkpoint_of(model: str | None) -> str | None:
    """The published checkpoint a model name or path refers to (``.../RM-R1-...-7B``), if any."""
    if not model:
        return None
    tail = model.rstrip("/").split("/")[-1].lower()
    return next((name for name in RM_R1 if name.split("/")[-1].lower() == tail), None)
