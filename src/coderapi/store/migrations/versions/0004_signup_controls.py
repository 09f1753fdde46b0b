"""invites, users.pending_approval, auth_throttle (replaces login_failures)

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04 00:00:00

Sign-up by invite or with an admin's approval, and sign-in/sign-up throttling by counters that
one atomic statement checks and records. Self-contained on purpose: a migration describes the
schema as it was, so it imports nothing from the current ORM model.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("pending_approval", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "invites",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code_sha256", sa.String(64), nullable=False),
        sa.Column(
            "created_by",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="SET NULL", name="fk_invites_created_by"),
            nullable=True,
        ),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("used_at", TIMESTAMP, nullable=True),
        sa.Column(
            "used_by",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="SET NULL", name="fk_invites_used_by"),
            nullable=True,
        ),
        sa.UniqueConstraint("code_sha256", name="uq_invites_code_sha256"),
    )
    op.create_table(
        "auth_throttle",
        sa.Column("key", sa.String(320), primary_key=True),
        sa.Column("window_start", TIMESTAMP, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
    )
    op.create_index("ix_auth_throttle_window_start", "auth_throttle", ["window_start"])
    op.drop_table("login_failures")


def downgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
    )
    op.create_index(
        "ix_login_failures_email_ip_created_at", "login_failures", ["email", "ip", "created_at"]
    )
    op.drop_table("auth_throttle")
    op.drop_table("invites")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("pending_approval")
