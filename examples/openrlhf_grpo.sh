#!/usr/bin/env bash
# GRPO with OpenRLHF 0.11.2, rewarded by an RM-R1 judge that compares each sampled response with
# the prompt's reference answer (the `reference` column), through the reward file.
#
# Before: a Ray cluster (`ray start --head` plus workers) with openrlhf[vllm]==0.11.2 and
# rmr1-plugins-openrlhf installed at the same path on every node, the judge server named in
# $RMR1_CONFIG running, and `python -m rmr1_openrlhf check --config "$RMR1_CONFIG"` printing a
# reward. DRY_RUN=1 prints the command instead of submitting it.
set -euo pipefail

POLICY=${POLICY:-Qwen/Qwen2.5-1.5B-Instruct}
DATA=${DATA:-$PWD/examples/openrlhf_prompts.jsonl}   # rows: {"prompt": ..., "reference": ...}
RMR1_CONFIG=${RMR1_CONFIG:-$PWD/examples/rmr1-openrlhf.yaml}   # a path every node can read
REWARD_FILE=$(python -m rmr1_openrlhf path)

# Ray does not forward the driver's environment to the rollout actors that call the reward.
RUNTIME_ENV="{\"env_vars\": {\"RMR1_CONFIG\": \"$RMR1_CONFIG\"}}"

command=(
  ray job submit --address="${RAY_ADDRESS:-http://127.0.0.1:8265}" --runtime-env-json="$RUNTIME_ENV"
  -- python3 -m openrlhf.cli.train_ppo_ray
  --actor.model_name_or_path "$POLICY"
  --actor.num_nodes 1 --actor.num_gpus_per_node 8
  --ref.num_nodes 1 --ref.num_gpus_per_node 8
  --vllm.num_engines 4 --vllm.tensor_parallel_size 2 --vllm.gpu_memory_utilization 0.5
  --train.colocate_all --vllm.enable_sleep --ds.enable_sleep
  --reward.remote_url "$REWARD_FILE"
  --data.prompt_dataset "$DATA" --data.input_key prompt --data.label_key reference
  --data.apply_chat_template
  --algo.advantage.estimator group_norm --rollout.n_samples_per_prompt 8
  --algo.kl.use_loss --algo.kl.estimator k3 --algo.kl.init_coef 0.001
  --rollout.batch_size 128 --train.batch_size 1024
  --rollout.micro_batch_size 8 --train.micro_batch_size 4
  --rollout.max_new_tokens 1024 --data.max_len 2048
  --actor.adam.lr 5e-7 --train.max_epochs 1 --train.num_episodes 1
  --ds.zero_stage 3 --ds.param_dtype bf16 --actor.gradient_checkpointing_enable
  --ckpt.output_dir "${OUTPUT:-./ckpt/rmr1-grpo}" --ckpt.save_steps 50
)

if [[ -n "${DRY_RUN:-}" ]]; then
  printf '%q ' "${command[@]}"
  echo
else
  "${command[@]}"
fi
