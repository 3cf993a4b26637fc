"""Fixtures of the LLM tests; the helpers are in llmhelpers.py (a unique module name to import)."""

from llmhelpers import embed_server, gemma, gemma_server, minilm, start, tiny_llama

__all__ = ["embed_server", "gemma", "gemma_server", "minilm", "start", "tiny_llama"]
