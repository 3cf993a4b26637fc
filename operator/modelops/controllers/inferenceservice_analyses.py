"""Each canary analysis interval, kept on its rollout record: why a canary was promoted or rolled back.

`status.canary.analysis` holds only the latest analysis, and it disappears with the canary; the
rollout record (`status.rolloutHistory[]`) stays. So every verdict's numbers are appended to the
record of the canary under analysis (`analyses`, the last `ANALYSES_LIMIT`), which the console and
`kubectl get -o yaml` show after the fact. Pure; the rollout state machine calls `record` once per
verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ANALYSES_LIMIT = 30
_KEYS = (
    "lastCheckTime",
    "result",
    "reason",
    "message",
    "requests",
    "successRate",
    "p99LatencyMs",
    "ttftP99Ms",
)


def record(history: Sequence[dict[str, Any]], analysis: Mapping[str, Any], steps: Sequence[int]) -> None:
    """Append this analysis (after its verdict, before the step advances) to the InProgress record."""
    running = next((r for r in reversed(history) if r.get("outcome") == "InProgress"), None)
    if running is None:
        return
    interval = {k: analysis[k] for k in _KEYS if analysis.get(k) is not None}
    if steps:
        interval["trafficPercent"] = steps[min(int(analysis.get("step", 0)), len(steps) - 1)]
    running["analyses"] = [*(running.get("analyses") or []), interval][-ANALYSES_LIMIT:]
