"""Inference keys remembered after their first lookup, so that a request skips the key query.

A remembered key is never trusted alone: the transaction that reserves the request's cost checks
it against its row (`CostReservations`, `confirm_key`), and a request refused before that point
is checked against the row before it is answered. So a key disabled, deleted or changed through
any gateway, the dashboard or the CLI is refused at once; the cache only saves the lookup.
Keyed by the secret's sha256 (the secret itself is not kept); least recently used entries leave
first.
"""

from __future__ import annotations

from collections import OrderedDict

from coderapi.services.account_types import Principal


class KeyCache:
    def __init__(self, size: int) -> None:
        self._size = size
        self._by_digest: OrderedDict[str, Principal] = OrderedDict()
        self._digests: dict[int, str] = {}  # key id -> digest, to forget or refresh a key

    def get(self, digest: str) -> Principal | None:
        principal = self._by_digest.get(digest)
        if principal is not None:
            self._by_digest.move_to_end(digest)
        return principal

    def put(self, digest: str, principal: Principal) -> None:
        if self._size <= 0:
            return
        self.forget(principal.key_id)
        self._by_digest[digest] = principal
        self._digests[principal.key_id] = digest
        while len(self._by_digest) > self._size:
            _, evicted = self._by_digest.popitem(last=False)
            self._digests.pop(evicted.key_id, None)

    def refresh(self, principal: Principal) -> None:
        """The key's row changed (scopes, limits): remember it as it is now."""
        digest = self._digests.get(principal.key_id)
        if digest is not None:
            self._by_digest[digest] = principal

    def forget(self, key_id: int) -> None:
        digest = self._digests.pop(key_id, None)
        if digest is not None:
            self._by_digest.pop(digest, None)
