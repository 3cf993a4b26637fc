"""Causal-LM fine-tuning (spec.fineTune) in the worker, with real transformers, peft and tokenizers.

The base model is the tiny Llama `modelops_worker.llm_train.tiny` builds offline (a BPE tokenizer
trained on the Python Language Reference that CPython ships, random weights); the data is that corpus.
What a user would notice: a malformed file fails before training with the line and the fix, the loss
falls, a killed run resumes from its checkpoint and goes on falling, LoRA trains only the adapter, and
what is exported loads in transformers (and peft) and generates.
"""

from __future__ import annotations

import json
import math
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

# Installed by make bootstrap (the worker extra): a missing one fails the run, never skips it.
import peft
import pytest
import transformers

from modelops.api import llmconfig
from modelops.api.finetune import FineTuneData
from modelops_worker.llm_train import data as data_mod
from modelops_worker.llm_train import tiny


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    tiny.write(out, examples=120)
    return out


def ft_config(base: Path, **fine_tune: Any) -> dict[str, Any]:
    hp = fine_tune.pop("hyperparameters", {})
    ckpt = fine_tune.pop("checkpoint", {})
    spec = {
        "baseModel": {"claimName": "models", "path": "base"},
        "data": {"claimName": "data", "path": "train.jsonl"},
        "method": "full",
        "maxSequenceLength": 96,
        **fine_tune,
    }
    return {
        "recipe": "causal-lm",
        "job": {"name": "ft", "namespace": "default", "uid": "u-1"},
        "fineTune": spec,
        "baseModelDir": str(base),
        "baseModel": {"uri": "pvc://models/base"},
        "hyperparameters": {"epochs": 2, "batchSize": 8, "learningRate": 0.003, "seed": 3, **hp},
        "checkpoint": {"intervalSeconds": 3600, "keep": 3, **ckpt},
        "output": {"modelName": "ft"},
    }


def _link_data(worker, tiny_dir: Path) -> None:
    for f in (tiny_dir / "data").iterdir():
        (worker.data / f.name).write_bytes(f.read_bytes())


# -- data validation ---------------------------------------------------------------------------------


def _load(tmp_path: Path, content: bytes, **spec: Any) -> data_mod.Examples:
    (tmp_path / "d.jsonl").write_bytes(content)
    return data_mod.load(FineTuneData(claim_name="data", path="d.jsonl", **spec), tmp_path)


CHAT_OK = json.dumps(
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"text": "fine"}\n{"text": "also"\n', "line 2: not valid JSON"),
        (b'{"text": "fine"}\n\n\n[1, 2]\n', "line 4: expected a JSON object, got list"),
        (b'{"text": "fine"}\n{"txt": "typo"}\n', 'line 2: missing the "text" field'),
        (b'{"text": "fine"}\n{"text": "   "}\n', 'line 2: "text" is empty'),
        (b'{"text": "fine"}\n{"text": 42}\n', 'line 2: "text" must be a string, got int'),
        (b'{"text": "fine"}\n{"text": "caf\xe9"}\n', "line 2: not UTF-8"),
        (
            b'{"input": "a", "output": "b"}\n',
            'line 1: expected one of a "text" field (text data), a "messages"',
        ),
        (b'{"prompt": "a", "completion": " "}\n', 'line 1: "completion" is empty'),
        (b'{"prompt": "a", "completion": "b"}\n{"prompt": "c"}\n', 'line 2: missing the "completion" field'),
        (
            b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}\n',
            "line 1: messages[0].content[0] must be a text part",
        ),
        (CHAT_OK.encode() + b'\n{"messages": []}\n', 'line 2: "messages" must be a non-empty list'),
        (
            CHAT_OK.encode() + b'\n{"messages": [{"role": "robot", "content": "x"}]}\n',
            "line 2: messages[0].role must be one of system, user, assistant, tool, got 'robot'",
        ),
        (
            CHAT_OK.encode() + b'\n{"messages": [{"role": "user"}]}\n',
            "line 2: messages[0].content must be a string, got NoneType",
        ),
        (
            CHAT_OK.encode() + b'\n{"messages": [{"role": "user", "content": "only a question"}]}\n',
            'line 2: no "assistant" message',
        ),
        (CHAT_OK.encode() + b'\n{"text": "mixed kinds"}\n', 'line 2: missing the "messages" field'),
        (b"", "the file has no examples"),
        (b"\n  \n", "the file has no examples"),
    ],
)
def test_malformed_lines_fail_before_training_naming_the_line(tmp_path, content, expected):
    with pytest.raises(data_mod.DataValidationError) as err:
        _load(tmp_path, content)
    assert expected in err.value.message
    assert err.value.exit_code == 65  # permanent: the operator does not retry bad data


