"""`modelops demo`: what a newcomer sees first — the platform on the local plane, driven by real kubectl.

It brings up `modelops local` (API server, nodes, controllers and the operator), applies
`examples/quickstart/` in file-name order exactly as a user would, and shows what the operator made of
it. The demo grows with the platform: each kind's controller adds its part of the story (train ->
register -> serve) without changing how the demo is run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from modelops.local import cluster

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir", type=Path, default=Path(".modelops/demo"), help="state directory of the plane"
    )
    parser.add_argument("--down", action="store_true", help="stop the local plane when the demo ends")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the quickstart")


def _kubectl() -> str:
    found = shutil.which("kubectl") or str(REPO / ".tools" / "bin" / "kubectl")
    if not Path(found).exists():
        raise SystemExit("kubectl not found: run `make demo` (it installs kubectl into .tools/bin)")
    return found


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    directory: Path = args.dir.resolve()
    kubectl = _kubectl()
    env = {**os.environ, "KUBECONFIG": str(directory / "kubeconfig")}

    def k(*argv: str, check: bool = True, capture: bool = False) -> str:
        if not capture:
            print(f"$ kubectl {' '.join(argv)}", flush=True)
        done = subprocess.run([kubectl, *argv], env=env, check=check, text=True, capture_output=capture)
        if capture:
            return done.stdout
        return ""

    _say(f"starting the local plane in {directory} (no cluster, no containers)")
    try:
        cluster.up(directory, cluster.PlaneConfig(nodes=1, gpus=0, operator=True), timeout=90)
    except cluster.PlaneError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    k("get", "nodes", "-o", "wide")

    _say(f"applying {QUICKSTART.relative_to(REPO)}/ with kubectl, as a user would")
    for manifest in sorted(QUICKSTART.glob("*.yaml")):
        k("apply", "-f", str(manifest))

    _say("waiting for the operator to observe every object")
    deadline = time.monotonic() + args.timeout
    pending = _unobserved(k)
    while pending and time.monotonic() < deadline:
        time.sleep(1)
        pending = _unobserved(k)
    k("get", "modelops", "-o", "wide")
    for item in json.loads(k("get", "modelops", "-o", "json", capture=True))["items"]:
        _print_conditions(item)
    if pending:
        print(
            f"demo: the operator did not observe {', '.join(pending)} in time; see {directory}/logs/operator.log"
        )
        return 1

    _say("following the TrainingJob: real PyTorch training on scikit-learn's digits, as local processes")
    outcome = _follow_training(k, deadline)
    k("get", "trainingjobs,modelversions")
    labels = "modelops.dev/trainingjob"
    _say("the training pod's log stays readable after it finished")
    k("logs", "-l", labels, "--tail", "4", check=False)
    if outcome != "Succeeded":
        print(
            f"demo: the TrainingJob ended {outcome}; see `kubectl describe trainingjob` and {directory}/logs/"
        )
        return 1

    _say("done")
    if args.down:
        cluster.down(directory)
        print("local plane stopped")
    else:
        print(
            f"the plane keeps running: export KUBECONFIG={directory / 'kubeconfig'} and explore with kubectl;"
        )
        print(f"stop it with `modelops local down --dir {directory}`")
    return 0


def _follow_training(k: Any, deadline: float) -> str:
    """Print the TrainingJobs' progress as it changes, until they finish; return the last phase."""
    shown: dict[str, str] = {}
    phases: dict[str, str] = {}
    while time.monotonic() < deadline:
        for job in json.loads(k("get", "trainingjobs", "-o", "json", capture=True))["items"]:
            name = job["metadata"]["name"]
            status = job.get("status", {})
            progress = status.get("progress") or {}
            metrics = status.get("metrics") or {}
            phases[name] = status.get("phase", "Pending")
            line = f"{name}: {phases[name]}"
            if progress.get("percent") is not None:
                line += (
                    f", {progress['percent']}% (epoch {progress.get('epoch')}/{progress.get('totalEpochs')})"
                )
            if progress.get("loss") is not None and progress.get("step"):
                line += f", loss {progress['loss']:.4f}"
            if metrics.get("accuracy") is not None:
                line += f", validation accuracy {metrics['accuracy']:.3f}"
            if status.get("modelVersion"):
                line += f", registered as ModelVersion {status['modelVersion']}"
            if shown.get(name) != line:
                print(f"   {line}", flush=True)
                shown[name] = line
        if phases and all(p in ("Succeeded", "Failed") for p in phases.values()):
            break
        time.sleep(1)
    return "Succeeded" if phases and all(p == "Succeeded" for p in phases.values()) else "not Succeeded"


def _unobserved(k: Any) -> list[str]:
    items = json.loads(k("get", "modelops", "-o", "json", capture=True))["items"]
    return [
        f"{item['kind']}/{item['metadata']['name']}"
        for item in items
        if item.get("status", {}).get("observedGeneration") != item["metadata"].get("generation")
    ]


def _print_conditions(item: dict[str, Any]) -> None:
    status = item.get("status", {})
    print(f"{item['kind']}/{item['metadata']['name']}: phase {status.get('phase', '-')}")
    for cond in status.get("conditions", []):
        print(f"  {cond['type']:12} {cond['status']:7} {cond.get('reason', '')}: {cond.get('message', '')}")
