"""rmr1-plugins: RM-R1 reasoning reward models as a reward in RLHF trainers.

Importing this package is cheap: no torch, vLLM or trainer is imported until a backend or an
adapter that needs it is used. ``__all__`` is the public API that the docs use: the judge
(:class:`Scorer` and its config), group scoring (:class:`Group`, :func:`score_groups`), the
reward settings (:func:`load_reward_settings`, :class:`RewardConfig`), RM-R1's verifiable
reward, the plugin getters and the error bases.

Layers, lowest first; a module imports only its own layer and those below, without cycles
(``tests/test_layers.py`` holds the table and checks it):

- base: :mod:`.errors`, :mod:`.schema`, the plugin registry (:mod:`.plugins`, :mod:`.hookspecs`,
  :mod:`.builtins`) and reading settings files and variables (:mod:`.config`);
- judge: :mod:`.templates`, :mod:`.parsing`, :mod:`.guards`, :mod:`.backends`, :mod:`.scorer`
  and its settings (:mod:`.scorer_config`);
- rewards: :mod:`.rewards` (strategies, group scoring, per-sample and cohort services);
- faces: the one settings loader (:mod:`.settings`), the CLI (:mod:`.cli`) and the servers
  (:mod:`.serve`); then :mod:`.eval` and :mod:`.recipe`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from rmr1_plugins.backends.base import Backend, BackendError, Generation, SamplingParams
from rmr1_plugins.config import ConfigError
from rmr1_plugins.errors import RMR1Error, UsageError
from rmr1_plugins.hookspecs import hookimpl
from rmr1_plugins.parsing import parse_parts, train_reward
from rmr1_plugins.plugins import (
    get_backend_class,
    get_parser,
    get_plugins,
    get_strategy,
    get_template,
)
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.engine import (
    Group,
    GroupRewards,
    GroupScoring,
    ascore_groups,
    score_groups,
)
from rmr1_plugins.rewards.strategies import Strategy
from rmr1_plugins.rewards.verifiable import VerifiableReward, verifiable_reward
from rmr1_plugins.schema import Judgment, Message, PairResult, PairwiseExample, ParsedParts
from rmr1_plugins.scorer import Scorer
from rmr1_plugins.scorer_config import ScorerConfig
from rmr1_plugins.settings import RewardSettings, load_config, load_reward_settings

try:
    __version__ = version("rmr1-plugins")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Backend",
    "BackendError",
    "ConfigError",
    "Generation",
    "Group",
    "GroupRewards",
    "GroupScoring",
    "Judgment",
    "Message",
    "PairResult",
    "PairwiseExample",
    "ParsedParts",
    "RMR1Error",
    "RewardConfig",
    "RewardSettings",
    "SamplingParams",
    "Scorer",
    "ScorerConfig",
    "Strategy",
    "UsageError",
    "VerifiableReward",
    "ascore_groups",
    "get_backend_class",
    "get_parser",
    "get_plugins",
    "get_strategy",
    "get_template",
    "hookimpl",
    "load_config",
    "load_reward_settings",
    "parse_parts",
    "score_groups",
    "train_reward",
    "verifiable_reward",
]
