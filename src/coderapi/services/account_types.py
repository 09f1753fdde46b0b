"""What the accounts service hands out and takes in: plain dataclasses, never ORM rows."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal

ROLES = ("user", "admin")
KEY_KINDS = ("inference", "management")
RETENTIONS = ("no_reset", "day", "week", "month")
USAGE_STATUSES = ("success", "error", "refused", "cancelled")
USAGE_ORIGINS = ("api", "playground")

# Model-access scopes, as the key-management contract lists them.
MODEL_SCOPES = (
    "model:chat",
    "model:responses",
    "model:image",
    "model:audio",
    "model:video",
    "model:embeddings",
    "model:speech",
    "model:ocr",
)
MANAGEMENT_SCOPES = ("keys:manage", "usage:read", "billing:read")
KNOWN_SCOPES = frozenset(MODEL_SCOPES + MANAGEMENT_SCOPES)
DEFAULT_SCOPES = {
    "inference": ("model:chat",),
    "management": MANAGEMENT_SCOPES,
}


@dataclass(frozen=True)
class Principal:
    """Who is calling, as established from an API key. `rpm_limit`/`tpm_limit` are the user's
    overrides; None means "use the configured default"."""

    user_id: int
    email: str
    role: str
    key_id: int
    key_prefix: str
    key_kind: str
    scopes: tuple[str, ...]
    rpm_limit: int | None
    tpm_limit: int | None
    limit_threshold: Decimal | None = None  # the key's spending limit (USD per period)
    limit_retention: str = "no_reset"
    balance: Decimal | None = None  # the user's USD balance when the key was authenticated

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_management(self) -> bool:
        return self.key_kind == "management"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass
class UsageRecord:
    """One finished request, as recorded once where the request ends."""

    request_id: str
    user_id: int
    key_id: int | None
    key_prefix: str | None
    model: str
    endpoint: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: Decimal | float = Decimal(0)  # USD
    status: str = "success"  # success | error | refused | cancelled
    status_code: int | None = None
    error_code: str | None = None
    finish_reason: str | None = None
    latency_ms: int | None = None
    ttft_ms: int | None = None
    origin: str = "api"  # api | playground
    client_request_id: str | None = None
    ended_at: datetime | None = None  # when the request ended: the row's time (None: when it is written)

    def row(self, now: datetime) -> dict:
        """The usage row's columns: stamped with the time the request ended (a batch commits a
        little later), else `now`. The cost is as given; callers round it to the store's money."""
        fields = {k: v for k, v in vars(self).items() if k != "ended_at"}
        return {**fields, "created_at": self.ended_at or now}

    def __post_init__(self) -> None:
        if self.status not in USAGE_STATUSES:
            raise ValueError(f"usage status must be one of {USAGE_STATUSES}, got {self.status!r}")
        if self.origin not in USAGE_ORIGINS:
            raise ValueError(f"usage origin must be one of {USAGE_ORIGINS}, got {self.origin!r}")


@dataclass(frozen=True)
class UserInfo:
    id: int
    email: str
    role: str
    disabled: bool
    balance: Decimal  # USD
    rpm_limit: int | None
    tpm_limit: int | None
    created_at: datetime
    pending_approval: bool = False  # signed up, disabled until an admin approves

    @classmethod
    def from_row(cls, row) -> UserInfo:
        """From a `users` row (never handed out itself)."""
        return _from_columns(cls, row, pending_approval=bool(row.pending_approval))


@dataclass(frozen=True)
class KeyInfo:
    """An API key as it may be shown: everything but the secret (which is never kept)."""

    id: int
    user_id: int
    name: str | None
    prefix: str
    kind: str
    scopes: tuple[str, ...]
    limit_threshold: Decimal | None
    limit_retention: str
    disabled: bool
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None
    monthly_usage: Decimal = Decimal(0)  # USD spent since the start of this UTC month

    @classmethod
    def from_row(cls, row, monthly_usage: Decimal = Decimal(0)) -> KeyInfo:
        """From an `api_keys` row (never handed out itself)."""
        return _from_columns(cls, row, scopes=tuple(row.scopes or ()), monthly_usage=monthly_usage)


def _from_columns(cls, row, **given):
    """An instance of the dataclass `cls` whose fields are the row's same-named columns, except
    those `given` (converted or not columns at all)."""
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls) if f.name not in given}, **given)
