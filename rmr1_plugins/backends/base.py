"""The backend interface: a batch of chat conversations in, completions out."""

from __future__ import annotations

import asyncio
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from rmr1_plugins.errors import RMR1Error

if TYPE_CHECKING:
    from rmr1_plugins.schema import PairwiseExample
    from rmr1_plugins.templates import PromptTemplate

ChatMessages = Sequence[dict[str, str]]
_HUB_ID = re.compile(r"[\w.-]{1,96}(/[\w.-]{1,96})?")  # the hub's rule, roughly


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``num_samples`` completions are returned per conversation."""

    max_new_tokens: int = 4096
    temperature: float = 0.0
    top_p: float = 1.0
    num_samples: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    verdict_probs: bool = False  # fill Generation.prob_a from the verdict token's logprobs


@dataclass(frozen=True)
class Generation:
    """One completion. ``finish_reason`` is ``"stop"`` or ``"length"`` (truncated) when known."""

    text: str
    finish_reason: str | None = None
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    prob_a: float | None = None  # P(verdict A) against B at the verdict token, as shown
    prob_letter: str | None = None  # the letter written where prob_a was read
    prob_invalid: bool = False  # the server's log-probabilities there were impossible (NaN, >0)


class BackendOptions(BaseModel):
    """Base for each backend's own options; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


class BackendError(RMR1Error, RuntimeError):
    """The engine or server failed to produce completions."""


def missing_local_model(model: str) -> str | None:
    """Why ``model`` can be neither an existing local path nor a hub id, or ``None``.

    Checked before loading, so a mistyped folder is one clear error, not the hub's "repo id"
    complaint after the engine started. A name starting with ``/``, ``.`` or ``~`` is a path;
    anything else that does not exist must look like a hub id (``name`` or ``org/name``).
    """
    if os.path.exists(os.path.expanduser(model)):
        return None
    if model.startswith(("/", ".", "~")):
        return f"model {model!r} is a local path that does not exist"
    if not _HUB_ID.fullmatch(model):
        return f"model {model!r} is not a local path that exists, nor a hub id (org/name)"
    return None


class Backend(ABC):
    """Generates completions for chat conversations.

    Implementations render each conversation with the model's own chat template (or send the
    messages to a server that does), so templates never deal with tokens. One call is one batch:
    implementations should hand the whole batch to their engine at once.
    """

    name: ClassVar[str] = "base"
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    needs_model: ClassVar[bool] = False  # engines that load weights require ``model``
    # Each conversation is its own request (a server API): splitting a call costs nothing, so
    # the reward service sends one call per sample and a stuck request holds up no other.
    independent_requests: ClassVar[bool] = False
    # A backend holding what cannot be pickled (an engine, a session, locks) sets this: a
    # pickled copy keeps ``model`` and ``opts`` and builds the rest again with :meth:`_setup`.
    pickles_settings_only: ClassVar[bool] = False

    def __init__(self, model: str | None = None, options: Mapping[str, Any] | None = None) -> None:
        if self.needs_model and not model:
            raise ValueError(f"the {self.name} backend needs a model (a hub id or a local folder)")
        if self.needs_model and model and (missing := missing_local_model(model)):
            raise ValueError(missing)
        self.model = model
        self.opts = self.Options.model_validate(dict(options or {}))
        self._setup()

    def _setup(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Build what the backend holds at run time (locks, engines, sessions): called at the
        end of ``__init__``, and after unpickling with :attr:`pickles_settings_only`."""

    def __getstate__(self) -> dict[str, Any]:
        if self.pickles_settings_only:
            return {"model": self.model, "opts": self.opts}
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.pickles_settings_only:
            self._setup()

    @abstractmethod
    def generate(
        self, conversations: Sequence[ChatMessages], params: SamplingParams
    ) -> list[list[Generation]]:
        """Return ``params.num_samples`` generations for each conversation, in input order."""

    async def agenerate(
        self, conversations: Sequence[ChatMessages], params: SamplingParams
    ) -> list[list[Generation]]:
        """Async variant; by default runs :meth:`generate` in a worker thread."""
        return await asyncio.to_thread(self.generate, conversations, params)

    def fit_example(
        self, example: PairwiseExample, template: PromptTemplate, params: SamplingParams
    ) -> PairwiseExample:
        """The example, shortened if needed so ``template`` renders a prompt that fits.

        Called by the scorer before rendering. The default returns ``example`` unchanged;
        backends that know their context length (``vllm`` with ``overflow="truncate"``) cut
        the candidate responses here, so both orders of a pair see the same shortened text.
        """
        return example

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release engines, sessions or servers held by this backend."""
