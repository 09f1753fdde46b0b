"""The sandbox process's side: parse each grammar it is sent with the real llama.cpp, say whether it took.

Run as `python -m coderapi.engines.llama_cpp.grammar_check MODEL.gguf`. It loads the GGUF's
vocabulary only (no weights), prints `ready`, then answers each request on stdin (a line with the
grammar's length in bytes, then the bytes) with one line: `ok`, or `refused REASON`. If a grammar
crashes llama.cpp, this process dies and the server (grammar_sandbox.py) sees it; nothing else does.

Each grammar is parsed on a thread whose stack is half the size a thread of the server gets by
default (the engine's worker runs on such a thread), so what passes here has twice the stack to
spare there. No coderapi imports beyond the standard library and llama_cpp: it starts fast.
"""

from __future__ import annotations

import ctypes
import resource
import sys
import threading

_DEFAULT_STACK = 8 * 1024 * 1024  # glibc's default thread stack when RLIMIT_STACK is unlimited is not larger


def thread_stack_bytes() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_STACK)
    default = soft if 0 < soft < (1 << 40) else _DEFAULT_STACK
    return max(default // 2, 512 * 1024)


class _Checker:
    def __init__(self, model_path: str) -> None:
        import llama_cpp as lc

        self.lc = lc
        self.last_error = ""
        self._log = lc.llama_log_callback(self._on_log)  # kept: llama.cpp holds the pointer
        lc.llama_log_set(self._log, ctypes.c_void_p(0))
        lc.llama_backend_init()
        params = lc.llama_model_default_params()
        params.vocab_only = True
        self.model = lc.llama_model_load_from_file(model_path.encode(), params)
        if not self.model:
            raise SystemExit(f"could not load the vocabulary of {model_path}")
        self.vocab = lc.llama_model_get_vocab(self.model)

    def _on_log(self, level: int, text: bytes, _user) -> None:
        if level == 4 and text:  # errors: the parser says why it refused
            line = text.decode("utf-8", "replace").strip().splitlines()
            if line:
                self.last_error = line[0][:300]

    def check(self, grammar: bytes) -> str:
        self.last_error = ""
        verdict: list[str] = []

        def parse() -> None:
            sampler = self.lc.llama_sampler_init_grammar(self.vocab, grammar, b"root")
            if sampler:
                self.lc.llama_sampler_free(sampler)
                verdict.append("ok")
            else:
                verdict.append("refused " + (self.last_error or "llama.cpp could not parse the grammar"))

        thread = threading.Thread(target=parse, name="grammar-check")
        thread.start()
        thread.join()
        return verdict[0] if verdict else "refused the check failed"


def main(argv: list[str]) -> int:
    threading.stack_size(thread_stack_bytes())
    checker = _Checker(argv[1])
    out, inp = sys.stdout.buffer, sys.stdin.buffer
    out.write(b"ready\n")
    out.flush()
    while True:
        header = inp.readline()
        if not header:
            return 0
        grammar = inp.read(int(header))
        answer = checker.check(grammar).replace("\n", " ")
        out.write(answer.encode("utf-8", "replace") + b"\n")
        out.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
