"""Benchmark of the web console's pages with 200 objects on the local plane (not a test).

    .venv/bin/python bench/console_bench.py [--objects 200] [--runs 8]

Brings up `modelops local up --no-operator` (the objects' statuses are written here, so no operator
or pod competes for the CPU), creates --objects modelops objects with the real kubectl (40% TrainingJobs
each with a full 200-point status.history, 40% ModelVersions of one model, 20% InferenceServices with
rollout histories and canary analyses), starts `modelops console`, and loads each main page --runs
times in Debian's Chromium (Playwright). From the browser's own Navigation Timing and Paint Timing:

- server: responseStart - requestStart (the console's API calls and rendering);
- FCP: first-contentful-paint since navigation start (what "first render" means to a user);
- DOM ready: domContentLoadedEventEnd.

The modelops objects come from the console's informers (list once, then watch), as in use; pods,
events and logs are fetched per view, and each run waits out their 1.5 s cache so those calls are
made afresh. Medians and [min, max] are printed as Markdown table rows for docs/benchmarks.md.
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
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "console"))
from chromium import CHROMIUM, chromium_args  # noqa: E402

KUBECTL = REPO / ".tools" / "bin" / "kubectl"
NS = "default"
STAMP = "2026-12-07T10:00:00Z"


def objects(n: int) -> list[dict[str, Any]]:
    """(manifest, status) pairs as one list of objects with their status attached."""
    jobs, versions = int(n * 0.4), int(n * 0.4)
    services = n - jobs - versions
    out: list[dict[str, Any]] = []
    for i in range(jobs):
        history = [
            {
                "step": s * 10,
                "epoch": 1 + s // 20,
                "loss": round(2.0 / (1 + s), 5),
                "time": STAMP,
                "metrics": {"val_loss": round(2.1 / (1 + s), 5), "val_accuracy": round(1 - 1 / (2 + s), 5)},
                **({"attempt": 1} if s >= 120 else {}),
            }
            for s in range(200)
        ]
        out.append(
            {
                "apiVersion": "modelops.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {"name": f"job-{i}"},
                "spec": {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}},
                "status": {
                    "phase": "Running",
                    "restarts": 1,
                    "history": history,
                    "progress": {
                        "step": 1990,
                        "totalSteps": 4000,
                        "percent": 49,
                        "loss": 0.01,
                        "epoch": 10,
                        "totalEpochs": 20,
                        "etaSeconds": 300,
                    },
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "False",
                            "reason": "Running",
                            "message": "1 pod(s) training.",
                            "lastTransitionTime": STAMP,
                        }
                    ],
                },
            }
        )
    for i in range(versions):
        out.append(
            {
                "apiVersion": "modelops.dev/v1alpha1",
                "kind": "ModelVersion",
                "metadata": {"name": f"bench-{i + 1}"},
                "spec": {"model": "bench", "version": i + 1, "source": {"uri": f"pvc://models/v{i + 1}.pt"}},
                "status": {
                    "phase": "Ready",
                    "version": i + 1,
                    "metrics": {"accuracy": 0.9 + i / 1000, "loss": 0.3 - i / 1000, "f1": 0.89},
                    "lineage": {"datasetDigest": "ab" * 32, "trainingJob": f"job-{i}"},
                    "artifact": {"sha256": "cd" * 32, "sizeBytes": 100000, "format": "torchscript"},
                    "promotionHistory": [{"alias": "champion", "action": "Granted", "time": STAMP}],
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "Verified",
                            "message": "ok",
                            "lastTransitionTime": STAMP,
                        }
                    ],
                },
            }
        )
    for i in range(services):
        analyses = [
            {
                "lastCheckTime": STAMP,
                "result": "Failed",
                "requests": 30,
                "successRate": 0.5,
                "message": "success rate 0.5 below minSuccessRate 0.99",
                "trafficPercent": 10,
            }
        ] * 2
        out.append(
            {
                "apiVersion": "modelops.dev/v1alpha1",
                "kind": "InferenceService",
                "metadata": {"name": f"svc-{i}"},
                "spec": {"modelRef": {"model": "bench", "version": 1}},
                "status": {
                    "phase": "Ready",
                    "trafficSummary": "100/0",
                    "traffic": {"stable": 100, "canary": 0},
                    "stable": {"modelVersion": "bench-1", "version": 1, "readyReplicas": 1},
                    "rolloutHistory": [
                        {
                            "modelVersion": f"bench-{k + 1}",
                            "startTime": STAMP,
                            "endTime": STAMP,
                            "outcome": "RolledBack" if k % 2 else "Deployed",
                            "reason": "bench",
                            "analyses": analyses if k % 2 else [],
                        }
                        for k in range(20)
                    ],
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "Serving",
                            "message": "ok",
                            "lastTransitionTime": STAMP,
                        }
                    ],
                },
            }
        )
    return out


def populate(env: dict[str, str], items: list[dict[str, Any]]) -> None:
    bare = [{k: v for k, v in o.items() if k != "status"} for o in items]
    subprocess.run(
        [str(KUBECTL), "apply", "-f", "-"],
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": bare}),
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    for o in items:
        plural = o["kind"].lower() + "s"
        subprocess.run(
            [
                str(KUBECTL),
                "patch",
                plural,
                o["metadata"]["name"],
                "--subresource=status",
                "--type=merge",
                "-p",
                json.dumps({"status": o["status"]}),
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )


def measure(page: Any, url: str) -> dict[str, float]:
    page.goto(url, wait_until="load")
    # The paint entry can arrive after "load" on a busy machine: wait for it (at most 5 s).
    timing = page.evaluate(
        """() => new Promise(resolve => {
          const done = () => {
            const n = performance.getEntriesByType('navigation')[0];
            const fcp = performance.getEntriesByName('first-contentful-paint')[0];
            resolve({server: n.responseStart - n.requestStart, dom: n.domContentLoadedEventEnd,
                     fcp: fcp ? fcp.startTime : -1});
          };
          if (performance.getEntriesByName('first-contentful-paint').length) return done();
          new PerformanceObserver(done).observe({type: 'paint', buffered: true});
          setTimeout(done, 5000);
        })"""
    )
    return {k: float(v) for k, v in timing.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: run scripts/bootstrap.sh", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp:
        plane = Path(tmp) / "plane"
        env = {**os.environ, "KUBECONFIG": str(plane / "kubeconfig")}
        modelops = [sys.executable, "-m", "modelops"]
        subprocess.run(
            [*modelops, "local", "up", "--no-operator", "--dir", str(plane)],
            check=True,
            env=env,
            capture_output=True,
            timeout=180,
        )
        console = None
        try:
            subprocess.run(
                [str(KUBECTL), "apply", "-f", str(REPO / "crds")],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
            started = time.monotonic()
            populate(env, objects(args.objects))
            print(f"created {args.objects} objects with statuses in {time.monotonic() - started:.0f}s")
            port = 18700 + os.getpid() % 200
            console = subprocess.Popen(
                [*modelops, "console", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    urllib.request.urlopen(base + "/healthz", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.2)
            pages = {
                "overview (all 200 objects)": "/",
                "TrainingJob (200-point history)": f"/ns/{NS}/trainingjobs/job-0",
                f"model ({int(args.objects * 0.4)} versions, newest 10 side by side)": f"/ns/{NS}/models/bench",
                f"model (all {int(args.objects * 0.4)} versions side by side)": f"/ns/{NS}/models/bench?v=all",
                "InferenceService (20 rollouts)": f"/ns/{NS}/inferenceservices/svc-0",
                "backups": "/backups",
            }
            print(f"load average before: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
            print("| page | server ms | first contentful paint ms | DOM ready ms |")
            print("|---|---|---|---|")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args())
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.route("**/stream*", lambda route: route.abort())  # measure the page, not its stream
                for label, path in pages.items():
                    measure(page, base + path)  # warm the browser's static cache
                    runs = []
                    for _ in range(args.runs):
                        time.sleep(1.6)  # past the console's cache: every load asks the API server
                        runs.append(measure(page, base + path))

                    def cell(key: str, runs: list[dict[str, float]] = runs) -> str:
                        values = [r[key] for r in runs if r[key] >= 0]
                        if not values:
                            return "not reported"
                        missing = (
                            f" ({len(runs) - len(values)} not reported)" if len(values) < len(runs) else ""
                        )
                        return (
                            f"{statistics.median(values):.0f} [{min(values):.0f}, {max(values):.0f}]{missing}"
                        )

                    print(f"| {label} | {cell('server')} | {cell('fcp')} | {cell('dom')} |", flush=True)
                browser.close()
            print(f"load average after: {os.getloadavg()[0]:.1f}")
        finally:
            if console is not None:
                console.terminate()
                console.wait(timeout=15)
            subprocess.run(
                [*modelops, "local", "down", "--dir", str(plane)], env=env, capture_output=True, timeout=120
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
