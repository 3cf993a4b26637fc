"""A tiny causal LM and a real English corpus, both made offline, for CI and the fine-tuning example.

Nothing is downloaded: the corpus is the Python Language Reference's topic texts that every CPython
ships (`pydoc_data.topics`, about 460 kB of English prose, the text `help("FOR")` prints), split into
paragraphs. The tokenizer is a byte-level BPE trained on that corpus with `tokenizers`, with a ChatML
chat template so chat data and an OpenAI-style chat completion work on the result. The model is a
random-initialised Llama (transformers' `LlamaForCausalLM`) small enough to train on a CPU in seconds:
a fine-tune's loss falls from ln(vocabulary) towards the corpus's entropy within a few dozen steps.

    python -m modelops_worker.llm_train.tiny OUT_DIR [--examples N]

writes OUT_DIR/base (a Hugging Face model directory) and OUT_DIR/data/{train,chat}.jsonl.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<|im_start|>", "<|im_end|>"]


def corpus(limit: int | None = None, min_chars: int = 80, max_chars: int = 600) -> list[str]:
    """Paragraphs of the Python Language Reference shipped with CPython, in a fixed order."""
    from pydoc_data.topics import topics

    out: list[str] = []
    for name in sorted(topics):
        for para in re.split(r"\n\s*\n", topics[name]):
            text = " ".join(para.split())
            if min_chars <= len(text) <= max_chars and not text.startswith(">>>"):
                out.append(text)
    return out[:limit] if limit else out


def build_tokenizer(texts: list[str], vocab_size: int = 512) -> Any:
    """A byte-level BPE trained on `texts`, wrapped as a transformers fast tokenizer with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>", bos_token=None, unk_token=None
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(vocab_size: int, seed: int = 0, hidden: int = 64, layers: int = 2) -> Any:
    """A random-initialised tiny Llama."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=None,
    )
    return LlamaForCausalLM(cfg)


def chat_examples(texts: list[str]) -> list[dict[str, Any]]:
    """Chat lines from the corpus: the user asks for a topic's text, the assistant gives it."""
    out = []
    for t in texts:
        first = " ".join(t.split()[:4])
        out.append(
            {
                "messages": [
                    {"role": "user", "content": f"Continue: {first}"},
                    {"role": "assistant", "content": t},
                ]
            }
        )
    return out


def write(out: Path, examples: int = 200, seed: int = 0) -> dict[str, Path]:
    """Build the base model directory and the data files under `out`; their paths by name."""
    texts = corpus()
    tokenizer = build_tokenizer(texts)
    model = build_model(len(tokenizer), seed=seed)
    base = out / "base"
    base.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(base, safe_serialization=True)
    tokenizer.save_pretrained(base)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    chosen = texts[:examples]
    train = data / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t}) + "\n" for t in chosen))
    chat = data / "chat.jsonl"
    chat.write_text("".join(json.dumps(e) + "\n" for e in chat_examples(chosen)))
    return {"base": base, "train": train, "chat": chat}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--examples", type=int, default=200)
    args = parser.parse_args(argv)
    for name, path in write(args.out, args.examples).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
