"""Fetch + verify of a large object from a local S3 server, side by side with its two anchors, in one run.

Issue 14's target: the worker's fetch + verify (`modelops_worker.storage`: streamed GET into a temp
file, sha256 while streaming, fsync, verify, atomic rename) runs at >= 80 % of the slower of

  (a) a plain streamed GET of the same object with the same library (obstore), bytes discarded, and
  (b) sha256 of the same bytes already in memory (hashlib),

and the worker process's peak RSS stays under 200 MB while doing it. (c), a plain GET written to disk
with fsync but not hashed, is printed for reference: it separates the cost of landing the bytes
durably in the pod's volume from the cost of verifying them.

The server is the tests' moto server (tests/storage/s3server.py, IAM auth on, its own venv under
.cache/), on loopback. Each measurement is a fresh process, so its peak RSS (read by itself,
VmHWM) is its own; (a) and the fetch run alternately, `--rounds` times, and the best of each is reported (the
machine is shared). Prints a Markdown table for docs/benchmarks.md.

    python bench/storage_bench.py            # 1 GiB object, 3 rounds
    python bench/storage_bench.py --size-mb 256 --rounds 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "storage"))

from s3server import S3Server  # noqa: E402

KEY = "bench/object.bin"

_PLAIN_GET = r"""
import json, sys, time
from obstore.store import S3Store
import obstore
endpoint, bucket, key, ak, sk = sys.argv[1:6]
store = S3Store(bucket, config={"access_key_id": ak, "secret_access_key": sk, "endpoint": endpoint,
    "region": "us-east-1", "virtual_hosted_style_request": False}, client_options={"allow_http": True})
t = time.perf_counter()
n = 0
for chunk in obstore.get(store, key).stream(min_chunk_size=8 << 20):
    n += len(memoryview(chunk))
seconds = time.perf_counter() - t
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "bytes": n, "peak_kib": hwm}))
"""

_GET_TO_DISK = r"""
import json, os, sys, time
from obstore.store import S3Store
import obstore
endpoint, bucket, key, ak, sk, dest = sys.argv[1:7]
store = S3Store(bucket, config={"access_key_id": ak, "secret_access_key": sk, "endpoint": endpoint,
    "region": "us-east-1", "virtual_hosted_style_request": False}, client_options={"allow_http": True})
t = time.perf_counter()
n = 0
with open(dest, "wb", buffering=0) as fh:
    for chunk in obstore.get(store, key).stream(min_chunk_size=8 << 20):
        n += fh.write(memoryview(chunk))
    os.fsync(fh.fileno())
