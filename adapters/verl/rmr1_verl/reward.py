"""``compute_score`` functions for veRL's ``reward.custom_reward_function`` (no veRL import).

veRL scores one rollout per call and does not pass the prompt, so :func:`compute_score` judges the
rollout against a reference answer: ``ground_truth`` (the dataset's
``reward_model.ground_truth``), or ``extra_info[<inputs.reference_key>]`` when that key is
present. The question comes from ``extra_info[question_key]`` (``question``), a string or a
chat message list. To compare a prompt's rollouts with each other, use the ``rmr1`` reward
manager instead (:mod:`rmr1_verl.manager`).

Options arrive as ``+reward.custom_reward_function.reward_kwargs.<key>=...``: ``config`` (a YAML
path, else ``$RMR1_CONFIG``), ``model`` (the served judge name), ``order`` (``both`` judges both
A/B orders), ``question_key``, and any ``reward:`` option of
:class:`rmr1_plugins.rewards.config.RewardConfig` (``on_unparsed``, ``win``, ``loss``,
``fallback``, a section's key dotted: ``inputs.reference_key``). When veRL serves the judge
itself (``reward.reward_model.enable=True``) it passes ``reward_router_address`` and the judge is
reached through the ``openai`` backend at ``http://<address>/v1``.

Every call returns the same keys (veRL stacks them per batch): ``score`` and the metrics
contract's keys (:mod:`rmr1_plugins.rewards.metrics`; docs/concepts/rewards.md, "Metrics"), all
floats:
``rmr1_fallback`` and the fallback kind's flag when the row got the ``fallback`` reward (why is
logged as a warning), ``rmr1_reference``, ``rmr1_judgments``, the judge-health values
``rmr1_health/<metric>`` and the others. No row makes it raise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.engine import Group, GroupRewards, texts_of
from rmr1_plugins.rewards.groups import AGAINST_REFERENCE, ascore
from rmr1_plugins.rewards.hard_pairs import record_groups
from rmr1_plugins.rewards.metrics import judged_metrics, sample_metrics
from rmr1_plugins.rewards.strategies import Strategy, resolve_strategy
from rmr1_plugins.rewards.verifiable import verl_verifiable_reward as verl_verifiable_reward
from rmr1_plugins.scorer_config import served_at, shared_scorer
from rmr1_plugins.settings import RewardSettings, cached, load_reward_settings

logger = logging.getLogger(__name__)
ADAPTER_KEYS = (
    "config",
    "model",
    "order",
    "question_key",
    "cohort",
    "cohort_url",
    "cohort_timeout_s",
    "token",
    "max_concurrency",
    "_max_concurrency",  # set by rmr1_verl.workers in the driver, not by users
)


def settings(
    options: Mapping[str, Any] | None,
    reward_router_address: str | None = None,
    reward_model_tokenizer: Any = None,
) -> tuple[RewardSettings, dict[str, Any]]:
    """The reward config from ``options`` (veRL ``reward_kwargs`` or ``reward.rmr1``), and the
    adapter's own keys; with a router address the judge is veRL's server, via ``openai``.

    veRL calls :func:`compute_score` once per rollout, so the result is cached per process
    (:func:`rmr1_plugins.settings.cached`), keyed by the options, the router address, the
    judge's tokenizer name, the YAML file and every ``RMR1_*`` variable. Treat the returned
    settings as read-only.
    """
    options = dict(options or {})
    tokenizer = getattr(reward_model_tokenizer, "name_or_path", None)
    context = [reward_router_address, tokenizer]
    load = partial(_load_settings, dict(options), reward_router_address, tokenizer)
    config, own = cached(options, context, load)
    return config, dict(own)


def _load_settings(
    options: dict[str, Any], reward_router_address: str | None, tokenizer: str | None
) -> tuple[RewardSettings, dict[str, Any]]:
    own = {key: options.pop(key) for key in ADAPTER_KEYS if key in options}
    scorer: dict[str, Any] = {"backend": {"model": own["model"]}} if own.get("model") else {}
    if own.get("order"):
        scorer["order"] = own["order"]
    config = load_reward_settings(own.get("config"), reward=options, training=True, **scorer)
    if reward_router_address:
        url = f"http://{reward_router_address}/v1"
        config.scorer = served_at(config.scorer, url, own.get("model") or tokenizer)
    return config, own


def result(
    rewards: GroupRewards | None,
    index: int,
    options: RewardConfig,
    strategy: Strategy | str = "reference",
    *,
    kind: str | None = None,
    split: bool = False,
    error: str = "",
    texts: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The per-rollout dict veRL logs: ``score`` and the metrics contract's keys
    (:mod:`rmr1_plugins.rewards.metrics`), whatever happened.

    ``rewards is None``: the rollout was not judged, a fallback of ``kind``; ``error`` (why) is
    logged, never returned. ``texts`` (:func:`~rmr1_plugins.rewards.engine.texts_of`) give the
    length metrics of the ``rmr1_health/*`` keys.
    """
    strategy = resolve_strategy(strategy)
    if rewards is None:
        metrics = sample_metrics(kind=kind or "error", split=split)
        reward = None
    else:
        reference = strategy.needs_reference
        metrics = judged_metrics(rewards, index, texts, reference=reference, split=split)
        reward = options.scale(rewards.rewards[index], strategy)
        error = error or rewards.error or ""
        if reward is None and not error:
            error = "no usable comparison (every judgment unparsed, on_unparsed=exclude)"
    if error:
        logger.warning("rmr1 veRL reward: fallback reward %g: %s", options.fallback_reward, error)
    return {"score": float(options.fallback_reward if reward is None else reward), **metrics}


