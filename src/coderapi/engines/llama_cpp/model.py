"""The loaded GGUF: model, vocabulary and the one llama context, over llama.cpp's C API.

Everything here is a thin, typed wrapper around `llama_cpp` (the low-level ctypes bindings of
llama-cpp-python). The vocabulary functions (tokenize, token pieces, metadata) only read the
model and are safe to call from any thread; the context belongs to the worker thread alone.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path

import llama_cpp as lc

from coderapi.errors import InternalError

log = logging.getLogger("coderapi.engines.llama_cpp")

_backend_lock = threading.Lock()
_backend_ready = False
# GGML log levels: 0 none, 1 debug, 2 info, 3 warn, 4 error, 5 continuation of the previous line
_LOG_LEVELS = {3: logging.WARNING, 4: logging.ERROR}


@lc.llama_log_callback
def _llama_log(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    # llama.cpp is chatty at INFO (every tensor on load); keep warnings and errors only.
    py_level = _LOG_LEVELS.get(level)
    if py_level is not None and text:
        log.log(py_level, "llama.cpp: %s", text.decode("utf-8", "replace").rstrip())


def init_backend() -> None:
    """Once per process: route llama.cpp's log through `logging` and initialise the backend."""
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            lc.llama_log_set(_llama_log, ctypes.c_void_p(0))
            lc.llama_backend_init()
            _backend_ready = True


