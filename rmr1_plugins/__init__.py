"""rmr1-plugins: RM-R1 reasoning reward models as a reward in RLHF trainers.

Importing this package is cheap: no torch, vLLM or trainer is imported until a backend or an
adapter that needs it is used.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from rmr1_plugins.backends.base import Backend, BackendError, Generation, SamplingParams
from rmr1_plugins.config import ConfigError, ScorerConfig, load_config
from rmr1_plugins.parsing import parse_parts, train_reward
from rmr1_plugins.plugins import (
    get_backend_class,
    get_parser,
    get_plugins,
    get_strategy,
    get_template,
    hookimpl,
)
from rmr1_plugins.schema import Judgment, Message, PairResult, PairwiseExample, ParsedParts
from rmr1_plugins.scorer import Scorer

try:
    __version__ = version("rmr1-plugins")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Backend",
    "BackendError",
    "ConfigError",
    "Generation",
    "Judgment",
    "Message",
    "PairResult",
    "PairwiseExample",
    "ParsedParts",
    "SamplingParams",
    "Scorer",
    "ScorerConfig",
    "get_backend_class",
    "get_parser",
    "get_plugins",
    "get_strategy",
    "get_template",
    "hookimpl",
    "load_config",
    "parse_parts",
    "train_reward",
]