def test_every_bad_line_is_counted_and_a_few_are_named(tmp_path):
    lines = [json.dumps({"text": f"ok {i}"}) if i % 3 else "{broken" for i in range(30)]
    with pytest.raises(data_mod.DataValidationError) as err:
        _load(tmp_path, "\n".join(lines).encode())
    msg = err.value.message
    assert "10 of 30 line(s)" in msg
    assert "line 1: not valid JSON" in msg and "line 4: not valid JSON" in msg
    assert "maxInvalidLines" in msg  # how to let some through


def test_max_invalid_lines_leaves_bad_lines_out_and_keeps_the_rest(tmp_path):
    content = b'{"text": "one"}\n{oops\n{"text": "two"}\n'
    ex = _load(tmp_path, content, max_invalid_lines=1)
    assert ex.items == ["one", "two"] and ex.lines == [1, 3]
    assert ex.skipped == [
        "line 2: not valid JSON (Expecting property name enclosed in double quotes at column 2)"
    ]


def test_openai_and_trl_shapes_are_read_as_users_write_them(tmp_path):
    openai_chat = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Say "}, {"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": "hi", "weight": 1},
        ]
    }
    ex = _load(tmp_path, json.dumps(openai_chat).encode())
    assert ex.kind == "chat"
    assert ex.items == [
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hi"},
            {"role": "assistant", "content": "hi"},
        ]
    ]
    ex = _load(tmp_path, b'{"prompt": "The for statement ", "completion": "iterates."}\n')
    assert ex.kind == "completion" and ex.items == ["The for statement iterates."]


def test_explicit_format_refuses_the_other_kind(tmp_path):
    with pytest.raises(data_mod.DataValidationError, match='line 1: missing the "text" field'):
        _load(tmp_path, CHAT_OK.encode() + b"\n", format="text")


def test_a_missing_file_is_dataset_not_found(tmp_path):
    with pytest.raises(data_mod.DatasetNotFoundError, match=r"spec\.fineTune\.data\.path"):
        data_mod.load(FineTuneData(claim_name="data", path="nope.jsonl"), tmp_path)


def test_over_length_is_truncated_or_refused_per_the_field(tmp_path, tiny_dir):
    tok = transformers.AutoTokenizer.from_pretrained(tiny_dir / "base")
    long_text = " ".join(["statement"] * 200)
    ex = _load(
        tmp_path, (json.dumps({"text": "short one"}) + "\n" + json.dumps({"text": long_text})).encode()
    )
    cut = data_mod.tokenize(ex, tok, 32, "truncate")
    assert cut.truncated == 1 and max(len(t) for t in cut.ids) == 32
    with pytest.raises(data_mod.DataValidationError) as err:
        data_mod.tokenize(ex, tok, 32, "refuse")
    assert "line 2 (" in err.value.message and "maxSequenceLength=32" in err.value.message
    assert "overLength: truncate" in err.value.message


def test_chat_examples_go_through_the_models_chat_template(tmp_path, tiny_dir):
    tok = transformers.AutoTokenizer.from_pretrained(tiny_dir / "base")
    ex = _load(tmp_path, CHAT_OK.encode() + b"\n")
    ids = data_mod.tokenize(ex, tok, 512, "refuse").ids[0]
    assert tok.decode(ids) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"


# -- training ----------------------------------------------------------------------------------------


