"""`modelops-worker verify` of LLM artifacts (GGUF, Hugging Face directory, LoRA adapter on its base)
and the transformers engine served end to end with a peft adapter, plus the text streaming rules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from llmhelpers import Model, build_tiny_llama
from openai import OpenAI

from modelops.api.llmconfig import MANIFEST_FILE, artifact_digest
from modelops_worker import cli
from modelops_worker.llm.engine import TextStream


def verify(tmp: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """`modelops-worker verify` in this process (the CLI's own entry point: exit code and termination
    message are the real ones; torch and transformers are imported once for the module)."""
    log = tmp / "verify-termination-log"
    before = os.environ.get("MODELOPS_TERMINATION_LOG")
    os.environ["MODELOPS_TERMINATION_LOG"] = str(log)
    try:
        code = cli.main(["verify", *args])
    finally:
        if before is None:
            os.environ.pop("MODELOPS_TERMINATION_LOG")
        else:
            os.environ["MODELOPS_TERMINATION_LOG"] = before
    text = log.read_text()
    assert len(text.encode()) < 4096
    return code, json.loads(text)


def make_adapter(base: Path, out: Path) -> Model:
    """A LoRA adapter with non-zero weights (peft starts B at zero: that would change nothing)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    cfg = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, cfg).save_pretrained(str(out))
    return Model(out, artifact_digest(out))


def test_verify_gguf_records_what_the_registry_shows(gemma: Model, tmp_path: Path) -> None:
    code, out = verify(tmp_path, "--format", "gguf", "--artifact", str(gemma.path), "--sha256", gemma.digest)
    assert code == 0, out
    assert (
        out["artifact"]["sha256"] == gemma.digest
        and out["artifact"]["sizeBytes"] == gemma.path.stat().st_size
    )
    llm = out["llm"]
    assert llm["architecture"] == "gemma3" and llm["quantization"] == "Q4_K_M" and llm["engine"] == "llamacpp"
    assert 250_000_000 < llm["parameters"] < 300_000_000 and llm["contextLength"] == 32768
    assert llm["chatTemplate"] is False, "this GGUF ships no chat template"
    assert llm["smoke"]["tokens"] == 8 and llm["smoke"]["text"].strip()
    code, out = verify(tmp_path, "--format", "gguf", "--artifact", str(gemma.path), "--sha256", "1" * 64)
    assert code == 65 and out["reason"] == "ArtifactDigestMismatch"
    not_lora = tmp_path / "adapter.gguf"
    not_lora.write_bytes(b"GGUF but not really")
    code, out = verify(
        tmp_path, "--format", "lora", "--artifact", str(not_lora),
        "--base-artifact", str(gemma.path), "--base-sha256", gemma.digest,
    )  # fmt: skip
    assert code == 65 and out["reason"] == "AdapterIncompatible", out


def test_verify_a_directory_by_its_digest_and_name_the_changed_file(
    tiny_llama: Model, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(tiny_llama.path, copy)
    code, out = verify(
        tmp_path, "--format", "huggingface", "--artifact", str(copy), "--sha256", tiny_llama.digest
    )
    assert code == 0, out
    assert out["artifact"]["sha256"] == tiny_llama.digest and out["llm"]["architecture"] == "LlamaForCausalLM"
    assert (copy / MANIFEST_FILE).is_file(), "verify stores the manifest next to the model"
    assert out["llm"]["files"] == len(json.loads((copy / MANIFEST_FILE).read_text())["files"]) == 5
    gen = copy / "generation_config.json"
    gen.write_text(gen.read_text() + "\n")
    code, out = verify(
        tmp_path, "--format", "huggingface", "--artifact", str(copy), "--sha256", tiny_llama.digest
    )
    assert code == 65 and out["reason"] == "ArtifactDigestMismatch"
    assert "changed: generation_config.json" in out["message"]


def test_verify_a_lora_adapter_on_its_base_and_refuse_one_for_another(
    tiny_llama: Model, tmp_path: Path
) -> None:
    adapter = make_adapter(tiny_llama.path, tmp_path / "adapter")
    code, out = verify(
        tmp_path, "--format", "lora", "--artifact", str(adapter.path), "--sha256", adapter.digest,
        "--base-artifact", str(tiny_llama.path), "--base-sha256", tiny_llama.digest,
    )  # fmt: skip
    assert code == 0, out
    assert out["artifact"]["sha256"] == adapter.digest and out["base"]["sha256"] == tiny_llama.digest
    other = build_tiny_llama(tmp_path / "other-base")  # same shapes: build a wider one instead
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(other.path))
    wide = tmp_path / "wide-base"
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=96, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(wide)
    tok.save_pretrained(wide)
    code, out = verify(
        tmp_path, "--format", "lora", "--artifact", str(adapter.path), "--sha256", adapter.digest,
        "--base-artifact", str(wide),
    )  # fmt: skip
    assert code == 65 and out["reason"] == "AdapterIncompatible", out


def test_transformers_engine_serves_a_directory_with_its_adapter(
    start: Any, tiny_llama: Model, tmp_path: Path
) -> None:
    adapter = make_adapter(tiny_llama.path, tmp_path / "adapter")
    base = start(tiny_llama, "huggingface", modelName="tiny", parallel=4)
    tuned = start(
        tiny_llama,
        "huggingface",
        modelName="tiny",
        parallel=4,
        adapterPath=str(adapter.path),
        adapterDigest=adapter.digest,
    )
    ask: dict[str, Any] = {
        "model": "tiny",
        "prompt": "the weather today is",
        "max_tokens": 8,
        "temperature": 0,
    }
    clients = [OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0) for s in (base, tuned)]
    texts = [c.completions.create(**ask).choices[0].text for c in clients]
    assert texts[0] != texts[1], "the adapter's weights change what the model says"
    chunks = list(
        clients[1].chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=6,
            temperature=0,
            stream=True,
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    many = clients[1].completions.create(**{**ask, "n": 3, "temperature": 1.0, "seed": 5})
    assert sorted(c.index for c in many.choices) == [0, 1, 2]
    same = clients[1].completions.create(**{**ask, "n": 3, "temperature": 1.0, "seed": 5})
    assert [c.text for c in many.choices] == [c.text for c in same.choices], "seeded sampling repeats"
    wrong = start(
        tiny_llama, "huggingface", ready=False, adapterPath=str(adapter.path), adapterDigest="0" * 64
    )
    assert wrong.proc.wait(timeout=120) == 65 and wrong.result()["reason"] == "ArtifactDigestMismatch"


@pytest.mark.parametrize(
    ("pieces", "stops", "streamed", "text"),
    [
        ([b"Hel", b"lo wo", b"rld"], [], ["Hel", "lo wo", "rld"], "Hello world"),
        ([b"Hello", b" ST", b"OP", b" more"], ["STOP"], ["He", "llo", " "], "Hello "),
        ([b"caf", b"\xc3", b"\xa9!"], [], ["caf", "", "\u00e9!"], "caf\u00e9!"),
        ([b"ab", b"c"], ["abc", "x"], ["", ""], ""),
    ],
)
def test_text_stream_holds_back_split_characters_and_stop_strings(
    pieces: list[bytes], stops: list[str], streamed: list[str], text: str
) -> None:
    ts = TextStream(stops)
    got = [ts.push(p) for p in pieces[: len(streamed)]]
    assert got == streamed
    got.append(ts.flush())
    assert "".join(got) == text
