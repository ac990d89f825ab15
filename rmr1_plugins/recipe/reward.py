"""RM-R1's verifiable reward for stage 2, in the calling conventions of TRL, OpenRLHF and veRL.

The rule is RM-R1's official one (``rmr1-train``, :func:`rmr1_plugins.parsing.train_reward`): +1.0
when only the label's ``<answer>[[X]]</answer>`` is in the last 80 characters of the response,
else -1.0. The label is the row's ``winner`` (``model_a``/``model_b``, or ``A``/``B``). Each name
here is the one shape of :mod:`rmr1_plugins.rewards.verifiable` for its trainer (the keys, the
text each trainer gives and the neutral reward of a bad label are documented there):

- TRL: ``rmr1_verifiable_reward`` (``reward_funcs=[rmr1_verifiable_reward]`` or
  ``trl grpo --reward_funcs rmr1_plugins.recipe.reward.rmr1_verifiable_reward``).
- OpenRLHF: ``reward_func`` in a ``--reward.remote_url`` file (``rmr1 recipe rlvr`` writes one).
- veRL: ``compute_score`` (``reward.custom_reward_function.path=pkg://rmr1_plugins.recipe.reward``).
"""

from __future__ import annotations

from rmr1_plugins.rewards.verifiable import (
    TRLVerifiableReward,
    openrlhf_verifiable_reward,
    verl_verifiable_reward,
)

rmr1_verifiable_reward = TRLVerifiableReward(name="rmr1_verifiable_reward")
reward_func = openrlhf_verifiable_reward
compute_score = verl_verifiable_reward

__all__ = ["compute_score", "reward_func", "rmr1_verifiable_reward"]
