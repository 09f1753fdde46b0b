"""API key secrets: how they are made, recognised and hashed.

A secret is `cdr-` followed by 40 random base62 characters (about 238 bits from `secrets`).
The `cdr-` marker is the same for every key and carries no information: it only lets people
and secret scanners recognise a coderapi key. The public *prefix* is therefore the 8
characters after the marker, the first 8 that tell keys apart; it is stored, shown in lists and
used in URLs. Only the SHA-256 of the whole secret is stored besides it; the secret itself is
returned once, at creation, and never stored or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

KEY_MARKER = "cdr-"
RANDOM_LENGTH = 40
PREFIX_LENGTH = 8
SECRET_LENGTH = len(KEY_MARKER) + RANDOM_LENGTH
BASE62 = string.digits + string.ascii_letters
_BASE62_SET = frozenset(BASE62)


def generate_secret() -> str:
    return KEY_MARKER + "".join(secrets.choice(BASE62) for _ in range(RANDOM_LENGTH))


def is_well_formed(secret: str) -> bool:
    """True when `secret` has the shape of a coderapi key (says nothing of whether it exists)."""
    return (
        len(secret) == SECRET_LENGTH
        and secret.startswith(KEY_MARKER)
        and _BASE62_SET.issuperset(secret[len(KEY_MARKER) :])
    )


def prefix_of(secret: str) -> str:
    return secret[len(KEY_MARKER) : len(KEY_MARKER) + PREFIX_LENGTH]


def is_prefix(value: str) -> bool:
    return len(value) == PREFIX_LENGTH and _BASE62_SET.issuperset(value)


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of the whole secret (a fast hash suffices: the secret is random, not chosen)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def hashes_match(stored_hex: str, candidate_hex: str) -> bool:
    return hmac.compare_digest(stored_hex.encode("ascii"), candidate_hex.encode("ascii"))
