"""The fine-tuning loop of one process: alone, or one rank of a torchrun (DDP) run.

Same contracts as the built-in recipe (`modelops_worker.train`), on a causal LM: the data is checked
before the base model is even loaded; checkpoints go through `CheckpointStore` (atomic, sha256
manifest, the newest one that verifies is resumed, at most one interval lost); progress is on the
Prometheus endpoint (step, loss, tokens/s, perplexity, ETA) for the operator to scrape; global rank 0
exports a Hugging Face directory (merged weights, or the adapter alone) and every local rank 0 writes
the result into the termination message.

A LoRA checkpoint holds the adapter and the optimizer only (the base is read-only and reloaded from
its claim), so checkpoints stay megabytes on a model of gigabytes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import torch
import torch.distributed as dist
from prometheus_client import Gauge
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from modelops import __version__
from modelops.api.finetuneconfig import FineTuneRunConfig
from modelops.api.runconfig import (
    REASON_SUCCEEDED,
    ResultArtifact,
    ResultBaseModel,
    ResultCheckpoint,
    ResultMetrics,
    TrainResult,
)
from modelops_worker.checkpoint import CheckpointStore, Saved
from modelops_worker.environment import WorkerEnv
from modelops_worker.errors import ConfigError, Terminated
from modelops_worker.llm_train import data as data_mod
from modelops_worker.llm_train import export
from modelops_worker.metrics import TrainingMetrics
from modelops_worker.train import Ranks, ResumableSampler, configure_threads

log = logging.getLogger("modelops_worker.llm_train")

IGNORE_INDEX = -100
# exp() of a loss above this is no number anyone reads; the gauge is capped rather than infinite.
MAX_LOG_PERPLEXITY = 30.0


class LLMMetrics:
    """The fine-tune's own series, next to the training ones on the same endpoint."""

    def __init__(self, base: TrainingMetrics) -> None:
        r = base.registry
        self.tokens_per_second = Gauge(
            "modelops_training_tokens_per_second",
            "Tokens (padding excluded) this process trained on per second, over the recent steps.",
            registry=r,
        )
        self.perplexity = Gauge(
            "modelops_training_perplexity", "exp(training loss) of the latest step.", registry=r
        )
        self.val_perplexity = Gauge(
            "modelops_training_val_perplexity", "exp(validation loss) after the latest epoch.", registry=r
        )
        self.eta = Gauge(
            "modelops_training_eta_seconds",
            "Estimated seconds to the last step, at the recent pace.",
            registry=r,
        )
        self.tokens = Gauge(
            "modelops_training_tokens", "Tokens this process trained on in this attempt.", registry=r
        )


def perplexity(loss: float) -> float:
    return math.exp(min(loss, MAX_LOG_PERPLEXITY))


class _Ids(Dataset[list[int]]):
    def __init__(self, ids: list[list[int]]) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> list[int]:
        return self.ids[i]


