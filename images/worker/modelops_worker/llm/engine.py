"""What every generation engine offers the server, and the machinery they share.

An engine decodes many sequences together on one thread of its own (llama.cpp's context and a torch
model are not safe to call from several threads at once, and one batch of N sequences costs far less
than N batches of one). The server hands it `Sequence`s (one per choice of a request) and reads their
tokens back on the event loop; nothing here waits on the loop or blocks it.

- `Sequence`: one choice being generated. The engine thread calls `Deliveries.token`/`finish`; the
  event loop reads `Sequence.events` (one queue shared by the choices of a request). A sequence the client no longer wants (stop string seen, client
  gone) is `cancel()`led and leaves the batch at the engine's next step.
- `BatchingEngine`: the waiting queue (bounded by `maxWaiting`: beyond it `Overloaded`), the slots
  (`parallel`), the thread, and the running/waiting counts the metrics read.
- `TextStream`: tokens to text, incrementally (a character split across tokens is held back until it is
  whole) with stop strings (text that may be the start of a stop string is held back until it is not).
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelops_worker.llm.chat import ChatTemplate
from modelops_worker.llm.protocol import Sampling

log = logging.getLogger("modelops_worker.llm")


class Overloaded(Exception):
    """More requests wait than `maxWaiting` allows."""


class EngineStopped(Exception):
    """The engine is shutting down and takes no new work."""


@dataclass
class ModelInfo:
    """What the loaded model is, for /v1/models, verification and the limits."""

    architecture: str
    parameters: int
    context_length: int  # per sequence, as served
    trained_context_length: int
    vocab_size: int
    chat_template: ChatTemplate | None
    embedding_dimensions: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TokenEvent:
    token: int
    piece: bytes


@dataclass
class FinishEvent:
    reason: str  # "stop" | "length" | "error" | "cancelled"
    error: str | None = None


class Sequence:
    """One choice being generated."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        events: asyncio.Queue[tuple[Sequence, TokenEvent | FinishEvent]],
        prompt: list[int],
        sampling: Sampling,
        max_tokens: int,
        seed: int,
        index: int = 0,
    ) -> None:
        self.loop = loop
        self.index = index  # the choice's index in its response
        self.prompt = prompt
        self.sampling = sampling
        self.max_tokens = max_tokens
        self.seed = seed
        self.events = events  # shared by the choices of one request: (sequence, event)
        self.cancelled = False  # set on the loop, read by the engine thread (a plain bool is atomic)
        self.generated = 0
        self.submitted = time.perf_counter()
        self.first_token_at: float | None = None

    def cancel(self) -> None:
        self.cancelled = True


class Deliveries:
    """Events of one engine step, handed to the event loop in one call (not one per token)."""

    def __init__(self) -> None:
        self._by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Sequence, TokenEvent | FinishEvent]]] = {}

    def token(self, seq: Sequence, token: int, piece: bytes) -> None:
        seq.generated += 1
        self._by_loop.setdefault(seq.loop, []).append((seq, TokenEvent(token, piece)))

    def finish(self, seq: Sequence, reason: str, error: str | None = None) -> None:
        self._by_loop.setdefault(seq.loop, []).append((seq, FinishEvent(reason, error)))

    def flush(self) -> None:
        for loop, items in self._by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(_deliver, items)
        self._by_loop = {}


def _deliver(items: list[tuple[Sequence, TokenEvent | FinishEvent]]) -> None:
    now = time.perf_counter()
    for seq, event in items:
        if isinstance(event, TokenEvent) and seq.first_token_at is None:
            seq.first_token_at = now
        seq.events.put_nowait((seq, event))


def usable_cpus() -> int:
    """The CPUs this pod may use: its affinity, capped by its cgroup CPU limit (a pod limited to 2 CPUs
    on a 64-core node must not start 64 spinning threads)."""
    from modelops_worker.serve.supervisor import usable_cpus as pod_cpus

    return max(1, pod_cpus())


