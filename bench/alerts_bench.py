"""Benchmark of the alerting side of the operator at scale (not a test).

    .venv/bin/python bench/alerts_bench.py [--objects 1000] [--runs 5]

Times, for --objects TrainingJobs and as many InferenceServices:

- plan: `controllers.alerting.plan` per object (parse the spec, build the rule groups and the rule
  object), what each create/update/resume and each 5-minute re-apply costs in the operator;
- scrape: one render of the operator's /metrics (`generate_latest`) with every object in the
  per-object state indices (phase 0/1 series, restarts, replicas, backups), and the page's size;
- promtool: `promtool check rules` on all objects' rules in one file (Prometheus' own parse and
  check; skipped without promtool).

Medians and ranges over --runs runs are printed as Markdown table rows.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from modelops.builders import alerts
from modelops.controllers import alerting
from modelops.controllers.metrics import OperatorMetrics, object_state

NS = "bench"


def objects(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    jobs = [
        {
            "apiVersion": "modelops.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": f"job-{i}", "namespace": NS, "uid": f"u{i}"},
            "spec": {
                "model": {"architecture": "mlp"},
                "dataset": {"builtin": "digits"},
                "resources": {"gpus": i % 2},
                "backup": {"schedule": "@daily", "destination": {"claimName": "b"}},
            },
            "status": {
                "phase": "Running",
                "restarts": i % 3,
                "backup": {"lastSuccessTime": "2026-01-01T00:00:00Z"},
            },
        }
        for i in range(n)
    ]
    services = [
        {
            "apiVersion": "modelops.dev/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": f"svc-{i}", "namespace": NS, "uid": f"s{i}"},
            "spec": {"modelRef": {"model": "m", "version": 1}, "maxReplicas": 3},
            "status": {"phase": "Ready", "replicas": 2},
        }
        for i in range(n)
    ]
    return jobs, services


def timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def row(name: str, values: list[float], unit: str) -> str:
    return f"| {name} | {statistics.median(values):.2f} {unit} [{min(values):.2f}, {max(values):.2f}] |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    jobs, services = objects(args.objects)
    opts = alerts.Options()
    plans: list[float] = []
    scrapes: list[float] = []
    checks: list[float] = []
    size = 0
    metrics = OperatorMetrics()
    metrics.track_states(
        "TrainingJob", {(NS, j["metadata"]["name"]): [object_state("TrainingJob", j)] for j in jobs}
    )
    metrics.track_states(
        "InferenceService",
        {(NS, s["metadata"]["name"]): [object_state("InferenceService", s)] for s in services},
    )
    promtool = shutil.which("promtool")
    with tempfile.TemporaryDirectory() as tmp:
        rules_file = Path(tmp) / "rules.yaml"
        groups = [g for j in jobs for g in alerting.groups_for("TrainingJob", j, opts) or []] + [
            g for s in services for g in alerting.groups_for("InferenceService", s, opts) or []
        ]
        rules_file.write_text(alerts.rules_file(groups))
        for _ in range(args.runs):
            seconds = timed(
                lambda: (
                    [alerting.plan("TrainingJob", j, prometheus_operator=True, options=opts) for j in jobs]
                    + [
                        alerting.plan("InferenceService", s, prometheus_operator=True, options=opts)
                        for s in services
                    ]
                )
            )
            plans.append(seconds / (2 * args.objects) * 1e6)
            page = b""

            def render() -> None:
                nonlocal page
                page = generate_latest(metrics.registry)

            scrapes.append(timed(render) * 1000)
            size = len(page)
            if promtool:
                started = time.perf_counter()
                done = subprocess.run(
                    [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True
                )
                checks.append(time.perf_counter() - started)
                assert done.returncode == 0, done.stdout + done.stderr
    print(
        f"{2 * args.objects} objects ({args.objects} TrainingJobs, {args.objects} InferenceServices), {args.runs} runs"
    )
    print("| measure | median [min, max] |")
    print("|---|---|")
    print(row("plan per object (rules + rule object)", plans, "µs"))
    print(row(f"operator /metrics render ({size / 1024:.0f} KiB)", scrapes, "ms"))
    if checks:
        print(row(f"promtool check rules ({alerts.count_rules(groups)} rules)", checks, "s"))


if __name__ == "__main__":
    main()
