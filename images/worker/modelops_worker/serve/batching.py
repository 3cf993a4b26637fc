"""Adaptive batching: concurrent requests share one forward pass, and memory stays bounded.

Requests queue their samples (a dict of named input arrays whose first dim is the batch); one task
takes them in arrival order, up to `maxBatchSize` samples, concatenates each input along dim 0, and
runs the forward pass on a dedicated thread so the event loop keeps parsing and answering while the
model computes. While a pass runs, the next batch fills by itself.

How long the first request of a batch waits for company is the one real decision:

- not adaptive: up to `maxLatencyMs`, or until the batch is full;
- adaptive (the default): for requests the server is already reading, about one forward pass (an
  average of the observed ones), never more than `maxLatencyMs`. Otherwise only when the observed
  arrival rate says someone is due within that time, never longer than the batch needs to fill at
  that rate, and only while such waits keep paying off: closed-loop clients (each sends its next
  request after the previous answer) never arrive during a wait, so after a few fruitless waits the
  batcher stops waiting and only probes again now and then. A lone, idle client pays no batching
  delay at all, and under load the next batch fills by itself while the current pass runs.

The queue is bounded in samples (`maxQueueSize`): a request that would overflow it is refused at once
with `QueueFull` (HTTP 503), never buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelops.api.inferenceservice import Batching

log = logging.getLogger("modelops_worker.serve")

Arrays = dict[str, np.ndarray[Any, Any]]
Forward = Callable[[Arrays], Arrays]

# Below this a wait is not worth a timer: the event loop's own latency is of that order.
_MIN_WAIT_S = 0.0002
_EMA = 0.2
# How fast the batcher tries waiting again after waits stopped paying (about every 10 batches).
_PROBE = 0.05


class QueueFull(Exception):
    """The queue cannot take these samples now; the client should retry later or elsewhere."""


class ShuttingDown(Exception):
    """The batcher stopped taking work (the server is draining)."""


@dataclass
class _Item:
    inputs: Arrays
    n: int  # samples (the first dim of every input)
    future: asyncio.Future[Arrays]


def _concat(items: list[_Item]) -> Arrays:
    if len(items) == 1:
        return items[0].inputs
    return {k: np.concatenate([i.inputs[k] for i in items]) for k in items[0].inputs}


class Batcher:
    """Coalesces submitted sample batches into forward passes of at most `max_batch_size` samples."""

    def __init__(
        self,
        forward: Forward,
        settings: Batching,
        inflight: Callable[[], int] = lambda: 0,
        on_batch: Callable[[int], None] = lambda n: None,
        on_queue: Callable[[int], None] = lambda n: None,
        thread_init: Callable[[], object] | None = None,
        batchable: bool = True,
    ) -> None:
        self._forward = forward
        self.settings = settings
        # A model whose first dim is fixed runs one request per pass.
        self._max_batch = settings.max_batch_size if settings.enabled and batchable else 1
        self._max_wait = settings.max_latency_ms / 1000 if settings.enabled else 0.0
        self._inflight = inflight
        self._on_batch = on_batch
        self._on_queue = on_queue
        self._pending: deque[_Item] = deque()
        self._queued = 0  # samples in _pending
        self._running = 0  # requests in the forward pass now
        self._wakeup = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="modelops-forward", initializer=thread_init)
        self._task: asyncio.Task[None] | None = None
        # Observations the adaptive wait is sized from.
        self.forward_seconds = 0.0  # EMA of one pass
        self._per_sample_gap = 1.0  # EMA of seconds between arriving samples
        self._last_arrival = time.monotonic()
        self._fruitful = 1.0  # EMA: did waiting recently bring more samples (1) or nobody (0)?

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="modelops-batcher")

    @property
    def queued_samples(self) -> int:
        return self._queued

    async def submit(self, inputs: Arrays, n: int) -> Arrays:
        """The outputs of `inputs` (`n` samples), computed in some forward pass; raises QueueFull or
        ShuttingDown, or what the forward pass raised."""
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        limit = self.settings.max_queue_size
        if self._queued + n > limit:
            raise QueueFull(
                f"the queue holds {self._queued} samples and takes at most {limit} (batching.maxQueueSize); "
                "retry after a short delay, or scale out"
            )
        now = time.monotonic()
        gap = (now - self._last_arrival) / n
        self._last_arrival = now
        self._per_sample_gap += _EMA * (min(gap, 1.0) - self._per_sample_gap)
        fut: asyncio.Future[Arrays] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(inputs, n, fut))
        self._queued += n
        self._on_queue(self._queued)
        self._wakeup.set()
        return await fut

    def _arrival_rate(self) -> float:
        """Samples per second recently, decaying while nobody arrives."""
        since = time.monotonic() - self._last_arrival
        return 1.0 / max(self._per_sample_gap, since, 1e-6)

    def _coming(self) -> int:
        """Requests the server is reading that have not reached the queue yet."""
        return self._inflight() - len(self._pending) - self._running

    def _wait_budget(self) -> float:
        room = self._max_batch - self._queued
        if room <= 0 or self._max_wait <= 0:
            return 0.0
        if not self.settings.adaptive:
            return self._max_wait
        one_pass = max(self.forward_seconds, _MIN_WAIT_S)
        if self._coming() > 0:
            # Requests already being read will join: wait for them, about one pass at most.
            return min(self._max_wait, one_pass)
        rate = self._arrival_rate()
        if rate * min(self._max_wait, one_pass) < 1.0 or self._fruitful < 0.5:
            # Alone and idle (nobody due within a pass), or recent waits gained nobody (clients that
            # send their next request only after this one's answer): go now; the next batch fills
            # while this one runs.
            self._fruitful = min(1.0, self._fruitful + _PROBE)
            return 0.0
        budget = min(self._max_wait, one_pass, room / rate)
        return budget if budget >= _MIN_WAIT_S else 0.0

    async def _collect(self) -> None:
        """Wait, within the budget, for the batch to fill."""
        budget = self._wait_budget()
        if budget <= 0:
            return
        before = self._queued
        deadline = time.monotonic() + budget
        while self._queued < self._max_batch and not self._closing:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if self.settings.adaptive and self._coming() <= 0 and self._arrival_rate() * left < 1.0:
                break  # everyone being read has arrived and nobody else is due in time
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), left)
        self._fruitful += _EMA * ((1.0 if self._queued > before else 0.0) - self._fruitful)

    def _take(self) -> list[_Item]:
        items = [self._pending.popleft()]
        total = items[0].n
        while self._pending and total + self._pending[0].n <= self._max_batch:
            item = self._pending.popleft()
            items.append(item)
            total += item.n
        self._queued -= total
        self._on_queue(self._queued)
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._collect()
            items = self._take()
            total = sum(i.n for i in items)
            self._running = len(items)
            started = time.monotonic()
            try:
                batch = _concat(items)
                outputs = await loop.run_in_executor(self._executor, self._forward, batch)
                if len(items) > 1:
                    for name, arr in outputs.items():
                        if arr.shape[:1] != (total,):
                            raise ValueError(
                                f"output {name!r} has shape {list(arr.shape)}: its first dim is not the "
                                f"batch ({total}), so batched requests cannot be told apart; declare the "
                                "batch dim of the inputs fixed to run requests one by one"
                            )
            except Exception as exc:
                log.exception("forward pass of %d samples failed", total)
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            finally:
                self._running = 0
            took = time.monotonic() - started
            self.forward_seconds += _EMA * (took - self.forward_seconds) if self.forward_seconds else took
            self._on_batch(total)
            if len(items) == 1:
                if not items[0].future.done():
                    items[0].future.set_result(outputs)
                continue
            row = 0
            for item in items:
                n = item.n
                if not item.future.done():
                    item.future.set_result({k: v[row : row + n] for k, v in outputs.items()})
                row += n

    async def close(self, timeout: float | None = None) -> None:
        """Refuse new work, finish what is queued (within `timeout`), stop the thread."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                log.warning("%d queued samples not computed before the drain deadline", self._queued)
        self._executor.shutdown(wait=False, cancel_futures=True)
