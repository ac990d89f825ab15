"""A reward service that batches many concurrent single-sample requests into few judge calls.

Trainers such as OpenRLHF ask for one sample's reward at a time, from many threads or HTTP
requests at once. :class:`RewardService` queues those samples and hands them to the scorer in
batches (up to ``max_batch_size`` samples, waiting at most ``max_wait_ms`` for a batch to fill),
so the engine sees one batched call instead of hundreds of single ones. For a backend whose
requests are independent anyway, it sends one call per sample instead, at most
``max_batch_size * max_concurrent_batches`` at once.

Every sample gets exactly one :class:`~rmr1_plugins.rewards.samples.SampleReward`, and never an
exception:

- a sample that cannot be judged gets the fallback reward without reaching the judge:
  ``no_reference`` for a missing or empty reference, ``bad_input`` for any other bad label or a
  query without its prompt;
- a backend whose requests are independent (``independent_requests``, the ``openai``
  backend) gets one call per sample, so a failing or hung request costs only its own sample;
- a backend that takes a batch in one call (``vllm``, ``hf``) gets one call per batch; when it
  fails, every sample of the batch is judged again on its own, all at once (one level: the
  healthy ones pay the failure's latency once), and a call that does not return by the latest
  deadline in its batch gives its samples the fallback (``timeout``): the engine is one
  resource, and re-submitting behind a stuck call cannot finish sooner;
- a sample that fails on its own is retried ``retries`` times with doubling backoff, within its
  deadline, then gets the fallback (``error``);
- a sample still unanswered ``timeout_s`` after it arrived gets the fallback (``timeout``);
- a judgment without a verdict follows ``on_unparsed`` as in every group
  (:mod:`rmr1_plugins.rewards.samples`): ``tie``, ``loss``, or ``exclude``, the fallback
  (``unparsed``).

Work is taken in two queues: samples and the pairs of groups that are complete first, then the
*early* pairs of cohorts still filling (``judge(..., early=tag)``), so judging while groups fill
never holds up a group that waits for its answer; :meth:`RewardService.hurry` moves a group's
early pairs still queued to the front when the group completes.

Each judged sample adds to :attr:`RewardService.health` (the judge-health counts of
:mod:`rmr1_plugins.rewards.health`), and its hard pairs go to ``reward.hard_pairs.path`` when set.
Each fallback is counted in :attr:`RewardService.stats` and in the sample's extra logs, and logged
(a warning at most every 30 s per kind, with running counts). :class:`BackgroundRewardService`
runs the service on its own event-loop thread for synchronous callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from rmr1_plugins.backends.base import SamplingParams
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.hard_pairs import writer_for
from rmr1_plugins.rewards.health import Tally
from rmr1_plugins.rewards.inputs import NoReference, Sample, SampleError
from rmr1_plugins.rewards.samples import Judging, SampleReward, fallback, prepare_all
from rmr1_plugins.schema import PairResult, PairwiseExample
from rmr1_plugins.scorer import Scorer

logger = logging.getLogger("rmr1_plugins.reward")
LOG_EVERY_S = 30.0
T = TypeVar("T")


@dataclass
class Failure:
    """A pair the judge did not answer: ``kind`` is ``error`` or ``timeout``, and why."""

    kind: str
    message: str


@dataclass
class _Item:
    example: PairwiseExample
    future: asyncio.Future[PairResult | Failure]
    deadline: float
    judging: Judging | None  # None: a pair of a group (:meth:`RewardService.judge`)
    early: Any = None  # the tag of a filling group's early pair, until it is hurried


class RewardService:
    """Batches samples into ``scorer.ascore`` calls; see the module docstring.

    Use it from one event loop: ``await service.start()``, then ``await service.rewards(samples)``
    from any number of tasks, and ``await service.aclose()`` at the end (the scorer stays open:
    its owner closes it).
    """

    def __init__(self, scorer: Scorer, config: RewardConfig | None = None) -> None:
        self.scorer = scorer
        self.config = config or RewardConfig()
        self.stats: Counter[str] = Counter()
        self.health = Tally()  # judge health of every judged sample (rmr1 serve's /stats)
        self._hard_pairs = writer_for(self.config)
        self._queue: deque[_Item] = deque()  # first: samples, complete groups' pairs
        self._early: deque[_Item] = deque()  # then: early pairs of filling groups
        self._early_waiting = 0  # those in _early still early (not hurried, taken or given up)
        self._tagged: dict[Any, dict[int, _Item]] = {}  # early items by tag, for hurry()
        self._tasks: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._last_log: dict[str, float] = {}
        self._closed = False
        self._building = 0
        # Its own threads: the default pool also runs blocking judge calls (hf), which may hang.
        self._builder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rmr1-prepare")
        self.warmup_error: str | None = None

    @property
    def order(self) -> str:
        return self.scorer.order

    @property
    def per_sample(self) -> bool:
        """One judge call per sample: the backend's requests are independent (``openai``)."""
        return bool(getattr(self.scorer.backend, "independent_requests", False))

    @property
    def pending(self) -> int:
        """Samples being prepared, queued or being judged, not yet answered."""
        return self.stats["submitted"] - self.stats["resolved"] + self._building

    async def start(self, warmup: bool = True) -> None:
        """Start the batching worker; with ``warmup``, load the judge first (one tiny call)."""
        if self._worker is not None or self._closed:
            return
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        slots = self.config.service.max_concurrent_batches
        if self.per_sample:
            slots *= self.config.service.max_batch_size
        self._slots = asyncio.Semaphore(slots)
        if warmup:
            self.warmup_error = await self.warmup()
        self._worker = asyncio.create_task(self._run(), name="rmr1-batcher")

    async def warmup(self) -> str | None:
        """Make the backend load its model now; returns the error message if it failed."""
        started = time.monotonic()
        try:
            await self.scorer.backend.agenerate(
                [[{"role": "user", "content": "Say OK."}]], SamplingParams(max_new_tokens=1)
            )
        except Exception as error:
            logger.error("rmr1: judge warm-up failed: %s: %s", type(error).__name__, error)
            return f"{type(error).__name__}: {error}"
        logger.info("rmr1: judge ready after %.1f s", time.monotonic() - started)
        return None

    async def rewards(
        self, samples: Sequence[Sample], arrived: float | None = None
    ) -> list[SampleReward]:
        """One reward per sample, in order, within ``timeout_s`` of ``arrived`` (the loop's
        time when the request arrived; by default now): preparing counts; never raises."""
        # Off the event loop: a large request must not hold up the others (the scorer's own
        # guard pass then finds nothing left to rewrite).
        if self._closed:
            return self._unjudged(samples, "error", "the reward service stopped")
        guard = self.scorer.neutralize_markup
        loop = asyncio.get_running_loop()
        deadline = (loop.time() if arrived is None else arrived) + self.config.service.timeout_s
        self._building += len(samples)  # counted as pending meanwhile
        try:
            preparing = loop.run_in_executor(
                self._builder, prepare_all, samples, self.config, guard
            )
            built = await asyncio.wait_for(preparing, max(deadline - loop.time(), 0.0))
        except asyncio.TimeoutError:
            message = (
                f"preparing the request took more than timeout_s={self.config.service.timeout_s}"
            )
            return self._unjudged(samples, "timeout", message)
        finally:
            self._building -= len(samples)
        if self._closed:
            return self._unjudged(samples, "error", "the reward service stopped")
        await self.start(warmup=False)
        answers: list[SampleReward | None] = []
        waiting: list[tuple[int, _Item]] = []
        for outcome in built:
            self.stats["samples"] += 1
            if isinstance(outcome, SampleError):
                kind = "no_reference" if isinstance(outcome, NoReference) else "bad_input"
                answers.append(self._fallback(kind, str(outcome)))
                continue
            if isinstance(outcome, Exception):  # an unforeseen input shape: still a bad input
                answers.append(self._fallback("bad_input", f"{type(outcome).__name__}: {outcome}"))
                continue
            self.stats["clipped"] += outcome.clipped
            if outcome.example is None:  # the response is the reference: a tie, not judged
                answers.append(self._judged(outcome, None))
                continue
            item = _Item(outcome.example, loop.create_future(), deadline, outcome)
            self._submit(item)
            waiting.append((len(answers), item))
            answers.append(None)
        try:
            judged = await asyncio.gather(*(self._answer(item) for _, item in waiting))
        finally:
            for _, item in waiting:
                if not item.future.done():
                    item.future.cancel()
        for (index, _), answer in zip(waiting, judged, strict=True):
            answers[index] = answer
        self.stats["answered"] += len(answers)
        return [a or self._fallback("error", "internal: no answer") for a in answers]

    async def judge(
        self, examples: Sequence[PairwiseExample], timeout_s: float, *, early: Any = None
    ) -> list[PairResult | Failure]:
        """Judge pairs in the same batches as every other sample (a cohort's round), each a
        result or a :class:`Failure` within ``timeout_s`` seconds; never raises.

        ``early`` (a hashable tag, e.g. the cohort) queues them behind all other work, as the
        pairs of a group still filling, until :meth:`hurry` is called with the tag."""
        if self._closed:
            return [Failure("error", "the reward service stopped") for _ in examples]
        await self.start(warmup=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        items = [_Item(example, loop.create_future(), deadline, None) for example in examples]
        self.stats["pairs"] += len(items)
        if early is not None:
            self.stats["early_queued"] += len(items)  # behind other work while groups fill
            self._tagged.setdefault(early, {}).update((id(item), item) for item in items)
        for item in items:
            item.early = early
            self._submit(item)
        try:
            return list(await asyncio.gather(*(self._outcome(item) for item in items)))
        finally:
            for item in items:
                if not item.future.done():
                    item.future.cancel()
                if item.early is not None:  # given up while still queued early
                    self._unearly(item)
            if early is not None:
                self._untag(early, items)

    def hurry(self, tag: Any) -> None:
        """Move the early pairs of ``tag`` still queued in front of other early pairs (its
        group is complete and waits for them); later ones with the tag are queued early."""
        for item in self._tagged.pop(tag, {}).values():
            if item.early is not None and not item.future.done():
                self._unearly(item)
                self._queue.append(item)
        if len(self._early) > self._early_waiting:  # hurried or given up: held and counted once
            self._early = deque(item for item in self._early if item.early is not None)
        if self._queue and hasattr(self, "_wakeup"):
            self._wakeup.set()
            if len(self._queue) >= self.config.service.max_batch_size:
                self._full.set()

    async def aclose(self) -> None:
        """Stop batching; samples still waiting get the fallback (``error``: shutting down)."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        for queue in (self._queue, self._early):
            while queue:
                self._settle(queue.popleft(), Failure("error", "the reward service stopped"))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._builder.shutdown(wait=False, cancel_futures=True)

    def _unjudged(self, samples: Sequence[Sample], kind: str, message: str) -> list[SampleReward]:
        """Fallbacks for a whole request that never reached the judge (counted as answered)."""
        self.stats["samples"] += len(samples)
        self.stats["answered"] += len(samples)
        return [self._fallback(kind, message) for _ in samples]

    def fallback_for(self, kind: str, message: str) -> SampleReward:
        """A counted and logged fallback reward (for callers that could not reach the service)."""
        return self._fallback(kind, message)

    # -- internals ------------------------------------------------------------------------------

    def _submit(self, item: _Item) -> None:
        self.stats["submitted"] += 1
        item.future.add_done_callback(lambda _: self.stats.update(resolved=1))
        if item.early is None:
            self._queue.append(item)
        else:
            self._early.append(item)
            self._early_waiting += 1
        self._wakeup.set()
        if self._queued() >= self.config.service.max_batch_size:
            self._full.set()

    def _queued(self) -> int:
        """Items waiting for a batch (an early entry skipped later counts once, in _queue)."""
        return len(self._queue) + self._early_waiting

    def _unearly(self, item: _Item) -> None:
        """``item`` leaves the early work: hurried, taken into a batch or given up."""
        item.early = None
        self._early_waiting -= 1

    def _untag(self, tag: Any, items: list[_Item]) -> None:
        """Forget ``items`` under ``tag`` (answered or given up)."""
        tagged = self._tagged.get(tag)
        if tagged is None:
            return
        for item in items:
            tagged.pop(id(item), None)
        if not tagged:
            del self._tagged[tag]

    async def _answer(self, item: _Item) -> SampleReward:
        outcome = await self._outcome(item)
        if isinstance(outcome, Failure):
            return self._fallback(outcome.kind, outcome.message)
        assert item.judging is not None
        return self._judged(item.judging, outcome)

    async def _outcome(self, item: _Item) -> PairResult | Failure:
        """The item's result by its deadline, added to the judge health and the hard pairs."""
        remaining = item.deadline - asyncio.get_running_loop().time()
        try:
            outcome = await asyncio.wait_for(asyncio.shield(item.future), max(remaining, 0.0))
        except asyncio.TimeoutError:
            item.future.cancel()
            outcome = self._too_late()
        if isinstance(outcome, Failure):
            return outcome
        example = item.example
        self.health.add_pair(outcome, (len(example.response_a), len(example.response_b)))
        if self._hard_pairs is not None:
            self._hard_pairs.offer(outcome, example.context, example.response_a, example.response_b)
        return outcome

    def _too_late(self) -> Failure:
        return Failure(
            "timeout",
            f"no verdict within {self.config.service.timeout_s:g} s (the judge is too slow or "
            "overloaded; raise reward.service.timeout_s or add judge capacity)",
        )

    def _judged(self, judging: Judging, result: PairResult | None) -> SampleReward:
        reward = judging.finish(result, self.config)
        self.stats["judged"] += 1
        self.stats["unparsed"] += int(reward.extra_logs["rmr1_unparsed_comparisons"])
        if reward.kind is not None:
            self._count(reward.kind, reward.error or "")
        return reward

    def _fallback(self, kind: str, message: str) -> SampleReward:
        reward = fallback(self.config, kind, message)
        self._count(kind, reward.error or message)
        return reward

    def _count(self, kind: str, message: str) -> None:
        self.stats["fallback"] += 1
        self.stats[f"fallback_{kind}"] += 1
        now = time.monotonic()
        if now - self._last_log.get(kind, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._last_log[kind] = now
            logger.warning(
                "rmr1: %s [%d %s fallbacks, %d of %d samples so far]",
                message,
                self.stats[f"fallback_{kind}"],
                kind,
                self.stats["fallback"],
                self.stats["samples"],
            )

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch = await self._next_batch(1 if self.per_sample else None)
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._judge_batch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:  # a bug: never lose it
            logger.error("rmr1: batch failed unexpectedly", exc_info=task.exception())

    async def _next_batch(self, size: int | None = None) -> list[_Item]:
        size = size or self.config.service.max_batch_size
        while True:
            while not self._queue and not self._early:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._queued() < size and self.config.service.max_wait_ms > 0:
                self._full.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        self._full.wait(), self.config.service.max_wait_ms / 1000
                    )
            batch: list[_Item] = []
            while self._queue and len(batch) < size:  # samples and complete groups first
                item = self._queue.popleft()
                if not item.future.done():  # its caller already gave up
                    batch.append(item)
            while self._early and len(batch) < size:
                item = self._early.popleft()
                # hurried ones are in the first queue now; given-up ones are dropped
                if item.early is not None and not item.future.done():
                    self._unearly(item)  # taken: hurry() leaves it alone
                    batch.append(item)
            if batch:
                return batch

    async def _judge_batch(self, batch: list[_Item]) -> None:
        self.stats["batches"] += 1
        self.stats["batched_samples"] += len(batch)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
        try:
            await self._judge(batch)
        finally:  # cancelled (shutdown) or a bug: nobody may wait for an answer forever
            for item in batch:
                self._settle(item, Failure("error", "the reward service stopped"))

    async def _judge(self, items: list[_Item]) -> None:
        """One call for ``items``; if it raises, each sample again on its own, all at once."""
        live = [item for item in items if not item.future.done()]
        if not live:
            return
        budget = max(item.deadline for item in live) - asyncio.get_running_loop().time()
        if budget <= 0:  # past the deadline already: settled here, or the finally above would
            for item in live:  # call them stopped before their callers' own timeout fires
                self._settle(item, self._too_late())
            return
        try:
            results = await self._call(live, budget)
        except asyncio.TimeoutError:  # at the latest deadline: each caller's own timeout's
            for item in live:  # failure, whichever of the two timers fires first
                self._settle(item, self._too_late())
            return
        except Exception as error:
            if len(live) == 1:
                await self._judge_alone(live[0], error)
            else:  # one level: the healthy samples pay this call's latency once, not log2(n)
                self.stats["isolated"] += len(live)
                await asyncio.gather(*(self._judge_alone(item) for item in live))
            return
        for item, result in zip(live, results, strict=True):
            self._settle(item, result)

    async def _judge_alone(self, item: _Item, error: Exception | None = None) -> None:
        """Judge one sample; after a failure (``error``) retry with backoff, within its deadline."""
        loop = asyncio.get_running_loop()
        failures = 0 if error is None else 1
        while not item.future.done():
            if failures > self.config.service.max_retries:
                message = f"the judge failed: {type(error).__name__}: {error}"
                self._settle(item, Failure("error", message))
                return
            if failures:
                self.stats["retries"] += 1
                delay = self.config.service.retry_backoff_s * 2 ** (failures - 1)
                await asyncio.sleep(max(0.0, min(delay, item.deadline - loop.time())))
            budget = item.deadline - loop.time()
            if budget <= 0:
                self._settle(item, self._too_late())
                return
            try:
                [result] = await self._call([item], budget)
            except asyncio.TimeoutError:  # at its deadline, as its caller's own timeout
                self._settle(item, self._too_late())
                return
            except Exception as failed:
                error, failures = failed, failures + 1
                continue
            self._settle(item, result)

    async def _call(self, items: list[_Item], budget: float) -> list[PairResult]:
        """One ``ascore`` call, cancelled (abandoned) after ``budget`` seconds; counted."""
        self.stats["calls"] += 1
        try:
            return await asyncio.wait_for(
                self.scorer.ascore([item.example for item in items]), budget
            )
        except asyncio.TimeoutError:
            self.stats["judge_timeouts"] += 1
            raise
        except Exception:
            self.stats["judge_errors"] += 1
            raise

    @staticmethod
    def _settle(item: _Item, outcome: PairResult | Failure) -> None:
        if not item.future.done():
            item.future.set_result(outcome)


class BackgroundRewardService:
    """A :class:`RewardService` on a private event-loop thread, for synchronous callers.

    :meth:`rewards` may be called from any number of threads at once; their samples are
    batched together. It never raises.
    """

    def __init__(self, scorer: Scorer, config: RewardConfig | None = None, warmup: bool = True):
        self.scorer = scorer
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="rmr1-reward-loop", daemon=True
        )
        self._thread.start()
        self.service = RewardService(scorer, config)
        self._run(self.service.start(warmup=warmup), timeout=None)

    @property
    def stats(self) -> Counter[str]:
        return self.service.stats

    def rewards(self, samples: Sequence[Sample]) -> list[SampleReward]:
        """One reward per sample (blocking); never raises."""
        future = asyncio.run_coroutine_threadsafe(self.service.rewards(samples), self._loop)
        try:
            return future.result(timeout=self.service.config.service.timeout_s + 30)
        except Exception as error:  # the loop itself is stuck or gone
            future.cancel()
            message = f"the reward service did not answer: {type(error).__name__}: {error}"
            return [self.service.fallback_for("error", message) for _ in samples]

    def close(self) -> None:
        """Stop the service and its thread, and close the scorer."""
        if self._loop.is_closed():
            return
        try:
            self._run(self.service.aclose(), timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()
            self.scorer.close()

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)
