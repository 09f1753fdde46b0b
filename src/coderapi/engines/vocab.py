"""A GGUF's vocabulary alone (no weights): tokenize, detokenize and token pieces, exactly as llama.cpp does.

A vocab-only load takes a few MB and well under a second; it is how a gateway that does not run
the model itself (the remote completion engine, the upstream pass-through's token counter) counts
and decodes tokens the way the model server does. Qwen2.5-Coder sizes share one tokenizer, so the
embedded 0.5B's GGUF counts the 32B exactly.

It is the in-process engine's `LlamaModel` loaded with `vocab_only`: its vocabulary methods
(tokenize, detokenize, piece, token_text, is_eog, metadata) are the same code.
Loading blocks: call `load_vocab` off the event loop.
"""

from __future__ import annotations

from pathlib import Path


def load_vocab(path: Path):
    """The vocabulary of the GGUF at `path` (a `LlamaModel` without weights). Blocks."""
    from coderapi.engines.llama_cpp.model import LlamaModel  # lazy: llama-cpp-python is optional

    return LlamaModel(Path(path), vocab_only=True)