seconds = time.perf_counter() - t
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "bytes": n, "peak_kib": hwm}))
"""

_FETCH = r"""
import json, sys, time
from modelops_worker.storage import open_location
uri, creds, dest, sha, durable = sys.argv[1:6]
t = time.perf_counter()
digest, size = open_location(uri, creds).download(dest, sha, durable=durable == "1")
seconds = time.perf_counter() - t
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "bytes": size, "sha256": digest, "peak_kib": hwm}))
"""


def _child(code: str, *args: str) -> tuple[dict[str, float], float]:
    """Run `code` in a fresh python; its JSON line and its own peak RSS in MiB.

    The peak is the child's VmHWM read by itself at the end (after exec it has its own address space;
    getrusage's ru_maxrss would carry the parent's high-water mark over the fork).
    """
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result, result["peak_kib"] / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mb << 20
    server = S3Server.start()
    try:
        with tempfile.TemporaryDirectory(dir=REPO / ".cache") as tmp_dir:
            tmp = Path(tmp_dir)
            src = tmp / "object.bin"
            block = os.urandom(16 << 20)
            h = hashlib.sha256()
            with src.open("wb") as fh:
                for _ in range(size // len(block)):
                    fh.write(block)
                    h.update(block)
            digest = h.hexdigest()
            creds = server.write_secret_dir(tmp / "creds")
            uri = f"s3://{server.bucket}/{KEY}"
            from modelops_worker.storage import open_location

            t = time.perf_counter()
            open_location(uri, creds).upload(src)
            upload_s = time.perf_counter() - t

            # (b) sha256 of the same bytes in memory (read first, then timed).
            data = src.read_bytes()
            t = time.perf_counter()
            assert hashlib.sha256(data).hexdigest() == digest
            hash_s = time.perf_counter() - t
            del data

            plain: list[float] = []
            to_disk: list[float] = []
            fetch: list[float] = []
            durable: list[float] = []
            plain_rss: list[float] = []
            fetch_rss: list[float] = []
            for _ in range(args.rounds):
                res, rss = _child(
                    _PLAIN_GET,
                    server.endpoint,
                    server.bucket,
                    KEY,
                    server.admin.access_key_id,
                    server.admin.secret_access_key,
                )
                assert res["bytes"] == size
                plain.append(res["seconds"])
                plain_rss.append(rss)
                dest = tmp / "fetched.bin"
                res, _ = _child(
                    _GET_TO_DISK,
                    server.endpoint,
                    server.bucket,
                    KEY,
                    server.admin.access_key_id,
                    server.admin.secret_access_key,
                    str(dest),
                )
                to_disk.append(res["seconds"])
                dest.unlink()
                # What serving and verification pods do: into their own emptyDir, no fsync.
                res, rss = _child(_FETCH, uri, str(creds), str(dest), digest, "0")
                assert res["sha256"] == digest and res["bytes"] == size
                fetch.append(res["seconds"])
                fetch_rss.append(rss)
                dest.unlink()
                # Durable (fsync of file and directory): the dataset cache on a claim.
                res, rss = _child(_FETCH, uri, str(creds), str(dest), digest, "1")
                assert res["sha256"] == digest and res["bytes"] == size
                durable.append(res["seconds"])
                fetch_rss.append(rss)
                dest.unlink()
    finally:
        server.stop()

    mb = size / (1 << 20)
    best_plain, best_fetch = min(plain), min(fetch)
    slower_anchor = max(best_plain, hash_s)
    ratio = slower_anchor / best_fetch
    print(f"object: {mb:.0f} MiB on moto (loopback), upload {upload_s:.1f} s ({mb / upload_s:.0f} MiB/s)")
    print("| what | best of runs | MiB/s | peak RSS |")
    print("|---|---|---|---|")
    print(
        f"| (a) plain streamed GET, obstore, bytes discarded | {best_plain:.2f} s | {mb / best_plain:.0f} | "
        f"{min(plain_rss):.0f} MiB |"
    )
    print(f"| (b) sha256 of the bytes in memory | {hash_s:.2f} s | {mb / hash_s:.0f} | - |")
    print(
        f"| (c) for reference: plain streamed GET written to disk + fsync, no hash | {min(to_disk):.2f} s | "
        f"{mb / min(to_disk):.0f} | - |"
    )
    print(
        f"| worker fetch + verify into a pod volume (temp file, sha256, rename; what serving and "
        f"verification pods do) | {best_fetch:.2f} s | {mb / best_fetch:.0f} | {max(fetch_rss):.0f} MiB |"
    )
    print(
        f"| worker fetch + verify, durable (+ fsync of file and directory; the dataset cache on a claim) | "
        f"{min(durable):.2f} s | {mb / min(durable):.0f} | - |"
    )
    print(
        f"fetch+verify speed relative to the slower anchor: {100 * ratio:.0f} % (target >= 80 %); "
        f"worker peak RSS {max(fetch_rss):.0f} MiB (target < 200 MiB)"
    )
    print(
        f"all runs: plain {[round(x, 2) for x in plain]}, to disk {[round(x, 2) for x in to_disk]}, "
        f"fetch {[round(x, 2) for x in fetch]}, durable {[round(x, 2) for x in durable]}"
    )
    print(f"load average at the end (1, 5, 15 min; {os.cpu_count()} CPUs): {os.getloadavg()}")


if __name__ == "__main__":
    main()
