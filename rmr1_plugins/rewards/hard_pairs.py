"""Hard pairs for the next judge: comparisons the judge got unsure about during policy RL.

With ``reward.hard_pairs.path`` set, every integration appends the comparisons it judged that are
*order-inconsistent* (judged in both orders, and the two orders disagree) or *low-confidence*
(``max(prob_a, 1 - prob_a)`` below ``reward.hard_pairs.confidence``; needs verdict probabilities)
to a JSONL file of native pairs: ``id``, ``context``, ``response_a``, ``response_b`` and
``label: null``. The id names the reason (``hard-order_flip-<hash>``, ``hard-low_confidence-...``)
and the hash of the pair, so a pair seen twice can be dropped.

The judge was unsure, so its verdict is no label: the rows are written unlabelled. ``rmr1 score``
judges them as they are (a stronger teacher's verdicts), and ``rmr1 recipe prepare`` takes them as
a source once ``label`` is filled in (by a person or from those verdicts); it refuses unlabelled
rows, naming the line. docs/concepts/health.md ("Hard pairs for the next judge") has the workflow.

Writing never slows or stops a training step: pairs go into a bounded queue (a full queue drops
the pair, counted) and a background thread appends them. Each batch is one ``write`` of whole
lines on an ``O_APPEND`` descriptor under an exclusive ``flock``, so processes sharing the file
never interleave lines; a line left incomplete by a crash is cut off before the next append. The
file holds at most ``reward.hard_pairs.max_records`` lines (counted again when another process
has written), and a record over :data:`MAX_RECORD_BYTES` is skipped.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import queue
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rmr1_plugins.schema import Message, PairResult

logger = logging.getLogger(__name__)
MAX_RECORD_BYTES = 1 << 20
QUEUE_LIMIT = 4096
_WRITERS: dict[tuple[str, int, float], HardPairWriter] = {}
_LOCK = threading.Lock()


def hardness(result: PairResult, confidence: float) -> str | None:
    """Why a judged pair is hard (``order_flip``, ``low_confidence``), or ``None``."""
    if result.orders_agree is False:
        return "order_flip"
    if result.prob_a is not None and max(result.prob_a, 1 - result.prob_a) < confidence:
        return "low_confidence"
    return None


def hard_row(reason: str, context: Sequence[Message], a: str, b: str) -> dict[str, Any]:
    """The native pair written for a hard comparison (no label: see the module docstring)."""
    turns = [m.model_dump() for m in context]
    digest = hashlib.sha256(json.dumps([turns, a, b]).encode("utf-8", "replace")).hexdigest()
    return {
        "id": f"hard-{reason}-{digest[:16]}",
        "context": turns,
        "response_a": a,
        "response_b": b,
        "label": None,
    }


class HardPairWriter:
    """Appends hard pairs to ``path`` from a background thread (see the module docstring)."""

    def __init__(self, path: str | Path, max_records: int, confidence: float) -> None:
        self.path = Path(path)
        self.max_records = max_records
        self.confidence = confidence
        self.stats: Counter[str] = Counter()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_LIMIT)
        self._lines = -1  # lines in the file when we last looked; -1: not counted yet
        self._size = -1
        self._full = False
        self._thread = threading.Thread(target=self._run, name="rmr1-hard-pairs", daemon=True)
        self._thread.start()

    def offer(
        self, result: PairResult, context: Sequence[Message], response_a: str, response_b: str
    ) -> str | None:
        """Queue the pair if it is hard; never blocks. Returns the reason, or ``None``."""
        reason = hardness(result, self.confidence)
        if reason is None:
            return None
        self.stats["hard"] += 1
        if self._full:
            self.stats["over_limit"] += 1
            return reason
        try:
            self._queue.put_nowait(hard_row(reason, context, response_a, response_b))
        except queue.Full:
            self.stats["dropped"] += 1
        return reason

    def flush(self) -> None:
        """Wait until every queued pair is written (tests, shutdown)."""
        self._queue.join()

    def close(self) -> None:
        """Write what is queued and stop the thread; gives up after 10 s (a hung disk)."""
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=10)
                self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            rows = [self._queue.get()]
            while len(rows) < 256:
                try:
                    rows.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._append([r for r in rows if r is not None])
            except Exception as error:  # a full disk must not reach the trainer
                self.stats["write_errors"] += 1
                logger.warning("rmr1 hard pairs: cannot write %s (%s)", self.path, error)
            finally:
                for _ in rows:
                    self._queue.task_done()
            if None in rows:
                return

    def _append(self, rows: list[dict[str, Any]]) -> None:
        lines = []
        for row in rows:
            line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8", "replace")
            if len(line) > MAX_RECORD_BYTES:
                self.stats["too_large"] += 1
            else:
                lines.append(line)
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size != self._size:  # first look, or another process wrote: count again
                size = _cut_torn_line(self.path, fd, size)
                self._lines = _count_lines(self.path, size)
            room = max(self.max_records - self._lines, 0)
            data = b"".join(lines[:room])
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            self._lines += min(room, len(lines))
            self._size = size + len(data)
            self.stats["written"] += min(room, len(lines))
            self.stats["over_limit"] += len(lines) - min(room, len(lines))
            self._full = self._lines >= self.max_records
        finally:
            os.close(fd)  # releases the lock


def _cut_torn_line(path: Path, fd: int, size: int) -> int:
    """Drop a last line without its newline (a writer died mid-line); the new size."""
    if size == 0:
        return 0
    with open(path, "rb") as handle:
        start = max(size - MAX_RECORD_BYTES - 1, 0)
        handle.seek(start)
        tail = handle.read(size - start)
    if tail.endswith(b"\n"):
        return size
    keep = start + tail.rfind(b"\n") + 1 if b"\n" in tail else start
    os.ftruncate(fd, keep)
    return keep


def _count_lines(path: Path, size: int) -> int:
    count = 0
    with open(path, "rb") as handle:
        while size > 0 and (chunk := handle.read(min(size, 1 << 20))):
            count += chunk.count(b"\n")
            size -= len(chunk)
    return count


def writer_for(options: Any) -> HardPairWriter | None:
    """This process's writer for ``options`` (a :class:`~rmr1_plugins.rewards.config.RewardConfig`),
    or ``None`` when ``hard_pairs.path`` is not set."""
    path = options.hard_pairs.path
    if not path:
        return None
    key = (str(path), options.hard_pairs.max_records, options.hard_pairs.confidence)
    with _LOCK:
        if key not in _WRITERS:
            _WRITERS[key] = HardPairWriter(*key)
            atexit.register(_WRITERS[key].close)
        return _WRITERS[key]


def record_groups(options: Any, groups: Sequence[Any], results: Sequence[Any]) -> None:
    """Offer every judged comparison of ``groups`` (with their
    :class:`~rmr1_plugins.rewards.engine.GroupRewards`); a no-op without ``hard_pairs.path``."""
    writer = writer_for(options)
    if writer is None:
        return
    from rmr1_plugins.rewards.engine import texts_of
    from rmr1_plugins.rewards.inputs import as_context

    for group, rewards in zip(groups, results, strict=True):
        judged = [c for c in rewards.comparisons if c.result is not None]
        if not any(hardness(c.result, writer.confidence) for c in judged):
            continue
        try:
            context, texts = as_context(group.prompt), texts_of(group)
        except Exception:  # a group that was judged has a valid prompt; stay safe anyway
            continue
        for c in judged:
            writer.offer(c.result, context, texts[c.first], texts[c.second])
