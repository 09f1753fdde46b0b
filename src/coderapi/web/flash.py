"""One-shot messages across a redirect (post/redirect/get), in a short-lived signed cookie.

Never put a secret in a flash: the new key's secret is rendered straight into the POST's answer.
"""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

COOKIE = "cdr_flash"
MAX_AGE_S = 60
_LEVELS = ("success", "error", "info")


class Flash:
    def __init__(self, secret: bytes, *, secure: bool) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt="coderapi.flash")
        self._secure = secure  # the setting cookie_secure, never the request's scheme

    def set(self, response: Response, request: Request, message: str, level: str = "success") -> None:
        value = self._signer.dumps({"m": message[:500], "l": level if level in _LEVELS else "info"})
        response.set_cookie(
            COOKIE, value, max_age=MAX_AGE_S, httponly=True, samesite="lax",
            secure=self._secure, path="/",
        )

    def take(self, request: Request) -> dict | None:
        """The pending message, or None; call `clear` on the answer that shows it."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self._signer.loads(raw, max_age=MAX_AGE_S)
        except BadSignature:
            return None
        return {"message": str(data.get("m", "")), "level": data.get("l", "info")}

    @staticmethod
    def clear(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/")
