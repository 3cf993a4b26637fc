"""Hugging Face model directories through transformers: batched generation, and embeddings.

Generation (`HFEngine`): the waiting sequences are taken up to `parallel` at a time and decoded in ONE
`model.generate` call (left-padded batch, KV cache), each row with its own limits: a per-row stopping
criterion ends a row at its `max_tokens`, at EOS or when it is cancelled, and a logits processor
applies each row's temperature, top-p, presence/frequency penalties and logit bias before sampling
(a row at temperature 0 is greedy). Rows that ask for a `seed` are batched only with rows of the same
seed (generation draws from torch's global generator, seeded per batch). A LoRA adapter (peft) is
merged into the base weights at load, so serving it costs nothing extra.

Embeddings (`Embedder`): a sentence-transformers directory (all-MiniLM-L6-v2 and the like) read with
transformers: the pooling of `1_Pooling/config.json` (mean, CLS or max), normalised when `modules.json`
says so; inputs longer than `sentence_bert_config.json`'s `max_seq_length` are refused, not truncated.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from modelops.api.llmconfig import REASON_ADAPTER_INCOMPATIBLE, LLMServeConfig
from modelops.api.runconfig import EXIT_BAD_DATA
from modelops_worker.errors import WorkerError
from modelops_worker.llm import chat
from modelops_worker.llm.engine import BatchingEngine, Deliveries, ModelInfo, Sequence, usable_cpus

log = logging.getLogger("modelops_worker.llm")

DEFAULT_CONTEXT_CAP = 4096


def _quiet() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def _torch_threads(cfg: LLMServeConfig) -> int:
    import torch

    n = cfg.threads or usable_cpus()
    torch.set_num_threads(n)
    return n


class HFEngine(BatchingEngine):
    name = "transformers"

    def __init__(self, cfg: LLMServeConfig, path: Path, adapter: Path | None = None) -> None:
        super().__init__(cfg.parallel, cfg.max_waiting)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _quiet()
        self._torch = torch
        self.threads = _torch_threads(cfg)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
        if adapter is not None:
            model = _apply_adapter(model, adapter)
        model.eval()  # type: ignore[no-untyped-call]
        self.model = model
        conf = model.config
        trained = int(getattr(conf, "max_position_embeddings", 0) or DEFAULT_CONTEXT_CAP)
        self.context_length = cfg.context_length or min(trained, DEFAULT_CONTEXT_CAP)
        tok = self.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
        tok.padding_side = "left"
        self.eos_ids = _eos_ids(model, tok)
        template = chat.pick(
            cfg.chat_template,
            tok.chat_template if isinstance(tok.chat_template, str) else None,
            tok.bos_token or "",
            tok.eos_token or "",
        )
        self.n_vocab = len(tok)
        self.info = ModelInfo(
            architecture=(conf.architectures or [conf.model_type])[0],
            parameters=int(sum(p.numel() for p in model.parameters())),
            context_length=self.context_length,
            trained_context_length=trained,
            vocab_size=self.n_vocab,
            chat_template=template,
            extra={"threads": self.threads, "dtype": "float32", "adapterMerged": adapter is not None},
        )
        self._texts: dict[Sequence, tuple[list[int], int]] = {}

    # --- tokens --------------------------------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special)["input_ids"])

    def piece(self, token: int, special: bool = False) -> bytes:
        return str(self.tokenizer.decode([token], skip_special_tokens=not special)).encode()

    def valid_token(self, token: int) -> bool:
        return 0 <= token < self.n_vocab

    # --- the engine thread ---------------------------------------------------------------------------

    def _thread_init(self) -> None:
        self._torch.set_num_threads(self.threads)

    def _run(self) -> None:
        try:
            self._thread_init()
            while True:
                with self._cv:
                    while not self._stopping and not self.waiting:
                        self._cv.wait()
                    if self._stopping:
                        break
                    batch = self._take()
                    self.active = list(batch)
                try:
                    self._generate(batch)
                except Exception as exc:
                    log.exception("transformers: generation failed")
                    out = Deliveries()
                    for seq in batch:
                        out.finish(seq, "error", f"{type(exc).__name__}: {exc}")
                    out.flush()
                with self._cv:
                    self.active = []
        finally:
            out = Deliveries()
            for seq in [*self.active, *self.waiting]:
                out.finish(seq, "error", "the server is shutting down")
            out.flush()

    def _take(self) -> list[Sequence]:
        """The next batch: up to `parallel` waiting sequences of the first one's seed group, in order."""

        def group(seq: Sequence) -> tuple[bool, int]:
            return (seq.sampling.seed is not None, seq.seed if seq.sampling.seed is not None else 0)

        key = group(self.waiting[0])
        batch: list[Sequence] = []
        rest = []
        while self.waiting:
            seq = self.waiting.popleft()
            same = group(seq) == key
            if same and len(batch) < self.parallel and not seq.cancelled:
                batch.append(seq)
            elif seq.cancelled:
                out = Deliveries()
                out.finish(seq, "cancelled")
                out.flush()
            else:
                rest.append(seq)
        self.waiting.extend(rest)
        return batch

    def _generate(self, batch: list[Sequence]) -> None:
        torch = self._torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        tok = self.tokenizer
        width = max(len(s.prompt) for s in batch)
        pad = int(tok.pad_token_id)
        ids = torch.tensor([[pad] * (width - len(s.prompt)) + s.prompt for s in batch])
        mask = torch.tensor([[0] * (width - len(s.prompt)) + [1] * len(s.prompt) for s in batch])
        rows = _Rows(self, batch)
        if batch[0].sampling.seed is not None:
            torch.manual_seed(batch[0].seed)
        any_sampling = any(s.sampling.temperature > 0 for s in batch)
        with torch.inference_mode():
            self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max(s.max_tokens for s in batch),
                do_sample=any_sampling,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                pad_token_id=pad,
                eos_token_id=self.eos_ids or None,
                logits_processor=LogitsProcessorList([rows.process]),
                stopping_criteria=StoppingCriteriaList([rows.stop]),
                streamer=rows,
            )
        self.steps += rows.steps
        self.batched_tokens += rows.decoded
        rows.end()


