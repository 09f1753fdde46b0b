"""users, api_keys, usage_events, credit_grants

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00

Self-contained on purpose: a migration describes the schema as it was, so it imports nothing
from the current ORM model.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MONEY = sa.Numeric(18, 6)
TIMESTAMP = sa.DateTime(timezone=True)


def _create_users() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("balance", MONEY, nullable=False),
        sa.Column("rpm_limit", sa.Integer(), nullable=True),
        sa.Column("tpm_limit", sa.Integer(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("role IN ('user', 'admin')", name="ck_users_role"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )


def _create_api_keys() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_api_keys_user_id"),
            nullable=False,
        ),
        sa.Column("name", sa.String(128), nullable=True),
        sa.Column("prefix", sa.String(8), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("limit_threshold", MONEY, nullable=True),
        sa.Column("limit_retention", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint("kind IN ('inference', 'management')", name="ck_api_keys_kind"),
        sa.CheckConstraint(
            "limit_retention IN ('no_reset', 'day', 'week', 'month')",
            name="ck_api_keys_limit_retention",
        ),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
    )
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_index("ix_api_keys_secret_sha256", "api_keys", ["secret_sha256"], unique=True)


def _create_usage_events() -> None:
    op.create_table(
        "usage_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_usage_events_user_id"),
            nullable=False,
        ),
        sa.Column(
            "key_id",
            sa.Integer(),
            sa.ForeignKey("api_keys.id", ondelete="SET NULL", name="fk_usage_events_key_id"),
            nullable=True,
        ),
        sa.Column("key_prefix", sa.String(8), nullable=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", MONEY, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("finish_reason", sa.String(32), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("ttft_ms", sa.Integer(), nullable=True),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("client_request_id", sa.String(128), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "status IN ('success', 'error', 'refused', 'cancelled')", name="ck_usage_events_status"
        ),
    )
    op.create_index("ix_usage_events_key_id_created_at", "usage_events", ["key_id", "created_at"])
    op.create_index("ix_usage_events_user_id_created_at", "usage_events", ["user_id", "created_at"])


def _create_credit_grants() -> None:
    op.create_table(
        "credit_grants",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_credit_grants_user_id"),
            nullable=False,
        ),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.Column("granted_by", sa.String(255), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
    )
    op.create_index("ix_credit_grants_user_id", "credit_grants", ["user_id"])


def upgrade() -> None:
    _create_users()
    _create_api_keys()
    _create_usage_events()
    _create_credit_grants()


def downgrade() -> None:
    op.drop_table("credit_grants")
    op.drop_table("usage_events")
    op.drop_table("api_keys")
    op.drop_table("users")
