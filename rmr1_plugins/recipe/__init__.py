"""RM-R1's two-stage training recipe, for TRL, OpenRLHF and veRL.

``prepare`` turns preference data into RM-R1 rows, ``distill`` writes SFT data from a teacher,
``stages`` emits each trainer's stage-1 (SFT) and stage-2 (GRPO with the verifiable reward)
configs and commands, ``run`` runs the whole pipeline with TRL. No trainer is imported here;
see docs/guides/recipe.md.
"""
