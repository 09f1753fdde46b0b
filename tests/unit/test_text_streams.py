"""Text that arrives in pieces: stop strings (backends/coder/stops.py) and UTF-8 split across tokens
(engines/llama_cpp/detok.py). Whatever the split, the stream must say what the whole text says."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from coderapi.backends.coder.stops import StopMatcher
from coderapi.engines.llama_cpp.detok import Utf8Stream


def split(data, cuts: list[int]):
    """`data` cut at the given offsets (sorted, deduplicated), empty pieces included."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def run(stops: list[str], pieces: list[str]) -> tuple[str, bool, int]:
    """Visible text, whether it stopped, and after how many pieces it stopped (len(pieces) if never)."""
    matcher = StopMatcher(stops)
    out = []
    stopped_at = len(pieces)
    for i, piece in enumerate(pieces):
        out.append(matcher.feed(piece))
        if matcher.stopped and stopped_at == len(pieces):
            stopped_at = i
    out.append(matcher.flush())
    return "".join(out), matcher.stopped, stopped_at


def first_stop(text: str, stops: list[str]) -> int | None:
    """Where the visible text ends: the start of the stop that is complete first (the longest on a tie)."""
    found = [(i + len(s), i) for s in stops if s and (i := text.find(s)) >= 0]
    return min(found)[1] if found else None


# A small alphabet makes stops occur, overlap and start inside one another.
alphabet = st.text("abc\n", max_size=30)
stop_lists = st.lists(st.text("abc\n", min_size=1, max_size=4), max_size=3)
cuts = st.lists(st.integers(0, 30), max_size=8)


@settings(max_examples=500)
@given(alphabet, stop_lists, cuts)
@example("abcd", ["abcd", "bc"], [3])  # "bc" is complete at "abc", before "abcd" could be
@example("xxab", ["ab"], [3])
def test_any_split_of_the_text_shows_what_the_whole_text_shows(text, stops, cut):
    pieces = split(text, cut)
    visible, stopped, _ = run(stops, pieces)
    assert (visible, stopped) == run(stops, [text])[:2]
    end = first_stop(text, stops)
    assert visible == (text if end is None else text[:end])
    assert stopped == (end is not None)


@settings(max_examples=300)
@given(alphabet, stop_lists, cuts)
def test_the_stream_stops_at_the_piece_that_completes_the_stop_and_never_shows_part_of_one(text, stops, cut):
    pieces = split(text, cut)
    matcher = StopMatcher(stops)
    shown = ""
    end = first_stop(text, stops)
    done = None if end is None else end + min(len(s) for s in stops if s and text.find(s) == end)
    consumed = last = 0
    for piece in pieces:
        shown += matcher.feed(piece)
        consumed, last = consumed + len(piece), len(piece)
        assert text.startswith(shown)  # never more, never other text
        assert end is None or len(shown) <= end  # no character of the stop, even for a moment
        if matcher.stopped:
            break
    if end is not None:
        assert matcher.stopped and consumed >= done  # it waited for the whole stop ...
        assert consumed - last < done  # ... and no longer than the piece that completed it


def test_after_a_stop_nothing_more_is_shown():
    matcher = StopMatcher(["END"])
    assert matcher.feed("code E") == "code "
    assert matcher.feed("ND more") == ""
    assert matcher.stopped
    assert matcher.feed("later") == "" and matcher.flush() == ""


def test_held_text_that_never_becomes_a_stop_is_shown_at_the_end():
    matcher = StopMatcher(["</done>"])
    assert matcher.feed("x </do") == "x "
    assert matcher.flush() == "</do" and not matcher.stopped


def test_no_stops_pass_everything_through():
    matcher = StopMatcher(["", ""])
    assert matcher.feed("abc") == "abc" and matcher.flush() == ""


# -- UTF-8 split across tokens ---------------------------------------------------------------------


def decode(pieces: list[bytes]) -> tuple[str, list[str]]:
    stream = Utf8Stream()
    parts = [stream.push(p) for p in pieces]
    parts.append(stream.flush())
    return "".join(parts), parts


@settings(max_examples=500)
@given(st.text(max_size=40), st.lists(st.integers(0, 160), max_size=12))
@example("中文", [1, 4])  # three-byte characters cut inside
@example("🙂x", [1, 2, 3])  # a four-byte character fed one byte at a time
def test_any_split_of_utf8_bytes_decodes_to_the_text(text, cut):
    pieces = split(text.encode("utf-8"), cut)
    whole, parts = decode(pieces)
    assert whole == text
    assert "\ufffd" not in "".join(parts) or "\ufffd" in text  # nothing replaced along the way


@settings(max_examples=300)
@given(st.binary(max_size=40), st.lists(st.integers(0, 40), max_size=10))
@example(b"\xe4\xb8", [1])  # a character cut short at the end of the sequence
@example(b"\xff\xe4\xb8\xad", [1, 2])
def test_invalid_bytes_come_out_as_replacement_characters_whatever_the_split(data, cut):
    whole, _ = decode(split(data, cut))
    assert whole == data.decode("utf-8", errors="replace")


def test_an_incomplete_character_waits_for_the_next_token():
    stream = Utf8Stream()
    assert stream.push("中".encode()[:2]) == ""
    assert stream.push("中".encode()[2:] + b"!") == "中!"
    assert stream.push(b"") == "" and stream.flush() == ""