def collate(batch: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels (-100 on padding, so it is not learnt)."""
    width = max(len(x) for x in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    for i, x in enumerate(batch):
        t = torch.tensor(x, dtype=torch.long)
        ids[i, : len(x)] = t
        mask[i, : len(x)] = 1
        labels[i, : len(x)] = t
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@dataclass
class Position:
    epoch: int = 0
    step: int = 0
    batches_in_epoch: int = 0
    val_loss: float | None = None


class _Flag:
    def __init__(self) -> None:
        self.set = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.set = True


def _device(cfg: FineTuneRunConfig, ranks: Ranks) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError(
                "device cuda: no GPU is visible to this container; request nvidia.com/gpu "
                "(spec.resources.gpus) or fine-tune on CPU"
            )
        index = ranks.local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    if cfg.precision == "fp16":
        raise ConfigError("spec.precision: fp16 needs a GPU; use bf16 or fp32 on CPU")
    if cfg.fine_tune.method == "qlora":
        raise ConfigError(
            "spec.fineTune.method: qlora quantises the base to 4 bits with bitsandbytes, which needs a CUDA "
            "GPU; request spec.resources.gpus or use method lora (or full) on CPU"
        )
    return torch.device("cpu")


def _check_base(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"spec.fineTune.baseModel: no Hugging Face model at {path} (config.json is missing); point "
            "baseModel at a directory saved with save_pretrained (config.json, tokenizer, *.safetensors)"
        )


class FineTuner:
    """One process of a fine-tune."""

    def __init__(self, cfg: FineTuneRunConfig, env: WorkerEnv, ranks: Ranks | None = None) -> None:
        self.cfg = cfg
        self.env = env
        self.ranks = ranks or Ranks.from_environ()
        self.metrics = TrainingMetrics()
        self.llm = LLMMetrics(self.metrics)
        self.sigterm = _Flag()
        self.store: CheckpointStore | None = None
        self.saved: Saved | None = None
        self.resumed_from: int | None = None

    def run(self) -> TrainResult:
        r = self.ranks
        signal.signal(signal.SIGTERM, self.sigterm)
        configure_threads(r.local_world_size)
        device = _device(self.cfg, r)
        distributed = r.world_size > 1
        if distributed and not dist.is_initialized():
            backend = self.cfg.distributed.backend
            dist.init_process_group(
                ("nccl" if device.type == "cuda" else "gloo") if backend == "auto" else backend
            )
        self.metrics.describe(
            job=self.cfg.job.name,
            namespace=self.cfg.job.namespace,
            rank=r.rank,
            world_size=r.world_size,
            recipe="causal-lm",
            version=__version__,
        )
        if r.local_rank == 0 and self.env.metrics_port:
            try:
                self.metrics.serve(self.env.metrics_addr, self.env.metrics_port)
            except OSError as exc:
                log.warning("metrics endpoint on port %d not started: %s", self.env.metrics_port, exc)
        finished = False
        try:
            result = self._run(device, distributed)
            finished = True
            return result
        finally:
            if self.store is not None:
                with contextlib.suppress(Exception):
                    self.store.wait()
            if distributed and dist.is_initialized():
                if finished:
                    with contextlib.suppress(Exception):
                        dist.barrier()
                dist.destroy_process_group()

    # -- setup -----------------------------------------------------------------------------------------

    def _load(self, device: torch.device) -> tuple[Any, Any, data_mod.Tokenized, data_mod.Examples]:
        cfg, ft = self.cfg, self.cfg.fine_tune
        # Data first: a bad file fails in seconds, before gigabytes of weights are read.
        examples = data_mod.load(ft.data, self.env.data_dir)
        base = Path(cfg.base_model_dir)
        _check_base(base)
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        mcfg = AutoConfig.from_pretrained(base, local_files_only=True)
        context = getattr(mcfg, "max_position_embeddings", None)
        if context is not None and ft.max_sequence_length > int(context):
            raise ConfigError(
                f"spec.fineTune.maxSequenceLength={ft.max_sequence_length} exceeds the base model's context "
                f"length ({context}, max_position_embeddings); set it to at most {context}"
            )
        tokenized = data_mod.tokenize(examples, tokenizer, ft.max_sequence_length, ft.data.over_length)
        kwargs: dict[str, Any] = {"local_files_only": True}
        if ft.method == "qlora":
            try:
                from transformers import BitsAndBytesConfig
            except ImportError as exc:  # pragma: no cover - GPU images only
                raise ConfigError(
                    f"spec.fineTune.method qlora needs bitsandbytes in the image: {exc}"
                ) from None
            kwargs["quantization_config"] = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.bfloat16 if cfg.precision == "bf16" else torch.float16,
            )
            kwargs["device_map"] = {"": device.index or 0}
        model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, **kwargs)
        if ft.method in ("lora", "qlora"):
            from peft import LoraConfig, get_peft_model

            if ft.method == "qlora":
                from peft import prepare_model_for_kbit_training

                model = prepare_model_for_kbit_training(model)  # type: ignore[no-untyped-call]
            lora = ft.lora
            targets: list[str] | str | None = (
                list(lora.target_modules) if lora and lora.target_modules else None
            )
            try:
                model = get_peft_model(
                    model,
                    LoraConfig(
                        r=lora.r if lora else 8,
                        lora_alpha=lora.alpha if lora else 16,
                        lora_dropout=lora.dropout if lora else 0.05,
                        target_modules=targets,
                        task_type="CAUSAL_LM",
                    ),
                )
            except ValueError as exc:
                if targets is not None:
                    raise ConfigError(
                        f"spec.fineTune.lora.targetModules {targets}: {exc}; name modules the base model has "
                        "(e.g. q_proj, v_proj for Llama) or leave it empty"
                    ) from None
                # An architecture peft has no default for: adapt every linear layer.
                model = get_peft_model(
                    model,
                    LoraConfig(
                        r=lora.r if lora else 8,
                        lora_alpha=lora.alpha if lora else 16,
                        lora_dropout=lora.dropout if lora else 0.05,
                        target_modules="all-linear",
                        task_type="CAUSAL_LM",
                    ),
                )
        if ft.method != "qlora":
            model = model.to(device)
        return model, tokenizer, tokenized, examples

    # -- the loop --------------------------------------------------------------------------------------

    def _run(self, device: torch.device, distributed: bool) -> TrainResult:
        cfg, r, h, ft = self.cfg, self.ranks, self.cfg.hyperparameters, self.cfg.fine_tune
        random.seed(h.seed)
        torch.manual_seed(h.seed)
        model, tokenizer, tok, examples = self._load(device)
        trainable = [p for p in model.parameters() if p.requires_grad]
        n_trainable = sum(p.numel() for p in trainable)
        n_total = sum(p.numel() for p in model.parameters())

        order = list(range(len(tok.ids)))
        random.Random(h.seed).shuffle(order)
        n_val = int(len(order) * h.validation_split) if len(order) >= 4 else 0
        val_ids = [tok.ids[i] for i in order[:n_val]]
        train_ids = [tok.ids[i] for i in order[n_val:]]
        log.info(
            "data %s: %d %s example(s) (%d left out, %d truncated), %d tokens, digest %s; %d train / %d "
            "validation; method %s, %d of %d parameters trainable",
            examples.source,
            len(tok.ids),
            examples.kind,
            len(examples.skipped),
            tok.truncated,
            tok.tokens,
            examples.digest[:16],
            len(train_ids),
            len(val_ids),
            ft.method,
            n_trainable,
            n_total,
        )
        optimizer = self._optimizer(trainable)
        cuda = device.type == "cuda"
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16" and cuda)

        def autocast() -> contextlib.AbstractContextManager[Any]:
            if amp_dtype is None:
                return contextlib.nullcontext()
            return torch.autocast(device_type=device.type, dtype=amp_dtype)

        store = self.store = CheckpointStore(
            self.env.checkpoint_dir, cfg.checkpoint.keep, self.metrics.fallbacks.inc
        )
        fingerprint = {
            "recipe": "causal-lm",
            "datasetDigest": examples.digest,
            "baseModel": cfg.base_model.uri,
            "method": ft.method,
            "maxSequenceLength": ft.max_sequence_length,
            "worldSize": r.world_size,
            "batchSize": h.batch_size,
            "gradientAccumulationSteps": h.gradient_accumulation_steps,
        }
        pos = self._resume(store, fingerprint, model, optimizer, scaler, distributed)

        train_set = _Ids(train_ids)
        sampler = ResumableSampler(
            train_set,
            num_replicas=r.world_size,
            rank=r.rank,
            shuffle=True,
            seed=h.seed,
            drop_last=False,
        )
        pad_id = int(tokenizer.pad_token_id)
        loader = DataLoader(
            train_set,
            batch_size=h.batch_size,
            sampler=sampler,
            collate_fn=lambda b: collate(b, pad_id),
            num_workers=0,
            generator=torch.Generator().manual_seed(h.seed),
        )
        batches_per_epoch = math.ceil(sampler.num_samples / h.batch_size)
        accum = h.gradient_accumulation_steps
        steps_per_epoch = math.ceil(batches_per_epoch / accum)
        total_steps = steps_per_epoch * h.epochs
        m, lm = self.metrics, self.llm
        m.total_steps.set(total_steps)
        m.total_epochs.set(h.epochs)
        m.step.set(pos.step)

        net: nn.Module = (
            DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
            if distributed
            else model
        )
        net.train()
        loss_value = float("nan")
        first_loss: float | None = None
        tokens_total = 0
        window_tokens, window_start = 0, time.monotonic()
        step_seconds: list[float] = []
        last_ckpt_time = time.monotonic()
        interval_steps = cfg.checkpoint.interval_steps
        saved_at: tuple[int, int, int] | None = None

        def written(saved: Saved) -> None:
            m.checkpoint_step.set(saved.step)
            m.checkpoint_time.set(time.time())
            log.info("checkpoint step %d written to %s", saved.step, saved.path.name)

        def checkpoint() -> None:
            nonlocal last_ckpt_time, saved_at
            last_ckpt_time = time.monotonic()
            position = (pos.step, pos.epoch, pos.batches_in_epoch)
            if r.rank == 0 and saved_at != position:
                saved_at = position
                store.save_async(
                    pos.step,
                    self._state(model, optimizer, scaler, pos),
                    {**fingerprint, "epoch": pos.epoch},
                    written,
                )

        while pos.epoch < h.epochs:
            if self.sigterm.set:
                raise Terminated(pos.step)
            m.epoch.set(pos.epoch + 1)
            sampler.set_epoch(pos.epoch)
            sampler.start = min(pos.batches_in_epoch * h.batch_size, sampler.num_samples)
            batch_index = pos.batches_in_epoch
            step_start = time.monotonic()
            for batch in loader:
                group_start = (batch_index // accum) * accum
                group = min(accum, batches_per_epoch - group_start)
                batch_index += 1
                boundary = batch_index - group_start == group
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                sync = contextlib.nullcontext() if boundary or not distributed else net.no_sync()  # type: ignore[operator]
                with sync:
                    with autocast():
                        out = net(**batch)
                    loss = out.loss
                    scaler.scale(loss / group).backward()
                n_tokens = int(batch["attention_mask"].sum())
                tokens_total += n_tokens
                window_tokens += n_tokens
                if not boundary:
                    continue
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                pos.step += 1
                pos.batches_in_epoch = batch_index
                loss_value = float(loss.detach())
                if first_loss is None:
                    first_loss = loss_value
                now = time.monotonic()
                step_seconds = [*step_seconds[-19:], now - step_start]
                step_start = now
                m.step.set(pos.step)
                m.loss.set(loss_value)
                lm.perplexity.set(perplexity(loss_value))
                lm.tokens.set(tokens_total)
                m.last_progress.set(time.time())
                lm.eta.set(max(0.0, (total_steps - pos.step) * sum(step_seconds) / len(step_seconds)))
                if now - window_start >= 1.0:
                    lm.tokens_per_second.set(window_tokens / (now - window_start))
                    m.samples_per_second.set(h.batch_size * accum * len(step_seconds) / sum(step_seconds))
                    window_tokens, window_start = 0, now
                if pos.step % ft.logging_steps == 0:
                    log.info(
                        "epoch %d/%d step %d/%d: loss %.4f perplexity %.2f",
                        pos.epoch + 1,
                        h.epochs,
                        pos.step,
                        total_steps,
                        loss_value,
                        perplexity(loss_value),
                    )
                if self.sigterm.set:
                    checkpoint()
                    self.saved = store.wait() or self.saved
                    raise Terminated(pos.step)
                if batch_index < batches_per_epoch and (
                    (interval_steps and pos.step % interval_steps == 0)
                    or now - last_ckpt_time >= cfg.checkpoint.interval_seconds
                ):
                    checkpoint()
            if window_tokens and time.monotonic() > window_start:
                lm.tokens_per_second.set(window_tokens / (time.monotonic() - window_start))
            pos.val_loss = self._evaluate(model, val_ids, pad_id, device, autocast) if val_ids else None
            if pos.val_loss is not None:
                m.val_loss.set(pos.val_loss)
                lm.val_perplexity.set(perplexity(pos.val_loss))
                log.info(
                    "epoch %d/%d: val_loss %.4f val_perplexity %.2f",
                    pos.epoch + 1,
                    h.epochs,
                    pos.val_loss,
                    perplexity(pos.val_loss),
                )
            pos.epoch += 1
            pos.batches_in_epoch = 0
            final = pos.epoch >= h.epochs
            due = bool(interval_steps and pos.step % interval_steps == 0) or (
                time.monotonic() - last_ckpt_time >= cfg.checkpoint.interval_seconds
            )
            if final or due:
                checkpoint()
            if self.sigterm.set:
                self.saved = store.wait() or self.saved
                raise Terminated(pos.step)

        self.saved = store.wait() or self.saved
        lm.eta.set(0)
        metrics: dict[str, float] = {}
        if math.isfinite(loss_value):
            metrics["train_loss"] = loss_value
            metrics["perplexity"] = perplexity(loss_value)
        if first_loss is not None and math.isfinite(first_loss):
            metrics["first_loss"] = first_loss
        if pos.val_loss is not None:
            metrics["loss"] = pos.val_loss
            metrics["val_perplexity"] = perplexity(pos.val_loss)
        metrics["tokens"] = float(tok.tokens)
        metrics["truncated_examples"] = float(tok.truncated)
        result = TrainResult(
            status="Succeeded",
            reason=REASON_SUCCEEDED,
            message=(
                f"fine-tuned ({ft.method}) {pos.epoch} epoch(s), {pos.step} step(s) on {len(train_ids)} "
                f"example(s); loss {first_loss if first_loss is not None else float('nan'):.4f} -> "
                f"{loss_value:.4f}"
                + (
                    f", validation perplexity {perplexity(pos.val_loss):.2f}"
                    if pos.val_loss is not None
                    else ""
                )
            ),
            metrics=ResultMetrics.model_validate(metrics),
            dataset_digest=examples.digest,
            base_model=ResultBaseModel(
                model_version=cfg.base_model.model_version,
                sha256=cfg.base_model.sha256,
                uri=cfg.base_model.uri,
                method=ft.method,
            ),
            epochs=pos.epoch,
            steps=pos.step,
            train_loss=loss_value if math.isfinite(loss_value) else None,
            resumed_from_step=self.resumed_from,
            world_size=r.world_size,
            rank=r.rank,
            hyperparameters={
                "method": ft.method,
                "epochs": h.epochs,
                "batchSize": h.batch_size,
                "learningRate": h.learning_rate,
                "gradientAccumulationSteps": accum,
                "maxSequenceLength": ft.max_sequence_length,
                "precision": cfg.precision,
                **(
                    {"loraR": ft.lora.r, "loraAlpha": ft.lora.alpha, "loraDropout": ft.lora.dropout}
                    if ft.lora
                    else {}
                ),
            },
        )
        if self.saved is not None:
            result.checkpoint = ResultCheckpoint(
                step=self.saved.step,
                path=str(self.saved.path.relative_to(self.env.checkpoint_dir)),
                sha256=self.saved.manifest_sha256,
            )
        if r.rank == 0:
            result.artifact = ResultArtifact.model_validate(
                self._export(model, tokenizer, examples, pos, metrics)
            )
            log.info("exported %s (sha256 %s)", result.artifact.path, result.artifact.sha256[:16])
        return result

    def _optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        h = self.cfg.hyperparameters
        if h.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=h.learning_rate, momentum=h.momentum, weight_decay=h.weight_decay
            )
        if h.optimizer == "adam":
            return torch.optim.Adam(params, lr=h.learning_rate, weight_decay=h.weight_decay)
        return torch.optim.AdamW(params, lr=h.learning_rate, weight_decay=h.weight_decay)

    def _evaluate(
        self, model: nn.Module, ids: list[list[int]], pad_id: int, device: torch.device, autocast: Any
    ) -> float:
        """Token-weighted mean loss over the validation examples."""
        was = model.training
        model.eval()
        total, count = 0.0, 0
        bs = self.cfg.hyperparameters.batch_size
        with torch.no_grad(), autocast():
            for i in range(0, len(ids), bs):
                batch = {k: v.to(device) for k, v in collate(ids[i : i + bs], pad_id).items()}
                out = model(**batch)
                n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
                total += float(out.loss) * n
                count += n
        model.train(was)
        return total / max(1, count)

    def _state(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, pos: Position
    ) -> dict[str, Any]:
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        return {
            "trainable": trainable,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "position": {
                "epoch": pos.epoch,
                "step": pos.step,
                "batchesInEpoch": pos.batches_in_epoch,
                "valLoss": pos.val_loss,
            },
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
        }

    def _resume(
        self,
        store: CheckpointStore,
        fingerprint: dict[str, Any],
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        distributed: bool,
    ) -> Position:
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
                self.metrics.checkpoint_step.set(saved.step)
                self.metrics.checkpoint_time.set(saved.path.stat().st_mtime)
                loaded = [state]
        if distributed:
            dist.broadcast_object_list(loaded, src=0)
        state = loaded[0]
        if state is None:
            return Position()
        missing = set(state["trainable"]) - {n for n, _ in model.named_parameters()}
        if missing:
            raise ConfigError(f"checkpoint does not fit the model (unknown parameters {sorted(missing)[:3]})")
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        p = state["position"]
        pos = Position(
            epoch=int(p["epoch"]),
            step=int(p["step"]),
            batches_in_epoch=int(p["batchesInEpoch"]),
            val_loss=p["valLoss"],
        )
        if self.ranks.rank == 0:
            torch.set_rng_state(state["rng"]["torch"])
            random.setstate(state["rng"]["python"])
        self.resumed_from = pos.step
        log.info("resumed from checkpoint step %d (epoch %d)", pos.step, pos.epoch + 1)
        return pos

    def _export(
        self,
        model: Any,
        tokenizer: Any,
        examples: data_mod.Examples,
        pos: Position,
        metrics: dict[str, float],
    ) -> dict[str, Any]:
        cfg, ft = self.cfg, self.cfg.fine_tune
        card = {
            "name": cfg.output.model_name,
            "trainingJob": cfg.job.name,
            "job": cfg.job.to_wire(),
            "recipe": "causal-lm",
            "method": ft.method,
            "baseModel": cfg.base_model.to_wire(),
            "datasetDigest": examples.digest,
            "dataset": {"source": examples.source, "kind": examples.kind, "examples": len(examples.items)},
            "hyperparameters": cfg.hyperparameters.to_wire(),
            "precision": cfg.precision,
            "metrics": metrics,
            "epochs": pos.epoch,
            "steps": pos.step,
            "codeVersion": __version__,
        }
        out = model
        fmt: Literal["huggingface", "lora"] = "huggingface"
        if ft.method in ("lora", "qlora"):
            if ft.merge_adapter and ft.method == "lora":
                out = model.merge_and_unload()
                card["adapter"] = "merged"
            else:
                # The adapter alone (adapter_config.json names the base by its directory; the card by
                # the ModelVersion or URI the operator resolved).
                card["adapter"] = "separate"
                fmt = "lora"
        with torch.no_grad():
            return export.export(out, tokenizer, self.env.output_dir, _artifact_name(), card, fmt)


def _artifact_name() -> str:
    from modelops.api.finetune import FINETUNE_OUTPUT_DIR

    return FINETUNE_OUTPUT_DIR


def run(cfg: FineTuneRunConfig, env: WorkerEnv) -> TrainResult:
    """Fine-tune in this process (or as one rank of torchrun)."""
    return FineTuner(cfg, env).run()
