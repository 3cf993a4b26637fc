"""Cold start of a serving pod whose 500 MB artifact comes from the model store (not a test).

    .venv/bin/python bench/modelstore_bench.py [--mb 500] [--runs 3] [--store pvc|s3]

On a local plane of its own (one node; the operator's embedded default store, or with `--store s3`
a bucket of a real S3-compatible server on loopback, moto from `tests/storage/s3server.py`), with a real
TorchScript MLP of about --mb megabytes (`bench/verify_bench.make_artifact`, the worker's own export):

1. the artifact goes onto a claim and is registered; the time until the ModelVersion is Ready is
   verification plus publishing into the store (one copy, hashed while it streams);
2. side by side, alternating, --runs times each:
   - **store**: a serving pod of the InferenceService (init container `modelops-worker fetch` copies the
     object into the pod's emptyDir and checks its sha256, then the server starts);
   - **claim (anchor)**: the very same serving pod as the builders made it before the store, the
     source claim mounted read-only and no fetch (a Deployment applied here, not by the operator);
   each measured from the moment the pod is deleted (its replacement is created at once) until the
   replacement is Ready, by polling every 0.2 s;
3. the fetch's own time and rate from the init container's termination message, next to a bare
   streamed copy + sha256 of the same object in this process (the anchor for the rate): a file copy
   for the claim store, a plain streamed GET with the same library (`modelops_worker.storage`) for S3.

Prints Markdown table rows for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

KUBECTL = str(REPO / ".tools" / "bin" / "kubectl")
RESOURCES = {"cpu": "1", "memory": "3Gi"}


class Plane:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.env = {**os.environ, "KUBECONFIG": str(directory / "kubeconfig")}

    def modelops(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "modelops", *args], check=True, env=self.env, timeout=300)

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120) -> str:
        done = subprocess.run(
            [KUBECTL, *args], input=input, capture_output=True, text=True, timeout=timeout, env=self.env
        )
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr}")
        return done.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(obj))


def ready_pods(plane: Plane, selector: str) -> list[dict[str, Any]]:
    items = plane.get("pods", "-l", selector)["items"]
    return [
        p
        for p in items
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", [])
        )
    ]


def wait_ready(plane: Plane, selector: str, besides: set[str], timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pod in ready_pods(plane, selector):
            if pod["metadata"]["name"] not in besides:
                return pod
        time.sleep(0.2)
    raise TimeoutError(f"no new ready pod for {selector} within {timeout:.0f}s")


def cold_start(plane: Plane, selector: str) -> tuple[float, dict[str, Any]]:
    """Delete the one pod of `selector`; seconds until its replacement is Ready, and that pod."""
    (old,) = ready_pods(plane, selector)
    name = old["metadata"]["name"]
    start = time.monotonic()
    plane.kubectl("delete", "pod", name, "--wait=false")
    pod = wait_ready(plane, selector, {name})
    return time.monotonic() - start, pod


def bare_copy_and_hash(path: Path, dest: Path) -> float:
    """Streamed copy + sha256 in 1 MiB chunks: what a fetch cannot beat. Bytes per second."""
    start = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as src, dest.open("wb", buffering=0) as out:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
        os.fsync(out.fileno())
    seconds = time.perf_counter() - start
    dest.unlink()
    return path.stat().st_size / seconds


def bare_get_and_hash(store: str, key: str, credentials_dir: str) -> float:
    """A plain streamed GET of the object with the storage layer, hashed: bytes per second."""
    from modelops_worker import storage

    location = storage.open_location(store, credentials_dir)
    start = time.perf_counter()
    digest = hashlib.sha256()
    size = 0
    for view in location.stream(key):
        digest.update(view)
        size += len(view)
    return size / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store", choices=("pvc", "s3"), default="pvc")
    args = parser.parse_args()
    s3 = None
    if args.store == "s3":
        sys.path.insert(0, str(REPO / "tests" / "storage"))
        from s3server import S3Server

        s3 = S3Server.start()
    import verify_bench

    from modelops.api.inferenceservice import InferenceServiceSpec
    from modelops.builders import inferenceservice as b

    with tempfile.TemporaryDirectory(prefix="modelstore-bench-") as tmp:
        plane = Plane(Path(tmp) / "plane")
        artifact = verify_bench.make_artifact(Path(tmp) / "export", args.mb)
        size = artifact.stat().st_size
        if s3 is not None:
            plane.env["MODELOPS_MODEL_STORE_URI"] = f"s3://{s3.bucket}/bench"
            plane.env["MODELOPS_MODEL_STORE_CREDENTIALS_SECRET"] = "store-creds"
        plane.modelops("local", "up", "--dir", str(plane.dir))
        try:
            if s3 is not None:
                data = {k: base64.b64encode(v.encode()).decode() for k, v in s3.secret_data(s3.admin).items()}
                plane.apply(
                    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "store-creds"}, "data": data}
                )
            plane.apply(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "uploads"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
                }
            )
            plane.kubectl("wait", "pvc/uploads", "--for=jsonpath={.status.phase}=Bound", "--timeout=60s")
            shutil.copyfile(artifact, plane.dir / "volumes" / "default" / "uploads" / "model.pt")
            start = time.monotonic()
            plane.apply(
                {
                    "apiVersion": "modelops.dev/v1alpha1",
                    "kind": "ModelVersion",
                    "metadata": {"name": "big-1"},
                    "spec": {"model": "big", "version": 1, "source": {"uri": "pvc://uploads/model.pt"}},
                }
            )
            plane.kubectl(
                "wait", "modelversion/big-1", "--for=condition=Ready", "--timeout=900s", timeout=910
            )
            registered = time.monotonic() - start
            mv = plane.get("modelversion", "big-1")
            sha = mv["status"]["artifact"]["sha256"]
            spec_doc = {"modelRef": {"model": "big", "version": 1}, "minReplicas": 1, "maxReplicas": 1}
            plane.apply(
                {
                    "apiVersion": "modelops.dev/v1alpha1",
                    "kind": "InferenceService",
                    "metadata": {"name": "big"},
                    "spec": {**spec_doc, "resources": RESOURCES},
                }
            )
            store_sel = "modelops.dev/inferenceservice=big"
            wait_ready(plane, store_sel, set())
            # The anchor: the pre-store pod (source claim mounted, no fetch), same builders, same resources.
            spec = InferenceServiceSpec.model_validate({**spec_doc, "resources": RESOURCES})
            served = b.Served("big-1", 1, sha, "uploads", "model.pt")
            anchor = b.deployment("anchor", "default", "none", spec, served, b.STABLE, replicas=1)
            anchor["metadata"].pop("ownerReferences")
            plane.apply(anchor)
            anchor_sel = "modelops.dev/inferenceservice=anchor"
            wait_ready(plane, anchor_sel, set())

            store_times: list[float] = []
            anchor_times: list[float] = []
            fetch_seconds: list[float] = []
            fetch_rates: list[float] = []
            for _ in range(args.runs):
                seconds, pod = cold_start(plane, store_sel)
                store_times.append(seconds)
                done = pod["status"]["initContainerStatuses"][0]["state"]["terminated"]
                result = json.loads(done["message"])
                fetch_seconds.append(float(result["seconds"]))
                fetch_rates.append(float(result["bytesPerSecond"]))
                anchor_times.append(cold_start(plane, anchor_sel)[0])
            if s3 is None:
                stored = plane.dir / "volumes" / "default" / "modelops-model-store" / "sha256" / sha
                bare = [bare_copy_and_hash(stored, Path(tmp) / "copy") for _ in range(args.runs)]
            else:
                creds = str(s3.write_secret_dir(Path(tmp) / "creds", s3.admin))
                bare = [
                    bare_get_and_hash(f"s3://{s3.bucket}/bench", f"sha256/{sha}", creds)
                    for _ in range(args.runs)
                ]
        finally:
            if s3 is not None:
                s3.stop()
            subprocess.run(
                [sys.executable, "-m", "modelops", "local", "down", "--dir", str(plane.dir)],
                env=plane.env,
                check=False,
                timeout=300,
            )

    def span(values: list[float], unit: float = 1.0, fmt: str = "{:.1f}") -> str:
        scaled = [v / unit for v in values]
        return f"{fmt.format(statistics.median(scaled))} ({fmt.format(min(scaled))} to {fmt.format(max(scaled))})"

    print(
        f"artifact: {size / 1e6:.0f} MB TorchScript MLP; store {args.store}; {args.runs} cold starts each, alternating"
    )
    print(f"registered (verify + publish into the store): {registered:.1f} s")
    print("| measure | median (range) |")
    print("|---|---|")
    print(f"| cold start, from the store (delete -> replacement Ready) | {span(store_times)} s |")
    print(f"| cold start, claim mounted (anchor, pre-store pod) | {span(anchor_times)} s |")
    print(f"| of which fetch (init container: copy + sha256) | {span(fetch_seconds)} s |")
    print(f"| fetch rate | {span(fetch_rates, 1e6, '{:.0f}')} MB/s |")
    anchor = "streamed copy" if s3 is None else "streamed GET (same library)"
    print(f"| bare {anchor} + sha256, same object, this process | {span(bare, 1e6, '{:.0f}')} MB/s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
