"""Fault injection for end-to-end tests and game days: make a serving pod slow on purpose.

`MODELOPS_LLM_FAULT_FIRST_TOKEN_DELAY_SECONDS` (unset or 0: off) makes every generation of
`modelops-worker serve-llm` wait that long before it starts, so its time to first token grows by as much
and the canary analysis' `maxTtftP99Ms` gate, the TTFT alert and the dashboards can be seen to act
(tests/e2e/test_llm_e2e.py sets it on a canary Deployment). The operator never sets it. The wait is
asynchronous: other requests of the pod are not held up by it, only delayed the same way.

The delay wraps the LLM server's generation step (`modelops_worker.llm.server.Server._generate`) when the
process starts, so the server itself carries no test code; `install` is called by the CLI before it
dispatches and does nothing unless the variable is set.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

ENV_FIRST_TOKEN_DELAY = "MODELOPS_LLM_FAULT_FIRST_TOKEN_DELAY_SECONDS"
LLM_SERVER_MODULE = "modelops_worker.llm.server"

log = logging.getLogger(__name__)


def first_token_delay(environ: Mapping[str, str] | None = None) -> float:
    """The configured delay in seconds (0 when unset, empty, not a number or not positive)."""
    raw = (os.environ if environ is None else environ).get(ENV_FIRST_TOKEN_DELAY, "").strip()
    try:
        value = float(raw) if raw else 0.0
    except ValueError:
        log.warning("%s=%r is not a number of seconds; no delay injected", ENV_FIRST_TOKEN_DELAY, raw)
        return 0.0
    return value if value > 0 else 0.0


def delayed(
    step: Callable[..., Coroutine[Any, Any, Any]], seconds: float
) -> Callable[..., Coroutine[Any, Any, Any]]:
    """`step` (a coroutine function) that first waits `seconds` without blocking the event loop."""

    @functools.wraps(step)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(seconds)
        return await step(*args, **kwargs)

    setattr(wrapper, "__fault_delay__", seconds)  # noqa: B010 - a mark mypy lets a function carry
    return wrapper


def install(environ: Mapping[str, str] | None = None) -> bool:
    """Wrap the LLM server's generation step when a delay is configured; whether it did."""
    seconds = first_token_delay(environ)
    if seconds <= 0:
        return False
    try:
        server = importlib.import_module(LLM_SERVER_MODULE)
    except ImportError:
        log.warning("%s is set but this image has no LLM server; nothing to delay", ENV_FIRST_TOKEN_DELAY)
        return False
    cls = getattr(server, "Server", None)
    step = getattr(cls, "_generate", None)
    if cls is None or step is None or hasattr(step, "__fault_delay__"):
        return False
    cls._generate = delayed(step, seconds)
    log.warning(
        "fault injection: every generation waits %gs before it starts (%s)", seconds, ENV_FIRST_TOKEN_DELAY
    )
    return True
