"""How many connections one server keeps open: the caps, the counts, and the open-files limit.

The protocol that enforces them is connection_guard.py."""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass, field, replace

from coderapi.errors import CoderapiError, Overloaded, TooManyConnections

log = logging.getLogger("coderapi.connections")

FD_HEADROOM = 256  # descriptors beyond max_connections: the database, models, logs, upstream sockets


@dataclass(frozen=True)
class ConnectionPolicy:
    header_timeout_seconds: float
    body_timeout_seconds: float
    send_timeout_seconds: float
    max_header_bytes: int
    max_connections: int  # 0: no cap
    max_connections_per_client: int  # 0: no cap


@dataclass
class ConnectionCounts:
    """Connections open now, in all and per client address (one per server, shared by its connections)."""

    total: int = 0
    by_client: dict[str, int] = field(default_factory=dict)

    def refusal(self, client: str, policy: ConnectionPolicy) -> CoderapiError | None:
        if policy.max_connections and self.total >= policy.max_connections:
            return Overloaded("The server has as many connections open as it takes; try again shortly.")
        if policy.max_connections_per_client and self.by_client.get(client, 0) >= policy.max_connections_per_client:
            return TooManyConnections(
                f"Too many connections open from your address (at most {policy.max_connections_per_client}). "
                "Reuse connections (HTTP keep-alive) or close idle ones.",
            )
        return None

    def add(self, client: str) -> None:
        self.total += 1
        self.by_client[client] = self.by_client.get(client, 0) + 1

    def remove(self, client: str) -> None:
        self.total -= 1
        left = self.by_client[client] - 1
        if left:
            self.by_client[client] = left
        else:
            del self.by_client[client]


def fit_open_files_limit(policy: ConnectionPolicy) -> ConnectionPolicy:
    """Lift the soft limit on open files so `max_connections` fits (many systems start services at
    1,024); where the hard limit is too low for it, lower the cap to what fits, with a warning, so the
    cap still answers 503 before the process runs out of descriptors."""
    if not policy.max_connections:
        return policy
    needed = policy.max_connections + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return policy
    raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    except (OSError, ValueError) as exc:
        log.warning("could not raise the open files limit from %d: %s", soft, exc)
    if soft >= needed:
        return policy
    fitted = max(1, soft - FD_HEADROOM)
    log.warning(
        "open files are limited to %d: max_connections lowered from %d to %d (raise the hard limit, "
        "ulimit -Hn, to keep it)", soft, policy.max_connections, fitted,
    )
    return replace(policy, max_connections=fitted)
