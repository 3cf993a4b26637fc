"""How long the TuningJob's planning takes per trial as a search grows (a benchmark, not a test).

What it measures: the pure part of the operator's overhead between one trial finishing and the next
being proposed — `tuningjob.plan` rebuilding the Optuna study from N finished trials (with 20 epoch
values each), running the pruner and asking TPE for the next trial — for N up to 500. It does not
include the API calls (a list of the trials, a create, a status patch) that the handler adds on a
real plane; see docs/benchmarks.md for what was measured and what is still to measure.

    .venv/bin/python bench/tuning_bench.py [--max 500] [--step 50]
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from typing import Any

from modelops.api.tuningjob import TuningJobSpec
from modelops.builders import tuningjob as builders
from modelops.controllers import tuningjob as tuning

NOW = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC)


def job(n_finished: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    spec = {
        "searchSpace": [
            {
                "name": "lr",
                "path": "spec.hyperparameters.learningRate",
                "type": "float",
                "low": 1e-5,
                "high": 0.1,
                "log": True,
            },
            {"name": "width", "path": "spec.model.hiddenSize", "type": "int", "low": 16, "high": 512},
        ],
        "objective": {"metric": "accuracy", "direction": "maximize"},
        "trialTemplate": {"spec": {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}}},
        "parallelTrials": 2,
        "maxTrials": 1000,
        "pruner": {"name": "median"},
        "algorithm": {"name": "tpe", "seed": 1},
    }
    body: dict[str, Any] = {
        "metadata": {"name": "b", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": spec,
    }
    parsed = TuningJobSpec.model_validate(spec)
    records, trials = [], []
    for n in range(n_finished + 1):
        params = {"lr": 10 ** (-5 + 4 * ((n * 7919) % 1000) / 1000), "width": 16 + (n * 31) % 496}
        name = builders.trial_name("b", n)
        done = n < n_finished
        records.append(
            {
                "number": n,
                "name": name,
                "state": "Complete" if done else "Running",
                "parameters": params,
                "value": 0.5 + (n % 97) / 200 if done else None,
                "intermediate": [[e, 0.4 + e / 50] for e in range(1, 21)] if done else [[1, 0.3]],
            }
        )
        trial = builders.trial(body, parsed, n, params, {})
        trial["status"] = (
            {"phase": "Succeeded", "metrics": {"accuracy": records[-1]["value"]}}
            if done
            else {"phase": "Running"}
        )
        trials.append(trial)
    body["status"] = {
        "phase": "Running",
        "startTime": "2026-12-07T00:00:00Z",
        "trials": [{k: v for k, v in r.items() if v is not None} for r in records],
    }
    return body, trials


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max", type=int, default=500)
    parser.add_argument("--step", type=int, default=50)
    args = parser.parse_args()
    rows = []
    for n in [1, *range(args.step, args.max + 1, args.step)]:
        body, trials = job(n)
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            plan = tuning.plan(body, trials, {f"b-trial-{n}": (2, 0.35)}, now=NOW)
            runs.append(time.perf_counter() - t0)
        assert plan.create, "no next trial proposed"
        size = len(json.dumps(plan.status_patch.get("trials") or body["status"]["trials"]))
        rows.append((n, min(runs), size))
        print(
            f"finished trials {n:4d}: plan {min(runs) * 1000:7.1f} ms, status.trials {size / 1024:6.1f} KiB",
            flush=True,
        )


if __name__ == "__main__":
    main()