def question_of(extra_info: Any, key: str) -> Any:
    """The prompt stored in ``extra_info`` (a string or a message list), or ``None``."""
    if isinstance(extra_info, Mapping):
        value: Any = extra_info.get(key)
        if hasattr(value, "tolist"):  # numpy arrays of messages from parquet
            value = value.tolist()
        return value
    return None


def reference_of(ground_truth: Any, extra_info: Any, key: str) -> str | None:
    """``extra_info[key]`` if present, else ``ground_truth``; ``None`` when neither is text."""
    value = extra_info.get(key) if isinstance(extra_info, Mapping) else None
    value = ground_truth if value is None else value
    return value if isinstance(value, str) and value.strip() else None


async def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    *,
    reward_router_address: str | None = None,
    reward_model_tokenizer: Any = None,
    **reward_kwargs: Any,
) -> dict[str, Any]:
    """Judge one rollout against its reference answer with an RM-R1 judge.

    The score is P(rollout beats the reference) mapped onto ``[loss, win]`` (default [0, 1]: 1
    win, 0 loss, 0.5 when the two orders disagree or the judgment is unparsed with
    ``on_unparsed=tie``), or ``fallback`` (default the midpoint) when the row cannot be judged.
    """
    try:
        config, own = settings(reward_kwargs, reward_router_address, reward_model_tokenizer)
    except Exception as error:  # a broken configuration: fail loudly, it affects every row
        raise ValueError(f"rmr1 compute_score: {error}") from error
    options = config.reward
    question = question_of(extra_info, own.get("question_key", "question"))
    reference = reference_of(ground_truth, extra_info, options.inputs.reference_key)
    if question is None:
        return result(None, 0, options, kind="bad_input", error="no question in extra_info")
    if reference is None:
        why = "no reference (ground_truth or extra_info)"
        return result(None, 0, options, kind="no_reference", error=why)
    group = Group(question, [solution_str], reference=reference, id=str(data_source))
    try:
        [rewards] = await ascore(shared_scorer(config.scorer), [group], options, AGAINST_REFERENCE)
    except Exception as error:  # a judge that failed must not stop the run
        return result(None, 0, options, kind="error", error=f"judge failed: {error}")
    record_groups(options, [group], [rewards])
    return result(rewards, 0, options, texts=texts_of(group))
