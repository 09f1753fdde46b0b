"""Which row counts the start-up probe tries (invariance.py): every k where this llama.cpp's kernels
change path, a bounded number of steps in all."""

from coderapi.engines.llama_cpp.invariance import probed_row_counts


def test_every_count_to_nine_then_around_powers_of_two_and_the_maximum():
    assert probed_row_counts(33) == [2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 28, 32, 33]
    assert probed_row_counts(8) == [2, 3, 4, 5, 6, 7, 8]
    assert probed_row_counts(3) == [2, 3]
    assert probed_row_counts(1) == []
    assert probed_row_counts(20) == [2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 20]


def test_counts_ascend_without_repeats_and_end_at_the_maximum():
    for top in range(2, 70):
        counts = probed_row_counts(top)
        assert counts == sorted(set(counts)) and counts[-1] == top and len(counts) <= 20
