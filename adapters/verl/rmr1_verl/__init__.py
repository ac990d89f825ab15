"""rmr1-plugins-verl: RM-R1 reasoning reward models in veRL.

- ``pkg://rmr1_verl.reward`` / ``compute_score``: judge each rollout against a reference answer.
- ``pkg://rmr1_verl.reward`` / ``verl_verifiable_reward``: RM-R1's verifiable reward, for
  training a judge.
- reward manager ``rmr1`` (``reward.reward_manager.name=rmr1``): judge each prompt's rollouts
  together; registered on ``import verl`` through the ``verl.plugins`` entry point, or on
  importing ``rmr1_verl.manager``, in either order.

``python -m rmr1_verl check`` verifies the installation (veRL logs plugin errors at DEBUG only).
This package imports nothing from veRL until the manager is used.
"""
