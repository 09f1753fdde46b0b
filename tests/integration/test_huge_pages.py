"""The real 0.5B on huge pages (huge_pages.py): its memory moves there where the kernel allows it,
and its answers are the same bytes as on ordinary pages."""

from __future__ import annotations

import asyncio
import ctypes
import mmap

import pytest

from coderapi.engines.base import SamplingParams
from coderapi.engines.llama_cpp.huge_pages import HUGE_PAGE, MADV_COLLAPSE, huge_page_bytes, thp_available
from tests.integration.embedded import embedded_gguf

pytestmark = pytest.mark.model

PROMPT = "<|im_start|>user\nWrite a Python function that merges two sorted lists.<|im_end|>\n<|im_start|>assistant\n"
GREEDY = SamplingParams(max_tokens=48, temperature=0.0)


async def greedy_tokens(huge_pages: bool) -> tuple[list[int], int]:
    from coderapi.engines.llama_cpp import LlamaCppEngine

    engine = LlamaCppEngine(embedded_gguf(), n_parallel=1, n_ctx_per_seq=1024, huge_pages=huge_pages)
    before = huge_page_bytes()  # other engines of this test process may hold some
    await engine.start()
    try:
        on_huge_pages = huge_page_bytes() - before
        out = [event.token_id async for event in engine.generate(engine.tokenize(PROMPT), GREEDY)]
    finally:
        await engine.close()
    return out, on_huge_pages


def kernel_collapses() -> bool:
    """Whether MADV_COLLAPSE (Linux 6.1+) moves a touched private anonymous block onto a huge page here."""
    if not thp_available():
        return False
    block = mmap.mmap(-1, 2 * HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    block.write(b"x" * (2 * HUGE_PAGE))
    start = -(-ctypes.addressof(ctypes.c_char.from_buffer(block)) // HUGE_PAGE) * HUGE_PAGE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc.madvise(start, HUGE_PAGE, MADV_COLLAPSE) == 0


def test_weights_on_huge_pages_give_the_same_answer() -> None:
    plain, _ = asyncio.run(greedy_tokens(huge_pages=False))
    huge, on_huge_pages = asyncio.run(greedy_tokens(huge_pages=True))
    assert huge == plain and len(plain) > 10
    if kernel_collapses():  # the weights alone are ~470 MB, most of it in whole huge pages (mapped: ~80 MB)
        assert on_huge_pages >= 256 << 20
