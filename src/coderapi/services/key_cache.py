"""Inference keys remembered after their first lookup, so that a request skips the key query.

A remembered key is valid only while the auth epoch it was looked up in is current: any change
to what a key may do, through any gateway, the dashboard or the CLI, raises the epoch in its own
transaction (see `coderapi.store.auth_epoch`), and every inference request reads the epoch before
it looks at this cache; a newer epoch empties it. So a key disabled, deleted or changed anywhere
is refused by the next request everywhere; the cache only saves the key's lookup (one indexed
read of a one-row table instead of a join per request, and no hold transaction per request: see
`services.credit_leases`). The hold transaction still checks a cached key against its row
(`CostReservations`, `confirm_key`), and a request refused before its hold is checked against
the row before it is answered.
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
        self._epoch: int | None = None  # the auth epoch the entries were looked up in

    @property
    def epoch(self) -> int | None:
        return self._epoch

    def sync(self, epoch: int) -> None:
        """A request read `epoch`: a newer one than the entries' empties the cache."""
        if self._epoch is None or epoch > self._epoch:
            self._by_digest.clear()
            self._digests.clear()
            self._epoch = epoch

    def get(self, digest: str, epoch: int | None = None) -> Principal | None:
        """The key as looked up in `epoch` (None: the current one), if remembered."""
        if epoch is not None and epoch != self._epoch:
            return None
        principal = self._by_digest.get(digest)
        if principal is not None:
            self._by_digest.move_to_end(digest)
        return principal

    def put(self, digest: str, principal: Principal, epoch: int | None = None) -> None:
        """Remember a key looked up after `epoch` was read (not kept when the epoch moved on)."""
        if self._size <= 0 or (epoch is not None and epoch != self._epoch):
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
