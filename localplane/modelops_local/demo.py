"""`modelops demo`: what a newcomer sees first — the platform on the local plane, driven by real kubectl.

It brings up `modelops local` (API server, nodes, controllers and the operator), applies
`examples/quickstart/` in file-name order exactly as a user would, and shows what the operator made of
it. The demo grows with the platform: each kind's controller adds its part of the story (train ->
register -> serve) without changing how the demo is run. It ends with V2 predictions sent through the
InferenceService's Service and their accuracy on held-out digits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from modelops_local import cluster

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir", type=Path, default=Path(".modelops/demo"), help="state directory of the plane"
    )
    parser.add_argument("--down", action="store_true", help="stop the local plane when the demo ends")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the quickstart")
    parser.add_argument(
        "--console-port", type=int, default=8765, help="port of the web console it starts (0: no console)"
    )


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
    console = _start_console(directory, args.console_port)

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
    _say("what must not be lost: the job's backup policy became a CronJob, and its alert rules a ConfigMap")
    k("get", "cronjobs,configmaps", "-l", "app.kubernetes.io/managed-by=modelops", check=False)

    _say("serving the model: the InferenceService waits for its ModelVersion to be verified, then Ready")
    name = _quickstart_name("InferenceService")
    if not _wait_ready(k, f"inferenceservice/{name}", deadline):
        k("describe", "inferenceservice", name, check=False)
        print(f"demo: the InferenceService did not become Ready; see {directory}/logs/operator.log")
        return 1
    k("get", "modelversions,inferenceservices")
    _say("V2 predictions through the Service (Open Inference Protocol, as a KServe client sends them)")
    if not _predict(k, name, env):
        return 1

    _say("done")
    if console:
        print(f"the web console shows all of it: {console}")
    if args.down:
        _stop_console(directory)
        cluster.down(directory)
        print("local plane stopped")
    else:
        print(
            f"the plane keeps running: export KUBECONFIG={directory / 'kubeconfig'} and explore with kubectl;"
        )
        print(f"stop it with `modelops local down --dir {directory}`")
        if console:
            print(f"and the console with `kill $(cat {directory / 'console.pid'})`")
    return 0


def _start_console(directory: Path, port: int) -> str | None:
    """`modelops console` on the plane, in the background (it outlives the demo, as the plane does)."""
    if port <= 0:
        return None
    url = f"http://localhost:{port}/"
    try:
        with urllib.request.urlopen(url + "healthz", timeout=2):
            print(f"the web console already runs at {url}")
            return url
    except OSError:
        pass
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    with (directory / "logs" / "console.log").open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelops",
                "console",
                "--kubeconfig",
                str(directory / "kubeconfig"),
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (directory / "console.pid").write_text(str(process.pid))
    for _ in range(50):
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2):
                _say(f"the web console (read-only) follows along at {url}")
                return url
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.2)
    print(f"demo: the web console did not start; see {directory}/logs/console.log")
    return None


def _stop_console(directory: Path) -> None:
    pid_file = directory / "console.pid"
    if pid_file.exists():
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        pid_file.unlink()


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


def _wait_ready(k: Any, what: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        obj = json.loads(k("get", what, "-o", "json", capture=True))
        conditions = (obj.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return True
        time.sleep(1)
    return False


# The held-out digits exactly as the quickstart TrainingJob split them (its seed and validationSplit),
# computed by the worker's own data code in a child process: the operator package never imports it.
_HELD_OUT = """
import json, sys
from modelops.api.trainingjob import DatasetSpec
from modelops_worker import data
s = data.split(data.load(DatasetSpec(builtin="digits")), float(sys.argv[1]), int(sys.argv[2]))
print(json.dumps({"x": s.x_val.tolist(), "y": s.y_val.tolist()}))
"""


def _held_out() -> dict[str, list[Any]]:
    job = yaml.safe_load((QUICKSTART / "10-trainingjob.yaml").read_text())
    hp = job["spec"].get("hyperparameters") or {}
    argv = [str(hp.get("validationSplit", 0.2)), str(hp.get("seed", 42))]
    done = subprocess.run(
        [sys.executable, "-c", _HELD_OUT, *argv], capture_output=True, text=True, check=True
    )
    loaded: dict[str, list[Any]] = json.loads(done.stdout)
    return loaded


def _infer(url: str, rows: list[list[float]], request_id: str) -> dict[str, Any]:
    body = {
        "id": request_id,
        "inputs": [{"name": "input", "shape": [len(rows), 64], "datatype": "FP32", "data": rows}],
    }
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def _sketch(row: list[float]) -> list[str]:
    """An 8x8 digit (pixel values 0..16) as four lines of text."""
    shades = " .:-=+*#%@"
    lines = []
    for r in range(0, 8, 2):
        lines.append(
            "".join(shades[min(9, int((row[r * 8 + c] + row[r * 8 + 8 + c]) / 3.3))] * 2 for c in range(8))
        )
    return lines


def _quickstart_name(kind: str) -> str:
    for manifest in sorted(QUICKSTART.glob("*.yaml")):
        for doc in yaml.safe_load_all(manifest.read_text()):
            if doc and doc.get("kind") == kind:
                return str(doc["metadata"]["name"])
    raise SystemExit(f"demo: no {kind} in {QUICKSTART}")


@contextlib.contextmanager
def _port_forward(env: dict[str, str], service: str, port: int) -> Iterator[str]:
    """`kubectl port-forward svc/<service> :<port>` while the block runs; yields 127.0.0.1:<local port>."""
    proc = subprocess.Popen(
        [_kubectl(), "port-forward", f"svc/{service}", f":{port}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Forwarding from 127.0.0.1:40123 -> 8080"
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if found is None:
            raise OSError(
                f"kubectl port-forward svc/{service}: {line.strip()} {proc.communicate()[1].strip()}"
            )
        yield f"127.0.0.1:{found.group(1)}"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def _predict(k: Any, name: str, env: dict[str, str]) -> bool:
    """Send held-out digits to the Service as a V2 infer request; print some and the accuracy of all."""
    isvc = json.loads(k("get", "inferenceservice", name, "-o", "json", capture=True))
    service = json.loads(k("get", "service", name, "-o", "json", capture=True))
    # The local plane's proxy serves the Service on its cluster IP, reachable from this machine.
    url = f"http://{service['spec']['clusterIP']}:80/v2/models/{name}/infer"
    print(f"   status.url {isvc['status']['url']}  (here: {url})")
    try:
        held = _held_out()
        try:
            answer = _infer(url, held["x"], "demo")
        except ConnectionRefusedError:
            # Service port 80 needs root (or net.ipv4.ip_unprivileged_port_start <= 80) on this machine;
            # the proxy logged why. Reach the Service as on a cluster: through a port-forward.
            print(
                f"   the local plane cannot listen on {service['spec']['clusterIP']}:80 without root; "
                f"$ kubectl port-forward svc/{name} :80"
            )
            with _port_forward(env, name, 80) as local:
                url = f"http://{local}/v2/models/{name}/infer"
                answer = _infer(url, held["x"], "demo")
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        print(f"demo: the infer request failed: {exc}")
        return False
    predicted = next(o for o in answer["outputs"] if o["name"] == "predicted_class")["data"]
    print(
        f"   POST {url}: {len(held['y'])} digits in one request, model_version {answer.get('model_version')}"
    )
    sketches = [_sketch(row) for row in held["x"][:6]]
    for line in range(4):
        print("   " + "   ".join(s[line] for s in sketches))
    print(
        "   "
        + "   ".join(f"true {y} -> {p}".ljust(16) for y, p in zip(held["y"][:6], predicted[:6], strict=True))
    )
    hits = sum(int(p == y) for p, y in zip(predicted, held["y"], strict=True))
    print(f"   accuracy on {len(held['y'])} held-out digits through the Service: {hits / len(held['y']):.4f}")
    return True


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
