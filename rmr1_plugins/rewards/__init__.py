"""The reward layer: how RM-R1 verdicts become rewards, the same way in every trainer.

- :mod:`.strategies`: which pairs of a group to judge and how outcomes become rewards;
- :mod:`.engine`: group scoring (:func:`score_groups`), sans-IO, one batch per round;
- :mod:`.groups`: the one rule for an incomplete group or a group of one, and scoring with a
  ``reward:`` section's settings; :mod:`.batch`: a trainer's batch of rows, scored group by
  group, with per-row metrics (TRL's reward functions);
- :mod:`.inputs`: trainer data → the judge's input (one text rule, one system-turn rule);
- :mod:`.config`: the ``reward:`` section (read by :mod:`rmr1_plugins.settings`);
- :mod:`.samples`, :mod:`.service`, :mod:`.cohorts`: rewards for trainers that send one rollout
  at a time (against a reference, batched; or held until their group is complete);
  :mod:`.cohort_table` holds a cohort's members within their bounds, :mod:`.streaming` judges
  its pairs while it fills;
- :mod:`.metrics`: the per-sample numbers every integration logs with a reward;
- :mod:`.verifiable`: RM-R1's +1/-1 reward for training a judge;
- :mod:`.health`, :mod:`.hard_pairs`: what each judgment says about the judge.

Nothing here imports a trainer.
"""