def test_full_fine_tune_lowers_the_loss_and_exports_a_model_transformers_loads(worker, tiny_dir):
    _link_data(worker, tiny_dir)
    run = worker.train(ft_config(tiny_dir / "base"))
    assert run.code == 0, run.result
    r = run.result
    assert r["status"] == "Succeeded" and r["artifact"]["format"] == "huggingface"
    # The loss falls on real text: from about ln(vocabulary) well towards the corpus's entropy.
    assert r["metrics"]["first_loss"] > math.log(400)
    assert r["trainLoss"] < r["metrics"]["first_loss"] - 0.8
    assert r["metrics"]["val_perplexity"] < math.exp(r["metrics"]["first_loss"])
    assert (
        r["datasetDigest"]
        == __import__("hashlib").sha256((worker.data / "train.jsonl").read_bytes()).hexdigest()
    )
    assert r["baseModel"] == {"uri": "pvc://models/base", "method": "full"}

    model_dir = run.out / r["artifact"]["path"]
    assert sorted(p.name for p in model_dir.glob("*.safetensors")) == ["model.safetensors"]
    # The digest is the one every other part computes (modelops.api.llmconfig), over what is on disk.
    manifest = json.loads((model_dir / llmconfig.MANIFEST_FILE).read_text())
    assert manifest["digest"] == r["artifact"]["sha256"] == llmconfig.artifact_digest(model_dir)

    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    inputs = tok.apply_chat_template(
        [{"role": "user", "content": "Continue: The for statement"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    # It is the trained model, not the base: the weights moved.
    base = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir / "base")
    assert not base.model.embed_tokens.weight.equal(model.model.embed_tokens.weight)


def test_lora_trains_only_the_adapter_and_merges_it_into_a_plain_model(worker, tiny_dir):
    _link_data(worker, tiny_dir)
    cfg = ft_config(
        tiny_dir / "base",
        method="lora",
        lora={"r": 8, "alpha": 32, "dropout": 0.0, "targetModules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
        hyperparameters={"learningRate": 0.01},
        checkpoint={"intervalSteps": 5},
    )
    run = worker.train(cfg)
    assert run.code == 0, run.result
    r = run.result
    assert r["trainLoss"] < r["metrics"]["first_loss"]
    assert r["hyperparameters"]["loraR"] == 8
    # A LoRA checkpoint holds the adapter, not the frozen base (reloaded from its claim on resume).
    import torch

    state = torch.load(sorted(run.ckpt.glob("ckpt-*"))[-1] / "state.pt", weights_only=True)
    assert state["trainable"] and all("lora_" in name for name in state["trainable"])
    assert len(state["trainable"]) == 2 * 2 * 4  # A and B of 4 modules in each of 2 layers
    model_dir = run.out / r["artifact"]["path"]
    assert not (model_dir / "adapter_config.json").exists()  # merged: a plain model any runtime loads
    merged = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
    base = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir / "base")
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not merged.state_dict()[q].equal(base.state_dict()[q])
    # Only adapted modules moved; an MLP weight is the base's, bit for bit.
    mlp = "model.layers.0.mlp.up_proj.weight"
    assert merged.state_dict()[mlp].equal(base.state_dict()[mlp])


def test_an_adapter_alone_is_exported_and_loads_on_its_base_with_peft(worker, tiny_dir):
    _link_data(worker, tiny_dir)
    cfg = ft_config(tiny_dir / "base", method="lora", mergeAdapter=False, hyperparameters={"epochs": 1})
    run = worker.train(cfg)
    assert run.code == 0, run.result
    assert run.result["artifact"]["format"] == "lora"
    model_dir = run.out / run.result["artifact"]["path"]
    assert (model_dir / "adapter_config.json").is_file() and (
        model_dir / "adapter_model.safetensors"
    ).is_file()
    card = json.loads((model_dir / "modelops-card.json").read_text())
    assert card["adapter"] == "separate" and card["baseModel"]["uri"] == "pvc://models/base"
    base = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir / "base")
    model = peft.PeftModel.from_pretrained(base, model_dir)
    ids = transformers.AutoTokenizer.from_pretrained(model_dir)("The", return_tensors="pt")
    assert model.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] >= 2


def test_chat_data_fine_tunes(worker, tiny_dir):
    _link_data(worker, tiny_dir)
    cfg = ft_config(tiny_dir / "base", data={"claimName": "data", "path": "chat.jsonl", "format": "chat"})
    cfg["hyperparameters"]["epochs"] = 1
    run = worker.train(cfg)
    assert run.code == 0, run.result
    assert run.result["trainLoss"] < run.result["metrics"]["first_loss"]


