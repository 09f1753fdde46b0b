"""CSRF tokens: an HMAC of the browser's session (or pre-session) token under the app secret.

Nothing is stored: a form's token is recomputed from the cookie that came with the request and
compared in constant time, so a page from another site (which cannot read our cookies) cannot
produce it. A new session at login means new tokens.
"""

from __future__ import annotations

import hashlib
import hmac

FIELD = "csrf_token"
HEADER = "x-csrf-token"


def csrf_token(secret: bytes, binding: str) -> str:
    return hmac.new(secret, b"csrf|" + binding.encode("utf-8"), hashlib.sha256).hexdigest()


def csrf_valid(secret: bytes, binding: str | None, supplied: str | None) -> bool:
    if not binding or not supplied:
        return False
    expected = csrf_token(secret, binding)
    return hmac.compare_digest(expected.encode("ascii"), supplied.encode("utf-8", "replace"))
