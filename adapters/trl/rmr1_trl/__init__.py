"""rmr1-plugins-trl: RM-R1 reasoning reward models as TRL ``GRPOTrainer``/``RLOOTrainer`` rewards.

Ready-made instances for ``trl grpo --reward_funcs <dotted path>`` (configured by
``$RMR1_CONFIG`` and ``RMR1_*`` / ``RMR1_REWARD__*`` variables, read on first call):

- ``rmr1_trl.rmr1_reward``: the judge compares each prompt's completions (sync);
- ``rmr1_trl.rmr1_reward_async``: the same with ``async __call__`` (logged as ``rmr1_reward``);
- ``rmr1_trl.rmr1_verifiable_reward`` / ``rmr1_verifiable_reward_strict``: RM-R1's verifiable
  reward for training a judge against the ``winner`` column (official / strict parser).
"""

from __future__ import annotations

from rmr1_plugins.rewards.batch import find_groups
from rmr1_plugins.rewards.verifiable import TRLVerifiableReward
from rmr1_trl.reward import (
    AsyncRMR1Reward,
    RMR1Reward,
    SplitGroupError,
)

rmr1_reward = RMR1Reward()
rmr1_reward_async = AsyncRMR1Reward()
rmr1_verifiable_reward = TRLVerifiableReward()
rmr1_verifiable_reward_strict = TRLVerifiableReward("strict", name="rmr1_verifiable_reward_strict")

__all__ = [
    "AsyncRMR1Reward",
    "RMR1Reward",
    "SplitGroupError",
    "TRLVerifiableReward",
    "find_groups",
    "rmr1_reward",
    "rmr1_reward_async",
    "rmr1_verifiable_reward",
    "rmr1_verifiable_reward_strict",
]