class LlamaModel:
    """A loaded model and its vocabulary (read-only after loading, so thread-safe)."""

    def __init__(self, path: Path, *, repack: bool = True, huge_pages: bool = False, vocab_only: bool = False) -> None:
        """`vocab_only`: the tokenizer alone (no weights), e.g. for a remote engine's local counting;
        `huge_pages`: the weights read into anonymous memory, not mapped from the file, so that
        they can move onto huge pages (huge_pages.py)."""
        init_backend()
        params = lc.llama_model_default_params()
        params.n_gpu_layers = 0
        params.vocab_only = vocab_only
        # Weight repacking on (llama-server's default): about 7% more tokens/s at 8 sequences.
        # Its kernels take another arithmetic path for 4+ rows than for one, so a sequence's
        # logits can depend on what else is in the batch; the scheduler keeps a request served
        # alone on one path (see scheduler.py).
        params.use_extra_bufts = repack
        if huge_pages:
            params.load_mode = lc.LLAMA_LOAD_MODE_NONE  # read, not mapped: anonymous memory
        model = lc.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            what = "the vocabulary" if vocab_only else "the model"
            raise InternalError(f"llama.cpp could not load {what} at {path}")
        self.ptr = model
        self.vocab = lc.llama_model_get_vocab(model)
        self.n_vocab: int = lc.llama_vocab_n_tokens(self.vocab)
        self.bos_id: int = lc.llama_vocab_bos(self.vocab)
        self.eos_id: int = lc.llama_vocab_eos(self.vocab)
        self._text_cache: dict[int, str] = {}

    # -- metadata -----------------------------------------------------------------------------

    def metadata(self) -> dict[str, str]:
        """Every scalar GGUF key/value (llama.cpp leaves arrays such as the token list out)."""
        out: dict[str, str] = {}
        for i in range(lc.llama_model_meta_count(self.ptr)):
            key = _two_pass(lambda buf, n: lc.llama_model_meta_key_by_index(self.ptr, i, buf, n))
            val = _two_pass(lambda buf, n: lc.llama_model_meta_val_str_by_index(self.ptr, i, buf, n))
            if key is not None and val is not None:
                out[key] = val
        return out

    # -- vocabulary -----------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        while True:
            buf = (lc.llama_token * cap)()
            n = lc.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
            if n >= 0:
                return buf[:n]
            if -n <= cap:  # defensive: a negative count no larger than the buffer means failure
                raise InternalError("llama.cpp failed to tokenize the text")
            cap = -n

    def detokenize(self, token_ids: list[int], *, render_special: bool = True) -> str:
        if not token_ids:
            return ""
        arr = (lc.llama_token * len(token_ids))(*token_ids)
        cap = max(64, len(token_ids) * 8)
        while True:
            buf = ctypes.create_string_buffer(cap)
            n = lc.llama_detokenize(self.vocab, arr, len(token_ids), buf, cap, False, render_special)
            if n >= 0:
                return buf.raw[:n].decode("utf-8", "replace")
            cap = -n

    def piece(self, token_id: int, *, special: bool = False) -> bytes:
        """The raw bytes of one token (possibly part of a UTF-8 character)."""
        buf = ctypes.create_string_buffer(64)
        n = lc.llama_token_to_piece(self.vocab, token_id, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = lc.llama_token_to_piece(self.vocab, token_id, buf, -n, 0, special)
        return buf.raw[: max(n, 0)]

    def token_text(self, token_id: int) -> str:
        """One token as text, special tokens rendered (`<|im_end|>`); cached."""
        text = self._text_cache.get(token_id)
        if text is None:
            if not 0 <= token_id < self.n_vocab:
                return ""
            text = self.piece(token_id, special=True).decode("utf-8", "replace")
            self._text_cache[token_id] = text
        return text

    def control_texts(self) -> frozenset[str]:
        """The texts of the control tokens (`<|im_start|>`, `</s>`); a full pass over the vocabulary."""
        return frozenset(
            self.token_text(t) for t in range(self.n_vocab)
            if lc.llama_vocab_get_attr(self.vocab, t) & lc.LLAMA_TOKEN_ATTR_CONTROL and self.token_text(t)
        )

    def is_eog(self, token_id: int) -> bool:
        return bool(lc.llama_vocab_is_eog(self.vocab, token_id))

    def free(self) -> None:
        if self.ptr:
            lc.llama_model_free(self.ptr)
            self.ptr = None


def _two_pass(call) -> str | None:
    """Call a snprintf-style C function: size it first, then read the whole string."""
    buf = ctypes.create_string_buffer(256)
    n = call(buf, 256)
    if n < 0:
        return None
    if n >= 256:
        buf = ctypes.create_string_buffer(n + 1)
        n = call(buf, n + 1)
    return buf.raw[:n].decode("utf-8", "replace")


class LlamaContext:
    """One llama context holding `n_parallel` sequences; used by the worker thread only.

    Each sequence has its own KV stream (`kv_unified` off, as llama-server -np N runs). With one
    unified cell pool, attention would span every cell in use, other sequences' and idle
    prefix caches' included (masked, but still read): measured here, streams give about 10% more
    tokens/s at 8 clients and 9% faster lone decoding after a busy period. The price of streams: llama.cpp puts sequences in one
    micro-batch only when their ids are consecutive and in order, so the worker fills batches
    in seq-id order and the slot pool hands out ids next to busy ones.
    """

    def __init__(
        self, model: LlamaModel, *, n_ctx: int, n_seq_max: int, n_batch: int, n_threads: int
    ) -> None:
        params = lc.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq_max
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.kv_unified = False
        params.no_perf = True
        ctx = lc.llama_init_from_model(model.ptr, params)
        if not ctx:
            raise InternalError("llama.cpp could not create the context (out of memory?)")
        self.ptr = ctx
        self.mem = lc.llama_get_memory(ctx)
        self.n_ctx: int = lc.llama_n_ctx(ctx)

    def seq_rm(self, seq_id: int, p0: int, p1: int = -1) -> bool:
        return bool(lc.llama_memory_seq_rm(self.mem, seq_id, p0, p1))

    def seq_cp(self, src: int, dst: int) -> None:
        """Copy all of `src`'s KV into `dst` (whole streams: llama.cpp copies nothing less)."""
        lc.llama_memory_seq_cp(self.mem, src, dst, -1, -1)

    def logits_row(self, batch_index: int):
        return lc.llama_get_logits_ith(self.ptr, batch_index)

    def free(self) -> None:
        if self.ptr:
            lc.llama_free(self.ptr)
            self.ptr = None
