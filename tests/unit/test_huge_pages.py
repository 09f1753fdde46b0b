"""huge_pages.py's reading of /proc/<pid>/maps and its alignment (the madvise calls run on the real
model in tests/integration/test_huge_pages.py)."""

from __future__ import annotations

from coderapi.engines.llama_cpp.huge_pages import HUGE_PAGE, MIN_REGION, Region, anonymous_regions, whole_huge_pages

MAPS = """\
55d0c0000000-55d0c4000000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0040000000 rw-p 00000000 00:00 0
7f0040000000-7f0080000000 ---p 00000000 00:00 0
7f0080000000-7f00c0000000 r--s 005ac000 fe:00 5366959                    /models/qwen.gguf
7f00c0000000-7f0100000000 rw-p 00000000 fe:00 5366959                    /models/other.bin
7f0100000000-7f0100100000 rw-p 00000000 00:00 0
7f0200000000-7f0240000000 rw-s 00000000 00:01 1234                       /dev/zero (deleted)
7ffd00000000-7ffd04000000 rw-p 00000000 00:00 0                          [stack]
"""


def test_only_large_private_writable_anonymous_mappings() -> None:
    assert anonymous_regions(MAPS) == {
        Region(0x55D0C0000000, 0x55D0C4000000),  # the heap: glibc serves some large blocks from it
        Region(0x7F0000000000, 0x7F0040000000),
    }  # not: a reservation (---p), the mapped model, a mapped file, a small block, shared memory, the stack


def test_the_size_floor() -> None:
    assert Region(0x7F0100000000, 0x7F0100100000) in anonymous_regions(MAPS, min_bytes=1 << 20)
    assert all(region.size >= MIN_REGION for region in anonymous_regions(MAPS))


def test_whole_huge_pages_inside_a_region() -> None:
    assert whole_huge_pages(Region(HUGE_PAGE + 4096, 5 * HUGE_PAGE - 4096)) == Region(2 * HUGE_PAGE, 4 * HUGE_PAGE)
    assert whole_huge_pages(Region(2 * HUGE_PAGE, 4 * HUGE_PAGE)) == Region(2 * HUGE_PAGE, 4 * HUGE_PAGE)
    assert whole_huge_pages(Region(HUGE_PAGE + 4096, 3 * HUGE_PAGE - 4096)) is None