class BatchingEngine:
    """The queue, slots and thread of an engine; subclasses implement `_step` (one batch) and `_admit`."""

    name = "engine"

    def __init__(self, parallel: int, max_waiting: int) -> None:
        self.parallel = parallel
        self.max_waiting = max_waiting
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.active: list[Sequence] = []
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.steps = 0
        self.batched_tokens = 0  # sequences decoded summed over steps: /steps is the mean batch
        self.on_batch: Callable[[int], None] | None = None  # sequences of each step (a metric)

    # --- the event loop's side ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-engine", daemon=True)
        self._thread.start()

    def submit(self, seqs: list[Sequence]) -> None:
        """Queue the choices of one request together (all or none)."""
        with self._cv:
            if self._stopping:
                raise EngineStopped()
            if len(self.waiting) + len(seqs) > self.max_waiting + max(0, self.parallel - len(self.active)):
                raise Overloaded(
                    f"{len(self.waiting)} sequence(s) already wait for one of {self.parallel} slots "
                    f"(maxWaiting {self.max_waiting}); retry later"
                )
            self.waiting.extend(seqs)
            self._cv.notify()

    @property
    def running_count(self) -> int:
        return len(self.active)

    @property
    def waiting_count(self) -> int:
        return len(self.waiting)

    def stop(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the engine thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._thread_init()
            while True:
                with self._cv:
                    while not self._stopping and not self.waiting and not self.active:
                        self._cv.wait()
                    if self._stopping:
                        break
                    admitted: list[Sequence] = []
                    while self.waiting and len(self.active) + len(admitted) < self.parallel:
                        seq = self.waiting.popleft()
                        if not seq.cancelled:
                            admitted.append(seq)
                        else:
                            out = Deliveries()
                            out.finish(seq, "cancelled")
                            out.flush()
                out = Deliveries()
                for seq in admitted:
                    self._admit(seq)
                    self.active.append(seq)
                for seq in [s for s in self.active if s.cancelled]:
                    self._release(seq)
                    self.active.remove(seq)
                    out.finish(seq, "cancelled")
                if self.active:
                    try:
                        done = self._step(out)
                    except Exception as exc:  # the engine failed: every sequence in it fails, loudly
                        log.exception("%s: a decode step failed", self.name)
                        done = {s: ("error", f"{type(exc).__name__}: {exc}") for s in self.active}
                    for seq, (reason, error) in done.items():
                        self._release(seq)
                        self.active.remove(seq)
                        out.finish(seq, reason, error)
                out.flush()
        finally:
            out = Deliveries()
            for seq in [*self.active, *self.waiting]:
                out.finish(seq, "error", "the server is shutting down")
            out.flush()
            self._close()

    def _thread_init(self) -> None:
        """Runs on the engine thread before the first step."""

    def _admit(self, seq: Sequence) -> None:
        raise NotImplementedError

    def _step(self, out: Deliveries) -> dict[Sequence, tuple[str, str | None]]:
        """Decode one batch of the active sequences; deliver tokens; return the ones that finished."""
        raise NotImplementedError

    def _release(self, seq: Sequence) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        pass


class TextStream:
    """Tokens of one sequence to text deltas, honouring stop strings."""

    def __init__(self, stops: list[str]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stops = stops
        self._hold = max((len(s) for s in stops), default=1) - 1
        self.text = ""  # everything decoded so far (before any stop string)
        self.emitted = 0  # characters of `text` already returned
        self.stopped = False

    def push(self, piece: bytes) -> str:
        """Add a token's bytes; the text that can be sent now ('' when held back)."""
        if self.stopped:
            return ""
        start = max(0, len(self.text) - self._hold)
        self.text += self._decoder.decode(piece)
        if self.stops:
            cut = min((i for i in (self.text.find(s, start) for s in self.stops) if i >= 0), default=-1)
            if cut >= 0:
                self.text = self.text[:cut]
                self.stopped = True
                return self._take(len(self.text))
        return self._take(len(self.text) - self._hold)

    def flush(self) -> str:
        """The rest, at the end of the sequence."""
        if not self.stopped:
            self.text += self._decoder.decode(b"", final=True)
        return self._take(len(self.text))

    def _take(self, upto: int) -> str:
        if upto <= self.emitted:
            return ""
        out = self.text[self.emitted : upto]
        self.emitted = upto
        return out
