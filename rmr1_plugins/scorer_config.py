"""The judge's settings: which template, parser, backend and sampling make a :class:`Scorer`.

:class:`ScorerConfig` is the top level of the judge's YAML file (the ``reward:`` section is
:mod:`rmr1_plugins.rewards.config`; both are read by :mod:`rmr1_plugins.settings`). Unknown
template, parser and backend names are rejected when the settings load, listing the registered
ones. Example::

    template: rmr1-instruct
    parser: strict
    order: both
    backend:
      name: vllm
      model: gaotang/RM-R1-Qwen2.5-Instruct-7B
      options: {tensor_parallel_size: 2}
    sampling: {max_new_tokens: 4096, temperature: 0.0, num_samples: 1}
"""

from __future__ import annotations

import json
import threading
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from rmr1_plugins.backends.base import Backend, SamplingParams
from rmr1_plugins.config import ConfigError, error_lines
from rmr1_plugins.plugins import get_backend_class, registered
from rmr1_plugins.scorer import Scorer
from rmr1_plugins.templates import template_for_model


class BackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("hf", description="registered backend name: hf, vllm, openai, constant, ...")
    model: str | None = Field(None, description="model id, local folder, or served model name")
    options: dict[str, Any] = Field(default_factory=dict, description="backend-specific options")

    @field_validator("name")
    @classmethod
    def _known_backend(cls, name: str) -> str:
        return registered("backends", name)


class SamplingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(4096, gt=0, description="tokens per judgment at most")
    temperature: float = Field(0.0, ge=0, description="sampling temperature, 0 is greedy")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    num_samples: int = Field(1, gt=0, description="samples per order, majority-voted")
    seed: int | None = Field(None, description="sampling seed, where the backend takes one")
    verdict_probs: bool = Field(
        False, description="read P(A) against P(B) at the verdict token (vllm, openai, hf)"
    )

    def params(self) -> SamplingParams:
        return SamplingParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            num_samples=self.num_samples,
            seed=self.seed,
            verdict_probs=self.verdict_probs,
        )


class ScorerConfig(BaseModel):
    """Everything needed to build a :class:`rmr1_plugins.Scorer`."""

    model_config = ConfigDict(extra="forbid")

    template: str = Field(
        "rmr1-instruct",
        description="a registered judge prompt template (default: the one RM-R1 uses for the "
        "model's name, see templates.template_for_model)",
    )
    parser: str = Field("strict", description="a registered verdict parser")
    order: Literal["given", "random", "both"] = Field(
        "given", description="A/B order of each pair: as given, one random swap, or both orders"
    )
    seed: int = Field(0, description="seed of order=random")
    cache_size: int = Field(4096, ge=0)
    neutralize_markup: bool = Field(
        False, description="defuse verdict markup inside candidate responses before judging"
    )
    cache_sampled: bool = Field(False, description="also cache sampled judgments")
    backend: BackendConfig = Field(default_factory=BackendConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)

    @field_validator("template")
    @classmethod
    def _known_template(cls, name: str) -> str:
        return registered("templates", name)

    _template_choice: str = PrivateAttr("set explicitly")

    @model_validator(mode="after")
    def _template_from_model(self) -> ScorerConfig:
        """Unless a template is set, take the one RM-R1 would use for the model's name."""
        if "template" not in self.model_fields_set:
            name, why = template_for_model(self.backend.model)
            self.__dict__["template"] = name  # not marked as set: a later model may choose again
            self._template_choice = (
                f"from the model name, {why}" if self.backend.model else "the default: no model"
            )
        return self

    @property
    def template_choice(self) -> str:
        """How :attr:`template` was chosen: set explicitly, or from the model's name."""
        return self._template_choice

    @field_validator("parser")
    @classmethod
    def _known_parser(cls, name: str) -> str:
        return registered("parsers", name)

    def build_backend(self) -> Backend:
        backend_class = get_backend_class(self.backend.name)
        try:
            return backend_class(self.backend.model, self.backend.options)
        except ValidationError as error:
            lines = error_lines(error, prefix="backend.options.")
            raise ConfigError("\n".join(["invalid configuration:", *lines])) from None
        except (ValueError, TypeError) as error:  # a missing model name, say
            raise ConfigError(f"cannot build backend {self.backend.name!r}: {error}") from None

    def build_scorer(self, backend: Backend | None = None) -> Scorer:
        return Scorer(
            backend or self.build_backend(),
            self.template,
            self.parser,
            order=self.order,
            seed=self.seed,
            sampling=self.sampling.params(),
            cache_size=self.cache_size,
            neutralize_markup=self.neutralize_markup,
            cache_sampled=self.cache_sampled,
        )


class LazyScorer:
    """Builds the scorer (and so loads the judge) on first use, once, from any thread.

    Pickling keeps the configuration and drops a built scorer, so a reward object can be sent to
    a worker process cheaply; a scorer passed in directly is pickled as is.
    """

    def __init__(self, config: ScorerConfig | None = None, scorer: Scorer | None = None) -> None:
        if config is None and scorer is None:
            raise ValueError("LazyScorer needs a config or a scorer")
        self.config = config
        self._given = scorer is not None
        self._scorer = scorer
        self._lock = threading.Lock()

    def get(self) -> Scorer:
        with self._lock:
            if self._scorer is None:
                assert self.config is not None
                self._scorer = self.config.build_scorer()
            return self._scorer

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        if not self._given:
            state["_scorer"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


_SHARED: dict[str, LazyScorer] = {}


def shared_scorer(config: ScorerConfig) -> Scorer:
    """One scorer per process and judge configuration, built on first use."""
    key = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    if key not in _SHARED:
        _SHARED[key] = LazyScorer(config)
    return _SHARED[key].get()


def served_at(config: ScorerConfig, base_url: str, model: str | None) -> ScorerConfig:
    """``config`` judged through ``openai`` at ``base_url`` (a trainer's own judge server),
    ``model`` else the configured one, an ``openai`` backend's options kept."""
    backend = config.backend
    kept = dict(backend.options) if backend.name == "openai" else {}
    served = BackendConfig(
        name="openai", model=model or backend.model, options={**kept, "base_url": base_url}
    )
    # rebuilt through validation, so an unset template follows the served model's name
    scorer = config.model_dump(exclude_unset=True)
    return type(config).model_validate({**scorer, "backend": served})
