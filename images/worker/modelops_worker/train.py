"""The training loop of one process: single-process, or one rank of a torchrun (DDP) run.

Order of business: read and check the config, load and validate the data (before any step), build the
model, resume from the newest verified checkpoint, train with periodic checkpoints and per-epoch
validation, export on global rank 0. Every process computes the same data split and validation
metrics, so decisions such as early stopping need no communication; only rank 0 writes to disk.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from modelops import __version__
from modelops.api.runconfig import (
    REASON_SUCCEEDED,
    ResultArtifact,
    ResultCheckpoint,
    ResultMetrics,
    TrainResult,
    TrainRunConfig,
)
from modelops_worker import data as data_mod
from modelops_worker import export, models
from modelops_worker.checkpoint import CheckpointStore, Saved
from modelops_worker.environment import WorkerEnv
from modelops_worker.errors import ConfigError, Terminated
from modelops_worker.evaluation import classification_metrics
from modelops_worker.metrics import TrainingMetrics

log = logging.getLogger("modelops_worker.train")


class ArrayDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """In-memory tensors fetched a whole batch at a time (`__getitems__`), not row by row and collated:
    the datasets here fit in memory, and per-row fetching would dominate small models' step time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        # Through NumPy and index_select: a third of the cost of as_tensor and advanced indexing,
        # which is measurable next to a small model's step (bench/train_bench.py).
        t = torch.from_numpy(np.array(idx, dtype=np.int64))
        return self.x.index_select(0, t), self.y.index_select(0, t)


def _identity(batch: Any) -> Any:
    return batch


class ResumableSampler(DistributedSampler[int]):
    """A DistributedSampler that can start partway through an epoch, so a resumed run continues with
    exactly the samples the interrupted one had not seen (the permutation depends on seed and epoch)."""

    start = 0

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


