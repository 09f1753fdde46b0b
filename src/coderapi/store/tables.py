"""The ORM model of what the platform keeps (users, API keys, usage events, credit grants,
money held for requests in flight).

The Alembic migrations under `migrations/versions/` create these tables; this module describes
them to the ORM (and to `alembic revision --autogenerate`). `tests/unit/test_store.py` checks
that the two agree.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from coderapi.clock import utcnow  # re-exported: the columns' defaults and older callers use it here
from coderapi.money import to_money  # re-exported: crud and migrations round money with it

# Money is kept in USD with six decimals (a millionth of a dollar is below any per-token price).
MONEY = Numeric(18, 6)
# Integer on SQLite so the id is the rowid alias (autoincrement); 64-bit elsewhere.
EVENT_ID = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so values are stored as naive UTC
    and given `tzinfo=UTC` again when read. Naive datetimes are refused on the way in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a timezone-aware one is required")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    # The same names as the migrations give their constraints and indexes.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s",
        }
    )


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('user', 'admin')", name="ck_users_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # always lower-case
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, PHC string
    role: Mapped[str] = mapped_column(String(16), default="user")
    disabled: Mapped[bool] = mapped_column(default=False)
    balance: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))  # USD
    rpm_limit: Mapped[int | None] = mapped_column(Integer)  # None: the configured default
    tpm_limit: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A sign-up waiting for an admin (setting signup_requires_approval); disabled until approved.
    pending_approval: Mapped[bool] = mapped_column(default=False)


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("kind IN ('inference', 'management')", name="ck_api_keys_kind"),
        CheckConstraint(
            "limit_retention IN ('no_reset', 'day', 'week', 'month')",
            name="ck_api_keys_limit_retention",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(8), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))  # hex; unique index below
    kind: Mapped[str] = mapped_column(String(16), default="inference")
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    limit_threshold: Mapped[Decimal | None] = mapped_column(MONEY)  # USD per period
    limit_retention: Mapped[str] = mapped_column(String(16), default="no_reset")
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


Index("ix_api_keys_secret_sha256", ApiKey.secret_sha256, unique=True)


class UsageEvent(Base):
    """One request's outcome, recorded once where the request ends (success, error or cancel)."""

    __tablename__ = "usage_events"
    __table_args__ = (
        CheckConstraint(
            "status IN ('success', 'error', 'refused', 'cancelled')", name="ck_usage_events_status"
        ),
        # Every column a report or a key's spend reads: the database reads the index alone (0006).
        Index("ix_usage_events_key_spend", "key_id", "created_at", "cost"),
        Index(
            "ix_usage_events_user_reports",
            "user_id", "created_at", "id", "status", "model", "key_prefix", "prompt_tokens", "completion_tokens", "cost",
        ),
    )

    id: Mapped[int] = mapped_column(EVENT_ID, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    key_prefix: Mapped[str | None] = mapped_column(String(8))  # kept after the key is deleted
    model: Mapped[str] = mapped_column(String(255))
    endpoint: Mapped[str] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))  # USD
    status: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    origin: Mapped[str] = mapped_column(String(16), default="api")  # api | playground (logs)
    client_request_id: Mapped[str | None] = mapped_column(String(128))  # X-Client-Request-Id
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CreditGrant(Base):
    """Money added to (or, when negative, taken from) a user's balance by an operator."""

    __tablename__ = "credit_grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    amount: Mapped[Decimal] = mapped_column(MONEY)  # USD
    reason: Mapped[str] = mapped_column(String(255))
    granted_by: Mapped[str] = mapped_column(String(255))  # an email, "cli" or "system"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CostReservation(Base):
    """Money held for one admitted request until it ends (see `coderapi.services.reservations`).

    A row holds money from admission to settlement (`settled_at`), then lingers a while (see
    crud.reservations.SETTLED_KEPT) so a retried settlement is recognised; `expires_at` lets the
    hold of a gateway that crashed mid-request lapse on its own."""

    __tablename__ = "cost_reservations"
    __table_args__ = (
        Index("ix_cost_reservations_user_id_expires_at", "user_id", "expires_at"),
        Index("ix_cost_reservations_key_id_expires_at", "key_id", "expires_at"),
    )

    id: Mapped[int] = mapped_column(EVENT_ID, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    request_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(MONEY)  # USD, the request's worst-case cost
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Set when the request is settled; the row stays a while so a retried settlement (a commit
    # whose acknowledgement was lost) finds it and charges nothing twice.
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebSession(Base):
    """A dashboard sign-in. The cookie holds a random token; only its sha256 is kept here, so a
    copy of the database cannot be replayed as a session."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuthThrottle(Base):
    """Sign-in failures or sign-up attempts in one bucket ("login-ip:…", "login-email:…",
    "signup-ip:…") since `window_start` (see `coderapi.crud.auth_throttle`)."""

    __tablename__ = "auth_throttle"

    key: Mapped[str] = mapped_column(String(320), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class Invite(Base):
    """A single-use sign-up code (setting signup = invite); only its sha256 is kept."""

    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    used_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class AuthEpoch(Base):
    """One counter, raised in the same transaction as any change to what a key may do (a key
    disabled, deleted or edited; its owner disabled, re-roled or re-limited; credit taken away).
    Gateways keep keys and credit leases only as "valid while the epoch is N" and read the
    counter on every inference request, so a change anywhere is seen by the next request
    everywhere (see `coderapi.store.auth_epoch`)."""

    __tablename__ = "auth_epoch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    value: Mapped[int] = mapped_column(BigInteger, default=0)