class _Rows:
    """One batch's rows: the streamer, logits processor and stopping criterion of `generate`."""

    def __init__(self, engine: HFEngine, batch: list[Sequence]) -> None:
        self.engine = engine
        self.batch = batch
        self.done: list[bool] = [False] * len(batch)
        self.tokens: list[list[int]] = [[] for _ in batch]
        self.printed = [0] * len(batch)
        self._first = True
        self.steps = 0
        self.decoded = 0

    # logits processor
    def process(self, input_ids: Any, scores: Any) -> Any:
        torch = self.engine._torch
        out = scores.clone()
        for i, seq in enumerate(self.batch):
            s = seq.sampling
            row = out[i]
            for tok, bias in s.logit_bias.items():
                if 0 <= tok < row.shape[0]:
                    row[tok] += bias
            if (s.presence_penalty or s.frequency_penalty) and self.tokens[i]:
                gen = torch.tensor(self.tokens[i])
                counts = torch.bincount(gen, minlength=row.shape[0])[: row.shape[0]].to(row.dtype)
                row -= s.frequency_penalty * counts + s.presence_penalty * (counts > 0).to(row.dtype)
            if s.temperature <= 0:
                best = int(torch.argmax(row))
                row.fill_(float("-inf"))
                row[best] = 0.0
                continue
            row /= s.temperature
            if s.top_p < 1.0:
                probs, order = torch.sort(torch.softmax(row, -1), descending=True)
                drop = torch.cumsum(probs, -1) - probs > s.top_p
                row[order[drop]] = float("-inf")
        return out

    # stopping criterion: per row
    def stop(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        torch = self.engine._torch
        flags = [
            self.done[i] or seq.cancelled or len(self.tokens[i]) >= seq.max_tokens
            for i, seq in enumerate(self.batch)
        ]
        return torch.tensor(flags, dtype=torch.bool)

    # streamer
    def put(self, value: Any) -> None:
        if self._first:  # generate() first hands the streamer the prompts
            self._first = False
            return
        self.steps += 1
        live = sum(1 for d in self.done if not d)
        if self.engine.on_batch is not None and live:
            self.engine.on_batch(live)
        out = Deliveries()
        tok = self.engine.tokenizer
        for i, t in enumerate(value.reshape(-1).tolist()):
            seq = self.batch[i]
            if self.done[i]:
                continue
            self.decoded += 1
            if seq.cancelled:
                self.done[i] = True
                out.finish(seq, "cancelled")
                continue
            if t in self.engine.eos_ids and not seq.sampling.ignore_eos:
                self.done[i] = True
                out.finish(seq, "stop")
                continue
            self.tokens[i].append(int(t))
            text = str(tok.decode(self.tokens[i], skip_special_tokens=True))
            piece = b""
            if not text.endswith("\ufffd"):
                piece = text[self.printed[i] :].encode()
                self.printed[i] = len(text)
            out.token(seq, int(t), piece)
            if len(self.tokens[i]) >= seq.max_tokens:
                self.done[i] = True
                out.finish(seq, "length")
        out.flush()

    def end(self) -> None:
        out = Deliveries()
        for i, seq in enumerate(self.batch):
            if not self.done[i]:
                self.done[i] = True
                out.finish(seq, "cancelled" if seq.cancelled else "length")
        out.flush()


def _eos_ids(model: Any, tok: Any) -> list[int]:
    ids: list[int] = []
    for source in (getattr(model, "generation_config", None), model.config):
        e = getattr(source, "eos_token_id", None)
        if isinstance(e, int):
            ids.append(e)
        elif isinstance(e, list):
            ids.extend(int(x) for x in e)
    if tok.eos_token_id is not None:
        ids.append(int(tok.eos_token_id))
    return sorted(set(ids))


def _apply_adapter(model: Any, adapter: Path) -> Any:
    """The base model with a peft LoRA adapter merged in; AdapterIncompatible when it does not fit."""
    from peft import PeftModel

    try:
        conf = json.loads((adapter / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise WorkerError(
            REASON_ADAPTER_INCOMPATIBLE,
            f"{adapter} is not a peft adapter directory: adapter_config.json cannot be read ({exc})",
            EXIT_BAD_DATA,
        ) from None
    try:
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    except Exception as exc:
        raise WorkerError(
            REASON_ADAPTER_INCOMPATIBLE,
            f"the LoRA adapter {adapter.name} (for base {conf.get('base_model_name_or_path')!r}) does not fit "
            f"this base model: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
            EXIT_BAD_DATA,
        ) from None
    return merged


class Embedder:
    """A sentence-embedding model; `embed` runs on a worker thread, one call at a time."""

    def __init__(self, path: Path, cfg: LLMServeConfig) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        _quiet()
        self._torch = torch
        self.threads = _torch_threads(cfg)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path), dtype=torch.float32)
        self.model.eval()
        pooling = _read_json(path / "1_Pooling" / "config.json")
        modules = _read_json(path / "modules.json")
        st = _read_json(path / "sentence_bert_config.json")
        self.pooling = (
            "cls"
            if pooling.get("pooling_mode_cls_token")
            else "max"
            if pooling.get("pooling_mode_max_tokens")
            else "mean"
        )
        self.normalize = (
            any("Normalize" in str(m.get("type", "")) for m in modules)
            if isinstance(modules, list)
            else False
        )
        conf = self.model.config
        limit = int(st.get("max_seq_length") or getattr(conf, "max_position_embeddings", 512))
        self.context_length = cfg.context_length or limit
        self.info = ModelInfo(
            architecture=(conf.architectures or [conf.model_type])[0],
            parameters=int(sum(p.numel() for p in self.model.parameters())),
            context_length=self.context_length,
            trained_context_length=int(getattr(conf, "max_position_embeddings", limit)),
            vocab_size=len(self.tokenizer),
            chat_template=None,
            embedding_dimensions=int(conf.hidden_size),
            extra={"pooling": self.pooling, "normalize": self.normalize},
        )
        self._lock = threading.Lock()

    def prepare(self, inputs: list[str | list[int]]) -> list[list[int]]:
        """Token ids of each input (special tokens added); ValueError naming an input over the limit."""
        out = []
        for i, item in enumerate(inputs):
            ids = (
                list(self.tokenizer(item, add_special_tokens=True)["input_ids"])
                if isinstance(item, str)
                else item
            )
            if isinstance(item, list):
                bad = next((t for t in item if t >= self.info.vocab_size), None)
                if bad is not None:
                    raise ValueError(
                        f"input[{i}]: token id {bad} is outside the vocabulary (0..{self.info.vocab_size - 1})"
                    )
            if len(ids) > self.context_length:
                raise ValueError(
                    f"input[{i}] has {len(ids)} tokens, over this model's limit of {self.context_length}; "
                    "split it into shorter inputs"
                )
            out.append(ids)
        return out

    def embed(self, batch: list[list[int]]) -> tuple[list[list[float]], int]:
        torch = self._torch
        with self._lock, torch.inference_mode():
            torch.set_num_threads(self.threads)
            width = max(len(ids) for ids in batch)
            pad = int(self.tokenizer.pad_token_id or 0)
            ids = torch.tensor([x + [pad] * (width - len(x)) for x in batch])
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in batch])
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            if self.pooling == "cls":
                vec = hidden[:, 0]
            elif self.pooling == "max":
                vec = hidden.masked_fill(m == 0, float("-inf")).max(dim=1).values
            else:
                vec = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
            if self.normalize:
                vec = torch.nn.functional.normalize(vec, p=2, dim=1)
            return vec.tolist(), int(sum(len(x) for x in batch))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
