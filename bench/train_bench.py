"""Benchmark of the worker's training loop against a bare PyTorch loop (not a test; results go to
docs/benchmarks.md, section Training).

    .venv/bin/python bench/train_bench.py [--epochs 10] [--repeats 5] [--hidden 128] [--batch 64]
                                          [--rows 0]

Both loops train the same model (`modelops_worker.models.build`, an MLP), on the same data (the
worker's training split of digits, or with `--rows N` of a synthetic 64-feature, 10-class npz file of
N rows, which makes epochs long enough for the per-epoch costs to be amortised as in real runs), with the same optimizer (AdamW) and one thread. The bare loop is the
least a hand-written script does: shuffle, slice a batch, forward, backward, step. The worker is
`Trainer.run`, measured twice: its step loop alone (DataLoader with the resumable DistributedSampler,
AMP/accumulation plumbing, metrics, SIGTERM and checkpoint checks) and whole epochs (plus per-epoch
validation and checkpoint). Startup (imports, data loading, export) is excluded by timing 1 + E
epochs and 1 epoch and taking the difference. Runs alternate between the loops and the best of
`--repeats` counts, so a neighbour's load hits both alike; both wall time and CPU time (this process,
all threads) are reported, since wall time on a shared machine is noisy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modelops.api.runconfig import TrainRunConfig
from modelops_worker import data, models
from modelops_worker.environment import WorkerEnv
from modelops_worker.train import Ranks, Trainer

Timing = tuple[float, float]  # (wall seconds, CPU seconds)


DATA_DIR = Path(tempfile.mkdtemp(prefix="train-bench-"))
ROWS = 0


def _synthetic(rows: int) -> None:
    """Separable-but-noisy data: the label is the argmax of a fixed random projection."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 64)).astype(np.float32)
    y = (x @ rng.normal(size=(64, 10))).argmax(axis=1) if rows else np.zeros(0)
    np.savez(DATA_DIR / "synthetic.npz", X=x, y=y)


def _config(epochs: int, hidden: int, batch: int) -> TrainRunConfig:
    dataset = (
        {"file": {"claimName": "bench", "path": "synthetic.npz", "format": "npz"}}
        if ROWS
        else {"builtin": "digits"}
    )
    return TrainRunConfig.model_validate(
        {
            "job": {"name": "bench", "namespace": "bench"},
            "model": {"architecture": "mlp", "hiddenSize": hidden, "layers": 2, "dropout": 0.1},
            "dataset": dataset,
            "hyperparameters": {"epochs": epochs, "batchSize": batch, "learningRate": 0.003, "seed": 1},
            "checkpoint": {"intervalSeconds": 3600, "keep": 1},
            "output": {"modelName": "bench"},
        }
    )


def _worker(epochs: int, hidden: int, batch: int, steps_only: bool) -> Timing:
    with tempfile.TemporaryDirectory() as tmp:
        env = WorkerEnv(
            checkpoint_dir=Path(tmp) / "ckpt",
            output_dir=Path(tmp) / "out",
            data_dir=DATA_DIR,
            metrics_addr="127.0.0.1",
            metrics_port=0,
            termination_log=Path(tmp) / "termination-log",
        )
        trainer = Trainer(_config(epochs, hidden, batch), env, Ranks())
        wall, cpu = time.perf_counter(), time.process_time()
        trainer.run()
        if steps_only:
            return trainer.step_seconds, trainer.step_cpu_seconds
        return time.perf_counter() - wall, time.process_time() - cpu


def worker_steps(epochs: int, hidden: int, batch: int) -> Timing:
    return _worker(epochs, hidden, batch, steps_only=True)


def worker_epochs(epochs: int, hidden: int, batch: int) -> Timing:
    return _worker(epochs, hidden, batch, steps_only=False)


def bare(epochs: int, hidden: int, batch: int) -> Timing:
    cfg = _config(epochs, hidden, batch)
    ds = data.load(cfg.dataset, str(DATA_DIR))
    sp = data.split(ds, cfg.hyperparameters.validation_split, cfg.hyperparameters.seed)
    torch.manual_seed(1)
    x, y = torch.from_numpy(sp.x_train), torch.from_numpy(sp.y_train)
    model = models.build(
        cfg.model, x.shape[1], ds.num_classes, torch.from_numpy(sp.mean), torch.from_numpy(sp.std)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=0.003)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], batch):
            idx = perm[i : i + batch]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rows", type=int, default=0, help="synthetic rows instead of digits")
    args = parser.parse_args()
    global ROWS
    ROWS = args.rows
    if ROWS:
        _synthetic(ROWS)
    torch.set_num_threads(1)
    loops: dict[str, Callable[[int, int, int], Timing]] = {
        "bare": bare,
        "worker_step_loop": worker_steps,
        "worker_epochs": worker_epochs,
    }
    best: dict[str, list[float]] = {name: [1e9, 1e9, 1e9, 1e9] for name in loops}
    for _ in range(args.repeats):
        for name, fn in loops.items():
            full, one = fn(1 + args.epochs, args.hidden, args.batch), fn(1, args.hidden, args.batch)
            b = best[name]
            b[0], b[1] = min(b[0], full[0]), min(b[1], one[0])
            b[2], b[3] = min(b[2], full[1]), min(b[3], one[1])
    cfg = _config(1, args.hidden, args.batch)
    ds = data.load(cfg.dataset, str(DATA_DIR))
    train_rows = data.split(ds, cfg.hyperparameters.validation_split, cfg.hyperparameters.seed).x_train.shape[
        0
    ]
    rows = train_rows * args.epochs
    out: dict[str, object] = {
        "model": f"mlp 2x{args.hidden}, batch {args.batch}, 1 thread, {args.epochs} epochs",
        "data": f"{ds.source}, {train_rows} training rows",
    }
    for name, (fw, ow, fc, oc) in best.items():
        out[f"{name}_samples_per_s_wall"] = round(rows / max(fw - ow, 1e-9))
        out[f"{name}_samples_per_s_cpu"] = round(rows / max(fc - oc, 1e-9))
    for name in ("worker_step_loop", "worker_epochs"):
        for clock in ("wall", "cpu"):
            ratio = out[f"{name}_samples_per_s_{clock}"] / out[f"bare_samples_per_s_{clock}"]  # type: ignore[operator]
            out[f"{name}_vs_bare_{clock}"] = round(ratio, 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