@dataclass
class Ranks:
    """Where this process sits in the run (torchrun's environment; all zero/one when alone)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0

    @classmethod
    def from_environ(cls) -> Ranks:
        e = os.environ
        return cls(
            rank=int(e.get("RANK", 0)),
            local_rank=int(e.get("LOCAL_RANK", 0)),
            world_size=int(e.get("WORLD_SIZE", 1)),
            local_world_size=int(e.get("LOCAL_WORLD_SIZE", 1)),
            node_rank=int(e.get("GROUP_RANK", e.get("NODE_RANK", 0))),
        )


@dataclass
class Progress:
    """Position in the run; everything needed to continue exactly where a checkpoint left off."""

    epoch: int = 0  # 0-based index of the epoch in progress
    step: int = 0  # optimizer steps done
    batches_in_epoch: int = 0  # micro-batches of the current epoch already consumed
    best: float | None = None
    bad_epochs: int = 0
    val: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False


class _SigtermFlag:
    def __init__(self) -> None:
        self.set = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.set = True


def _device(cfg: TrainRunConfig, ranks: Ranks) -> torch.device:
    want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if want_cuda:
        if not torch.cuda.is_available():
            raise ConfigError(
                "device cuda: no GPU is visible to this container; request nvidia.com/gpu "
                "(spec.resources.gpus) or train on CPU"
            )
        torch.cuda.set_device(ranks.local_rank % torch.cuda.device_count())
        return torch.device("cuda", ranks.local_rank % torch.cuda.device_count())
    if cfg.precision == "fp16":
        raise ConfigError(
            "precision fp16 needs a GPU (gradient scaling is CUDA-only); use precision bf16 or fp32 on CPU"
        )
    return torch.device("cpu")


def _backend(cfg: TrainRunConfig, device: torch.device) -> str:
    backend = cfg.distributed.backend
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError("distributed.backend nccl needs GPUs; use gloo or auto on CPU")
    return backend


def _optimizer(cfg: TrainRunConfig, params: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
    h = cfg.hyperparameters
    if h.optimizer == "sgd":
        return torch.optim.SGD(params, lr=h.learning_rate, momentum=h.momentum, weight_decay=h.weight_decay)
    if h.optimizer == "adam":
        return torch.optim.Adam(params, lr=h.learning_rate, weight_decay=h.weight_decay)
    return torch.optim.AdamW(params, lr=h.learning_rate, weight_decay=h.weight_decay)


def cgroup_cpus(root: str = "/sys/fs/cgroup") -> int | None:
    """The container's CPU limit (cgroup v2 cpu.max or v1 CFS quota), rounded up; None if unlimited."""
    try:
        quota, period = Path(f"{root}/cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        q = int(Path(f"{root}/cpu/cpu.cfs_quota_us").read_text())
        p = int(Path(f"{root}/cpu/cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return max(1, math.ceil(q / p)) if q > 0 and p > 0 else None


def configure_threads(local_world_size: int) -> None:
    """Size torch's thread pool to the pod's CPU limit, not the node's cores.

    Without this, a pod limited to 2 CPUs on a 64-core node runs 64 threads and is throttled into a
    crawl. An explicit OMP_NUM_THREADS wins (torchrun sets 1 per process when it starts several).
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return
    cpus = cgroup_cpus()
    if cpus is not None:
        torch.set_num_threads(max(1, cpus // max(1, local_world_size)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, autocast: Any, batch_size: int = 1024
) -> dict[str, float]:
    """Validation metrics of the model on (x, y), in eval mode and without gradients."""
    was_training = model.training
    model.eval()
    logits = []
    with torch.no_grad(), autocast():
        for i in range(0, x.shape[0], batch_size):
            logits.append(model(x[i : i + batch_size]).float())
    model.train(was_training)
    return classification_metrics(torch.cat(logits), y)


class Trainer:
    """One process of a training run."""

    def __init__(self, cfg: TrainRunConfig, env: WorkerEnv, ranks: Ranks | None = None) -> None:
        self.cfg = cfg
        self.env = env
        self.ranks = ranks or Ranks.from_environ()
        self.metrics = TrainingMetrics()
        self.sigterm = _SigtermFlag()
        self.saved: Saved | None = None
        self.saved_at: tuple[int, int, int] | None = None
        self.store: CheckpointStore | None = None
        # Seconds spent in the step loop alone (no validation, no epoch-end checkpoint): what the
        # benchmark compares with a bare loop.
        self.step_seconds = 0.0
        self.step_cpu_seconds = 0.0
        # Seconds of all epochs: steps, validation, checkpoints (until the last one is on disk).
        self.epochs_seconds = 0.0
        self.epochs_cpu_seconds = 0.0
        self.resumed_from: int | None = None

    # -- setup -----------------------------------------------------------------------------------------

    def _serve_metrics(self) -> None:
        r = self.ranks
        self.metrics.describe(
            job=self.cfg.job.name,
            namespace=self.cfg.job.namespace,
            rank=r.rank,
            node_rank=r.node_rank,
            world_size=r.world_size,
            local_world_size=r.local_world_size,
            version=__version__,
        )
        if r.local_rank == 0 and self.env.metrics_port:
            try:
                self.metrics.serve(self.env.metrics_addr, self.env.metrics_port)
            except OSError as exc:
                # Progress reporting must not cost the run; the operator still gets the result.
                log.warning("metrics endpoint on port %d not started: %s", self.env.metrics_port, exc)

    def run(self) -> TrainResult:
        cfg, r = self.cfg, self.ranks
        signal.signal(signal.SIGTERM, self.sigterm)
        configure_threads(r.local_world_size)
        device = _device(cfg, r)
        backend = _backend(cfg, device)  # checked even when alone: the config is wrong either way
        distributed = r.world_size > 1
        if distributed and not dist.is_initialized():
            dist.init_process_group(backend)
        self._serve_metrics()
        finished = False
        try:
            result = self._run(device, distributed)
            finished = True
            return result
        finally:
            if self.store is not None:
                # A failing run still finishes the checkpoint it started: a restart resumes from it.
                with contextlib.suppress(Exception):
                    self.store.wait()
            if distributed and dist.is_initialized():
                if finished:
                    # Ranks leave together: a rank that tore its process group down while rank 0 was
                    # still exporting the model aborted in gloo's teardown (SIGABRT, "terminate called
                    # without an active exception"), which failed a finished two-node job.
                    with contextlib.suppress(Exception):
                        dist.barrier()
                dist.destroy_process_group()

    def _run(self, device: torch.device, distributed: bool) -> TrainResult:
        cfg, r, h = self.cfg, self.ranks, self.cfg.hyperparameters
        ds = data_mod.load(cfg.dataset, str(self.env.data_dir))
        data_mod.validate(ds, cfg.data_validation)
        sp = data_mod.split(ds, h.validation_split, h.seed)
        log.info(
            "data %s: %d rows, %d features, %d classes, digest %s; %d train / %d validation",
            ds.source,
            ds.x.shape[0],
            ds.x.shape[1],
            ds.num_classes,
            ds.digest[:16],
            sp.x_train.shape[0],
            sp.x_val.shape[0],
        )

        seed_everything(h.seed)
        model = models.build(
            cfg.model,
            ds.x.shape[1],
            ds.num_classes,
            torch.from_numpy(sp.mean),
            torch.from_numpy(sp.std),
            ds.image_shape,
        ).to(device)
        optimizer = _optimizer(cfg, model.parameters())
        cuda = device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16" and cuda)
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)

        def autocast() -> contextlib.AbstractContextManager[Any]:
            if amp_dtype is None:
                return contextlib.nullcontext()
            return torch.autocast(device_type=device.type, dtype=amp_dtype)

        store = self.store = CheckpointStore(
            self.env.checkpoint_dir, cfg.checkpoint.keep, self.metrics.fallbacks.inc
        )
        fingerprint = {
            "datasetDigest": ds.digest,
            "model": cfg.model.to_wire(),
            "worldSize": r.world_size,
            "batchSize": h.batch_size,
            "gradientAccumulationSteps": h.gradient_accumulation_steps,
        }
        prog = self._resume(store, fingerprint, model, optimizer, scaler, distributed)

        train_set = ArrayDataset(torch.from_numpy(sp.x_train), torch.from_numpy(sp.y_train))
        sampler = ResumableSampler(
            train_set, num_replicas=r.world_size, rank=r.rank, shuffle=True, seed=h.seed, drop_last=False
        )
        loader = DataLoader(
            train_set,
            batch_size=h.batch_size,
            sampler=sampler,
            collate_fn=_identity,
            num_workers=0,
            pin_memory=cuda,
            # Its own generator: a DataLoader otherwise draws from the global RNG at every epoch start,
            # and a resumed run would then see different dropout masks than an uninterrupted one.
            generator=torch.Generator().manual_seed(h.seed),
        )
        batches_per_epoch = math.ceil(sampler.num_samples / h.batch_size)
        accum = h.gradient_accumulation_steps
        steps_per_epoch = math.ceil(batches_per_epoch / accum)
        total_steps = steps_per_epoch * h.epochs
        m = self.metrics
        m.total_steps.set(total_steps)
        m.total_epochs.set(h.epochs)
        m.step.set(prog.step)
        x_val = torch.from_numpy(sp.x_val).to(device)
        y_val = torch.from_numpy(sp.y_val).to(device)

        net: nn.Module = (
            DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
            if distributed
            else model
        )
        net.train()
        criterion = nn.CrossEntropyLoss()
        samples = 0
        loss = torch.tensor(float("nan"))
        last_ckpt_time = time.monotonic()
        window_samples, window_start = 0, time.monotonic()
        interval_steps = cfg.checkpoint.interval_steps

        def written(saved: Saved) -> None:
            m.checkpoint_step.set(saved.step)
            m.checkpoint_time.set(time.time())
            log.info("checkpoint step %d written to %s", saved.step, saved.path.name)

        last_ckpt_step = prog.step

        def checkpoint() -> None:
            nonlocal last_ckpt_time, last_ckpt_step
            last_ckpt_time = time.monotonic()
            last_ckpt_step = prog.step
            position = (prog.step, prog.epoch, prog.batches_in_epoch)
            if r.rank == 0 and self.saved_at != position:
                self.saved_at = position
                store.save_async(
                    prog.step,
                    self._state(model, optimizer, scaler, prog),
                    {**fingerprint, "epoch": prog.epoch},
                    written,
                )

        epochs_start, epochs_cpu = time.perf_counter(), time.process_time()
        while prog.epoch < h.epochs and not prog.stopped_early:
            if self.sigterm.set:  # arrived while loading data or validating: nothing new to save
                raise Terminated(prog.step)
            m.epoch.set(prog.epoch + 1)
            sampler.set_epoch(prog.epoch)
            sampler.start = min(prog.batches_in_epoch * h.batch_size, sampler.num_samples)
            batch_index = prog.batches_in_epoch
            loop_start, loop_cpu = time.perf_counter(), time.process_time()
            for xb, yb in loader:
                group_start = (batch_index // accum) * accum
                group = min(accum, batches_per_epoch - group_start)
                batch_index += 1
                boundary = batch_index - group_start == group
                xb = xb.to(device, non_blocking=True)
                yb = yb.to(device, non_blocking=True)
                sync = contextlib.nullcontext() if boundary or not distributed else net.no_sync()  # type: ignore[operator]
                with sync:
                    with autocast():
                        loss = criterion(net(xb), yb)
                    scaler.scale(loss / group).backward()
                samples += int(xb.shape[0])
                window_samples += int(xb.shape[0])
                if not boundary:
                    continue
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                prog.step += 1
                prog.batches_in_epoch = batch_index
                now = time.monotonic()
                m.step.set(prog.step)
                m.loss.set(float(loss.detach()))
                m.last_progress.set(time.time())
                if now - window_start >= 1.0:
                    m.samples_per_second.set(window_samples / (now - window_start))
                    window_samples, window_start = 0, now
                if self.sigterm.set:
                    checkpoint()
                    self.saved = store.wait() or self.saved
                    raise Terminated(prog.step)
                if batch_index < batches_per_epoch and (
                    (interval_steps and prog.step % interval_steps == 0)
                    or now - last_ckpt_time >= cfg.checkpoint.interval_seconds
                ):
                    checkpoint()
            self.step_seconds += time.perf_counter() - loop_start
            self.step_cpu_seconds += time.process_time() - loop_cpu
            prog.val = evaluate(model, x_val, y_val, autocast)
            m.val_accuracy.set(prog.val["accuracy"])
            m.val_loss.set(prog.val["loss"])
            if window_start < time.monotonic() - 1e-3 and window_samples:
                m.samples_per_second.set(window_samples / (time.monotonic() - window_start))
            log.info(
                "epoch %d/%d step %d/%d: loss %.4f val_loss %.4f val_accuracy %.4f",
                prog.epoch + 1,
                h.epochs,
                prog.step,
                total_steps,
                float(loss.detach()),
                prog.val["loss"],
                prog.val["accuracy"],
            )
            prog.epoch += 1
            prog.batches_in_epoch = 0
            self._early_stopping(prog)
            # At an epoch's end only when an interval is due (or it is the last): on small data an
            # epoch takes milliseconds, and a checkpoint each would cost more than the training.
            final = prog.epoch >= h.epochs or prog.stopped_early
            due = bool(interval_steps and prog.step - last_ckpt_step >= interval_steps) or (
                time.monotonic() - last_ckpt_time >= cfg.checkpoint.interval_seconds
            )
            if final or due:
                checkpoint()
            if self.sigterm.set:
                self.saved = store.wait() or self.saved
                raise Terminated(prog.step)

        self.saved = store.wait() or self.saved
        self.epochs_seconds = time.perf_counter() - epochs_start
        self.epochs_cpu_seconds = time.process_time() - epochs_cpu
        per_rank = self._gather_samples(samples, device, distributed)
        result = TrainResult(
            status="Succeeded",
            reason=REASON_SUCCEEDED,
            message=(
                f"trained {prog.epoch} epoch(s), {prog.step} step(s)"
                + (" (stopped early)" if prog.stopped_early else "")
                + f"; validation accuracy {prog.val.get('accuracy', float('nan')):.4f}"
            ),
            metrics=ResultMetrics.model_validate(prog.val),
            dataset_digest=ds.digest,
            epochs=prog.epoch,
            steps=prog.step,
            train_loss=float(loss.detach()) if bool(torch.isfinite(loss.detach())) else None,
            resumed_from_step=self.resumed_from,
            world_size=r.world_size,
            rank=r.rank,
            samples_per_rank=per_rank if len(per_rank) <= 64 else None,
        )
        if self.saved is not None:
            result.checkpoint = ResultCheckpoint(
                step=self.saved.step,
                path=str(self.saved.path.relative_to(self.env.checkpoint_dir)),
                sha256=self.saved.manifest_sha256,
            )
        if r.rank == 0:
            description = {
                "spec": cfg.model.to_wire(),
                "numFeatures": int(ds.x.shape[1]),
                "numClasses": ds.num_classes,
                "imageShape": list(ds.image_shape) if ds.image_shape else None,
                "featureNames": ds.feature_names[:1024],
                "classNames": ds.class_names[:1024],
                "input": "float32 [batch, numFeatures], raw (unnormalised) features",
                "output": "float32 [batch, numClasses] logits",
            }
            card = {
                "name": cfg.output.model_name,
                "job": cfg.job.to_wire(),
                "hyperparameters": h.to_wire(),
                "precision": cfg.precision,
                "metrics": prog.val,
                "dataset": {"source": ds.source, "digest": ds.digest, "rows": int(ds.x.shape[0])},
                "epochs": prog.epoch,
                "steps": prog.step,
                "worldSize": r.world_size,
            }
            art = export.export(model, cfg.output.format, description, card, self.env.output_dir)
            result.artifact = ResultArtifact.model_validate(art)
            log.info("exported %s (%s, sha256 %s)", art["path"], art["format"], art["sha256"][:16])
        return result

    # -- pieces ----------------------------------------------------------------------------------------

    def _early_stopping(self, prog: Progress) -> None:
        es = self.cfg.hyperparameters.early_stopping
        if es is None:
            return
        value = prog.val["loss"] if es.metric == "val_loss" else -prog.val["accuracy"]
        if prog.best is None or value < prog.best - es.min_delta:
            prog.best, prog.bad_epochs = value, 0
            return
        prog.bad_epochs += 1
        if prog.bad_epochs >= es.patience:
            prog.stopped_early = True
            log.info("early stopping: %s did not improve for %d epoch(s)", es.metric, prog.bad_epochs)

    def _state(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, prog: Progress
    ) -> dict[str, Any]:
        state: dict[str, Any] = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "progress": {
                "epoch": prog.epoch,
                "step": prog.step,
                "batchesInEpoch": prog.batches_in_epoch,
                "best": prog.best,
                "badEpochs": prog.bad_epochs,
                "val": prog.val,
                "stoppedEarly": prog.stopped_early,
            },
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            state["rng"]["cuda"] = torch.cuda.get_rng_state()
        return state

    def _resume(
        self,
        store: CheckpointStore,
        fingerprint: dict[str, Any],
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        distributed: bool,
    ) -> Progress:
        """Rank 0 loads the newest checkpoint that verifies and hands it to the other ranks, so only
        rank 0 needs the checkpoint volume."""

        def accept(manifest: dict[str, Any]) -> str | None:
            for key, want in fingerprint.items():
                if manifest.get(key) != want:
                    return f"written for another run ({key} differs); not resumable here"
            return None

        loaded: list[Any] = [None]
        if self.ranks.rank == 0:
            found = store.load_latest(accept)
            if found is not None:
                state, saved = found
                self.saved = saved
                p = state["progress"]
                self.saved_at = (int(p["step"]), int(p["epoch"]), int(p["batchesInEpoch"]))
                self.metrics.checkpoint_step.set(saved.step)
                self.metrics.checkpoint_time.set(saved.path.stat().st_mtime)
                loaded = [state]
        if distributed:
            dist.broadcast_object_list(loaded, src=0)
        state = loaded[0]
        prog = Progress()
        if state is None:
            return prog
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        p = state["progress"]
        prog = Progress(
            epoch=int(p["epoch"]),
            step=int(p["step"]),
            batches_in_epoch=int(p["batchesInEpoch"]),
            best=p["best"],
            bad_epochs=int(p["badEpochs"]),
            val=dict(p["val"]),
            stopped_early=bool(p["stoppedEarly"]),
        )
        if self.ranks.rank == 0:
            torch.set_rng_state(state["rng"]["torch"])
            random.setstate(state["rng"]["python"])
            if "cuda" in state["rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state(state["rng"]["cuda"])
        else:
            # Only rank 0's generator is saved; the others restart from a seed that still differs
            # per rank and per resume point.
            seed_everything(self.cfg.hyperparameters.seed + 7919 * self.ranks.rank + prog.step)
        self.resumed_from = prog.step
        log.info("resumed from checkpoint step %d (epoch %d)", prog.step, prog.epoch + 1)
        return prog

    def _gather_samples(self, samples: int, device: torch.device, distributed: bool) -> list[int]:
        if not distributed:
            return [samples]
        t = torch.tensor([samples], dtype=torch.int64, device=device)
        out = [torch.zeros_like(t) for _ in range(self.ranks.world_size)]
        dist.all_gather(out, t)
        return [int(v.item()) for v in out]
