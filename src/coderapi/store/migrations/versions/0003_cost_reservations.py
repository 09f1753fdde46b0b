"""cost_reservations (money held for requests in flight, settled when each ends)

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03 00:00:00

Self-contained on purpose: a migration describes the schema as it was, so it imports nothing
from the current ORM model.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(18, 6)
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cost_reservations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_cost_reservations_user_id"),
            nullable=False,
        ),
        sa.Column(
            "key_id",
            sa.Integer(),
            sa.ForeignKey("api_keys.id", ondelete="CASCADE", name="fk_cost_reservations_key_id"),
            nullable=True,
        ),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("settled_at", TIMESTAMP, nullable=True),
    )
    op.create_index(
        "ix_cost_reservations_user_id_expires_at", "cost_reservations", ["user_id", "expires_at"]
    )
    op.create_index(
        "ix_cost_reservations_key_id_expires_at", "cost_reservations", ["key_id", "expires_at"]
    )


def downgrade() -> None:
    op.drop_table("cost_reservations")
