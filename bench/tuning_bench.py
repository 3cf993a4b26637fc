"""The TuningJob operator's overhead per trial as a search grows (a benchmark, not a test).

Two measurements, both over the number of finished trials (up to 500), printed for docs/benchmarks.md:

- `--plane` (what `make bench` runs first): on the local plane (`modelops local up`, the operator as a
  process), a TuningJob whose trials can never be scheduled (so nothing trains); each trial in turn is
  marked finished by writing its TrainingJob status directly through the API (phase Succeeded, an
  accuracy), and the time until the operator has created the next trial is measured. This is the
  whole path: the trial watch or the timer noticing, the fresh read of the search, the list of all its
  trials, the plan, the create and the status write.
- `--plan`: the pure part alone. What it measures: the pure part of the operator's overhead between one trial finishing and the next
being proposed — `tuningjob.plan` rebuilding the Optuna study from N finished trials (with 20 epoch
values each), running the pruner and asking TPE for the next trial — for N up to 500. It does not
include the API calls (a list of the trials, a create, a status patch) that the handler adds on a
real plane; see docs/benchmarks.md for what was measured and what is still to measure.

    .venv/bin/python bench/tuning_bench.py --plane [--max 500] [--step 50]
    .venv/bin/python bench/tuning_bench.py --plan [--max 500] [--step 50]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kubernetes

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


REPO = Path(__file__).resolve().parents[1]
NS = "default"


def plane_search(max_trials: int) -> dict[str, Any]:
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": "bench", "namespace": NS},
        "spec": {
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
            "algorithm": {"name": "tpe", "seed": 1},
            "parallelTrials": 1,
            "maxTrials": max_trials,
            "maxFailedTrials": max_trials,
            # No node has 500 CPUs: the trials stay Pending and nothing trains.
            "trialTemplate": {
                "spec": {
                    "model": {"architecture": "mlp"},
                    "dataset": {"builtin": "digits"},
                    "resources": {"cpu": "500"},
                }
            },
        },
    }


def on_plane(max_trials: int, step: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="tuning-bench-")) / "plane"
    modelops = [sys.executable, "-m", "modelops"]
    subprocess.run([*modelops, "local", "up", "--dir", str(directory)], check=True, capture_output=True)
    try:
        api = kubernetes.client.CustomObjectsApi(
            kubernetes.config.new_client_from_config(config_file=str(directory / "kubeconfig"))
        )
        group, version = "modelops.dev", "v1alpha1"
        api.create_namespaced_custom_object(group, version, NS, "tuningjobs", plane_search(max_trials + 1))

        def exists(name: str) -> bool:
            try:
                api.get_namespaced_custom_object(group, version, NS, "trainingjobs", name)
            except kubernetes.client.ApiException as error:
                if error.status == 404:
                    return False
                raise
            return True

        deadline = time.monotonic() + 120
        while not exists("bench-trial-0"):
            if time.monotonic() > deadline:
                raise SystemExit("the first trial was never created")
            time.sleep(0.05)
        window: list[float] = []
        print("| finished trials | next trial created after (s, median of the last 10) | max (s) |")
        print("|---:|---:|---:|")
        for n in range(max_trials):
            now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            finished = {
                "status": {
                    "phase": "Succeeded",
                    "completionTime": now,
                    "metrics": {"accuracy": 0.5 + (n * 37 % 100) / 250},
                }
            }
            started = time.perf_counter()
            api.patch_namespaced_custom_object_status(
                group, version, NS, "trainingjobs", f"bench-trial-{n}", finished
            )
            while not exists(f"bench-trial-{n + 1}"):
                if time.perf_counter() - started > 60:
                    raise SystemExit(f"trial {n + 1} not created 60 s after trial {n} finished")
                time.sleep(0.02)
            window.append(time.perf_counter() - started)
            done = n + 1
            if done in (1, 10) or done % step == 0:
                recent = window[-10:]
                print(f"| {done} | {statistics.median(recent):.2f} | {max(recent):.2f} |", flush=True)
    finally:
        subprocess.run([*modelops, "local", "down", "--dir", str(directory)], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max", type=int, default=500)
    parser.add_argument("--step", type=int, default=50)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plane", action="store_true", help="on the local plane (default)")
    mode.add_argument("--plan", action="store_true", help="the pure planning only")
    args = parser.parse_args()
    if not args.plan:
        on_plane(args.max, args.step)
        return
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
