"""The model family's tokenizer on the gateway: what the remote engine tokenizes prompts with,
decodes token ids with, and counts usage with, whatever the replicas report.

Loaded vocabulary-only from a local GGUF of the same family (engines/vocab.py). Every method but
`load` is cheap and thread-safe (the vocabulary is read-only once loaded).
"""

from __future__ import annotations

from pathlib import Path

from coderapi.errors import ModelNotReady


class FamilyTokenizer:
    def __init__(self, gguf_path: Path) -> None:
        self.gguf_path = Path(gguf_path)
        self._model = None
        self.metadata: dict[str, str] = {}
        self.control_texts: frozenset[str] = frozenset()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Blocks (a fraction of a second): call it off the event loop."""
        from coderapi.engines.vocab import load_vocab

        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "upstream_mode 'coder' tokenizes on the gateway and needs llama-cpp-python "
                "(pip install 'coderapi[embedded]') and a GGUF of the model's family in `gguf`; "
                "or set upstream_mode 'passthrough'"
            ) from None
        if self._model is None:
            model = load_vocab(self.gguf_path)
            self.metadata = model.metadata()
            self.control_texts = model.control_texts()
            self._model = model

    def close(self) -> None:
        model, self._model = self._model, None
        if model is not None:
            model.free()

    def _vocab(self):
        if self._model is None:
            raise ModelNotReady("The tokenizer is still loading.")
        return self._model

    @property
    def vocab_size(self) -> int:
        return self._vocab().n_vocab

    @property
    def bos_token(self) -> str:
        model = self._vocab()
        return model.token_text(model.bos_id) if model.bos_id >= 0 else ""

    @property
    def eos_id(self) -> int:
        return self._vocab().eos_id

    @property
    def eos_token(self) -> str:
        model = self._vocab()
        return model.token_text(model.eos_id) if model.eos_id >= 0 else ""

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = True) -> list[int]:
        """Special-token markup (`<|im_start|>`) becomes the special token unless `parse_special`
        is false, as in the engines."""
        return self._vocab().tokenize(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, token_ids: list[int]) -> str:
        return self._vocab().detokenize(list(token_ids), render_special=True)

    def token_text(self, token_id: int) -> str:
        return self._vocab().token_text(token_id)

    def piece(self, token_id: int) -> bytes:
        """The bytes a token adds to the generated text: control tokens (`<|im_end|>`) add none,
        as in the in-process engine and llama-server."""
        return self._known(token_id).piece(token_id, special=False)

    def is_eog(self, token_id: int) -> bool:
        return self._known(token_id).is_eog(token_id)

    def _known(self, token_id: int):
        """The vocabulary, once `token_id` is checked to be in it: llama.cpp aborts the process on
        an id outside it (std::out_of_range), and these ids come from another server."""
        model = self._vocab()
        if not 0 <= token_id < model.n_vocab:
            raise ValueError(f"token id {token_id} is outside the vocabulary")
        return model
