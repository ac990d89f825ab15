"""RM-R1's verifiable reward for stage 2, in the calling conventions of TRL, OpenRLHF and veRL.

The rule is RM-R1's official one (:func:`rmr1_plugins.rewards.verifiable.verifiable_reward` with
``rmr1-train``, i.e. :func:`rmr1_plugins.parsing.train_reward`): +1.0 when only the label's
``<answer>[[X]]</answer>`` is in the last 80 characters of the response, else -1.0. The label is
the row's ``winner`` (``model_a``/``model_b``, or ``A``/``B``).

A row with a bad label is a dataset bug, but it must not crash a training run. It gets a neutral
reward instead and a warning is logged: ``None`` in TRL (TRL's own "unscorable" marker: the
row is left out of the reward mean and, with no other reward function, its advantage is 0) and
``0.0`` with ``bad_label=1`` in OpenRLHF and veRL, which cannot take ``None``.

Nothing here imports a trainer; each entry point only follows its trainer's contract:

- TRL: ``rmr1_train_reward`` (``reward_funcs=[rmr1_train_reward]`` or
  ``trl grpo --reward_funcs rmr1_plugins.recipe.reward.rmr1_train_reward``).
- OpenRLHF: ``reward_func`` in a ``--reward.remote_url`` file (``rmr1 recipe rlvr`` writes one).
- veRL: ``compute_score`` (``reward.custom_reward_function.path=pkg://rmr1_plugins.recipe.reward``).
"""

from __future__ import annotations

import logging
from typing import Any

from rmr1_plugins.rewards.inputs import as_text
from rmr1_plugins.rewards.verifiable import verifiable_reward

logger = logging.getLogger(__name__)
NEUTRAL_REWARD = 0.0


def score_response(response: str, winner: object) -> float | None:
    """RM-R1's reward for one response, or ``None`` when ``winner`` is not a valid label."""
    try:
        return verifiable_reward(response, winner)
    except ValueError:
        logger.warning("rmr1 reward: bad label %r; giving a neutral reward", winner)
        return None


class RMR1TrainReward:
    """TRL reward function: RM-R1's +1/-1 rule against the ``winner`` column.

    Picklable (a module-level class, no state), so it also works where TRL runs reward
    functions in another process. Returns ``None`` for rows with a bad or missing label.

    Example:
        >>> rmr1_train_reward(prompts=["p", "p"], winner=["model_a", "model_a"],
        ...                   completions=["<answer>[[A]]</answer>", "<answer>[[B]]</answer>"])
        [1.0, -1.0]
    """

    __name__ = "rmr1_train_reward"

    def __call__(
        self, prompts: list[Any], completions: list[Any], winner: list[Any] | None = None, **_: Any
    ) -> list[float | None]:
        labels = winner if winner is not None else [None] * len(completions)
        return [
            score_response(as_text(c), label) for c, label in zip(completions, labels, strict=True)
        ]


rmr1_train_reward = RMR1TrainReward()


def reward_func(queries: list[str], prompts: list[str], labels: list[Any], **_: Any) -> dict:
    """OpenRLHF ``reward_func``: ``queries`` are prompt + response decoded with special tokens."""
    rewards, bad = [], []
    for query, prompt, label in zip(queries, prompts, labels, strict=True):
        # Only the tail counts, so the whole query is as good when decoding changed the prompt.
        response = query[len(prompt) :] if query.startswith(prompt) else query
        reward = score_response(response, label)
        rewards.append(NEUTRAL_REWARD if reward is None else reward)
        bad.append(float(reward is None))
    return {
        "rewards": rewards,
        "scores": [(r + 1.0) / 2.0 for r in rewards],  # 0..1, for OpenRLHF's dynamic filtering
        "extra_logs": {"bad_label": bad},
    }


def compute_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None, **_: Any
) -> dict[str, float]:
    """veRL ``compute_score``: the label is ``reward_model.ground_truth``; same keys every call."""
    reward = score_response(solution_str, ground_truth)
    return {
        "score": NEUTRAL_REWARD if reward is None else reward,
        "correct": float(reward == 1.0),
        "bad_label": float(reward is None),
    }
