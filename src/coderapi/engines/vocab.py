"""A GGUF's vocabulary alone (no weights): tokenize, detokenize and token pieces, exactly as llama.cpp does.

A vocab-only load takes a few MB and well under a second; it is how a gateway that does not run
the model itself (the remote completion engine, the upstream pass-through's token counter) counts
and decodes tokens the way the model server does. Qwen2.5-Coder sizes share one tokenizer, so the
embedded 0.5B's GGUF counts the 32B exactly.

`VocabOnlyModel` is the in-process engine's `LlamaModel` loaded with `vocab_only`: its
vocabulary methods (tokenize, detokenize, piece, token_text, is_eog, metadata) are reused, not copied.
Loading blocks: call `load_vocab` off the event loop.
"""

from __future__ import annotations

from pathlib import Path


def load_vocab(path: Path):
    """The vocabulary of the GGUF at `path` (a `LlamaModel` without weights). Blocks."""
    import llama_cpp as lc  # lazy: llama-cpp-python is an optional dependency

    from coderapi.engines.llama_cpp.model import LlamaModel, init_backend
    from coderapi.errors import InternalError

    class VocabOnlyModel(LlamaModel):
        def __init__(self, gguf: Path) -> None:  # noqa: D401 - LlamaModel's fields, vocabulary only
            init_backend()
            params = lc.llama_model_default_params()
            params.vocab_only = True
            model = lc.llama_model_load_from_file(str(gguf).encode(), params)
            if not model:
                raise InternalError(f"llama.cpp could not load the vocabulary of {gguf}")
            self.ptr = model
            self.vocab = lc.llama_model_get_vocab(model)
            self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
            self.bos_id = lc.llama_vocab_bos(self.vocab)
            self.eos_id = lc.llama_vocab_eos(self.vocab)
            self._text_cache = {}

    return VocabOnlyModel(Path(path))
