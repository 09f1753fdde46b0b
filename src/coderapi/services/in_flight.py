"""How many inference requests one key, and one user, may have running on this gateway at once.

Why: the engine's waiting queue (`max_waiting_requests`) and the preparation pool are shared by
everyone. Without a cap, one key holder sending a few dozen long requests at once fills them, and
every other caller gets 503 until those finish; requests-per-minute limits do not stop that, as a
minute's worth arrives in a second. Over the cap the answer is 429 `concurrency_limit_exceeded`
with Retry-After, like a rate limit (the `openai` SDK retries it). The counts are per gateway
process: they protect this process's capacity, which is what runs out. A request takes its place
before its body is read (the services read it after `acquire`), so the bodies one key has in memory
at once are bounded by its cap too, whatever the number of connections it opens; `/tokenize` and
`/detokenize` calls count here as well.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

from coderapi.errors import RateLimited
from coderapi.services.accounts import Principal

RETRY_AFTER_SECONDS = 1


class InFlightLimits:
    """Touched only on the event loop (no lock needed)."""

    def __init__(self, per_key: int, per_user: int) -> None:
        self._per_key = per_key  # 0: no cap
        self._per_user = per_user
        self._keys: Counter[int] = Counter()
        self._users: Counter[int] = Counter()

    def running(self, principal: Principal) -> tuple[int, int]:
        return self._keys[principal.key_id], self._users[principal.user_id]

    def acquire(self, principal: Principal) -> Callable[[], None]:
        """Counts the request in; the returned function counts it out (later calls do nothing)."""
        key, user = principal.key_id, principal.user_id
        if self._per_key and self._keys[key] >= self._per_key:
            raise _refusal(f"This API key already has {self._keys[key]} requests running", self._per_key, "key")
        if self._per_user and self._users[user] >= self._per_user:
            raise _refusal(
                f"Your account already has {self._users[user]} requests running (all its keys together)",
                self._per_user, "user",
            )
        self._keys[key] += 1
        self._users[user] += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:  # a second call would count out another request of the key
                return
            released = True
            _decrement(self._keys, key)
            _decrement(self._users, user)

        return release


def _decrement(counts: Counter[int], owner: int) -> None:
    counts[owner] -= 1
    if counts[owner] <= 0:
        del counts[owner]  # idle owners take no memory


def _refusal(what: str, cap: int, scope: str) -> RateLimited:
    return RateLimited(
        f"{what}; at most {cap} may run at once per {scope}. Wait for one to finish, then retry.",
        retry_after=RETRY_AFTER_SECONDS,
        code="concurrency_limit_exceeded",
    )
