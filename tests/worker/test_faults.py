"""The fault knob of the LLM server: off unless asked for, and a delay that only delays.

`modelops_worker.faults` wraps the server's generation step when
MODELOPS_LLM_FAULT_FIRST_TOKEN_DELAY_SECONDS is set; the end-to-end test (tests/e2e/test_llm_e2e.py)
shows its effect on a real server (a canary rolled back on its time to first token). Here: the
parsing of the variable, that the wrapped step waits without blocking the event loop and then answers
what the step answers, and that installing twice does not stack the delay.
"""

from __future__ import annotations

import asyncio
import sys
import time
import types
from typing import Any

import pytest

from modelops_worker import faults


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 0.0), ("", 0.0), ("0", 0.0), ("-3", 0.0), ("soon", 0.0), ("2.5", 2.5)]
)
def test_the_delay_is_off_unless_a_positive_number_is_set(value: str | None, seconds: float) -> None:
    env = {} if value is None else {faults.ENV_FIRST_TOKEN_DELAY: value}
    assert faults.first_token_delay(env) == seconds
    if seconds == 0:
        assert faults.install(env) is False  # nothing wrapped, nothing imported


def test_a_delayed_step_waits_without_holding_up_the_event_loop() -> None:
    async def step(x: int) -> int:
        return x * 2

    slow = faults.delayed(step, 0.3)

    async def both() -> tuple[list[int], float]:
        started = time.monotonic()
        answers = await asyncio.gather(slow(1), slow(2), slow(3))
        return list(answers), time.monotonic() - started

    answers, took = asyncio.run(both())
    assert answers == [2, 4, 6]
    assert 0.3 <= took < 0.9  # three waits side by side, not one after the other


def test_install_wraps_the_llm_servers_generation_step_once(monkeypatch: pytest.MonkeyPatch) -> None:
    class Server:
        async def _generate(self, x: int) -> int:
            return x + 1

    fake = types.ModuleType(faults.LLM_SERVER_MODULE)
    fake.Server = Server  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, faults.LLM_SERVER_MODULE, fake)
    env = {faults.ENV_FIRST_TOKEN_DELAY: "0.2"}
    assert faults.install(env) is True
    assert faults.install(env) is False  # already wrapped: the delay does not stack
    started = time.monotonic()
    answer: Any = asyncio.run(Server()._generate(1))
    assert answer == 2 and 0.2 <= time.monotonic() - started < 0.6