def test_bad_data_fails_with_exit_65_and_the_line_in_the_termination_message(worker, tiny_dir):
    (worker.data / "train.jsonl").write_text('{"text": "fine"}\n{"text": ""}\n')
    run = worker.train(ft_config(tiny_dir / "base"))
    assert run.code == 65
    assert run.result["reason"] == "DataValidationFailed"
    assert 'line 2: "text" is empty' in run.result["message"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"method": "qlora"}, "spec.fineTune.method: qlora"),
        (
            {"maxSequenceLength": 4096},
            "spec.fineTune.maxSequenceLength=4096 exceeds the base model's context",
        ),
        ({"lora": {"targetModules": ["no_such_proj"]}, "method": "lora"}, "spec.fineTune.lora.targetModules"),
    ],
)
def test_impossible_settings_fail_with_exit_64_naming_the_field(worker, tiny_dir, change, field):
    _link_data(worker, tiny_dir)
    run = worker.train(ft_config(tiny_dir / "base", **change))
    assert run.code == 64, run.result
    assert run.result["reason"] == "InvalidRunConfig"
    assert field in run.result["message"]


def test_a_missing_base_model_names_the_field(worker, tiny_dir):
    _link_data(worker, tiny_dir)
    run = worker.train(ft_config(tiny_dir / "nowhere"))
    assert run.code == 64
    assert "spec.fineTune.baseModel" in run.result["message"] and "config.json" in run.result["message"]


# -- kill and resume, progress on /metrics -----------------------------------------------------------


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("modelops_training") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_sigkill_mid_fine_tune_resumes_from_the_checkpoint_and_the_loss_goes_on_falling(worker, tiny_dir):
    _link_data(worker, tiny_dir)
    cfg = ft_config(tiny_dir / "base", hyperparameters={"epochs": 6}, checkpoint={"intervalSteps": 10})
    port = worker.free_port()
    proc = worker.start(cfg, MODELOPS_METRICS_PORT=str(port), MODELOPS_METRICS_ADDR="127.0.0.1")
    seen: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 240
        while not any(s >= 30 for s in worker.checkpoints()):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "no checkpoint at step 30 in time"
            try:
                m = _scrape(port)
                if m.get("modelops_training_tokens_per_second"):
                    seen = m
            except OSError:
                pass
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    # Live progress as the operator scrapes it: tokens/s, loss, perplexity, ETA.
    assert seen["modelops_training_tokens_per_second"] > 0
    assert seen["modelops_training_perplexity"] == pytest.approx(
        math.exp(seen["modelops_training_loss"]), rel=1e-3
    )
    assert seen["modelops_training_eta_seconds"] > 0
    assert seen["modelops_training_total_steps"] == 6 * 12

    newest = worker.checkpoints()[0]
    assert 30 <= newest < 72, "killed mid-run"
    resumed = worker.train(cfg)
    assert resumed.code == 0, resumed.result
    r = resumed.result
    assert r["resumedFromStep"] == newest and r["steps"] == 72
    # The resumed run starts from the trained weights, not the base: its first loss is already far
    # below the base model's, and it keeps falling.
    fresh_first = math.log(len(transformers.AutoTokenizer.from_pretrained(tiny_dir / "base")))
    assert r["metrics"]["first_loss"] < fresh_first - 0.8
    assert r["trainLoss"] < r["metrics"]["first_loss"]


def test_a_corrupt_newest_checkpoint_is_skipped_for_the_previous_one(worker, tiny_dir):
    _link_data(worker, tiny_dir)
    cfg = ft_config(tiny_dir / "base", hyperparameters={"epochs": 1}, checkpoint={"intervalSteps": 4})
    first = worker.train(cfg)
    assert first.code == 0
    steps = worker.checkpoints()
    assert len(steps) >= 2
    state = worker.ckpt / f"ckpt-{steps[0]:010d}" / "state.pt"
    state.write_bytes(state.read_bytes()[:-10])  # truncated, as by a crash of the disk
    cfg["hyperparameters"]["epochs"] = 2
    again = worker.train(cfg)
    assert again.code == 0, again.result
    assert again.result["resumedFromStep"] == steps[1]


def test_two_processes_fine_tune_together_with_ddp_through_torchrun(worker, tiny_dir):
    _link_data(worker, tiny_dir)
    cfg = ft_config(tiny_dir / "base", hyperparameters={"epochs": 1})
    proc = worker.start(cfg, PET_NPROC_PER_NODE="2", PET_NNODES="1")
    out, _ = proc.communicate(timeout=280)
    assert proc.returncode == 0, out[-3000:]
    r = worker.result()
    assert r["status"] == "Succeeded" and r["worldSize"] == 2
    # Each rank took half the data: 96 training examples in batches of 8 per rank is 6 steps, not 12.
    assert r["steps"] == 6
    assert "rank 1" in out and r["artifact"]["format"] == "huggingface"
