#!/usr/bin/env bash
# The same GRPO run, with the judge behind `rmr1 serve` instead of the reward file: one process
# on the judge host batches the single-sample requests of every rollout actor.
#
# On the judge host (bind an address the cluster can reach; set a token when you do):
#   RMR1_SERVE_TOKEN=... rmr1 serve --config examples/rmr1-openrlhf.yaml --host 0.0.0.0 --port 5000
# OpenRLHF's client cannot send headers, so the token goes in the URL (?token=...).
# In-group rewards instead of reference rewards (the samples of a prompt judged against each
# other; docs/trainers/openrlhf.md): add --strategy round-robin --group-size 8 (= n_samples_per_prompt
# below), and use this one server for the whole run. Evaluation (--eval.dataset) goes through the
# same server and is not told apart from training: its samples per prompt must equal the group
# size too (OpenRLHF's default is 4), or every eval group waits --group-timeout-s and is split.
# DRY_RUN=1 prints the command instead of submitting it.
set -euo pipefail

POLICY=${POLICY:-Qwen/Qwen2.5-1.5B-Instruct}
DATA=${DATA:-$PWD/examples/openrlhf_prompts.jsonl}
REWARD_URL=${REWARD_URL:-http://judge-host:5000/get_reward}   # + ?token=... with a token

command=(
  ray job submit --address="${RAY_ADDRESS:-http://127.0.0.1:8265}"
  -- python3 -m openrlhf.cli.train_ppo_ray
  --actor.model_name_or_path "$POLICY"
  --actor.num_nodes 1 --actor.num_gpus_per_node 8
  --ref.num_nodes 1 --ref.num_gpus_per_node 8
  --vllm.num_engines 4 --vllm.tensor_parallel_size 2 --vllm.gpu_memory_utilization 0.5
  --train.colocate_all --vllm.enable_sleep --ds.enable_sleep
  --reward.remote_url "$REWARD_URL"
  --data.prompt_dataset "$DATA" --data.input_key prompt --data.label_key reference
  --data.apply_chat_template
  --algo.advantage.estimator group_norm --rollout.n_samples_per_prompt 8
  --eval.n_samples_per_prompt 8
  --algo.kl.use_loss --algo.kl.estimator k3 --algo.kl.init_coef 0.001
  --rollout.batch_size 128 --train.batch_size 1024
  --rollout.micro_batch_size 8 --train.micro_batch_size 4
  --rollout.max_new_tokens 1024 --data.max_len 2048
  --actor.adam.lr 5e-7 --train.max_epochs 1 --train.num_episodes 1
  --ds.zero_stage 3 --ds.param_dtype bf16 --actor.gradient_checkpointing_enable
  --ckpt.output_dir "${OUTPUT:-./ckpt/rmr1-grpo-serve}" --ckpt.save_steps 50
)

if [[ -n "${DRY_RUN:-}" ]]; then
  printf '%q ' "${command[@]}"
  echo
else
  "${command[@]}"
fi
