"""Incremental detokenization that never splits a UTF-8 character.

A byte-level BPE token can end in the middle of a multi-byte character (a Chinese character is
three bytes and often spans two tokens). Each token's piece bytes are appended to a buffer and
only the longest complete UTF-8 prefix is released; the incomplete tail waits for the next
token. Bytes that can never become valid UTF-8 are released as U+FFFD rather than stalling the
stream, and whatever is still incomplete when the sequence ends is flushed the same way.
"""

from __future__ import annotations

import codecs


class Utf8Stream:
    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        # The stdlib incremental decoder keeps an incomplete trailing sequence buffered and
        # returns exactly the longest decodable prefix, in C.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, piece: bytes) -> str:
        """Add one token's bytes; return the newly completed text ("" while incomplete)."""
        return self._decoder.decode(piece, False) if piece else ""

    def flush(self) -> str:
        """End of sequence: release the incomplete tail (as U+FFFD), if any."""
        return self._decoder.decode(b"", True)
