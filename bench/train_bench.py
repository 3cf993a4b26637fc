"""Benchmark of the worker's training loop against a bare PyTorch loop (not a test; results go to
docs/benchmarks.md, section Training).

    .venv/bin/python bench/train_bench.py [--epochs 5] [--pairs 7] [--hidden 128] [--batch 64] [--rows 0]

Both loops train the same model (`modelops_worker.models.build`, an MLP), on the same data (the
worker's training split of digits, or with `--rows N` a synthetic 64-feature, 10-class npz file of N
rows, whose longer epochs amortise the per-epoch work as real datasets do), with the same optimizer
(AdamW) and one thread. The bare loop is the least a hand-written script does: shuffle, slice a
batch, forward, backward, step. The worker is `Trainer.run`, timed from inside (start-up, data
loading and export excluded) two ways: its step loop alone (DataLoader with the resumable
DistributedSampler, AMP/accumulation plumbing, metrics, SIGTERM and checkpoint checks, and the
background checkpoint writer running meanwhile), and whole epochs (plus per-epoch validation and the
checkpoint of each epoch, until the last is on disk).

Runs alternate (bare, worker, bare, worker, ...) and the median of the per-pair ratios is reported,
so a neighbour's load on a shared machine hits both sides of a pair alike. Both wall time and CPU
time (this process, all threads) are given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modelops.api.runconfig import TrainRunConfig
from modelops_worker import data, models
from modelops_worker.environment import WorkerEnv
from modelops_worker.train import Ranks, Trainer

DATA_DIR = Path(tempfile.mkdtemp(prefix="train-bench-"))


def _synthetic(rows: int) -> None:
    """Learnable data: the label is the argmax of a fixed random projection of the features."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 64)).astype(np.float32)
    y = (x @ rng.normal(size=(64, 10))).argmax(axis=1)
    np.savez(DATA_DIR / "synthetic.npz", X=x, y=y)


def _config(epochs: int, hidden: int, batch: int, rows: int) -> TrainRunConfig:
    dataset = (
        {"file": {"claimName": "bench", "path": "synthetic.npz", "format": "npz"}}
        if rows
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


def worker(cfg: TrainRunConfig) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = WorkerEnv(
            checkpoint_dir=Path(tmp) / "ckpt",
            output_dir=Path(tmp) / "out",
            data_dir=DATA_DIR,
            metrics_addr="127.0.0.1",
            metrics_port=0,
            termination_log=Path(tmp) / "termination-log",
        )
        t = Trainer(cfg, env, Ranks())
        t.run()
        return {
            "steps_wall": t.step_seconds,
            "steps_cpu": t.step_cpu_seconds,
            "epochs_wall": t.epochs_seconds,
            "epochs_cpu": t.epochs_cpu_seconds,
        }


def bare(cfg: TrainRunConfig) -> dict[str, float]:
    h = cfg.hyperparameters
    ds = data.load(cfg.dataset, str(DATA_DIR))
    sp = data.split(ds, h.validation_split, h.seed)
    torch.manual_seed(1)
    x, y = torch.from_numpy(sp.x_train), torch.from_numpy(sp.y_train)
    model = models.build(
        cfg.model, x.shape[1], ds.num_classes, torch.from_numpy(sp.mean), torch.from_numpy(sp.std)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=h.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(h.epochs):
        perm = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], h.batch_size):
            idx = perm[i : i + h.batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rows", type=int, default=0, help="synthetic rows instead of digits")
    args = parser.parse_args()
    if args.rows:
        _synthetic(args.rows)
    torch.set_num_threads(1)
    cfg = _config(args.epochs, args.hidden, args.batch, args.rows)
    ds = data.load(cfg.dataset, str(DATA_DIR))
    train_rows = data.split(ds, cfg.hyperparameters.validation_split, cfg.hyperparameters.seed).x_train.shape[
        0
    ]
    samples = train_rows * args.epochs
    worker(_config(1, args.hidden, args.batch, args.rows))  # warm-up: lazy imports, allocator
    bare(cfg)
    ratios: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {}
    for _ in range(args.pairs):
        b, w = bare(cfg), worker(cfg)
        for clock in ("wall", "cpu"):
            rates.setdefault(f"bare_{clock}", []).append(samples / b[clock])
            for part in ("steps", "epochs"):
                key = f"{part}_{clock}"
                rates.setdefault(f"worker_{key}", []).append(samples / w[key])
                ratios.setdefault(f"worker_{key}_vs_bare", []).append(b[clock] / w[key])
    out: dict[str, object] = {
        "model": f"mlp 2x{args.hidden}, batch {args.batch}, 1 thread, {args.epochs} epochs, {args.pairs} pairs",
        "data": f"{ds.source}, {train_rows} training rows",
    }
    out.update({f"{k}_samples_per_s": round(statistics.median(v)) for k, v in rates.items()})
    out.update(
        {
            f"{k} (median [min, max])": [
                round(statistics.median(v), 3),
                round(min(v), 3),
                round(max(v), 3),
            ]
            for k, v in ratios.items()
        }
    )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
