"""Benchmark of a TrainingJob's life on the local plane (not a test; results in docs/benchmarks.md).

    .venv/bin/python bench/trainingjob_bench.py [--runs 5]

Each run brings up `modelops local` in a fresh directory (API server, one node, controllers, operator),
then measures with the real kubectl what a user waits for:

- apply -> Running: from `kubectl apply` of a digits TrainingJob until its pod is Running (the pod's
  Ready condition; the worker is a fresh Python process importing torch);
- apply -> first step: until status.progress.step > 0 (the operator scrapes the worker's metrics every
  3 s, so this includes up to one scrape interval);
- kill -> steps again: `kubectl delete pod <job>-0` while training, until status.progress.step exceeds
  the step the new attempt resumed from (deletion, the operator noticing, recreating the pod, the
  worker starting, loading the checkpoint and training on).

Medians and ranges over --runs runs are printed as a Markdown table row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KUBECTL = str(REPO / ".tools" / "bin" / "kubectl")
JOB = REPO / "examples" / "quickstart" / "10-trainingjob.yaml"


def kubectl(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [KUBECTL, *args], env=env, input=stdin, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def poll(what: str, check: Any, timeout: float = 180.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(what)


def one_run(directory: Path) -> dict[str, float]:
    modelops = [sys.executable, "-m", "modelops"]
    subprocess.run([*modelops, "local", "up", "--dir", str(directory)], check=True, capture_output=True)
    env = {**os.environ, "KUBECONFIG": str(directory / "kubeconfig")}
    try:
        import yaml

        job = yaml.safe_load(JOB.read_text())
        job["metadata"]["name"] = "bench"
        job["spec"]["hyperparameters"]["epochs"] = 300
        job["spec"]["checkpoint"]["intervalSeconds"] = 5

        def status() -> dict[str, Any]:
            got: dict[str, Any] = json.loads(kubectl(env, "get", "trainingjob", "bench", "-o", "json"))
            return got.get("status") or {}

        def pod_ready() -> bool:
            try:
                pod = json.loads(kubectl(env, "get", "pod", "bench-0", "-o", "json"))
            except subprocess.CalledProcessError:
                return False
            conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
            return pod["status"].get("phase") == "Running" and conds.get("Ready") == "True"

        start = time.monotonic()
        kubectl(env, "apply", "-f", "-", stdin=json.dumps(job))
        poll("pod Running", pod_ready)
        running = time.monotonic() - start
        poll("first step", lambda: (status().get("progress") or {}).get("step", 0) > 0, every=0.2)
        first_step = time.monotonic() - start

        time.sleep(6)  # let a checkpoint land, as in a real run
        kill = time.monotonic()
        kubectl(env, "delete", "pod", "bench-0", "--wait=false")
        poll("restart counted", lambda: status().get("restarts") == 1, every=0.2)

        def resumed_step() -> int | None:
            try:
                log = kubectl(env, "logs", "bench-0")
            except subprocess.CalledProcessError:
                return None
            for line in log.splitlines():
                if "resumed from checkpoint step" in line:
                    return int(line.split("resumed from checkpoint step", 1)[1].split()[0])
            return None

        resumed = poll("resume", resumed_step, every=0.2)
        poll("steps again", lambda: (status().get("progress") or {}).get("step", 0) > resumed, every=0.2)
        recovered = time.monotonic() - kill
        kubectl(env, "delete", "trainingjob", "bench", "--wait=false")
        return {"apply_to_running": running, "apply_to_first_step": first_step, "kill_to_steps": recovered}
    finally:
        subprocess.run(
            [*modelops, "local", "down", "--dir", str(directory)], check=False, capture_output=True
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results: list[dict[str, float]] = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="tj-bench-") as tmp:
            result = one_run(Path(tmp) / "plane")
        results.append(result)
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.items()), flush=True)
    cells = []
    for key in ("apply_to_running", "apply_to_first_step", "kill_to_steps"):
        values = [r[key] for r in results]
        cells.append(f"{statistics.median(values):.1f} s [{min(values):.1f}, {max(values):.1f}]")
    print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
