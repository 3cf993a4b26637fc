"""GGUF models through llama.cpp (`llama-cpp-python`'s bindings), with continuous batching.

One llama.cpp context holds `parallel` sequences in a unified KV cache of `contextLength x parallel`
cells, so every admitted sequence always fits. Each engine step builds ONE `llama_batch`: the next
token of every decoding sequence plus chunks of the prompts of newly admitted ones (up to `n_batch`
tokens), decodes it, and samples each sequence that produced logits with its own sampler chain
(logit bias, penalties, top-p, temperature, seeded distribution; greedy at temperature 0). A sequence
joins at the next step and leaves as soon as it finishes or is cancelled (its cells are freed), so a
short request never waits for a long one: continuous batching as llama.cpp's own server does it.

Engine settings (named in docs/benchmarks.md): flash attention auto, `n_batch` = `n_ubatch` = 256,
KV cache f16 unified, `n_threads` = `threads` (default: the CPUs this pod may use).
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path
from typing import Any

from modelops.api.llmconfig import REASON_ADAPTER_INCOMPATIBLE, LLMServeConfig
from modelops.api.runconfig import EXIT_BAD_DATA
from modelops_worker.errors import WorkerError
from modelops_worker.llm import chat
from modelops_worker.llm.engine import BatchingEngine, Deliveries, ModelInfo, Sequence, usable_cpus

log = logging.getLogger("modelops_worker.llm")

N_BATCH = 256
DEFAULT_CONTEXT_CAP = 4096


def _quiet() -> None:
    import llama_cpp._logger as llama_logger

    llama_logger.set_verbose(os.environ.get("MODELOPS_LLAMA_VERBOSE") == "1")


class _Slot:
    def __init__(self, seq_id: int) -> None:
        self.seq_id = seq_id
        self.pos = 0  # tokens of this sequence in the KV cache
        self.pending: list[int] = []  # tokens still to feed (the prompt, then the sampled token)
        self.sampler: Any = None
        self.logits_index = -1


class LlamaCppEngine(BatchingEngine):
    name = "llamacpp"

    def __init__(self, cfg: LLMServeConfig, model_path: Path, lora_path: Path | None = None) -> None:
        super().__init__(cfg.parallel, cfg.max_waiting)
        import llama_cpp
        from llama_cpp import _internals

        _quiet()
        self._llama = llama_cpp
        llama_cpp.llama_backend_init()
        mp = llama_cpp.llama_model_default_params()
        self.model = _internals.LlamaModel(path_model=str(model_path), params=mp, verbose=False)
        meta = self.model.metadata()
        trained = self.model.n_ctx_train()
        ctx_len = cfg.context_length or min(trained, DEFAULT_CONTEXT_CAP)
        if ctx_len > trained:
            log.warning("contextLength %d is over the %d tokens the model was trained with", ctx_len, trained)
        self.context_length = ctx_len
        threads = cfg.threads or usable_cpus()
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx = ctx_len * cfg.parallel
        cp.n_batch = N_BATCH
        cp.n_ubatch = N_BATCH
        cp.n_seq_max = cfg.parallel
        cp.kv_unified = True
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.embeddings = False
        self.ctx = _internals.LlamaContext(model=self.model, params=cp, verbose=False)
        self._mem = llama_cpp.llama_get_memory(self.ctx.ctx)
        self._batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self.vocab = self.model.vocab
        self.n_vocab = self.model.n_vocab()
        self._lora: Any = None
        if lora_path is not None:
            self._lora = llama_cpp.llama_adapter_lora_init(self.model.model, str(lora_path).encode())
            if not self._lora:
                raise WorkerError(
                    REASON_ADAPTER_INCOMPATIBLE,
                    f"{lora_path.name} does not load as a GGUF LoRA adapter for this model (a peft directory "
                    "goes on a huggingface base; convert it with llama.cpp's convert_lora_to_gguf.py)",
                    EXIT_BAD_DATA,
                )
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._lora)
            scales = (ctypes.c_float * 1)(1.0)
            if llama_cpp.llama_set_adapters_lora(self.ctx.ctx, adapters, 1, scales) != 0:
                raise ValueError(
                    f"llama.cpp refused to apply the LoRA adapter {lora_path.name} to this model"
                )
        self.free_ids = list(range(cfg.parallel))
        self.slots: dict[Sequence, _Slot] = {}
        self.bos = self._piece_text(self.model.token_bos()) if self.model.token_bos() >= 0 else ""
        self.eos = self._piece_text(self.model.token_eos()) if self.model.token_eos() >= 0 else ""
        template = chat.pick(cfg.chat_template, meta.get("tokenizer.chat_template"), self.bos, self.eos)
        arch = meta.get("general.architecture", "unknown")
        self.info = ModelInfo(
            architecture=arch,
            parameters=int(self.model.n_params()),
            context_length=ctx_len,
            trained_context_length=trained,
            vocab_size=self.n_vocab,
            chat_template=template,
            extra={
                "name": meta.get("general.name", ""),
                "quantization": _FILE_TYPES.get(
                    meta.get("general.file_type", ""), meta.get("general.file_type", "")
                ),
                "threads": threads,
                "nBatch": N_BATCH,
            },
        )
        self.add_bos = bool(self.model.add_bos_token())

    def _piece_text(self, token: int) -> str:
        return self.piece(token, special=True).decode("utf-8", errors="replace")

    # --- tokens --------------------------------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        """Text to token ids; `add_special` adds the model's BOS (a chat template writes its own)."""
        data = text.encode("utf-8")
        n = len(data) + 8
        buf = (self._llama.llama_token * n)()
        got = self._llama.llama_tokenize(
            self.vocab, data, len(data), buf, n, add_special and self.add_bos, True
        )
        if got < 0:
            n = -got
            buf = (self._llama.llama_token * n)()
            got = self._llama.llama_tokenize(
                self.vocab, data, len(data), buf, n, add_special and self.add_bos, True
            )
        return list(buf[:got])

    def piece(self, token: int, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(256)
        n = self._llama.llama_token_to_piece(self.vocab, token, buf, 256, 0, special)
        return bytes(buf.raw[: max(0, n)])

    def valid_token(self, token: int) -> bool:
        return 0 <= token < self.n_vocab

    # --- the engine thread ---------------------------------------------------------------------------

    def _sampler(self, seq: Sequence) -> Any:
        L = self._llama
        s = seq.sampling
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        if s.logit_bias:
            arr = (L.llama_logit_bias * len(s.logit_bias))()
            for i, (tok, bias) in enumerate(s.logit_bias.items()):
                arr[i].token = tok
                arr[i].bias = bias
            L.llama_sampler_chain_add(
                chain, L.llama_sampler_init_logit_bias(self.n_vocab, len(s.logit_bias), arr)
            )
        if s.presence_penalty or s.frequency_penalty:
            # Over every generated token (OpenAI's definition). The binding's first argument is read as
            # the window by current llama.cpp and as n_vocab by older ones: the same value suits both.
            window = self.context_length
            L.llama_sampler_chain_add(
                chain,
                L.llama_sampler_init_penalties(window, window, 1.0, s.frequency_penalty, s.presence_penalty),
            )
        if s.temperature <= 0.0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
        else:
            if s.top_p < 1.0:
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(s.top_p, 1))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(s.temperature))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seq.seed & 0xFFFFFFFF))
        return chain

    def _admit(self, seq: Sequence) -> None:
        slot = _Slot(self.free_ids.pop())
        slot.pending = list(seq.prompt)
        slot.sampler = self._sampler(seq)
        self._llama.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
        self.slots[seq] = slot

    def _release(self, seq: Sequence) -> None:
        slot = self.slots.pop(seq)
        self._llama.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
        self._llama.llama_sampler_free(slot.sampler)
        self.free_ids.append(slot.seq_id)

    def _step(self, out: Deliveries) -> dict[Sequence, tuple[str, str | None]]:
        L = self._llama
        b = self._batch
        b.n_tokens = 0
        budget = N_BATCH
        fed: list[tuple[Sequence, _Slot]] = []
        # Decoding sequences first (one token each: their latency), then prompt chunks with what is left.
        order = sorted(self.active, key=lambda s: len(self.slots[s].pending) > 1)
        for seq in order:
            slot = self.slots[seq]
            if budget == 0:
                break
            take = slot.pending[:budget]
            for k, tok in enumerate(take):
                j = b.n_tokens
                b.token[j] = tok
                b.pos[j] = slot.pos + k
                b.n_seq_id[j] = 1
                b.seq_id[j][0] = slot.seq_id
                b.logits[j] = False
                b.n_tokens += 1
            slot.pos += len(take)
            slot.pending = slot.pending[len(take) :]
            budget -= len(take)
            if not slot.pending:
                b.logits[b.n_tokens - 1] = True
                slot.logits_index = b.n_tokens - 1
                fed.append((seq, slot))
        rc = L.llama_decode(self.ctx.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        self.steps += 1
        self.batched_tokens += len(fed)
        if self.on_batch is not None and fed:
            self.on_batch(len(fed))
        done: dict[Sequence, tuple[str, str | None]] = {}
        for seq, slot in fed:
            tok = int(L.llama_sampler_sample(slot.sampler, self.ctx.ctx, slot.logits_index))
            if L.llama_vocab_is_eog(self.vocab, tok) and not seq.sampling.ignore_eos:
                done[seq] = ("stop", None)
                continue
            out.token(seq, tok, self.piece(tok))
            if seq.generated >= seq.max_tokens or slot.pos + 1 > self.context_length:
                done[seq] = ("length", None)
            else:
                slot.pending = [tok]
        return done

    def _close(self) -> None:
        self._llama.llama_batch_free(self._batch)


# general.file_type of GGUF (llama_ftype), the ones worth naming.
_FILE_TYPES = {
    "0": "F32",
    "1": "F16",
    "2": "Q4_0",
    "3": "Q4_1",
    "7": "Q8_0",
    "8": "Q5_0",
    "9": "Q5_1",
    "10": "Q2_K",
    "11": "Q3_K_S",
    "12": "Q3_K_M",
    "13": "Q3_K_L",
    "14": "Q4_K_S",
    "15": "Q4_K_M",
    "16": "Q5_K_S",
    "17": "Q5_K_M",
    "18": "Q6_K",
    "32": "BF16",
}
