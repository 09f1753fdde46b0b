"""Grammars are parsed by llama.cpp in a helper process first, so one that crashes it cannot crash us.

llama.cpp's grammar parser is recursive C++; a grammar that overflows its stack kills the process
that parses it. `GrammarSandbox.verify(grammar)` hands the grammar to a long-lived helper process
(grammar_check.py: the same llama.cpp, the GGUF's vocabulary only) and returns None when llama.cpp
parsed it, else the reason it did not: its own parse error, "it crashed llama.cpp" (the helper
died: it is restarted for the next grammar), or a timeout (the helper is killed and restarted).
Verdicts are cached by the grammar's SHA-256 in a bounded LRU, so a grammar is parsed out of
process once; a grammar the helper refused stays refused without another crash.

`verify` blocks (it waits for the helper): call it off the event loop. One grammar is checked at a
time; cache hits do not wait for a check in progress.
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

from coderapi.errors import ModelNotReady

log = logging.getLogger("coderapi.engines.llama_cpp")

_CHECKER = Path(__file__).with_name("grammar_check.py")
CRASHED = "the grammar crashed llama.cpp's parser"


class GrammarSandbox:
    def __init__(self, model_path: Path, *, timeout: float = 10.0, cache_size: int = 1024) -> None:
        self.model_path = Path(model_path)
        self.timeout = timeout
        self.cache_size = cache_size
        self._cache: OrderedDict[str, str | None] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._process_lock = threading.Lock()  # one grammar at a time in the helper
        self._proc: subprocess.Popen | None = None
        self.restarts = 0  # helpers started after the first (crashes and timeouts)
        self._closed = False

    def start(self) -> None:
        """Start the helper now (else the first grammar starts it). Blocks until it is ready."""
        with self._process_lock:
            self._closed = False
            self._ensure_started()

    def close(self) -> None:
        with self._process_lock:
            self._closed = True
            self._stop()

    def verify(self, grammar: str) -> str | None:
        key = hashlib.sha256(grammar.encode("utf-8")).hexdigest()
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        with self._process_lock:
            with self._cache_lock:  # another thread may have checked the same grammar meanwhile
                if key in self._cache:
                    return self._cache[key]
            verdict = self._check(grammar.encode("utf-8"))
        with self._cache_lock:
            self._cache[key] = verdict
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return verdict

    # -- the helper process (callers hold _process_lock) ------------------------------------------

    def _check(self, data: bytes) -> str | None:
        proc = self._ensure_started()
        try:
            proc.stdin.write(b"%d\n" % len(data) + data)
            proc.stdin.flush()
            answer = self._read_line(proc, time.monotonic() + self.timeout)
        except (BrokenPipeError, OSError):
            answer = b""
        if answer is None:
            log.warning("grammar check timed out after %.0f s; restarting the grammar sandbox", self.timeout)
            self._stop()
            self.restarts += 1
            return f"llama.cpp did not parse the grammar within {self.timeout:g} s"
        if not answer:  # EOF: the helper died on this grammar
            code = proc.poll()
            log.warning("a grammar crashed the grammar sandbox (exit %s); restarting it", code)
            self._stop()
            self.restarts += 1
            return CRASHED
        text = answer.decode("utf-8", "replace").strip()
        return None if text == "ok" else text.removeprefix("refused").strip() or "refused"

    def _ensure_started(self) -> subprocess.Popen:
        if self._closed:
            raise ModelNotReady("The inference engine is shutting down.")
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._stop()
        proc = subprocess.Popen(
            [sys.executable, str(_CHECKER), str(self.model_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            close_fds=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        ready = self._read_line(proc, time.monotonic() + max(self.timeout, 60.0))
        if ready != b"ready\n":
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the grammar sandbox did not start (said {ready!r})")
        self._proc = proc
        return proc

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    @staticmethod
    def _read_line(proc: subprocess.Popen, deadline: float) -> bytes | None:
        """One line from the helper; b"" on EOF, None past the deadline."""
        fd = proc.stdout.fileno()
        chunks = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return b""
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                return b"".join(chunks)
