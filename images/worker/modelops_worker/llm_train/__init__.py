"""Causal-LM fine-tuning (`spec.fineTune` of a TrainingJob): transformers + peft, full or LoRA/QLoRA.

`modelops-worker train` hands a run configuration whose `recipe` is `causal-lm` to `finetune.run`. The
pieces: `data` (JSONL text/chat, checked before the first step), `finetune` (the loop: checkpoints,
resume, progress, DDP), `export` (a Hugging Face directory with its digest manifest), `tiny` (a tiny
model and a real corpus built offline, for CI and the examples).
"""
