#!/usr/bin/env bash
# GRPO in veRL 0.9 with an RM-R1 judge served by veRL itself.
#
#   pip install -e . ./adapters/verl && python -m rmr1_verl check   # in a venv of its own (docs/trainers/verl.md)
#   bash examples/verl_grpo.sh [more hydra overrides]
#
# The `rmr1` reward manager (registered by the package's verl.plugins entry point) holds each
# prompt's rollout.n rollouts until all arrived, then judges them pairwise (round-robin win rate).
# veRL starts the judge's vLLM server and passes its router address; the judge is reached through
# rmr1's openai backend. Notes (docs/trainers/verl.md has the details):
# - reward.custom_reward_function.path MUST be set when reward.reward_model.enable=True, or veRL
#   takes its discriminative-RM path and never calls the manager.
# - reward.num_workers=1 sends every rollout of a step to one reward worker, so groups are whole.
#   With more workers, start `rmr1 serve` and add +reward.rmr1.cohort_url=http://HOST:PORT/cohort
#   (docs/trainers/verl.md): every worker then sends its rollouts to that one cohort service.
# - the batch sizes pass veRL's validate_config: 48 prompts x 4 rollouts = 192 rows divide by the
#   6 actor GPUs, and the mini-batch (24 x 4 / 6 = 16 rows per GPU) by the micro-batch 4.
# - validation samples val_kwargs.n=4 rollouts too, so its groups are whole (the reward worker is
#   not told which rows are validation); group.timeout_s=120 bounds the wait of a split group, which
#   is then judged against its reference (group.on_split=reference: a late rollout never fails a step).
# - only reward.* keys work: the legacy top-level custom_reward_function.* / reward_model.* keys
#   are accepted by Hydra and silently ignored by veRL 0.9.1's main_ppo.
# - rows need prompt (chat list), reward_model.ground_truth (a reference answer, used when a
#   group is incomplete) and extra_info.question.
# - RMR1_CONFIG sets the judge's template and sampling (examples/rmr1_judge.yaml); the +reward.rmr1
#   keys override its reward: section.
set -euo pipefail
export RMR1_CONFIG="${RMR1_CONFIG:-examples/rmr1_judge.yaml}"

python -m verl.trainer.main_ppo \
    algorithm.adv_estimator=grpo \
    data.train_files=data/chat/train.parquet \
    data.val_files=data/chat/test.parquet \
    data.train_batch_size=48 \
    data.max_prompt_length=1024 \
    data.max_response_length=1024 \
    actor_rollout_ref.model.path=Qwen/Qwen2.5-3B-Instruct \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.ppo_mini_batch_size=24 \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8 \
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8 \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.n=4 \
    actor_rollout_ref.rollout.val_kwargs.n=4 \
    actor_rollout_ref.rollout.val_kwargs.do_sample=True \
    reward.custom_reward_function.path=pkg://rmr1_verl.reward \
    reward.custom_reward_function.name=compute_score \
    reward.reward_manager.name=rmr1 \
    reward.num_workers=1 \
    +reward.rmr1.strategy=round-robin \
    +reward.rmr1.order=both \
    +reward.rmr1.group.timeout_s=120 \
    +reward.rmr1.group.on_split=reference \
    reward.reward_model.enable=True \
    reward.reward_model.model_path=gaotang/RM-R1-Qwen2.5-Instruct-7B \
    reward.reward_model.rollout.name=vllm \
    reward.reward_model.rollout.tensor_model_parallel_size=1 \
    reward.reward_model.rollout.prompt_length=6144 \
    reward.reward_model.rollout.response_length=4096 \
    reward.reward_model.enable_resource_pool=True \
    reward.reward_model.n_gpus_per_node=2 \
    reward.reward_model.nnodes=1 \
    trainer.n_gpus_per_node=6 \
    trainer.nnodes=1 \
    trainer.total_epochs=1 \
    trainer.logger=console \
    "$@"
