"""How an InferenceService serves a large language model: `spec.llm`.

A ModelVersion of format huggingface, gguf or lora is served over OpenAI's API by an existing engine,
chosen by the version's format and the pod's GPUs (docs/llm.md):

| engine        | serves                        | runs                                                   |
|---------------|-------------------------------|--------------------------------------------------------|
| vllm          | huggingface (+ lora adapters) | vLLM's official OpenAI server image, on GPUs           |
| llamacpp      | gguf (+ GGUF lora adapters)   | `modelops-worker serve-llm` (llama-cpp-python), on CPUs |
| transformers  | huggingface (+ peft adapters) | `modelops-worker serve-llm` (transformers), on CPUs     |

`auto` picks llamacpp for gguf, vllm for huggingface when `spec.resources.gpus` > 0 and transformers
otherwise. The same InferenceService kind keeps everything it already does for LLMs (canaries, HPA,
alerts, auth); only the pod differs, so no new kind is needed. Every setting here maps onto the
engine's own: `modelops.api.llmconfig.LLMServeConfig` for the CPU engines, vLLM's flags for vLLM
(`modelops.builders.vllm`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from modelops.api.common import IMAGE_PATTERN, ApiModel, rules

# vLLM's official OpenAI server image, pinned (spec.llm.vllm.image overrides it per InferenceService).
VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"
ENGINES = ("vllm", "llamacpp", "transformers")
# A name clients may send as `model`: what OpenAI model ids look like (letters, digits, . _ - / :).
SERVED_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"


class VLLMOptions(ApiModel):
    """What only vLLM reads."""

    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        pattern=IMAGE_PATTERN,
        description=f"vLLM's OpenAI server image (default {VLLM_IMAGE}).",
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        default="auto", description="--dtype: the weights' and activations' type (auto: the model's)."
    )
    gpu_memory_utilization: float = Field(
        default=0.9,
        ge=0.05,
        le=1.0,
        description="--gpu-memory-utilization: the fraction of each GPU's memory vLLM may take (weights, "
        "activations and KV cache).",
    )
    max_lora_rank: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="--max-lora-rank when serving a lora version (vLLM's default 16; set it to the adapter's "
        "rank when higher).",
    )
    extra_args: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list,
        max_length=64,
        description="Further vLLM flags appended as given, e.g. [--enable-prefix-caching]. Flags the "
        "operator sets itself (--model, --port, --served-model-name, --tensor-parallel-size, "
        "--max-model-len, --api-key ...) are refused.",
        json_schema_extra=rules(
            (
                "self.all(a, !(a.split('=')[0] in ['--model', '--port', '--host', '--served-model-name', "
                "'--tensor-parallel-size', '-tp', '--max-model-len', '--api-key', '--lora-modules', "
                "'--enable-lora', '--gpu-memory-utilization', '--dtype', '--max-num-seqs', "
                "'--max-lora-rank', '--chat-template']))",
                "spec.llm.vllm.extraArgs: a flag the operator sets from spec.llm (model, port, names, "
                "parallelism, context length, auth, adapters, memory, dtype) is refused here; set the "
                "spec.llm field instead",
            ),
        ),
    )


class LLMServing(ApiModel):
    """How an LLM version is served over OpenAI's API (versions of format huggingface, gguf, lora)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.defaultMaxTokens <= self.maxTokens",
                "spec.llm.defaultMaxTokens must not exceed spec.llm.maxTokens (the cap a request may ask for)",
            ),
            (
                "!has(self.maxPromptTokens) || !has(self.contextLength) || "
                "self.maxPromptTokens < self.contextLength",
                "spec.llm.maxPromptTokens must be below spec.llm.contextLength (the prompt and the generation "
                "share the context)",
            ),
            (
                "!has(self.vllm) || self.engine in ['auto', 'vllm']",
                "spec.llm.vllm applies to the vllm engine only: drop it or set spec.llm.engine vllm (or auto)",
            ),
        )
    )

    engine: Literal["auto", "vllm", "llamacpp", "transformers"] = Field(
        default="auto",
        description="The serving engine. auto: llamacpp for gguf, vllm for huggingface on GPUs "
        "(spec.resources.gpus > 0), transformers for huggingface on CPUs.",
    )
    context_length: int | None = Field(
        default=None,
        ge=16,
        le=1048576,
        description="Tokens of context per sequence, prompt and generation together (vLLM --max-model-len). "
        "Default: the model's own (at most 8192 on the CPU engines).",
    )
    max_prompt_tokens: int | None = Field(
        default=None,
        ge=1,
        le=1048576,
        description="Longest prompt accepted; a longer one is answered 400 context_length_exceeded "
        "(default: the context length minus one). CPU engines only; vLLM enforces the context length.",
    )
    max_tokens: int = Field(
        default=4096,
        ge=1,
        le=1048576,
        description="Largest max_tokens a request may ask for (400 beyond). CPU engines; vLLM caps a "
        "request at the context length.",
    )
    default_max_tokens: int = Field(
        default=256, ge=1, le=1048576, description="max_tokens of a request that sends none (CPU engines)."
    )
    parallel: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Sequences decoded together in one batch per pod (vLLM --max-num-seqs); more wait.",
    )
    max_waiting: int = Field(
        default=256,
        ge=0,
        le=1000000,
        description="Requests that may wait for a free sequence before new ones get 429 (CPU engines; vLLM "
        "queues without a bound).",
    )
    threads: int | None = Field(
        default=None, ge=1, le=1024, description="CPU threads of the engine (default: the pod's CPU limit)."
    )
    chat_template: str | None = Field(
        default=None,
        min_length=1,
        max_length=65536,
        description="A Jinja chat template replacing the model's (vLLM --chat-template).",
    )
    served_model_names: list[Annotated[str, Field(pattern=SERVED_NAME_PATTERN)]] = Field(
        default_factory=list,
        max_length=8,
        description="Further names clients may send as `model` besides the InferenceService's name.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    embeddings: bool = Field(
        default=False,
        description="Serve /v1/embeddings from an embedding model instead of generation (CPU engines).",
    )
    vllm: VLLMOptions | None = Field(default=None, description="Settings only vLLM reads.")


# The InferenceService spec's rules about spec.llm, added to its own (they need spec.resources).
SPEC_RULES: tuple[tuple[str, str], ...] = (
    (
        "!has(self.llm) || !has(self.predictor)",
        "spec.llm configures the LLM engines the operator runs; a custom spec.predictor configures itself: "
        "drop one of them",
    ),
    (
        "!has(self.llm) || self.llm.engine != 'vllm' || self.resources.gpus > 0",
        "spec.llm.engine vllm runs on GPUs: set spec.resources.gpus (1 or more), or use engine llamacpp or "
        "transformers on CPUs",
    ),
    (
        "!has(self.llm) || !(self.llm.engine in ['llamacpp', 'transformers']) || self.resources.gpus == 0",
        "spec.llm.engine llamacpp and transformers run on CPUs: set spec.resources.gpus to 0, or use engine "
        "vllm (or auto) on GPUs",
    ),
    (
        "!has(self.llm) || !self.llm.embeddings || self.resources.gpus == 0",
        "spec.llm.embeddings is served by the CPU engines: set spec.resources.gpus to 0",
    ),
    (
        "!has(self.llm) || self.precision == 'fp32' && self.quantization == 'none'",
        "spec.precision and spec.quantization configure modelops-worker serve; for an LLM set "
        "spec.llm.vllm.dtype (vLLM) or register a quantised GGUF: leave them fp32 and none",
    ),
)
