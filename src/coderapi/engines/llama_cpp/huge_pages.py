"""The model's memory on transparent huge pages, where the kernel allows it.

Each decode step streams every weight once (about 400 MB for the 0.5B), and on 4 KiB pages that is
a TLB miss every 4 KiB, dearer still in a VM, where each miss walks the guest's and the host's page
tables. Most kernels ship THP in `madvise` mode (only regions that ask get huge pages), and
llama.cpp's buffers (ggml_aligned_malloc: posix_memalign) never ask. So once the model, its KV cache
and its compute buffers are allocated, the worker asks for them: `MADV_HUGEPAGE` on each large
anonymous mapping the load created (later faults in it get 2 MiB pages) and `MADV_COLLAPSE`
(Linux 6.1+) to move what is already there onto huge pages now. The weights must be anonymous memory
for this, so the model loads without mmap (LlamaModel's `huge_pages`). Nothing changes any result:
the same bytes, on other pages. Measured on a 2-core VM (bench/lone_decode.py --peer-huge-pages, 12
paired rounds): lone decoding 1.049x llama-server's with this, 0.969x without; llama-server given the
same (--load-mode none, GLIBC_TUNABLES=glibc.malloc.hugetlb=1) 1.034x its own default.
Where THP is `never` the worker leaves the file mapped (`thp_available`); where the kernel refuses a
collapse (before 6.1, no memory to compact), those pages stay as they are.
"""

from __future__ import annotations

import ctypes
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

log = logging.getLogger("coderapi.engines.llama_cpp")

MADV_HUGEPAGE = 14
MADV_COLLAPSE = 25
HUGE_PAGE = 2 << 20
MIN_REGION = 8 << 20  # smaller mappings hold few whole huge pages


@dataclass(frozen=True)
class Region:
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def anonymous_regions(maps_text: str, min_bytes: int = MIN_REGION) -> set[Region]:
    """Writable private anonymous mappings of at least `min_bytes` in a /proc/<pid>/maps text."""
    regions = set()
    for line in maps_text.splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[1].startswith("rw") or fields[1][3] != "p" or fields[4] != "0":
            continue
        if len(fields) > 5 and fields[5] != "[heap]":  # a file, a stack, vdso...
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if end - start >= min_bytes:
            regions.add(Region(start, end))
    return regions


def whole_huge_pages(region: Region) -> Region | None:
    """The part of `region` made of whole, aligned huge pages; None if it holds none."""
    start = -(-region.start // HUGE_PAGE) * HUGE_PAGE
    end = region.end // HUGE_PAGE * HUGE_PAGE
    return Region(start, end) if end > start else None


def own_maps() -> str:
    try:
        return Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: nothing to do
        return ""


def thp_available() -> bool:
    try:
        return "[never]" not in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


def huge_page_bytes() -> int:
    """AnonHugePages of this process (bytes)."""
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def advise_huge_pages(before: set[Region]) -> int:
    """Ask for huge pages on the large anonymous mappings that are not in `before` (a snapshot
    taken before the load); the bytes of this process now on huge pages."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for region in anonymous_regions(own_maps()) - before:
        aligned = whole_huge_pages(region)
        if aligned is None:
            continue
        if libc.madvise(aligned.start, aligned.size, MADV_HUGEPAGE) != 0:
            log.debug("madvise(MADV_HUGEPAGE) on %d MiB: errno %d", aligned.size >> 20, ctypes.get_errno())
            continue
        # One huge page at a time: a range never touched (a buffer's unused end) refuses, the rest
        # still moves; later faults in the region get huge pages anyway (MADV_HUGEPAGE above).
        pages = range(aligned.start, aligned.end, HUGE_PAGE)
        refused = sum(libc.madvise(page, HUGE_PAGE, MADV_COLLAPSE) != 0 for page in pages)
        if refused:
            log.debug("MADV_COLLAPSE refused %d of %d huge pages", refused, aligned.size // HUGE_PAGE)
    return huge_page_bytes()


@contextmanager
def onto_huge_pages(enabled: bool) -> Iterator[None]:
    """The large anonymous mappings the block creates (a model, its context) asked onto huge pages
    at its end, when `enabled`."""
    before = anonymous_regions(own_maps()) if enabled else set()
    yield
    if enabled:
        log.info("model memory on huge pages: %d MiB", advise_huge_pages(before) >> 20)
