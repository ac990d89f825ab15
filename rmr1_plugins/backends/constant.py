"""``constant``: returns one fixed completion for every request (dry runs and tests)."""

from __future__ import annotations

from collections.abc import Sequence

from rmr1_plugins.backends.base import (
    Backend,
    BackendOptions,
    ChatMessages,
    Generation,
    SamplingParams,
)


class ConstantOptions(BackendOptions):
    completion: str = "<type>Chat</type>\n\n<eval>dry run</eval>\n\n<answer>[[A]]</answer>"


class ConstantBackend(Backend):
    """Answers every conversation with ``completion`` and records how many it was asked for."""

    name = "constant"
    Options = ConstantOptions
    opts: ConstantOptions

    def __init__(self, model: str | None = None, options: dict | None = None) -> None:
        super().__init__(model, options)
        self.calls: list[int] = []

    def generate(
        self, conversations: Sequence[ChatMessages], params: SamplingParams
    ) -> list[list[Generation]]:
        self.calls.append(len(conversations))
        return [
            [
                Generation(self.opts.completion, finish_reason="stop")
                for _ in range(params.num_samples)
            ]
            for _ in conversations
        ]
