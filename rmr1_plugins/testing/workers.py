"""Functions a test runs in another process (a ``spawn`` pool, as a trainer's workers are): they
live in an importable module, because a spawned process finds a function by its module's name
and pytest's test modules are not importable there."""

from __future__ import annotations

import pickle

from rmr1_plugins.backends.base import SamplingParams
from rmr1_plugins.schema import PairwiseExample
from rmr1_plugins.scorer import Scorer


def judge_in_worker(backend_bytes: bytes, pairs: list[PairwiseExample]) -> list[str | None]:
    """Unpickle a backend and judge ``pairs`` with it (4 new tokens): each first completion."""
    backend = pickle.loads(backend_bytes)
    try:
        results = Scorer(backend, sampling=SamplingParams(max_new_tokens=4)).score(pairs)
        return [r.judgments[0].completion for r in results]
    finally:
        backend.close()
