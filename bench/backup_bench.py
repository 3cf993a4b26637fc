"""Benchmark of `modelops-worker backup` and `restore` on real files (not a test).

    .venv/bin/python bench/backup_bench.py [--mb 200] [--files 2] [--runs 3]

Writes --files random files of --mb/--files MB each, then times (wall clock) a backup into a fresh destination (copy + sha256 + fsync + manifest), a second backup
with retention `--keep-last 1` pruning the first, and a verified restore of the newest (verify, copy,
verify again, move into place), each as the real console script in a subprocess. Medians and ranges
over --runs runs are printed as Markdown table rows for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = [sys.executable, "-m", "modelops_worker.cli"]


def timed(args: list[str], env: dict[str, str]) -> float:
    """Seconds of one worker command."""
    started = time.perf_counter()
    subprocess.run([*WORKER, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mb", type=int, default=200)
    p.add_argument("--files", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    rows: dict[str, list[float]] = {"backup": [], "backup + prune": [], "restore (verified)": []}
    for _ in range(a.runs):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            src = root / "src"
            for i in range(a.files):
                (src / f"ckpt-{i}").mkdir(parents=True)
                (src / f"ckpt-{i}" / "state.pt").write_bytes(os.urandom(a.mb * 1_000_000 // a.files))
            env = {**os.environ, "MODELOPS_TERMINATION_LOG": str(root / "term")}
            base = ["backup", "--source", str(src), "--dest", str(root / "dest"), "--keep-last", "1"]
            t = timed(base, env)
            rows["backup"].append(t)
            time.sleep(1.1)  # backups are named by the second
            t = timed(base, env)
            rows["backup + prune"].append(t)
            [newest] = sorted((root / "dest").iterdir())
            t = timed(["restore", "--backup", str(newest), "--target", str(root / "restored")], env)
            rows["restore (verified)"].append(t)
    print(f"| step ({a.mb} MB in {a.files} files) | median s | range s | MB/s (median) |")
    print("|---|---|---|---|")
    for name, values in rows.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.2f} | {min(values):.2f}-{max(values):.2f} | {a.mb / med:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
