"""auth_epoch: one counter raised with every change to what a key may do

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 00:00:00

Gateways cache keys and lease credit "while the epoch is N" and read this counter per request
(see coderapi.store.auth_epoch). Self-contained: imports nothing from the current ORM model.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "auth_epoch",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "value": 0}])


def downgrade() -> None:
    op.drop_table("auth_epoch")
