"""The scorer: render → de-duplicate → one batched backend call → parse → combine."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rmr1_plugins.backends.base import Backend, Generation, SamplingParams
from rmr1_plugins.parsing import VerdictParser, parse_parts
from rmr1_plugins.plugins import get_parser, get_template
from rmr1_plugins.schema import Judgment, PairResult, PairwiseExample, Verdict
from rmr1_plugins.templates import ChatMessages, PromptTemplate

Order = Literal["given", "random", "both"]
_FLIP: dict[Verdict | None, Verdict | None] = {"A": "B", "B": "A", None: None}


@dataclass
class _Request:
    key: str
    messages: ChatMessages
    users: list[tuple[int, bool]] = field(default_factory=list)  # (example index, swapped)


@dataclass
class _Plan:
    requests: list[_Request]
    cached: dict[str, list[Generation]]


class Scorer:
    """Judges pairwise examples with an RM-R1 style judge.

    Args:
        backend: the engine that writes judgments.
        template: a registered template name or object (``rmr1-instruct``, ``rmr1-reasoning``).
        parser: a registered parser name or object (``strict``, ``rmr1-eval``, ``rmr1-train``).
        order: ``given`` judges A/B as given; ``random`` swaps each pair with probability 1/2,
            seeded by ``seed`` and the pair's content (so a repeated pair keeps its order);
            ``both`` judges both orders and combines them, reporting whether they agree.
        sampling: sampling parameters; ``sampling.n`` samples per order are majority-voted.
        cache_size: how many distinct requests to remember across calls (0 turns it off). The
            cache is used only for greedy decoding (temperature 0), where a repeat is exact.

    Example:
        >>> from rmr1_plugins import Scorer, PairwiseExample
        >>> from rmr1_plugins.backends.constant import ConstantBackend
        >>> scorer = Scorer(ConstantBackend(options={"completion": "<answer>[[B]]</answer>"}))
        >>> pair = PairwiseExample(context=[{"role": "user", "content": "2+2?"}],
        ...                        response_a="4", response_b="5")
        >>> scorer.score([pair])[0].verdict
        'B'
    """

    def __init__(
        self,
        backend: Backend,
        template: str | PromptTemplate = "rmr1-instruct",
        parser: str | VerdictParser = "strict",
        *,
        order: Order = "given",
        seed: int = 0,
        sampling: SamplingParams | None = None,
        cache_size: int = 4096,
    ) -> None:
        if order not in ("given", "random", "both"):
            raise ValueError(f"order must be 'given', 'random' or 'both', got {order!r}")
        self.backend = backend
        self.template = get_template(template) if isinstance(template, str) else template
        self.parser = get_parser(parser) if isinstance(parser, str) else parser
        self.order = order
        self.seed = seed
        self.sampling = sampling or SamplingParams()
        self.cache_size = cache_size
        self._cache: OrderedDict[str, list[Generation]] = OrderedDict()
        self.stats: Counter[str] = Counter()

    def score(self, examples: Sequence[PairwiseExample]) -> list[PairResult]:
        """Judge every example with one batched backend call; results are in input order."""
        plan = self._plan(examples)
        todo = [request for request in plan.requests if request.key not in plan.cached]
        generations = (
            self.backend.generate([r.messages for r in todo], self.sampling) if todo else []
        )
        return self._finish(examples, plan, todo, generations)

    async def ascore(self, examples: Sequence[PairwiseExample]) -> list[PairResult]:
        """Async :meth:`score`, awaiting the backend's ``agenerate``."""
        plan = self._plan(examples)
        todo = [request for request in plan.requests if request.key not in plan.cached]
        generations = (
            await self.backend.agenerate([r.messages for r in todo], self.sampling) if todo else []
        )
        return self._finish(examples, plan, todo, generations)

    def orders_for(self, example: PairwiseExample) -> list[bool]:
        """Which orders to judge: ``False`` is as given, ``True`` is swapped."""
        if self.order == "both":
            return [False, True]
        if self.order == "random":
            return [_coin(self.seed, example)]
        return [False]

    def _plan(self, examples: Sequence[PairwiseExample]) -> _Plan:
        requests: dict[str, _Request] = {}
        for index, example in enumerate(examples):
            for swapped in self.orders_for(example):
                messages = self.template.render(example.swapped() if swapped else example)
                key = self._key(messages)
                requests.setdefault(key, _Request(key, messages)).users.append((index, swapped))
        cached = {key: self._cache[key] for key in requests if key in self._cache}
        self.stats["requests"] += len(requests)
        self.stats["cache_hits"] += len(cached)
        self.stats["duplicates"] += sum(len(r.users) for r in requests.values()) - len(requests)
        return _Plan(list(requests.values()), cached)

    def _key(self, messages: ChatMessages) -> str:
        payload = [self.backend.name, self.backend.model, repr(self.sampling), messages]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _finish(
        self,
        examples: Sequence[PairwiseExample],
        plan: _Plan,
        todo: list[_Request],
        generations: list[list[Generation]],
    ) -> list[PairResult]:
        if len(generations) != len(todo):
            raise RuntimeError(
                f"backend {self.backend.name!r} returned {len(generations)} results "
                f"for {len(todo)} requests"
            )
        outputs = dict(plan.cached)
        for request, samples in zip(todo, generations, strict=True):
            outputs[request.key] = samples
            self._remember(request.key, samples)
        judgments: list[list[Judgment]] = [[] for _ in examples]
        for request in plan.requests:
            for index, swapped in request.users:
                for sample in outputs[request.key]:
                    judgments[index].append(self._judge(sample, swapped))
        return [combine(example, found) for example, found in zip(examples, judgments, strict=True)]

    def _judge(self, sample: Generation, swapped: bool) -> Judgment:
        raw = self.parser.parse(sample.text)
        return Judgment(
            verdict=_FLIP[raw] if swapped else raw,
            completion=sample.text,
            swapped=swapped,
            finish_reason=sample.finish_reason,
            parts=parse_parts(sample.text),
        )

    def _remember(self, key: str, samples: list[Generation]) -> None:
        if self.cache_size <= 0 or self.sampling.temperature > 0:
            return
        self._cache[key] = samples
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def close(self) -> None:
        self.backend.close()


def combine(example: PairwiseExample, judgments: list[Judgment]) -> PairResult:
    """Majority vote over judgments; a tie or no parsed verdict gives ``verdict=None``."""
    votes = {"A": 0, "B": 0, "none": 0}
    for judgment in judgments:
        votes[judgment.verdict or "none"] += 1
    verdict: Verdict | None = None
    if votes["A"] != votes["B"]:
        verdict = "A" if votes["A"] > votes["B"] else "B"
    by_order = {
        swapped: _majority([j.verdict for j in judgments if j.swapped == swapped])
        for swapped in {j.swapped for j in judgments}
    }
    agree = None
    if len(by_order) == 2:
        agree = by_order[False] is not None and by_order[False] == by_order[True]
    return PairResult(
        id=example.id,
        verdict=verdict,
        votes=votes,
        orders_agree=agree,
        label=example.label,
        judgments=judgments,
    )


def _majority(verdicts: list[Verdict | None]) -> Verdict | None:
    a, b = verdicts.count("A"), verdicts.count("B")
    return None if a == b else ("A" if a > b else "B")


def _coin(seed: int, example: PairwiseExample) -> bool:
    content: list[Any] = [seed, [m.model_dump() for m in example.context]]
    content += [example.response_a, example.response_b]
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).digest()
    return bool(digest[0] & 1)
